//! The events of a generation's stream: one vocabulary for every back-end
//! and every entry point.
//!
//! | event       | data                                                     |
//! |-------------|----------------------------------------------------------|
//! | `message`   | a text delta, as plain text (what `EventSource` readers and the seed's page always read) |
//! | `reasoning` | `{"text"}`: a reasoning delta                             |
//! | `tool_call` | `{"id", "name", "arguments"}`: one whole call, arguments as JSON |
//! | `usage`     | `{"prompt_tokens", "completion_tokens", "total_tokens"}`, before the end, when known |
//! | `done`      | the summary, with `finish_reason`                         |
//! | `failed`    | the failure                                               |
//!
//! The runner writes them ([`Event::draft`]); the OpenAI-shaped routes read
//! them back from the stream ([`Event::parse`]) and map each to their own
//! wire, so every view of a generation is derived from the same events, on
//! any node, live or replayed.

use serde::{Deserialize, Serialize};

use crate::backend::ToolCall;
use crate::sse::EventType;
use crate::store::Draft;

/// Why a generation ended, the same for every back-end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// It reached the output limit.
    Length,
    /// It stopped to have tools called.
    ToolCalls,
    /// It was stopped (a cancel, nobody listening, shutdown).
    Cancelled,
}

impl FinishReason {
    /// From a model's own reason (`done_reason`) and whether it called tools:
    /// Ollama says `stop` after tool calls, OpenAI `tool_calls`.
    pub fn of(done_reason: &str, called_tools: bool) -> Self {
        match done_reason {
            "length" => Self::Length,
            "cancelled" => Self::Cancelled,
            "tool_calls" | "function_call" => Self::ToolCalls,
            _ if called_tools => Self::ToolCalls,
            _ => Self::Stop,
        }
    }

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Token counts, as OpenAI names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

impl Usage {
    /// The counts a model reported, if it reported any (Ollama leaves out a
    /// count of 0, such as a prompt it had cached).
    pub fn of(prompt: Option<u64>, completion: Option<u64>) -> Option<Self> {
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let (p, c) = (prompt.unwrap_or(0), completion.unwrap_or(0));
        Some(Self {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p.saturating_add(c),
        })
    }
}

/// The `done` summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The model that answered, as the model server names it.
    pub model: String,
    /// The model's own reason (`stop`, `length`, ...), or `cancelled`.
    pub done_reason: String,
    /// Why it ended, normalised; read from older streams without it as
    /// `done_reason` says.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    /// Text events published.
    pub tokens: u64,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens, when reported.
    pub completion_tokens: Option<u64>,
    /// From the start to the first output.
    pub time_to_first_token_ms: Option<u64>,
    /// From the start to the end.
    pub duration_ms: u64,
    /// Who stopped it, when it was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
}

impl Done {
    /// Why it ended.
    pub fn finish(&self) -> FinishReason {
        self.finish_reason
            .unwrap_or_else(|| FinishReason::of(&self.done_reason, false))
    }
}

/// The `failed` summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind (`connect`, `status`, `protocol`, ...).
    pub error: String,
    /// A sentence for people.
    pub message: String,
    /// The model server's status, when it answered with one.
    #[serde(default)]
    pub upstream_status: Option<u16>,
}

/// The `reasoning` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReasoningData {
    text: String,
}

/// One event of a generation's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text delta (`message`).
    Text(String),
    /// A reasoning delta.
    Reasoning(String),
    /// One whole tool call.
    ToolCall(ToolCall),
    /// Token counts.
    Usage(Usage),
    /// The end.
    Done(Done),
    /// The end, failed.
    Failed(Failure),
}

/// An event named as one of the vocabulary whose data does not fit it.
#[derive(Debug, thiserror::Error)]
#[error("a generation's `{event}` event has data that is not its JSON: {source}")]
pub struct EventError {
    event: String,
    #[source]
    source: serde_json::Error,
}

