//! Joining the fragments of streamed tool calls into whole calls.
//!
//! OpenAI-compatible servers stream a call in pieces under
//! `delta.tool_calls[]`: the first piece for an `index` carries `id`, `type`
//! and `function.name`, later ones only more of `function.arguments` (a JSON
//! *text*), and pieces of several calls may interleave. Real servers are
//! looser than that, and the join takes them as they are: some repeat `id`
//! and `name` on every piece (kept once), some send a whole call in one piece
//! (the same path), some leave out `index` (a piece with a new `id` starts a
//! call, any other continues the last one), some send `null` arguments.
//!
//! Calls are handed on whole, once the choice finishes: only then are the
//! arguments complete. A call without a name, or whose arguments are not
//! JSON, is a protocol error rather than a call no client could make.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::backend::{BackendError, ToolCall};

/// One piece of a streamed tool call.
#[derive(Debug, Default, Deserialize)]
pub struct Fragment {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Debug, Default)]
struct Partial {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// The calls of one choice, as far as their fragments have come.
#[derive(Debug, Default)]
pub struct Calls {
    by_index: BTreeMap<u64, Partial>,
    last: Option<u64>,
}

impl Calls {
    /// Adds a fragment.
    pub fn add(&mut self, fragment: Fragment) {
        let index = match fragment.index {
            Some(i) => i,
            None => self.index_without_one(fragment.id.as_deref()),
        };
        self.last = Some(index);
        let call = self.by_index.entry(index).or_default();
        if call.id.is_none() {
            call.id = fragment.id.filter(|id| !id.is_empty());
        }
        let Some(function) = fragment.function else {
            return;
        };
        if call.name.is_none() {
            call.name = function.name.filter(|n| !n.is_empty());
        }
        match function.arguments {
            None | Some(Value::Null) => {}
            Some(Value::String(piece)) => call.arguments.push_str(&piece),
            // Not OpenAI's wire, but unambiguous: a whole arguments object.
            Some(other) => call.arguments.push_str(&other.to_string()),
        }
    }

    /// Where a fragment without an `index` goes: a new call if it brings a
    /// new id, else the last call.
    fn index_without_one(&self, id: Option<&str>) -> u64 {
        let next = self.by_index.keys().next_back().map_or(0, |k| k + 1);
        match (id, self.last) {
            (_, None) => next,
            (Some(id), Some(last)) => {
                let known = self.by_index.get(&last).and_then(|c| c.id.as_deref());
                if known.is_some_and(|k| k != id) {
                    next
                } else {
                    last
                }
            }
            (None, Some(last)) => last,
        }
    }

    /// Whether no fragment has come.
    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// The whole calls, in `index` order; `made_up_id` names a call that
    /// came without an id. Empties the set.
    pub fn finish(
        &mut self,
        mut made_up_id: impl FnMut() -> String,
    ) -> Result<Vec<ToolCall>, BackendError> {
        let calls = std::mem::take(&mut self.by_index);
        self.last = None;
        calls
            .into_values()
            .map(|p| {
                let name = p.name.ok_or_else(|| {
                    BackendError::Protocol("a streamed tool call has no function name".into())
                })?;
                let text = p.arguments.trim();
                let arguments = if text.is_empty() {
                    Value::Object(Default::default())
                } else {
                    serde_json::from_str(text).map_err(|e| {
                        let start: String = text.chars().take(80).collect();
                        BackendError::Protocol(format!(
                            "tool call `{name}` has arguments that are not JSON ({e}): {start}"
                        ))
                    })?
                };
                Ok(ToolCall {
                    id: p.id.unwrap_or_else(&mut made_up_id),
                    name,
                    arguments,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add(calls: &mut Calls, v: Value) {
        calls.add(serde_json::from_value(v).unwrap());
    }

    fn made_up() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("made_{n}")
        }
    }

    #[test]
    fn interleaved_fragments_join_by_index() {
        let mut c = Calls::default();
        add(
            &mut c,
            json!({"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
        );
        add(
            &mut c,
            json!({"index": 1, "id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":"}}),
        );
        add(
            &mut c,
            json!({"index": 0, "function": {"arguments": "{\"city\":"}}),
        );
        add(
            &mut c,
            json!({"index": 1, "function": {"arguments": "\"CET\"}"}}),
        );
        add(
            &mut c,
            json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}),
        );
        let calls = c.finish(made_up()).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_a", "get_weather")
        );
        assert_eq!(calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(calls[1].arguments, json!({"tz": "CET"}));
        assert!(c.is_empty());
    }

    #[test]
    fn repeats_whole_calls_and_missing_indices() {
        let mut c = Calls::default();
        // Repeated id and name on every piece: kept once.
        add(
            &mut c,
            json!({"index": 0, "id": "x", "function": {"name": "f", "arguments": "{\"a\""}}),
        );
        add(
            &mut c,
            json!({"index": 0, "id": "x", "function": {"name": "f", "arguments": ":1}"}}),
        );
        // No index: a new id starts a call; none continues the last.
        add(
            &mut c,
            json!({"id": "y", "function": {"name": "g", "arguments": null}}),
        );
        add(&mut c, json!({"function": {"arguments": "{}"}}));
        // No id at all: one is made up.
        add(
            &mut c,
            json!({"index": 7, "function": {"name": "h", "arguments": {"b": 2}}}),
        );
        let calls = c.finish(made_up()).unwrap();
        assert_eq!(calls[0].id, "x");
        assert_eq!(calls[0].arguments, json!({"a": 1}));
        assert_eq!((calls[1].id.as_str(), calls[1].name.as_str()), ("y", "g"));
        assert_eq!(calls[1].arguments, json!({}));
        assert_eq!(calls[2].id, "made_1");
        assert_eq!(calls[2].arguments, json!({"b": 2}));
    }

    #[test]
    fn nameless_or_malformed_calls_are_protocol_errors() {
        let mut c = Calls::default();
        add(
            &mut c,
            json!({"index": 0, "id": "x", "function": {"arguments": "{}"}}),
        );
        assert_eq!(c.finish(made_up()).unwrap_err().kind(), "protocol");
        let mut c = Calls::default();
        add(
            &mut c,
            json!({"index": 0, "id": "x", "function": {"name": "f", "arguments": "{\"city\": \"Par"}}),
        );
        let e = c.finish(made_up()).unwrap_err();
        assert_eq!(e.kind(), "protocol");
        assert!(e.to_string().contains("`f`"), "{e}");
    }
}
