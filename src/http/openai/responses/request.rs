//! Reading a Responses API request into a generation request and the
//! response's [`Head`].
//!
//! `input` is a string (one user turn) or a list of items: messages (with
//! or without `"type": "message"`; content as text or `input_text` /
//! `output_text` parts), `function_call` items (they become an assistant
//! turn's tool calls) and `function_call_output` items (`tool` turns);
//! `reasoning` items are dropped. `instructions` is the system turn. Tools
//! are the API's flat function form. `max_output_tokens`, `temperature` and
//! `top_p`, and any field not read here, become options the operator's
//! policy checks. `previous_response_id` is refused: rill keeps streams,
//! not conversations, so send the whole conversation in `input`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::object::Head;
use crate::backend::{GenerateRequest, Message, Tool, ToolChoice};
use crate::http::openai::chat::request::{arguments, text};
use crate::http::openai::error::OpenAiError;

/// Fields read for the record or with nothing to do in rill.
const IGNORED: &[&str] = &[
    "user",
    "truncation",
    "include",
    "stream_options",
    "reasoning",
    "text",
    "prompt_cache_key",
    "safety_identifier",
];

/// A `POST /v1/responses` body.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    #[serde(default)]
    model: Option<String>,
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    text: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// A request, read.
#[derive(Debug)]
pub struct Parsed {
    /// What to generate.
    pub request: GenerateRequest,
    /// The response's head, but for the generation id and the model.
    pub head: Head,
    /// Whether to answer with the event stream.
    pub stream: bool,
}

impl ResponsesRequest {
    /// The generation request and the response's head.
    pub fn parse(self) -> Result<Parsed, OpenAiError> {
        if self.previous_response_id.is_some() {
            return Err(OpenAiError::invalid(
                "`previous_response_id` is not supported: send the conversation in `input`",
                Some("previous_response_id"),
            ));
        }
        let format = self.text.as_ref().and_then(|t| t.pointer("/format/type"));
        if format.is_some_and(|f| f != "text") {
            return Err(OpenAiError::invalid(
                "only text output is supported (`text.format.type` = `text`)",
                Some("text.format"),
            ));
        }
        let background = self.background.unwrap_or(false);
        let store = self.store.unwrap_or(true);
        if background && !store {
            return Err(OpenAiError::invalid(
                "a background response must be stored: drop `store: false`",
                Some("store"),
            ));
        }
        let mut messages = Vec::new();
        if let Some(i) = self.instructions.as_ref().filter(|i| !i.is_empty()) {
            messages.push(Message::text("system", i.clone()));
        }
        input(&self.input, &mut messages)?;
        if !messages.iter().any(|m| m.role != "system") {
            return Err(OpenAiError::invalid("`input` is empty", Some("input")));
        }
        let mut tools = Vec::new();
        let mut echoed = Vec::new();
        for t in self.tools.unwrap_or_default() {
            let (tool, echo) = tool(&t)?;
            tools.push(tool);
            echoed.push(echo);
        }
        let tool_choice = match &self.tool_choice {
            None | Some(Value::Null) => None,
            Some(v) => Some(ToolChoice::parse(v).ok_or_else(|| {
                OpenAiError::invalid(
                    format!("`tool_choice` must be \"auto\", \"none\", \"required\" or a function, not {v}"),
                    Some("tool_choice"),
                )
            })?),
        };
        let mut options: Map<String, Value> = self
            .rest
            .into_iter()
            .filter(|(k, v)| !v.is_null() && !IGNORED.contains(&k.as_str()))
            .collect();
        let number = |k: &str| options.get(k).and_then(Value::as_f64);
        let (temperature, top_p) = (number("temperature"), number("top_p"));
        let max_output_tokens = options.get("max_output_tokens").and_then(Value::as_u64);
        options.retain(|_, v| !v.is_null());
        let head = Head {
            generation: String::new(),
            created_at: 0,
            model: String::new(),
            instructions: self.instructions,
            tools: echoed,
            tool_choice: self
                .tool_choice
                .filter(|v| !v.is_null())
                .unwrap_or_else(|| "auto".into()),
            background,
            store,
            max_output_tokens,
            temperature,
            top_p,
            metadata: self
                .metadata
                .filter(|m| !m.is_null())
                .unwrap_or_else(|| json!({})),
            parallel_tool_calls: self.parallel_tool_calls.unwrap_or(true),
        };
        let request = GenerateRequest {
            prompt: None,
            messages: Some(messages),
            model: self.model,
            options,
            max_output_tokens: None,
            tools,
            tool_choice,
        };
        Ok(Parsed {
            request,
            head,
            stream: self.stream.unwrap_or(false),
        })
    }
}

