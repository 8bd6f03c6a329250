//! A generation's events in Chat Completions' shapes: the chunk stream, and
//! the one `chat.completion` object.
//!
//! The stream follows the order OpenAI sends and the SDKs' stream helpers
//! check: `role` once, in the first chunk; reasoning as
//! `delta.reasoning_content` (DeepSeek's and llama.cpp's name; never in
//! `content`); each tool call as one `delta.tool_calls` entry with its own
//! running `index`, `id`, `type`, `name` and the whole arguments as JSON
//! text (one fragment is a valid stream); a last chunk with an empty delta
//! and `finish_reason`; with `include_usage`, a chunk with empty `choices`
//! and `usage`; then `[DONE]`. A generation that fails, or that is stopped
//! before it finishes, ends the stream with an `{"error": ...}` frame,
//! which both SDKs raise as an `APIError`: a truncated answer must not pass
//! for a whole one.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::backend::ToolCall;
use crate::generation::events::{Done, Event, Failure, FinishReason, Usage};
use crate::http::openai::error::{body as error_body, OpenAiError};
use crate::http::openai::sse::{self, Step, DONE};

/// What every chunk of one completion names.
#[derive(Debug, Clone)]
pub struct Ids {
    /// `chatcmpl-<generation id>`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model asked for.
    pub model: String,
    /// The generation, for messages.
    pub generation: String,
}

/// Writes one completion's chunk stream.
pub struct Chunks {
    ids: Ids,
    include_usage: bool,
    calls: u64,
    usage: Option<Usage>,
}

impl Chunks {
    /// A writer for the completion `ids`.
    pub fn new(ids: Ids, include_usage: bool) -> Self {
        Self {
            ids,
            include_usage,
            calls: 0,
            usage: None,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        sse::data(&json!({
            "id": self.ids.id,
            "object": "chat.completion.chunk",
            "created": self.ids.created,
            "model": self.ids.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        }))
    }

    /// The first chunk: the role, and empty content.
    pub fn opening(&self) -> Bytes {
        self.chunk(json!({"role": "assistant", "content": ""}), None)
    }

    /// The frames for one event.
    pub fn on(&mut self, event: Event) -> Step {
        let frames = match event {
            Event::Text(t) => vec![self.chunk(json!({ "content": t }), None)],
            Event::Reasoning(t) => vec![self.chunk(json!({ "reasoning_content": t }), None)],
            Event::ToolCall(c) => {
                let index = self.calls;
                self.calls += 1;
                vec![self.chunk(json!({ "tool_calls": [call(&c, Some(index))] }), None)]
            }
            Event::Usage(u) => {
                self.usage = Some(u);
                Vec::new()
            }
            Event::Done(d) => return self.end(&d),
            Event::Failed(f) => return self.fail(failure(&f)),
        };
        Step {
            frames,
            last: false,
        }
    }

    fn end(&self, done: &Done) -> Step {
        let reason = match done.finish() {
            FinishReason::Cancelled => {
                return self.fail(cancelled(&self.ids.generation, done));
            }
            other => other.as_str(),
        };
        let mut frames = vec![self.chunk(json!({}), Some(reason))];
        if self.include_usage {
            if let Some(u) = self.usage {
                frames.push(sse::data(&json!({
                    "id": self.ids.id,
                    "object": "chat.completion.chunk",
                    "created": self.ids.created,
                    "model": self.ids.model,
                    "system_fingerprint": null,
                    "choices": [],
                    "usage": u,
                })));
            }
        }
        frames.push(Bytes::from_static(DONE));
        Step { frames, last: true }
    }

    /// An error frame, the end of the stream.
    pub fn fail(&self, e: OpenAiError) -> Step {
        Step {
            frames: vec![sse::data(&e.body())],
            last: true,
        }
    }

    /// The stream cannot go on: an error frame that says where the answer is.
    pub fn lost(&self, why: &str) -> Step {
        let message = format!(
            "{why}; the answer is at /v1/streams/gen-{}",
            self.ids.generation
        );
        Step {
            frames: vec![sse::data(&error_body(
                &message,
                "server_error",
                None,
                Some("stream_lost"),
            ))],
            last: true,
        }
    }
}

/// A call in chat's shape; `index` only in a stream's delta.
fn call(c: &ToolCall, index: Option<u64>) -> Value {
    let mut v = json!({
        "id": c.id,
        "type": "function",
        "function": { "name": c.name, "arguments": c.arguments_text() },
    });
    if let Some(i) = index {
        v["index"] = i.into();
    }
    v
}

/// A failed generation as an error: `502`, the failure's kind as `code`.
/// Worth a retry unless the model server refused the request itself.
fn failure(f: &Failure) -> OpenAiError {
    let e = OpenAiError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "server_error",
        f.message.clone(),
    )
    .with_code(&f.error);
    match f.upstream_status {
        Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => e.final_answer(),
        _ => e,
    }
}

/// A generation stopped before its end, as an error: `503` when the server
/// shut down (another node can answer a retry), else `409`, final.
fn cancelled(generation: &str, done: &Done) -> OpenAiError {
    let by = done.cancelled_by.as_deref().unwrap_or("request");
    let message = format!("generation {generation} was cancelled ({by})");
    if by == "shutdown" {
        OpenAiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            message,
        )
        .with_code("cancelled")
    } else {
        OpenAiError::new(axum::http::StatusCode::CONFLICT, "server_error", message)
            .with_code("cancelled")
            .final_answer()
    }
}

/// Everything a non-streamed completion says, gathered from the events.
#[derive(Debug, Default)]
pub struct Completion {
    text: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    usage: Option<Usage>,
    end: Option<Result<Done, Failure>>,
}

