//! The `openai` back-end: any OpenAI-compatible chat-completions server
//! (OpenAI, vLLM, llama.cpp's server, LM Studio, Ollama's `/v1`).
//!
//! It sends `POST {base}/chat/completions` with `"stream": true` and
//! `"stream_options": {"include_usage": true}`; a bare `prompt` becomes one
//! user message, sampling options are top-level fields, and tools and
//! tool turns take OpenAI's shapes (a call's arguments as JSON text). The
//! answer is read by [`reader`]; tool calls streamed in fragments are
//! joined by [`fragments`].

mod fragments;
mod reader;

use async_trait::async_trait;
use futures_util::stream;
use reqwest::Client;

use super::upstream::{self, BaseUrl};
use super::{Backend, BackendError, Finish, GenerateRequest, Message, TokenStream};
use reader::Reader;

/// OpenAI's own API.
pub const DEFAULT_URL: &str = "https://api.openai.com/v1";
/// The model used when neither the request nor `--model` names one.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// Longest event-stream line accepted.
const MAX_LINE: usize = 1024 * 1024;

/// The OpenAI-compatible back-end.
#[derive(Clone)]
pub struct OpenAiBackend {
    client: Client,
    base: BaseUrl,
    model: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for OpenAiBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiBackend")
            .field("base", &self.base)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl OpenAiBackend {
    /// A back-end calling the server at `base` with `api_key` (sent as a
    /// bearer token when set) and `model` as the default model.
    pub fn new(
        client: Client,
        base: BaseUrl,
        model: Option<String>,
        api_key: Option<String>,
    ) -> Self {
        Self {
            client,
            base,
            model: model.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            api_key,
        }
    }

    /// The URL and JSON body for `request`.
    pub fn request_body(&self, request: &GenerateRequest) -> (String, serde_json::Value) {
        let messages: Vec<serde_json::Value> =
            request.conversation().iter().map(chat_message).collect();
        // Options first, so they can never replace the fields rill relies on.
        let mut body = request.options.clone();
        if let Some(n) = request.max_output_tokens {
            body.insert("max_tokens".into(), n.into());
        }
        body.insert("model".into(), self.model_for(request).into());
        body.insert("messages".into(), messages.into());
        if !request.tools.is_empty() {
            let tools = request.tools.iter().map(|t| t.chat_json()).collect();
            body.insert("tools".into(), tools);
            if let Some(choice) = &request.tool_choice {
                body.insert("tool_choice".into(), choice.chat_json());
            }
        }
        body.insert("stream".into(), true.into());
        body.insert(
            "stream_options".into(),
            serde_json::json!({ "include_usage": true }),
        );
        (self.base.join("/chat/completions"), body.into())
    }
}

/// `m` as OpenAI's chat API reads it: a call's arguments as JSON text, an
/// assistant turn that only calls tools with `content: null`.
fn chat_message(m: &Message) -> serde_json::Value {
    if let Some(id) = &m.tool_call_id {
        return serde_json::json!({ "role": m.role, "tool_call_id": id, "content": m.content });
    }
    let mut wire = serde_json::json!({ "role": m.role, "content": m.content });
    if !m.tool_calls.is_empty() {
        if m.content.is_empty() {
            wire["content"] = serde_json::Value::Null;
        }
        wire["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments_text() },
                })
            })
            .collect();
    }
    wire
}

#[async_trait]
impl Backend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn default_model(&self) -> String {
        self.model.clone()
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<TokenStream, BackendError> {
        let (url, body) = self.request_body(request);
        let mut http = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let body = upstream::send(http, true).await?;
        let finish = Finish {
            model: self.model_for(request),
            done_reason: "stop".to_owned(),
            ..Finish::default()
        };
        let reader = Reader::new(Box::pin(body), MAX_LINE, finish);
        Ok(Box::pin(stream::unfold(reader, |mut r| async move {
            r.next().await.map(|c| (c, r))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_becomes_a_user_message_and_options_are_top_level() {
        let b = OpenAiBackend::new(
            Client::new(),
            BaseUrl::parse("http://127.0.0.1:1/v1").unwrap(),
            Some("m".into()),
            None,
        );
        let mut options = serde_json::Map::new();
        options.insert("max_tokens".into(), 5.into());
        options.insert("stream".into(), false.into());
        let req = GenerateRequest {
            prompt: Some("hi".into()),
            options,
            ..Default::default()
        };
        let (url, body) = b.request_body(&req);
        assert_eq!(url, "http://127.0.0.1:1/v1/chat/completions");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["model"], "m");
    }

    #[test]
    fn tools_and_tool_turns_take_openai_shapes() {
        let b = OpenAiBackend::new(
            Client::new(),
            BaseUrl::parse("http://127.0.0.1:1/v1").unwrap(),
            None,
            None,
        );
        let mut asked = Message::text("assistant", "");
        asked.tool_calls = vec![crate::backend::ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: serde_json::json!({"city": "Paris"}),
        }];
        let mut result = Message::text("tool", "21");
        result.tool_call_id = Some("call_1".into());
        let req = GenerateRequest {
            messages: Some(vec![Message::text("user", "Weather?"), asked, result]),
            tools: vec![crate::backend::Tool {
                name: "get_weather".into(),
                description: None,
                parameters: serde_json::json!({"type": "object"}),
            }],
            tool_choice: Some(crate::backend::ToolChoice::Required),
            ..Default::default()
        };
        let (_, body) = b.request_body(&req);
        assert_eq!(
            body["messages"][1],
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]})
        );
        assert_eq!(
            body["messages"][2],
            serde_json::json!({"role": "tool", "tool_call_id": "call_1", "content": "21"})
        );
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tool_choice"], "required");
    }
}