impl Event {
    /// The event's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Text(_) => "message",
            Event::Reasoning(_) => "reasoning",
            Event::ToolCall(_) => "tool_call",
            Event::Usage(_) => "usage",
            Event::Done(_) => "done",
            Event::Failed(_) => "failed",
        }
    }

    /// Whether the event ends the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Event::Done(_) | Event::Failed(_))
    }

    /// The event as it is published.
    pub fn draft(&self) -> Draft {
        let data = match self {
            Event::Text(t) => t.clone(),
            Event::Reasoning(t) => json(&ReasoningData { text: t.clone() }),
            Event::ToolCall(c) => json(c),
            Event::Usage(u) => json(u),
            Event::Done(d) => json(d),
            Event::Failed(f) => json(f),
        };
        let event_type = match self {
            Event::Text(_) => None,
            other => EventType::new(other.name()).ok(),
        };
        Draft {
            event_type,
            data,
            terminal: self.is_terminal(),
        }
    }

    /// Reads an event of a generation's stream: `None` for event types
    /// outside the vocabulary (`reset`, `end`, anything newer).
    pub fn parse(event_type: &str, data: &str) -> Result<Option<Event>, EventError> {
        let read = |source| EventError {
            event: event_type.to_owned(),
            source,
        };
        Ok(Some(match event_type {
            "message" => Event::Text(data.to_owned()),
            "reasoning" => {
                let r: ReasoningData = serde_json::from_str(data).map_err(read)?;
                Event::Reasoning(r.text)
            }
            "tool_call" => Event::ToolCall(serde_json::from_str(data).map_err(read)?),
            "usage" => Event::Usage(serde_json::from_str(data).map_err(read)?),
            "done" => Event::Done(serde_json::from_str(data).map_err(read)?),
            "failed" => Event::Failed(serde_json::from_str(data).map_err(read)?),
            _ => return Ok(None),
        }))
    }
}

fn json(value: &impl Serialize) -> String {
    // These types hold strings, numbers and JSON values only: they always
    // serialise.
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_event_reads_back_as_written() {
        let events = [
            Event::Text(" Mars\n".into()),
            Event::Reasoning("Hmm".into()),
            Event::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }),
            Event::Usage(Usage::of(Some(3), None).unwrap()),
            Event::Done(Done {
                model: "m".into(),
                done_reason: "stop".into(),
                finish_reason: Some(FinishReason::ToolCalls),
                tokens: 0,
                prompt_tokens: Some(3),
                completion_tokens: None,
                time_to_first_token_ms: None,
                duration_ms: 5,
                cancelled_by: None,
            }),
            Event::Failed(Failure {
                error: "protocol".into(),
                message: "bad".into(),
                upstream_status: None,
            }),
        ];
        for e in events {
            let d = e.draft();
            let name = d.event_type.as_ref().map_or("message", |t| t.as_str());
            assert_eq!(name, e.name());
            assert_eq!(d.terminal, e.is_terminal());
            assert_eq!(Event::parse(name, &d.data).unwrap(), Some(e));
        }
    }

    #[test]
    fn the_wire_shapes_are_the_documented_ones() {
        let call = Event::ToolCall(ToolCall {
            id: "c".into(),
            name: "f".into(),
            arguments: json!({"a": 1}),
        });
        assert_eq!(
            call.draft().data,
            r#"{"id":"c","name":"f","arguments":{"a":1}}"#
        );
        assert_eq!(Event::Reasoning("x".into()).draft().data, r#"{"text":"x"}"#);
        let usage = Event::Usage(Usage::of(Some(2), Some(3)).unwrap());
        assert_eq!(
            usage.draft().data,
            r#"{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}"#
        );
        assert_eq!(Usage::of(None, None), None);
    }

    #[test]
    fn old_done_events_and_other_types_still_read() {
        let old = r#"{"model":"m","done_reason":"cancelled","tokens":1,"prompt_tokens":null,"completion_tokens":null,"time_to_first_token_ms":null,"duration_ms":1,"cancelled_by":"request"}"#;
        let Some(Event::Done(d)) = Event::parse("done", old).unwrap() else {
            panic!("not done")
        };
        assert_eq!(d.finish(), FinishReason::Cancelled);
        assert_eq!(Event::parse("reset", "{}").unwrap(), None);
        assert!(Event::parse("tool_call", "{").is_err());
    }

    #[test]
    fn finish_reasons_normalise() {
        assert_eq!(FinishReason::of("stop", true), FinishReason::ToolCalls);
        assert_eq!(FinishReason::of("stop", false), FinishReason::Stop);
        assert_eq!(FinishReason::of("length", true), FinishReason::Length);
        assert_eq!(
            FinishReason::of("tool_calls", false),
            FinishReason::ToolCalls
        );
        assert_eq!(
            FinishReason::of("content_filter", false),
            FinishReason::Stop
        );
    }
}
