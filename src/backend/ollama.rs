//! The `ollama` back-end: Ollama's native streaming API.
//!
//! A request with `messages` goes to `POST /api/chat`, one with a `prompt`
//! to `POST /api/generate`, both with `"stream": true`. Ollama answers with
//! NDJSON: one JSON object per line, the text in `message.content` (chat) or
//! `response` (generate), and a last object with `"done": true`,
//! `done_reason`, `prompt_eval_count` and `eval_count`. An object with an
//! `error` field is an error Ollama hit while generating. The body is split
//! into lines as it arrives, so each token is published the moment Ollama
//! sends it. (A server that ignores `stream` and answers one JSON object
//! still works: that object is a last line with the whole text.)

use async_trait::async_trait;
use futures_util::{stream, StreamExt};
use reqwest::Client;
use serde::Deserialize;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use super::upstream::{self, BaseUrl};
use super::{Backend, BackendError, Chunk, Finish, GenerateRequest, TokenStream};

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
        let path = match &request.messages {
            Some(messages) => {
                body["messages"] = serde_json::json!(messages);
                "/api/chat"
            }
            None => {
                body["prompt"] = request.prompt.clone().unwrap_or_default().into();
                "/api/generate"
            }
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

/// One line of `/api/chat` or `/api/generate`.
#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: String,
}

/// The chunks one NDJSON line stands for: none (blank line), a token, the
/// end (preceded by its token if the last line carries text), or an error.
fn parse_line(line: &str) -> Vec<Result<Chunk, BackendError>> {
    if line.trim().is_empty() {
        return Vec::new();
    }
    let parsed: Line = match serde_json::from_str(line) {
        Ok(l) => l,
        Err(e) => {
            let start: String = line.chars().take(80).collect();
            return vec![Err(BackendError::Protocol(format!(
                "not an Ollama JSON line ({e}): {start}"
            )))];
        }
    };
    if let Some(error) = parsed.error {
        let text = match error {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        return vec![Err(BackendError::Upstream(text))];
    }
    let text = parsed
        .message
        .map(|m| m.content)
        .or(parsed.response)
        .unwrap_or_default();
    let mut out = Vec::new();
    if !text.is_empty() {
        out.push(Ok(Chunk::Token(text)));
    }
    if parsed.done {
        out.push(Ok(Chunk::Done(Finish {
            model: parsed.model.unwrap_or_default(),
            done_reason: parsed.done_reason.unwrap_or_else(|| "stop".to_owned()),
            prompt_tokens: parsed.prompt_eval_count,
            completion_tokens: parsed.eval_count,
        })));
    }
    out
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
    fn chat_and_generate_lines_parse() {
        let chat = r#"{"model":"llama3.1","created_at":"2024-08-29T05:10:21Z","message":{"role":"assistant","content":" Mars"},"done":false}"#;
        assert_eq!(
            parse_line(chat).pop().unwrap().unwrap(),
            Chunk::Token(" Mars".into())
        );
        let last = r#"{"model":"llama3.1","created_at":"x","response":"","done":true,"done_reason":"length","prompt_eval_count":26,"eval_count":9}"#;
        let Chunk::Done(f) = parse_line(last).pop().unwrap().unwrap() else {
            panic!("not done")
        };
        assert_eq!(f.done_reason, "length");
        assert_eq!((f.prompt_tokens, f.completion_tokens), (Some(26), Some(9)));
        assert!(parse_line("  ").is_empty());
    }

    #[test]
    fn errors_and_garbage_are_errors() {
        let e = parse_line(r#"{"error":"model 'x' not found"}"#)
            .pop()
            .unwrap();
        assert_eq!(e.unwrap_err().kind(), "upstream");
        let e = parse_line("<html>").pop().unwrap();
        assert_eq!(e.unwrap_err().kind(), "protocol");
    }

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
            messages: Some(vec![super::super::Message {
                role: "user".into(),
                content: "hi".into(),
            }]),
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
}
