//! One line of Ollama's NDJSON answer, read into chunks.
//!
//! A line may carry, in this order: reasoning (`message.thinking`), text
//! (`message.content`, or `response` from `/api/generate`), whole tool calls
//! (`message.tool_calls`: Ollama never splits one, and gives the arguments as
//! an object), and with `"done": true` the summary. A line with an `error`
//! field is an error Ollama hit after it had answered `200`. A tool call
//! without a name, or with arguments that are not a JSON object, is a
//! protocol error: the generation ends with `failed` rather than hand a
//! client a call it cannot make (nor the other calls of that line, which
//! were meant to go together).

use serde::Deserialize;
use serde_json::Value;

use crate::backend::{BackendError, Chunk, Finish, ToolCall};

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
    thinking: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
}

/// The chunks one NDJSON line stands for: none (a blank line), reasoning,
/// a token, tool calls, the end, or an error.
pub fn parse_line(line: &str) -> Vec<Result<Chunk, BackendError>> {
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
            Value::String(s) => s,
            other => other.to_string(),
        };
        return vec![Err(BackendError::Upstream(text))];
    }
    let mut out = Vec::new();
    let message = parsed.message.unwrap_or_default();
    // `/api/generate` puts thinking beside `response`; `/api/chat` in the message.
    let thinking = message.thinking.or(parsed.thinking).unwrap_or_default();
    if !thinking.is_empty() {
        out.push(Ok(Chunk::Reasoning(thinking)));
    }
    let text = message.content.or(parsed.response).unwrap_or_default();
    if !text.is_empty() {
        out.push(Ok(Chunk::Token(text)));
    }
    // The calls of one line stand or fall together.
    let calls: Result<Vec<ToolCall>, BackendError> = message
        .tool_calls
        .into_iter()
        .flatten()
        .map(tool_call)
        .collect();
    match calls {
        Ok(calls) => out.extend(calls.into_iter().map(|c| Ok(Chunk::ToolCall(c)))),
        Err(e) => {
            out.push(Err(e));
            return out;
        }
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

/// One of Ollama's tool calls, `{"id"?, "function": {"name", "arguments"}}`.
/// Older Ollama sends no id: one is made up.
fn tool_call(call: Value) -> Result<ToolCall, BackendError> {
    let bad = |why: &str| {
        let start: String = call.to_string().chars().take(120).collect();
        BackendError::Protocol(format!("a tool call {why}: {start}"))
    };
    let function = call.get("function").ok_or_else(|| bad("has no function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("has no name"))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(a @ Value::Object(_)) => a.clone(),
        // Some proxies pass OpenAI's JSON text through.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(a @ Value::Object(_)) => a,
            _ => return Err(bad("has arguments that are not a JSON object")),
        },
        Some(_) => return Err(bad("has arguments that are not a JSON object")),
    };
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(ToolCall::made_up_id, str::to_owned);
    Ok(ToolCall {
        id,
        name: name.to_owned(),
        arguments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(line: &str) -> Vec<Chunk> {
        parse_line(line).into_iter().map(Result::unwrap).collect()
    }

    #[test]
    fn chat_and_generate_lines_parse() {
        let chat = r#"{"model":"llama3.1","created_at":"2024-08-29T05:10:21Z","message":{"role":"assistant","content":" Mars"},"done":false}"#;
        assert_eq!(chunks(chat), vec![Chunk::Token(" Mars".into())]);
        let last = r#"{"model":"llama3.1","created_at":"x","response":"","done":true,"done_reason":"length","prompt_eval_count":26,"eval_count":9}"#;
        let Some(Chunk::Done(f)) = chunks(last).pop() else {
            panic!("not done")
        };
        assert_eq!(f.done_reason, "length");
        assert_eq!((f.prompt_tokens, f.completion_tokens), (Some(26), Some(9)));
        assert!(parse_line("  ").is_empty());
    }

    #[test]
    fn thinking_comes_before_text_and_calls_are_whole() {
        let line = r#"{"model":"qwen3","message":{"role":"assistant","content":"Hi","thinking":"Hmm","tool_calls":[{"id":"call_k3j9x0ab","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}},{"function":{"name":"f"}}]},"done":false}"#;
        let got = chunks(line);
        assert_eq!(got[0], Chunk::Reasoning("Hmm".into()));
        assert_eq!(got[1], Chunk::Token("Hi".into()));
        let Chunk::ToolCall(c) = &got[2] else {
            panic!("{got:?}")
        };
        assert_eq!(c.id, "call_k3j9x0ab");
        assert_eq!(c.arguments, serde_json::json!({"city": "Tokyo"}));
        let Chunk::ToolCall(c) = &got[3] else {
            panic!("{got:?}")
        };
        assert!(c.id.starts_with("call_"), "an id is made up");
        assert_eq!(c.arguments, serde_json::json!({}));
    }

    #[test]
    fn errors_garbage_and_bad_calls_are_errors() {
        let e = parse_line(r#"{"error":"model 'x' not found"}"#)
            .pop()
            .unwrap();
        assert_eq!(e.unwrap_err().kind(), "upstream");
        let e = parse_line("<html>").pop().unwrap();
        assert_eq!(e.unwrap_err().kind(), "protocol");
        for bad in [
            r#"{"message":{"tool_calls":[{"function":{"arguments":{}}}]}}"#,
            r#"{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{oops"}}]}}"#,
            r#"{"message":{"tool_calls":[{"function":{"name":"f","arguments":[1]}}]}}"#,
            r#"{"message":{"tool_calls":[{"name":"f"}]}}"#,
        ] {
            let e = parse_line(bad).pop().unwrap();
            assert_eq!(e.unwrap_err().kind(), "protocol", "{bad}");
        }
    }
}
