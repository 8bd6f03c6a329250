//! The Response object and its output items, as the Responses API writes
//! them.
//!
//! What a request said that the generation's stream does not carry (when it
//! was made, the model asked for, `instructions`, `tools`, `background`, ...)
//! is its [`Head`]: written once when the response starts, in a stream of
//! its own (`_resp-<generation id>`) so that it is kept exactly as long as
//! the generation's events and read the same on every node. Everything else
//! in a Response is derived from the generation's events.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::backend::ToolCall;
use crate::generation::events::Usage;

/// What a Responses request said about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// The generation's id.
    pub generation: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The model asked for (or the default).
    pub model: String,
    /// The system prompt.
    pub instructions: Option<String>,
    /// The tools offered, in the Responses API's flat form.
    pub tools: Vec<Value>,
    /// `tool_choice` as given, `"auto"` when absent.
    pub tool_choice: Value,
    /// Whether it runs in the background.
    pub background: bool,
    /// Whether it is stored (always true in effect: its stream is).
    pub store: bool,
    /// The output cap asked for.
    pub max_output_tokens: Option<u64>,
    /// Sampling asked for.
    pub temperature: Option<f64>,
    /// Sampling asked for.
    pub top_p: Option<f64>,
    /// The request's metadata.
    pub metadata: Value,
    /// As asked; rill passes every call through.
    pub parallel_tool_calls: bool,
}

impl Head {
    /// The response's id: `resp_<generation id>`.
    pub fn id(&self) -> String {
        format!("resp_{}", self.generation)
    }
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Started in the background, nothing read yet.
    Queued,
    /// Generating.
    InProgress,
    /// Done.
    Completed,
    /// Cut off at the output limit.
    Incomplete,
    /// The model failed.
    Failed,
    /// Stopped before its end.
    Cancelled,
}

impl Status {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more will happen.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::InProgress)
    }
}

/// What an output item is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// The answer's text.
    Message,
    /// Reasoning text.
    Reasoning,
    /// A function call.
    FunctionCall(ToolCall),
}

/// One output item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its kind.
    pub kind: Kind,
    /// `msg_…`, `rs_…` or `fc_…`, from the generation and the item's place.
    pub id: String,
    /// The text so far (message, reasoning).
    pub text: String,
    /// `in_progress`, `completed` or `incomplete`.
    pub status: &'static str,
}

impl Item {
    /// A new item at output `index` of `generation`.
    pub fn new(kind: Kind, generation: &str, index: usize) -> Self {
        let prefix = match kind {
            Kind::Message => "msg",
            Kind::Reasoning => "rs",
            Kind::FunctionCall(_) => "fc",
        };
        Self {
            kind,
            id: format!("{prefix}_{generation}_{index}"),
            text: String::new(),
            status: "in_progress",
        }
    }

    /// The content part (message, reasoning) with the text so far.
    pub fn part(&self) -> Value {
        match self.kind {
            Kind::Reasoning => json!({ "type": "reasoning_text", "text": self.text }),
            _ => {
                json!({ "type": "output_text", "text": self.text, "annotations": [], "logprobs": [] })
            }
        }
    }

    /// The item; `fresh`: as first announced, before any content.
    pub fn json(&self, fresh: bool) -> Value {
        let content = if fresh {
            json!([])
        } else {
            json!([self.part()])
        };
        match &self.kind {
            Kind::Message => json!({
                "type": "message", "id": self.id, "role": "assistant",
                "status": self.status, "content": content,
            }),
            Kind::Reasoning => json!({
                "type": "reasoning", "id": self.id, "status": self.status,
                "summary": [], "content": content, "encrypted_content": null,
            }),
            Kind::FunctionCall(c) => json!({
                "type": "function_call", "id": self.id, "call_id": c.id, "name": c.name,
                "arguments": if fresh { String::new() } else { c.arguments_text() },
                "status": self.status,
            }),
        }
    }
}

/// The Response object.
pub fn response(
    head: &Head,
    status: Status,
    output: Vec<Value>,
    usage: Option<Usage>,
    error: Option<Value>,
) -> Value {
    let incomplete =
        (status == Status::Incomplete).then(|| json!({ "reason": "max_output_tokens" }));
    json!({
        "id": head.id(),
        "object": "response",
        "created_at": head.created_at,
        "status": status.as_str(),
        "background": head.background,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": head.instructions,
        "max_output_tokens": head.max_output_tokens,
        "model": head.model,
        "output": output,
        "parallel_tool_calls": head.parallel_tool_calls,
        "previous_response_id": null,
        "reasoning": { "effort": null, "summary": null },
        "store": head.store,
        "temperature": head.temperature,
        "text": { "format": { "type": "text" } },
        "tool_choice": head.tool_choice,
        "tools": head.tools,
        "top_p": head.top_p,
        "truncation": "disabled",
        "metadata": head.metadata,
        "user": null,
        "usage": usage.map(|u| json!({
            "input_tokens": u.prompt_tokens,
            "input_tokens_details": { "cached_tokens": 0, "cache_write_tokens": 0 },
            "output_tokens": u.completion_tokens,
            "output_tokens_details": { "reasoning_tokens": 0 },
            "total_tokens": u.total_tokens,
        })),
    })
}
