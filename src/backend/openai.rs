//! The `openai` back-end: any OpenAI-compatible chat-completions server
//! (OpenAI, vLLM, llama.cpp's server, LM Studio, Ollama's `/v1`).
//!
//! It sends `POST {base}/chat/completions` with `"stream": true` and
//! `"stream_options": {"include_usage": true}`; a bare `prompt` becomes one
//! user message and sampling options are top-level fields. The answer is an
//! event stream, parsed with rill's own WHATWG parser: each event's data is
//! a JSON chunk whose `choices[0].delta.content` is the next text and whose
//! `finish_reason` says why the model stopped; `usage` may arrive in a last
//! chunk with empty `choices`; `data: [DONE]` ends it. A stream that ends
//! before `[DONE]` was cut short.

use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use reqwest::Client;
use serde::Deserialize;

use super::upstream::{self, BaseUrl};
use super::{Backend, BackendError, Chunk, Finish, GenerateRequest, Message, TokenStream};
use crate::sse::Parser;

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
        let messages = request.messages.clone().unwrap_or_else(|| {
            vec![Message {
                role: "user".to_owned(),
                content: request.prompt.clone().unwrap_or_default(),
            }]
        });
        // Options first, so they can never replace the fields rill relies on.
        let mut body = request.options.clone();
        if let Some(n) = request.max_output_tokens {
            body.insert("max_tokens".into(), n.into());
        }
        body.insert("model".into(), self.model_for(request).into());
        body.insert("messages".into(), serde_json::json!(messages));
        body.insert("stream".into(), true.into());
        body.insert(
            "stream_options".into(),
            serde_json::json!({ "include_usage": true }),
        );
        (self.base.join("/chat/completions"), body.into())
    }
}

/// One `chat.completion.chunk`.
#[derive(Debug, Default, Deserialize)]
struct ChunkJson {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Reads the chunks of one completion: what has been seen so far, and what
/// is ready to hand out.
struct Reader<B> {
    body: B,
    parser: Parser,
    ready: VecDeque<Result<Chunk, BackendError>>,
    finish: Finish,
    ended: bool,
}

impl<B> Reader<B>
where
    B: Stream<Item = Result<Bytes, BackendError>> + Unpin,
{
    /// The next chunk, reading more of the body when none is ready.
    async fn next(&mut self) -> Option<Result<Chunk, BackendError>> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Some(c);
            }
            if self.ended {
                return None;
            }
            match self.body.next().await {
                None => return self.end(Err(BackendError::Truncated)),
                Some(Err(e)) => return self.end(Err(e)),
                Some(Ok(bytes)) => {
                    if let Err(e) = self.parser.feed(&bytes) {
                        return self.end(Err(BackendError::Protocol(e.to_string())));
                    }
                    while let Some(event) = self.parser.next_event() {
                        self.on_data(&event.data);
                    }
                }
            }
        }
    }

    fn end(&mut self, last: Result<Chunk, BackendError>) -> Option<Result<Chunk, BackendError>> {
        self.ended = true;
        Some(last)
    }

    fn on_data(&mut self, data: &str) {
        if self.ended {
            return;
        }
        if data.trim() == "[DONE]" {
            self.ready
                .push_back(Ok(Chunk::Done(std::mem::take(&mut self.finish))));
            self.ended = true;
            return;
        }
        let chunk: ChunkJson = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                let start: String = data.chars().take(80).collect();
                self.ready.push_back(Err(BackendError::Protocol(format!(
                    "not a chat completion chunk ({e}): {start}"
                ))));
                self.ended = true;
                return;
            }
        };
        if let Some(error) = chunk.error {
            let text = error
                .get("message")
                .and_then(|m| m.as_str())
                .map_or_else(|| error.to_string(), str::to_owned);
            self.ready.push_back(Err(BackendError::Upstream(text)));
            self.ended = true;
            return;
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.finish.model = model;
        }
        if let Some(usage) = chunk.usage {
            self.finish.prompt_tokens = usage.prompt_tokens;
            self.finish.completion_tokens = usage.completion_tokens;
        }
        // With `n` above 1 the choices interleave; the stream is the first.
        if let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.ready.push_back(Ok(Chunk::Token(text)));
            }
            if let Some(reason) = choice.finish_reason {
                self.finish.done_reason = reason;
            }
        }
    }
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
        let reader = Reader {
            body: Box::pin(body),
            parser: Parser::new(MAX_LINE),
            ready: VecDeque::new(),
            finish: Finish {
                model: self.model_for(request),
                done_reason: "stop".to_owned(),
                ..Finish::default()
            },
            ended: false,
        };
        Ok(Box::pin(stream::unfold(reader, |mut r| async move {
            r.next().await.map(|c| (c, r))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(
        parts: Vec<&'static str>,
    ) -> Reader<impl Stream<Item = Result<Bytes, BackendError>> + Unpin> {
        Reader {
            body: stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p)))),
            parser: Parser::new(MAX_LINE),
            ready: VecDeque::new(),
            finish: Finish::default(),
            ended: false,
        }
    }

    async fn all(parts: Vec<&'static str>) -> Vec<Result<Chunk, BackendError>> {
        let mut r = reader(parts);
        let mut out = Vec::new();
        while let Some(c) = r.next().await {
            out.push(c);
        }
        out
    }

    #[tokio::test]
    async fn deltas_usage_and_done_split_anywhere() {
        let out = all(vec![
            "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\\n\"}}]}\r\n\r",
            "\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\r",
            "\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\nda",
            "ta: [DONE]\n\n",
        ])
        .await;
        let chunks: Vec<Chunk> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks[0], Chunk::Token("Hi\n".into()));
        assert_eq!(
            chunks[1],
            Chunk::Done(Finish {
                model: "m".into(),
                done_reason: "length".into(),
                prompt_tokens: Some(3),
                completion_tokens: Some(1),
            })
        );
        assert_eq!(chunks.len(), 2);
    }

    #[tokio::test]
    async fn no_done_garbage_and_errors_fail() {
        let out = all(vec![
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ])
        .await;
        assert_eq!(out[1].as_ref().unwrap_err().kind(), "truncated");
        let out = all(vec!["data: {oops\n\n"]).await;
        assert_eq!(out[0].as_ref().unwrap_err().kind(), "protocol");
        let out = all(vec!["data: {\"error\":{\"message\":\"overloaded\"}}\n\n"]).await;
        assert!(out[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("overloaded"));
    }

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
}
