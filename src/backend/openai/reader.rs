//! Reading an OpenAI-compatible chat-completions event stream into chunks.
//!
//! The bytes go through rill's own WHATWG parser, so split UTF-8, CRLF or
//! CR line endings, comments and unknown fields are all taken as a browser
//! would. Each event's data is a JSON chunk; for choice 0 its
//! `delta.content` is text, `delta.reasoning_content` (DeepSeek, llama.cpp,
//! older vLLM) or `delta.reasoning` (newer vLLM, OpenRouter, Ollama's `/v1`)
//! reasoning, and `delta.tool_calls` fragments, joined in [`super::fragments`]
//! and handed on whole when the choice finishes. `finish_reason` says why it
//! stopped, `usage` may come in a last chunk with empty `choices`, and
//! `data: [DONE]` ends it. A stream that ends before `[DONE]` was cut short;
//! a chunk with an `error` field is an error the server hit mid-stream.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::fragments::{Calls, Fragment};
use crate::backend::{BackendError, Chunk, Finish, ToolCall};
use crate::sse::Parser;

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
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Fragment>>,
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
pub struct Reader<B> {
    body: B,
    parser: Parser,
    ready: VecDeque<Result<Chunk, BackendError>>,
    finish: Finish,
    calls: Calls,
    ended: bool,
}

impl<B> Reader<B>
where
    B: Stream<Item = Result<Bytes, BackendError>> + Unpin,
{
    /// A reader of `body`, lines at most `max_line` bytes; `finish` holds
    /// what the end reports when the server does not say (the model asked
    /// for, `stop`).
    pub fn new(body: B, max_line: usize, finish: Finish) -> Self {
        Self {
            body,
            parser: Parser::new(max_line),
            ready: VecDeque::new(),
            finish,
            calls: Calls::default(),
            ended: false,
        }
    }

    /// The next chunk, reading more of the body when none is ready.
    pub async fn next(&mut self) -> Option<Result<Chunk, BackendError>> {
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

    fn fail(&mut self, e: BackendError) {
        self.ready.push_back(Err(e));
        self.ended = true;
    }

    fn on_data(&mut self, data: &str) {
        if self.ended {
            return;
        }
        if data.trim() == "[DONE]" {
            if self.flush_calls() {
                let finish = std::mem::take(&mut self.finish);
                self.ready.push_back(Ok(Chunk::Done(finish)));
                self.ended = true;
            }
            return;
        }
        let chunk: ChunkJson = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                let start: String = data.chars().take(80).collect();
                return self.fail(BackendError::Protocol(format!(
                    "not a chat completion chunk ({e}): {start}"
                )));
            }
        };
        if let Some(error) = chunk.error {
            let text = error
                .get("message")
                .and_then(|m| m.as_str())
                .map_or_else(|| error.to_string(), str::to_owned);
            return self.fail(BackendError::Upstream(text));
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
            self.on_choice(choice);
        }
    }

    fn on_choice(&mut self, choice: Choice) {
        let delta = choice.delta;
        // Some servers send both names with the same text: one is enough.
        let reasoning = delta.reasoning_content.or(delta.reasoning);
        if let Some(text) = reasoning.filter(|t| !t.is_empty()) {
            self.ready.push_back(Ok(Chunk::Reasoning(text)));
        }
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            self.ready.push_back(Ok(Chunk::Token(text)));
        }
        for fragment in delta.tool_calls.into_iter().flatten() {
            self.calls.add(fragment);
        }
        if let Some(reason) = choice.finish_reason {
            self.finish.done_reason = reason;
            self.flush_calls();
        }
    }

    /// Hands on the whole calls; false if one was malformed (the reader has
    /// then failed).
    fn flush_calls(&mut self) -> bool {
        if self.calls.is_empty() {
            return true;
        }
        match self.calls.finish(ToolCall::made_up_id) {
            Ok(calls) => {
                self.ready
                    .extend(calls.into_iter().map(|c| Ok(Chunk::ToolCall(c))));
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use serde_json::json;

    const MAX_LINE: usize = 1 << 20;

    async fn all(parts: Vec<&'static [u8]>) -> Vec<Result<Chunk, BackendError>> {
        let body = stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))));
        let mut r = Reader::new(body, MAX_LINE, Finish::default());
        let mut out = Vec::new();
        while let Some(c) = r.next().await {
            out.push(c);
        }
        out
    }

    #[tokio::test]
    async fn deltas_usage_and_done_split_anywhere() {
        let out = all(vec![
            b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\\n\"}}]}\r\n\r",
            b"\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\r",
            b"\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\nda",
            b"ta: [DONE]\n\n",
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
    async fn reasoning_split_utf8_and_interleaved_calls() {
        // "é" (C3 A9) split between two reads; reasoning under both names.
        let out = all(vec![
            b": keep-alive\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"caf\xC3",
            b"\xA9\",\"content\":null}}]}\r\n\r\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\" au lait\"}}]}\n\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"a\",\"arguments\":\"\"}},{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"b\",\"arguments\":\"{\\\"x\\\"\"}}]}}]}\n\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\":1}\"}},{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
            b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
        ])
        .await;
        let chunks: Vec<Chunk> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks[0], Chunk::Reasoning("café".into()));
        assert_eq!(chunks[1], Chunk::Reasoning(" au lait".into()));
        let Chunk::ToolCall(a) = &chunks[2] else {
            panic!("{chunks:?}")
        };
        let Chunk::ToolCall(b) = &chunks[3] else {
            panic!("{chunks:?}")
        };
        assert_eq!((a.id.as_str(), &a.arguments), ("call_a", &json!({})));
        assert_eq!((b.id.as_str(), &b.arguments), ("call_b", &json!({"x": 1})));
        let Chunk::Done(f) = &chunks[4] else {
            panic!("{chunks:?}")
        };
        assert_eq!(f.done_reason, "tool_calls");
    }

    #[tokio::test]
    async fn no_done_garbage_errors_and_bad_calls_fail() {
        let out = all(vec![
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ])
        .await;
        assert_eq!(out[1].as_ref().unwrap_err().kind(), "truncated");
        let out = all(vec![b"data: {oops\n\n"]).await;
        assert_eq!(out[0].as_ref().unwrap_err().kind(), "protocol");
        let out = all(vec![b"data: {\"error\":{\"message\":\"overloaded\"}}\n\n"]).await;
        assert!(out[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("overloaded"));
        // A call whose arguments never become JSON fails at [DONE], once.
        let out = all(vec![
            b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
            b"data: [DONE]\n\n",
        ])
        .await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].as_ref().unwrap_err().kind(), "protocol");
    }
}
