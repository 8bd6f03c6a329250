//! A generation's events as Responses API events, each with its
//! `sequence_number`.
//!
//! The translation is a pure function of the generation's events in order:
//! every rill event maps to a fixed run of Responses events, given what came
//! before it. So the numbers are the same on every replay, on every node,
//! live or after the end, and `starting_after=N` is answered by replaying
//! the generation from its first event and sending what comes after `N`.
//!
//! | rill event | Responses events |
//! |---|---|
//! | (start) | `response.created` (0), `response.in_progress` (1) |
//! | `reasoning` | when no reasoning item is open: close the open item, `output_item.added` (reasoning), `content_part.added` (`reasoning_text`); then `reasoning_text.delta` |
//! | `message` | likewise with a message item and `output_text`; then `output_text.delta` |
//! | `tool_call` | close the open item; `output_item.added` (function_call), `function_call_arguments.delta`, `function_call_arguments.done`, `output_item.done` |
//! | `usage` | nothing (the end carries it) |
//! | `done` | close the open item; `response.completed`, or `response.incomplete` (`length`); a cancel sends no event and leaves the status `cancelled` |
//! | `failed` | close the open item; `response.failed` |
//!
//! Closing an item sends `output_text.done` / `reasoning_text.done`,
//! `content_part.done` and `output_item.done`. This is the order the SDKs'
//! stream helpers check: `response.created` first, items added at the next
//! `output_index`, a part added before its deltas, every `item_id` the id of
//! the item at that index, every added item done.

use serde_json::{json, Value};

use super::object::{response, Head, Item, Kind, Status};
use crate::generation::events::{Event, FinishReason, Usage};

/// The translation's state: the response so far.
#[derive(Debug, Clone)]
pub struct Mapper {
    head: Head,
    seq: u64,
    items: Vec<Item>,
    open: Option<usize>,
    usage: Option<Usage>,
    status: Status,
    error: Option<Value>,
}

impl Mapper {
    /// The state before anything happened.
    pub fn new(head: Head) -> Self {
        let status = if head.background {
            Status::Queued
        } else {
            Status::InProgress
        };
        Self {
            head,
            seq: 0,
            items: Vec::new(),
            open: None,
            usage: None,
            status,
            error: None,
        }
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The first two events: `response.created`, `response.in_progress`.
    pub fn opening(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        let created = json!({ "response": self.snapshot() });
        self.emit(&mut out, "response.created", created);
        self.status = Status::InProgress;
        let progress = json!({ "response": self.snapshot() });
        self.emit(&mut out, "response.in_progress", progress);
        out
    }

    /// The events one generation event maps to.
    pub fn on(&mut self, event: &Event) -> Vec<Value> {
        let mut out = Vec::new();
        match event {
            Event::Text(t) => self.delta(&mut out, Kind::Message, t),
            Event::Reasoning(t) => self.delta(&mut out, Kind::Reasoning, t),
            Event::ToolCall(c) => {
                self.close(&mut out, "completed");
                let index = self.items.len();
                let mut item =
                    Item::new(Kind::FunctionCall(c.clone()), &self.head.generation, index);
                self.emit(
                    &mut out,
                    "response.output_item.added",
                    json!({ "output_index": index, "item": item.json(true) }),
                );
                let args = c.arguments_text();
                self.emit(
                    &mut out,
                    "response.function_call_arguments.delta",
                    json!({ "item_id": item.id, "output_index": index, "delta": args }),
                );
                self.emit(&mut out, "response.function_call_arguments.done",
                    json!({ "item_id": item.id, "output_index": index, "arguments": args, "name": c.name }));
                item.status = "completed";
                self.emit(
                    &mut out,
                    "response.output_item.done",
                    json!({ "output_index": index, "item": item.json(false) }),
                );
                self.items.push(item);
            }
            Event::Usage(u) => self.usage = Some(*u),
            Event::Done(d) => {
                let (status, item_status, kind) = match d.finish() {
                    FinishReason::Stop | FinishReason::ToolCalls => {
                        (Status::Completed, "completed", Some("response.completed"))
                    }
                    FinishReason::Length => (
                        Status::Incomplete,
                        "incomplete",
                        Some("response.incomplete"),
                    ),
                    // No event for a cancel in the API: readers see the
                    // stream end, and `retrieve` says `cancelled`.
                    FinishReason::Cancelled => (Status::Cancelled, "incomplete", None),
                };
                self.close(&mut out, item_status);
                self.status = status;
                if let Some(kind) = kind {
                    let body = json!({ "response": self.snapshot() });
                    self.emit(&mut out, kind, body);
                }
            }
            Event::Failed(f) => {
                self.close(&mut out, "incomplete");
                self.status = Status::Failed;
                self.error = Some(json!({ "code": "server_error", "message": f.message }));
                let body = json!({ "response": self.snapshot() });
                self.emit(&mut out, "response.failed", body);
            }
        }
        out
    }

    /// The Response now: every item so far, open ones as they stand.
    pub fn snapshot(&self) -> Value {
        let output = self.items.iter().map(|i| i.json(false)).collect();
        response(
            &self.head,
            self.status,
            output,
            self.usage,
            self.error.clone(),
        )
    }

    fn emit(&mut self, out: &mut Vec<Value>, kind: &str, mut body: Value) {
        body["type"] = kind.into();
        body["sequence_number"] = self.seq.into();
        self.seq += 1;
        out.push(body);
    }

    /// Appends `text` to the open item of `kind`, opening one if needed.
    fn delta(&mut self, out: &mut Vec<Value>, kind: Kind, text: &str) {
        let index = match self.open {
            Some(i) if self.items[i].kind == kind => i,
            _ => {
                self.close(out, "completed");
                let index = self.items.len();
                let item = Item::new(kind.clone(), &self.head.generation, index);
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({ "output_index": index, "item": item.json(true) }),
                );
                let part = item.part();
                self.emit(out, "response.content_part.added",
                    json!({ "item_id": item.id, "output_index": index, "content_index": 0, "part": part }));
                self.items.push(item);
                self.open = Some(index);
                index
            }
        };
        let item = &mut self.items[index];
        item.text.push_str(text);
        let id = item.id.clone();
        let body = match kind {
            Kind::Reasoning => (
                "response.reasoning_text.delta",
                json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": text }),
            ),
            _ => (
                "response.output_text.delta",
                json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": [] }),
            ),
        };
        self.emit(out, body.0, body.1);
    }