impl Completion {
    /// Adds one event.
    pub fn add(&mut self, event: Event) {
        match event {
            Event::Text(t) => self.text.push_str(&t),
            Event::Reasoning(t) => self.reasoning.push_str(&t),
            Event::ToolCall(c) => self.calls.push(c),
            Event::Usage(u) => self.usage = Some(u),
            Event::Done(d) => self.end = Some(Ok(d)),
            Event::Failed(f) => self.end = Some(Err(f)),
        }
    }

    /// The `chat.completion` object, or the error the generation ended in.
    pub fn finish(self, ids: &Ids) -> Result<Value, OpenAiError> {
        let done = match self.end {
            Some(Ok(d)) => d,
            Some(Err(f)) => return Err(failure(&f)),
            None => {
                return Err(OpenAiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    format!(
                        "the answer's stream ended early; it is at /v1/streams/gen-{}",
                        ids.generation
                    ),
                )
                .with_code("stream_lost")
                .final_answer())
            }
        };
        let reason = match done.finish() {
            FinishReason::Cancelled => return Err(cancelled(&ids.generation, &done)),
            other => other.as_str(),
        };
        let mut message = json!({
            "role": "assistant",
            "content": if self.text.is_empty() && !self.calls.is_empty() { Value::Null } else { self.text.into() },
            "refusal": null,
        });
        if !self.reasoning.is_empty() {
            message["reasoning_content"] = self.reasoning.into();
        }
        if !self.calls.is_empty() {
            message["tool_calls"] = self.calls.iter().map(|c| call(c, None)).collect();
        }
        let mut completion = json!({
            "id": ids.id,
            "object": "chat.completion",
            "created": ids.created,
            "model": ids.model,
            "system_fingerprint": null,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reason}],
        });
        if let Some(u) = self.usage {
            completion["usage"] = json!(u);
        }
        Ok(completion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Parser;

    fn ids() -> Ids {
        Ids {
            id: "chatcmpl-g".into(),
            created: 7,
            model: "m".into(),
            generation: "g".into(),
        }
    }

    fn done(finish: FinishReason) -> Done {
        Done {
            model: "m".into(),
            done_reason: "stop".into(),
            finish_reason: Some(finish),
            tokens: 1,
            prompt_tokens: Some(2),
            completion_tokens: Some(3),
            time_to_first_token_ms: None,
            duration_ms: 1,
            cancelled_by: None,
        }
    }

    fn calls() -> [ToolCall; 2] {
        let c = |id: &str, city: &str| ToolCall {
            id: id.into(),
            name: "get_weather".into(),
            arguments: json!({ "city": city }),
        };
        [c("call_a", "Paris"), c("call_b", "Rome")]
    }

    fn datas(steps: Vec<Step>) -> Vec<String> {
        let mut p = Parser::default();
        for s in steps {
            for f in s.frames {
                p.feed(&f).unwrap();
            }
        }
        std::iter::from_fn(|| p.next_event().map(|e| e.data)).collect()
    }

    #[test]
    fn a_stream_with_reasoning_and_two_calls() {
        let mut w = Chunks::new(ids(), true);
        let [a, b] = calls();
        let steps = vec![
            Step {
                frames: vec![w.opening()],
                last: false,
            },
            w.on(Event::Reasoning("Hmm".into())),
            w.on(Event::Text("Checking".into())),
            w.on(Event::ToolCall(a)),
            w.on(Event::ToolCall(b)),
            w.on(Event::Usage(Usage::of(Some(2), Some(3)).unwrap())),
            w.on(Event::Done(done(FinishReason::ToolCalls))),
        ];
        assert!(steps.last().unwrap().last);
        let data = datas(steps);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-g"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(chunks[1..]
            .iter()
            .all(|c| c["choices"][0]["delta"].get("role").is_none()));
        assert_eq!(chunks[1]["choices"][0]["delta"]["reasoning_content"], "Hmm");
        let second = &chunks[4]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(second["index"], 1);
        assert_eq!(second["function"]["arguments"], "{\"city\":\"Rome\"}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[6]["choices"], json!([]));
        assert_eq!(chunks[6]["usage"]["total_tokens"], 5);
    }

    #[test]
    fn failures_and_cancels_end_with_an_error_frame() {
        let mut w = Chunks::new(ids(), false);
        let f = Failure {
            error: "timeout".into(),
            message: "slow".into(),
            upstream_status: None,
        };
        let data = datas(vec![w.on(Event::Failed(f))]);
        let v: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(v["error"]["code"], "timeout");
        let data = datas(vec![w.on(Event::Done(done(FinishReason::Cancelled)))]);
        let v: Value = serde_json::from_str(&data[0]).unwrap();
        assert_eq!(v["error"]["code"], "cancelled");
    }

    #[test]
    fn a_completion_object() {
        let mut c = Completion::default();
        let [a, _] = calls();
        c.add(Event::Reasoning("Hmm".into()));
        c.add(Event::ToolCall(a));
        c.add(Event::Usage(Usage::of(Some(2), Some(3)).unwrap()));
        c.add(Event::Done(done(FinishReason::ToolCalls)));
        let v = c.finish(&ids()).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["reasoning_content"], "Hmm");
        assert_eq!(m["tool_calls"][0]["type"], "function");
        assert!(m["tool_calls"][0].get("index").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 2);
        let mut c = Completion::default();
        c.add(Event::Done(done(FinishReason::Cancelled)));
        assert_eq!(
            c.finish(&ids()).unwrap_err().status,
            axum::http::StatusCode::CONFLICT
        );
    }
}
