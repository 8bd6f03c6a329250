//! The `ollama` back-end: Ollama's native streaming API.
//!
//! A request with `messages` or tools goes to `POST /api/chat`, one with a
//! bare `prompt` to `POST /api/generate`, both with `"stream": true`. Ollama
//! answers with NDJSON: one JSON object per line, the text in
//! `message.content` (chat) or `response` (generate), reasoning in
//! `thinking`, whole tool calls in `message.tool_calls`, and a last object
//! with `"done": true`, `done_reason`, `prompt_eval_count` and
//! `eval_count`; [`line`] reads one line. The body is split into lines as
//! it arrives, so each token is published the moment Ollama sends it. (A
//! server that ignores `stream` and answers one JSON object still works:
//! that object is a last line with the whole text.)
//!
//! Ollama's message shape differs from rill's in two ways the request
//! translates: a call's arguments are a JSON object (rill's are a JSON value
//! already), and a tool result names its tool (`tool_name`), found from the
//! call it answers.

mod line;

use async_trait::async_trait;
use futures_util::{stream, StreamExt};
use reqwest::Client;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use super::chat::tool_name_of;
use super::upstream::{self, BaseUrl};
use super::{Backend, BackendError, GenerateRequest, Message, TokenStream};
use line::parse_line;

/// Ollama's usual address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:11434";
/// The model used when neither the request nor `--model` names one.
pub const DEFAULT_MODEL: &str = "llama3.1";
/// Longest NDJSON line accepted; a longer one is a protocol error.
const MAX_LINE: usize = 1024 * 1024;

/// The Ollama back-end.
#[derive(Debug, Clone)]
pub struct OllamaBackend {
    client: Client,
    base: BaseUrl,
    model: String,
}

impl OllamaBackend {
    /// A back-end calling the Ollama server at `base`, with `model` as the
    /// default model.
    pub fn new(client: Client, base: BaseUrl, model: Option<String>) -> Self {
        Self {
            client,
            base,
            model: model.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        }
    }

    /// The URL and JSON body for `request`.
    pub fn request_body(&self, request: &GenerateRequest) -> (String, serde_json::Value) {
        let mut body = serde_json::json!({
            "model": self.model_for(request),
            "stream": true,
        });
        let tools = request.offered_tools();
        let path = if request.messages.is_some() || !tools.is_empty() {
            let messages = request.conversation();
            let wire: Vec<serde_json::Value> = messages
                .iter()
                .map(|m| chat_message(m, &messages))
                .collect();
            body["messages"] = wire.into();
            if !tools.is_empty() {
                body["tools"] = tools.iter().map(|t| t.chat_json()).collect();
            }
            "/api/chat"
        } else {
            body["prompt"] = request.prompt.clone().unwrap_or_default().into();
            "/api/generate"
        };
        let mut options = request.options.clone();
        if let Some(n) = request.max_output_tokens {
            options.insert("num_predict".into(), n.into());
        }
        if !options.is_empty() {
            body["options"] = options.into();
        }
        (self.base.join(path), body)
    }
}

/// `m` as Ollama's `/api/chat` reads it; `all` is the conversation, where
/// a tool result's tool name is found.
fn chat_message(m: &Message, all: &[Message]) -> serde_json::Value {
    let mut wire = serde_json::json!({ "role": m.role, "content": m.content });
    if !m.tool_calls.is_empty() {
        wire["tool_calls"] = m
            .tool_calls
            .iter()
            .map(
                |c| serde_json::json!({ "function": { "name": c.name, "arguments": c.arguments } }),
            )
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        wire["tool_call_id"] = id.clone().into();
        if let Some(name) = m.name.as_deref().or_else(|| tool_name_of(all, id)) {
            wire["tool_name"] = name.into();
        }
    }
    wire
}

#[async_trait]
impl Backend for OllamaBackend {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn default_model(&self) -> String {
        self.model.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<TokenStream, BackendError> {
        let (url, body) = self.request_body(request);
        let bytes = upstream::send(self.client.post(url).json(&body), false).await?;
        let reader = StreamReader::new(bytes.map(|r| r.map_err(std::io::Error::other)));
        let lines = FramedRead::new(reader, LinesCodec::new_with_max_length(MAX_LINE));
        Ok(Box::pin(lines.flat_map(|line| {
            stream::iter(match line {
                Ok(line) => parse_line(&line),
                Err(e) => vec![Err(line_error(e))],
            })
        })))
    }
}

fn line_error(e: LinesCodecError) -> BackendError {
    match e {
        LinesCodecError::MaxLineLengthExceeded => {
            BackendError::Protocol(format!("an NDJSON line is longer than {MAX_LINE} bytes"))
        }
        LinesCodecError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            BackendError::Protocol("the stream is not UTF-8 text".to_owned())
        }
        LinesCodecError::Io(io) => BackendError::Interrupted(io.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_to_chat_and_options_pass_through() {
        let b = OllamaBackend::new(
            Client::new(),
            BaseUrl::parse("http://127.0.0.1:1").unwrap(),
            None,
        );
        let mut options = serde_json::Map::new();
        options.insert("temperature".into(), 0.2.into());
        let req = GenerateRequest {
            messages: Some(vec![Message::text("user", "hi")]),
            options,
            ..Default::default()
        };
        let (url, body) = b.request_body(&req);
        assert_eq!(url, "http://127.0.0.1:1/api/chat");
        assert_eq!(body["model"], DEFAULT_MODEL);
        assert_eq!(body["stream"], true);
        assert_eq!(body["options"]["temperature"], 0.2);
        assert_eq!(body["messages"][0]["content"], "hi");
    }

    #[test]
    fn tools_and_tool_turns_translate() {
        let b = OllamaBackend::new(
            Client::new(),
            BaseUrl::parse("http://127.0.0.1:1").unwrap(),
            None,
        );
        let tool = crate::backend::Tool {
            name: "get_weather".into(),
            description: Some("Weather now".into()),
            parameters: serde_json::json!({"type": "object"}),
        };
        let prompt = GenerateRequest {
            prompt: Some("Weather?".into()),
            tools: vec![tool.clone()],
            ..Default::default()
        };
        let (url, body) = b.request_body(&prompt);
        assert_eq!(
            url, "http://127.0.0.1:1/api/chat",
            "tools need the chat API"
        );
        assert_eq!(
            body["messages"][0],
            serde_json::json!({"role": "user", "content": "Weather?"})
        );
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");

        let mut asked = Message::text("assistant", "");
        asked.tool_calls = vec![crate::backend::ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: serde_json::json!({"city": "Paris"}),
        }];
        let mut result = Message::text("tool", "21");
        result.tool_call_id = Some("call_1".into());
        let turn = GenerateRequest {
            messages: Some(vec![Message::text("user", "Weather?"), asked, result]),
            tools: vec![tool],
            tool_choice: Some(crate::backend::ToolChoice::None),
            ..Default::default()
        };
        let (_, body) = b.request_body(&turn);
        assert_eq!(
            body["messages"][1]["tool_calls"][0],
            serde_json::json!({"function": {"name": "get_weather", "arguments": {"city": "Paris"}}})
        );
        assert_eq!(body["messages"][2]["tool_name"], "get_weather");
        assert_eq!(body["messages"][2]["tool_call_id"], "call_1");
        assert!(body.get("tools").is_none(), "tool_choice none offers none");
    }
}