/// Appends the turns of `input` to `messages`.
fn input(input: &Value, messages: &mut Vec<Message>) -> Result<(), OpenAiError> {
    let items = match input {
        Value::String(s) => {
            messages.push(Message::text("user", s.clone()));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => {
            return Err(OpenAiError::invalid(
                "`input` must be text or a list of items",
                Some("input"),
            ))
        }
    };
    for (i, item) in items.iter().enumerate() {
        let param = format!("input[{i}]");
        let bad = |why: &str| OpenAiError::invalid(format!("{param}: {why}"), Some(&param));
        let field = |k: &str| item.get(k).and_then(Value::as_str);
        let kind = field("type").unwrap_or(if item.get("role").is_some() {
            "message"
        } else {
            ""
        });
        match kind {
            "message" => {
                let role = match field("role") {
                    Some("developer") | Some("system") => "system",
                    Some(r @ ("user" | "assistant")) => r,
                    _ => {
                        return Err(bad(
                            "a message needs a role: user, assistant, system or developer",
                        ))
                    }
                };
                let content = text(item.get("content")).map_err(|e| bad(&e))?;
                messages.push(Message::text(role, content));
            }
            "function_call" => {
                let call = crate::backend::ToolCall {
                    id: field("call_id")
                        .ok_or_else(|| bad("a function_call needs its `call_id`"))?
                        .to_owned(),
                    name: field("name")
                        .ok_or_else(|| bad("a function_call needs its `name`"))?
                        .to_owned(),
                    arguments: arguments(item.get("arguments")).map_err(|e| bad(&e))?,
                };
                // Calls made in one turn join that turn.
                match messages.last_mut() {
                    Some(m)
                        if m.role == "assistant"
                            && (m.content.is_empty() || !m.tool_calls.is_empty()) =>
                    {
                        m.tool_calls.push(call)
                    }
                    _ => {
                        let mut m = Message::text("assistant", "");
                        m.tool_calls.push(call);
                        messages.push(m);
                    }
                }
            }
            "function_call_output" => {
                let id = field("call_id")
                    .ok_or_else(|| bad("a function_call_output needs the `call_id` it answers"))?;
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    other => text(other).map_err(|e| bad(&e))?,
                };
                let mut m = Message::text("tool", output);
                m.tool_call_id = Some(id.to_owned());
                messages.push(m);
            }
            "reasoning" => {}
            other => return Err(bad(&format!("item type `{other}` is not supported"))),
        }
    }
    Ok(())
}

/// A flat function tool, and how the response echoes it.
fn tool(t: &Value) -> Result<(Tool, Value), OpenAiError> {
    let bad = |why: String| OpenAiError::invalid(why, Some("tools"));
    let kind = t.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "function" {
        return Err(bad(format!(
            "tool type `{kind}` is not supported: rill's back-ends call functions"
        )));
    }
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a function tool needs a `name`".into()))?;
    let description = t
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let parameters = t
        .get("parameters")
        .filter(|p| !p.is_null())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let echo = json!({
        "type": "function", "name": name, "description": description,
        "parameters": parameters, "strict": t.get("strict").cloned().unwrap_or(Value::Bool(false)),
    });
    Ok((
        Tool {
            name: name.to_owned(),
            description,
            parameters,
        },
        echo,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<Parsed, OpenAiError> {
        serde_json::from_value::<ResponsesRequest>(body)
            .unwrap()
            .parse()
    }

    #[test]
    fn items_become_turns() {
        let p = parse(json!({
            "model": "m", "instructions": "Be terse.", "background": true, "stream": true,
            "input": [
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_1", "output": "21"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And?"}]}
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "max_output_tokens": 64, "temperature": 0.5, "include": ["x"], "metadata": null
        }))
        .unwrap();
        let m = p.request.messages.unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(m[2].tool_calls.len(), 2);
        assert_eq!(m[2].tool_calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(m[3].tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(
            p.request.tool_choice,
            Some(ToolChoice::Function("get_weather".into()))
        );
        assert_eq!(p.head.tools[0]["name"], "get_weather");
        assert!(p.head.background && p.stream);
        assert_eq!(
            (p.head.max_output_tokens, p.head.temperature),
            (Some(64), Some(0.5))
        );
        let keys: Vec<&str> = p.request.options.keys().map(String::as_str).collect();
        assert_eq!(keys, ["max_output_tokens", "temperature"]);
    }

    #[test]
    fn what_rill_cannot_do_is_refused_by_field() {
        for (body, param) in [
            (
                json!({"input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"input": "x", "background": true, "store": false}),
                "store",
            ),
            (json!({"input": []}), "input"),
            (
                json!({"input": [{"type": "item_reference", "id": "x"}]}),
                "input[0]",
            ),
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "tools",
            ),
            (
                json!({"input": "x", "text": {"format": {"type": "json_schema"}}}),
                "text.format",
            ),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
    }
}