    /// Closes the open item, if any, with `status`.
    fn close(&mut self, out: &mut Vec<Value>, status: &'static str) {
        let Some(index) = self.open.take() else {
            return;
        };
        self.items[index].status = status;
        let item = self.items[index].clone();
        let (kind, mut done) = match item.kind {
            Kind::Reasoning => (
                "response.reasoning_text.done",
                json!({ "item_id": item.id, "output_index": index, "content_index": 0, "text": item.text }),
            ),
            _ => (
                "response.output_text.done",
                json!({ "item_id": item.id, "output_index": index, "content_index": 0, "text": item.text, "logprobs": [] }),
            ),
        };
        self.emit(out, kind, done.take());
        self.emit(out, "response.content_part.done",
            json!({ "item_id": item.id, "output_index": index, "content_index": 0, "part": item.part() }));
        self.emit(
            out,
            "response.output_item.done",
            json!({ "output_index": index, "item": item.json(false) }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ToolCall;
    use crate::generation::events::{Done, Failure};

    pub(crate) fn head(background: bool) -> Head {
        Head {
            generation: "g1".into(),
            created_at: 1,
            model: "m".into(),
            instructions: None,
            tools: Vec::new(),
            tool_choice: "auto".into(),
            background,
            store: true,
            max_output_tokens: None,
            temperature: None,
            top_p: None,
            metadata: json!({}),
            parallel_tool_calls: true,
        }
    }

    fn done(finish: FinishReason) -> Event {
        Event::Done(Done {
            model: "m".into(),
            done_reason: "stop".into(),
            finish_reason: Some(finish),
            tokens: 2,
            prompt_tokens: None,
            completion_tokens: None,
            time_to_first_token_ms: None,
            duration_ms: 1,
            cancelled_by: None,
        })
    }

    fn run(background: bool, events: &[Event]) -> (Vec<Value>, Mapper) {
        let mut m = Mapper::new(head(background));
        let mut out = m.opening();
        for e in events {
            out.extend(m.on(e));
        }
        (out, m)
    }

    fn types(out: &[Value]) -> Vec<&str> {
        out.iter().map(|v| v["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn reasoning_text_and_a_call_in_order() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            arguments: json!({"a": 1}),
        };
        let (out, m) = run(
            false,
            &[
                Event::Reasoning("Hm".into()),
                Event::Reasoning("m".into()),
                Event::Text("Hi".into()),
                Event::ToolCall(call),
                Event::Usage(Usage::of(Some(1), Some(2)).unwrap()),
                done(FinishReason::ToolCalls),
            ],
        );
        assert_eq!(
            types(&out),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, v) in out.iter().enumerate() {
            assert_eq!(v["sequence_number"], n as u64);
        }
        assert_eq!(out[0]["response"]["id"], "resp_g1");
        assert_eq!(out[0]["response"]["output"], json!([]));
        assert_eq!(out[16]["item_id"], "fc_g1_2");
        assert_eq!(out[16]["delta"], "{\"a\":1}");
        let last = &out[19]["response"];
        assert_eq!(last["status"], "completed");
        assert_eq!(last["output"][0]["content"][0]["text"], "Hmm");
        assert_eq!(last["output"][1]["content"][0]["text"], "Hi");
        assert_eq!(last["output"][2]["call_id"], "call_1");
        assert_eq!(last["usage"]["total_tokens"], 3);
        assert_eq!(m.status(), Status::Completed);
    }

    #[test]
    fn background_starts_queued_and_the_ends_differ() {
        let (out, _) = run(true, &[]);
        assert_eq!(out[0]["response"]["status"], "queued");
        assert_eq!(out[1]["response"]["status"], "in_progress");

        let (out, m) = run(
            false,
            &[Event::Text("a".into()), done(FinishReason::Length)],
        );
        let last = out.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(m.status(), Status::Incomplete);

        let (out, m) = run(
            false,
            &[Event::Text("a".into()), done(FinishReason::Cancelled)],
        );
        assert_eq!(out.last().unwrap()["type"], "response.output_item.done");
        assert_eq!(m.snapshot()["status"], "cancelled");

        let f = Failure {
            error: "timeout".into(),
            message: "slow".into(),
            upstream_status: None,
        };
        let (out, _) = run(false, &[Event::Failed(f)]);
        let last = out.last().unwrap();
        assert_eq!(last["type"], "response.failed");
        assert_eq!(last["response"]["error"]["message"], "slow");
    }

    #[test]
    fn replays_number_alike() {
        let events = [
            Event::Text("a".into()),
            Event::Text("b".into()),
            done(FinishReason::Stop),
        ];
        let (first, _) = run(false, &events);
        let (again, _) = run(false, &events);
        assert_eq!(first, again);
    }
}
