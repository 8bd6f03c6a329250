//! Reading a Chat Completions request into a generation request.
//!
//! The shapes rill takes are OpenAI's: messages of every role (a
//! `developer` turn is a `system` one; content as text or as a list of text
//! parts; an assistant turn's `tool_calls` with arguments as JSON text; a
//! `tool` turn with its `tool_call_id`), `tools` and `tool_choice`. The
//! sampling fields (`temperature`, `max_tokens`, `n`, ...) become the
//! generation's options, which the operator's policy checks like those of
//! `POST /v1/generations`: a field it does not allow is refused, not
//! dropped. Fields that only describe the call (`user`, `metadata`,
//! `store`, `parallel_tool_calls`, `stream_options`) are read or ignored,
//! and `null` means absent.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::backend::chat::ToolSpec;
use crate::backend::{GenerateRequest, Message, Tool, ToolCall, ToolChoice};
use crate::http::openai::error::OpenAiError;

/// Fields that describe the call and never reach the model.
const IGNORED: &[&str] = &["user", "metadata", "store", "parallel_tool_calls"];

/// A `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// How the client wants the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// As a chunk stream.
    pub stream: bool,
    /// With a usage chunk before `[DONE]`.
    pub include_usage: bool,
}

impl ChatRequest {
    /// The generation request, and how to deliver its answer.
    pub fn into_generation(self) -> Result<(GenerateRequest, Delivery), OpenAiError> {
        let delivery = Delivery {
            stream: self.stream.unwrap_or(false),
            include_usage: self
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        };
        if self.rest.contains_key("functions") || self.rest.contains_key("function_call") {
            return Err(OpenAiError::invalid(
                "`functions` and `function_call` are the legacy form of tools; send `tools` and `tool_choice`",
                Some("functions"),
            ));
        }
        let messages = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        if messages.is_empty() {
            return Err(OpenAiError::invalid(
                "`messages` must hold at least one message",
                Some("messages"),
            ));
        }
        let tools = self
            .tools
            .unwrap_or_default()
            .iter()
            .map(tool)
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = match self.tool_choice {
            None | Some(Value::Null) => None,
            Some(v) => Some(ToolChoice::parse(&v).ok_or_else(|| {
                OpenAiError::invalid(
                    format!("`tool_choice` must be \"auto\", \"none\", \"required\" or a function, not {v}"),
                    Some("tool_choice"),
                )
            })?),
        };
        let options = self
            .rest
            .into_iter()
            .filter(|(k, v)| !v.is_null() && !IGNORED.contains(&k.as_str()))
            .collect();
        let request = GenerateRequest {
            prompt: None,
            messages: Some(messages),
            model: self.model,
            options,
            max_output_tokens: None,
            tools,
            tool_choice,
        };
        Ok((request, delivery))
    }
}

/// Message `i`.
fn message(i: usize, m: &Value) -> Result<Message, OpenAiError> {
    let param = format!("messages[{i}]");
    let bad = |why: &str| OpenAiError::invalid(format!("{param}: {why}"), Some(&param));
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("needs a `role`"))?;
    let role = match role {
        "developer" => "system",
        "system" | "user" | "assistant" | "tool" => role,
        other => return Err(bad(&format!("role `{other}` is not supported"))),
    };
    let content = text(m.get("content")).map_err(|e| bad(&e))?;
    let mut out = Message::text(role, content);
    if role == "tool" {
        let id = m
            .get("tool_call_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a `tool` message needs the `tool_call_id` it answers"))?;
        out.tool_call_id = Some(id.to_owned());
        out.name = m.get("name").and_then(Value::as_str).map(str::to_owned);
    }
    if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
        out.tool_calls = calls
            .iter()
            .map(|c| tool_call(c).map_err(|e| bad(&e)))
            .collect::<Result<_, _>>()?;
    }
    Ok(out)
}

/// Message content: text, a list of parts whose text is joined, or null.
pub fn text(content: Option<&Value>) -> Result<String, String> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text" | "input_text" | "output_text") => {
                        out.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("refusal") => {}
                    other => {
                        return Err(format!(
                            "content part `{}` is not supported: rill's back-ends take text",
                            other.unwrap_or("(no type)")
                        ))
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err("`content` must be text or a list of parts".into()),
    }
}

/// A call of an assistant turn: `{"id", "type": "function", "function":
/// {"name", "arguments": "<JSON text>"}}`.
fn tool_call(c: &Value) -> Result<ToolCall, String> {
    let function = c.get("function").ok_or("a tool call needs a `function`")?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a tool call needs a function `name`")?;
    let id = c
        .get("id")
        .and_then(Value::as_str)
        .ok_or("a tool call needs its `id`")?;
    Ok(ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        arguments: arguments(function.get("arguments"))?,
    })
}

/// A call's arguments from OpenAI's JSON text (or, leniently, JSON).
pub fn arguments(v: Option<&Value>) -> Result<Value, String> {
    match v {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Value::Object(Map::new())),
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("tool call arguments are not JSON: {e}"))
        }
        Some(other) => Ok(other.clone()),
    }
}

/// A chat-form tool.
fn tool(t: &Value) -> Result<Tool, OpenAiError> {
    let spec: ToolSpec = serde_json::from_value(t.clone())
        .map_err(|e| OpenAiError::invalid(format!("a tool is malformed: {e}"), Some("tools")))?;
    Tool::try_from(spec).map_err(|e| OpenAiError::invalid(e.to_string(), Some("tools")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(body: Value) -> Result<(GenerateRequest, Delivery), OpenAiError> {
        serde_json::from_value::<ChatRequest>(body)
            .unwrap()
            .into_generation()
    }

    #[test]
    fn an_agent_turn_reads_into_rill_shapes() {
        let (req, delivery) = read(json!({
            "model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Be terse."}]},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "21"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
            "tool_choice": "auto", "temperature": 0.2, "max_tokens": 9, "user": "u", "top_p": null
        }))
        .unwrap();
        assert_eq!(
            delivery,
            Delivery {
                stream: true,
                include_usage: true
            }
        );
        let m = req.messages.unwrap();
        assert_eq!(m[0], Message::text("system", "Be terse."));
        assert_eq!(m[2].tool_calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(m[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(req.tools[0].name, "get_weather");
        assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
        let keys: Vec<&str> = req.options.keys().map(String::as_str).collect();
        assert_eq!(keys, ["max_tokens", "temperature"]);
    }

    #[test]
    fn what_rill_cannot_do_is_refused_by_field() {
        for (body, param) in [
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "maybe"}),
                "tool_choice",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]}),
                "tools",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "functions": []}),
                "functions",
            ),
        ] {
            let e = read(body.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
