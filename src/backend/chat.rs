//! A conversation beyond plain text: the tools a model may call, the calls
//! it makes, and the results a client sends back.
//!
//! These are rill's own shapes, the same on every entry point and every
//! back-end: a tool call is `{id, name, arguments}` with the arguments as a
//! JSON value (not the JSON *string* OpenAI's wire uses, not Ollama's
//! nameless call). Each back-end and each OpenAI-shaped route translates at
//! its edge, so an agent loop can take a `tool_call` event from the stream
//! and hand it back in the next request's `messages` unchanged.

use serde::{Deserialize, Deserializer, Serialize};

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool` (a tool's result).
    pub role: String,
    /// The text (`null` reads as empty: an assistant turn that only calls
    /// tools has none).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// On an assistant turn: the tools it called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// On a tool result: the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// On a tool result: the tool's name (found from the call when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A plain text message.
    pub fn text(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// One whole call of a tool, as the model made it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ToolCall {
    /// The call's id; a tool result names it in `tool_call_id`.
    pub id: String,
    /// The tool.
    pub name: String,
    /// The arguments, as JSON (usually an object).
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
}

impl ToolCall {
    /// An id for a call that came without one (older Ollama, sloppy
    /// servers), in the form current Ollama gives its calls.
    pub fn made_up_id() -> String {
        use rand::Rng;
        format!("call_{:016x}", rand::rng().random::<u64>())
    }

    /// The arguments as JSON text, as OpenAI's wire carries them.
    pub fn arguments_text(&self) -> String {
        self.arguments.to_string()
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// Its parameters, as a JSON schema.
    pub parameters: serde_json::Value,
}

impl Tool {
    /// The tool as OpenAI's chat API and Ollama both describe it:
    /// `{"type": "function", "function": {...}}`.
    pub fn chat_json(&self) -> serde_json::Value {
        let mut function = serde_json::json!({
            "name": self.name,
            "parameters": self.parameters,
        });
        if let Some(d) = &self.description {
            function["description"] = d.clone().into();
        }
        serde_json::json!({ "type": "function", "function": function })
    }
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool: answer in text.
    None,
    /// Some tool, the model picks which.
    Required,
    /// This tool.
    Function(String),
}

impl ToolChoice {
    /// Reads OpenAI chat's form: `"auto"`, `"none"`, `"required"` or
    /// `{"type": "function", "function": {"name": ...}}`; the Responses
    /// API's flat `{"type": "function", "name": ...}` too.
    pub fn parse(value: &serde_json::Value) -> Option<Self> {
        match value {
            serde_json::Value::String(s) => match s.as_str() {
                "auto" => Some(Self::Auto),
                "none" => Some(Self::None),
                "required" => Some(Self::Required),
                _ => None,
            },
            serde_json::Value::Object(o) if o.get("type")?.as_str()? == "function" => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .or_else(|| o.get("name"))?;
                Some(Self::Function(name.as_str()?.to_owned()))
            }
            _ => None,
        }
    }

    /// OpenAI chat's form.
    pub fn chat_json(&self) -> serde_json::Value {
        match self {
            Self::Auto => "auto".into(),
            Self::None => "none".into(),
            Self::Required => "required".into(),
            Self::Function(name) => {
                serde_json::json!({ "type": "function", "function": { "name": name } })
            }
        }
    }
}

/// rill's request form of a tool: OpenAI chat's
/// `{"type": "function", "function": {"name", "description", "parameters"}}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ToolSpec {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionSpec,
}

/// A function a [`ToolSpec`] describes.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct FunctionSpec {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// Its parameters (a JSON schema); `{}` when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Option<serde_json::Value>,
}

/// A tool spec that is not a function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tool type `{0}` is not supported: rill's back-ends call functions (`\"type\": \"function\"`)"
)]
pub struct NotAFunction(pub String);

impl TryFrom<ToolSpec> for Tool {
    type Error = NotAFunction;

    fn try_from(spec: ToolSpec) -> Result<Self, Self::Error> {
        if spec.kind != "function" {
            return Err(NotAFunction(spec.kind));
        }
        Ok(Tool {
            name: spec.function.name,
            description: spec.function.description,
            parameters: spec
                .function
                .parameters
                .unwrap_or_else(|| serde_json::json!({})),
        })
    }
}

/// The name of the tool that call `id` called, from the assistant turns
/// of `messages`.
pub fn tool_name_of<'a>(messages: &'a [Message], id: &str) -> Option<&'a str> {
    messages
        .iter()
        .flat_map(|m| &m.tool_calls)
        .find(|c| c.id == id)
        .map(|c| c.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_read_null_content_and_tool_calls() {
        let m: Message = serde_json::from_value(json!({
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "name": "f", "arguments": {"a": 1}}]
        }))
        .unwrap();
        assert_eq!(m.content, "");
        assert_eq!(m.tool_calls[0].arguments_text(), r#"{"a":1}"#);
        let plain = serde_json::to_value(Message::text("user", "hi")).unwrap();
        assert_eq!(plain, json!({"role": "user", "content": "hi"}));
    }

    #[test]
    fn tool_choices_parse_both_forms() {
        assert_eq!(ToolChoice::parse(&json!("none")), Some(ToolChoice::None));
        let f = ToolChoice::Function("f".into());
        let chat = json!({"type": "function", "function": {"name": "f"}});
        assert_eq!(ToolChoice::parse(&chat), Some(f.clone()));
        assert_eq!(
            ToolChoice::parse(&json!({"type": "function", "name": "f"})),
            Some(f.clone())
        );
        assert_eq!(f.chat_json(), chat);
        assert_eq!(ToolChoice::parse(&json!("sometimes")), None);
        assert_eq!(ToolChoice::parse(&json!({"type": "web_search"})), None);
    }

    #[test]
    fn specs_become_tools() {
        let spec: ToolSpec = serde_json::from_value(json!({
            "type": "function", "function": {"name": "get_weather"}
        }))
        .unwrap();
        let tool = Tool::try_from(spec).unwrap();
        assert_eq!(
            tool.chat_json(),
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {}}})
        );
        let spec: ToolSpec = serde_json::from_value(json!({
            "type": "code_interpreter", "function": {"name": "x"}
        }))
        .unwrap();
        assert!(Tool::try_from(spec).is_err());
    }
}
