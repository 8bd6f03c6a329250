//! Model back-ends: a prompt in, a stream of typed pieces out.
//!
//! A [`Backend`] turns a [`GenerateRequest`] into a [`TokenStream`] of
//! [`Chunk`]s: text, reasoning text, whole tool calls, and the end. The
//! generation runner (`crate::generation`) writes them into a stream, so
//! what a model says is resumable by every browser that reads it. Each
//! back-end reads its own wire (Ollama's NDJSON, OpenAI's event stream) into
//! these same chunks; fragments of a tool call are joined here, at the
//! edge, so nothing downstream sees half a call. Dropping the token stream
//! drops the upstream request: that is how a cancelled generation stops
//! costing tokens.

pub mod chat;
pub mod mock;
pub mod ollama;
pub mod openai;
pub mod upstream;

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;

pub use chat::{Message, Tool, ToolCall, ToolChoice};

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    /// A plain prompt (Ollama `/api/generate`).
    pub prompt: Option<String>,
    /// A conversation (Ollama `/api/chat`, OpenAI chat completions).
    pub messages: Option<Vec<Message>>,
    /// The model; the back-end's default when `None`.
    pub model: Option<String>,
    /// Sampling options passed through to the model server (already
    /// checked against the allowed options).
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Most tokens the model may generate; each back-end sends it in its
    /// own field (`num_predict`, `max_tokens`).
    pub max_output_tokens: Option<u64>,
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    /// Whether and which tool the model must call; the model decides when
    /// `None`.
    pub tool_choice: Option<ToolChoice>,
}

impl GenerateRequest {
    /// The prompt as one text: the prompt, or the last user message.
    pub fn prompt_text(&self) -> String {
        if let Some(p) = &self.prompt {
            return p.clone();
        }
        self.messages
            .iter()
            .flatten()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.clone())
            .unwrap_or_default()
    }

    /// The tools the model may call: none when `tool_choice` is `none`.
    pub fn offered_tools(&self) -> &[Tool] {
        if self.tool_choice == Some(ToolChoice::None) {
            &[]
        } else {
            &self.tools
        }
    }

    /// The conversation: the messages, or the prompt as one user message.
    pub fn conversation(&self) -> Vec<Message> {
        self.messages.clone().unwrap_or_else(|| {
            vec![Message::text(
                "user",
                self.prompt.clone().unwrap_or_default(),
            )]
        })
    }
}

/// How a generation ended, as the model reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finish {
    /// The model that answered.
    pub model: String,
    /// Why it stopped (`stop`, `length`, ...).
    pub done_reason: String,
    /// Tokens in the prompt, when the model reports them.
    pub prompt_tokens: Option<u64>,
    /// Tokens generated, when the model reports them.
    pub completion_tokens: Option<u64>,
}

/// A piece of a model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Text to show.
    Token(String),
    /// Reasoning text (a thinking model's chain of thought), before the
    /// answer.
    Reasoning(String),
    /// One whole tool call.
    ToolCall(ToolCall),
    /// The end, with the model's summary.
    Done(Finish),
}

/// What went wrong upstream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The model server could not be reached.
    #[error("cannot reach the model server: {0}")]
    Connect(String),
    /// The model server answered with an error status.
    #[error("model server answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The model server sent something that is not its protocol.
    #[error("model server sent an invalid stream: {0}")]
    Protocol(String),
    /// The model server went silent for longer than the timeout.
    #[error("model server sent nothing for {0} s")]
    Timeout(u64),
    /// The stream ended without the model saying it was done.
    #[error("model server closed the stream before it was done")]
    Truncated,
    /// Reading the answer failed part-way (the connection broke).
    #[error("reading the model server's answer failed: {0}")]
    Interrupted(String),
    /// The model server reported an error inside its stream.
    #[error("model server reported: {0}")]
    Upstream(String),
}

impl BackendError {
    /// A short name for metrics and error events.
    pub fn kind(&self) -> &'static str {
        match self {
            BackendError::Connect(_) => "connect",
            BackendError::Status { .. } => "status",
            BackendError::Protocol(_) => "protocol",
            BackendError::Timeout(_) => "timeout",
            BackendError::Truncated => "truncated",
            BackendError::Interrupted(_) => "interrupted",
            BackendError::Upstream(_) => "upstream",
        }
    }

    /// The upstream HTTP status, if there was one.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            BackendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The tokens of one generation.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<Chunk, BackendError>> + Send>>;

/// A model server.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The back-end's name (`mock`, `ollama`, `openai`).
    fn name(&self) -> &'static str;

    /// The model a request that names none gets.
    fn default_model(&self) -> String;

    /// The model a request gets: its own, or the back-end's default.
    fn model_for(&self, request: &GenerateRequest) -> String {
        request
            .model
            .clone()
            .unwrap_or_else(|| self.default_model())
    }

    /// Starts a generation.
    async fn generate(&self, request: &GenerateRequest) -> Result<TokenStream, BackendError>;
}
