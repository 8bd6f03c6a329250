//! What the mock does beyond text, so tests and demos of reasoning and
//! tool calls need no model: it thinks out loud when the prompt says
//! "think", calls a tool when the request offers one, and answers with the
//! tool's result once the conversation carries it.
//!
//! Everything is a function of the request, so the same request always gets
//! the same answer: the call's id is a hash of the conversation, and its
//! arguments are made from the tool's parameter schema and the prompt's
//! last word ("What is the weather in Paris?" → `{"city": "Paris"}`).

use serde_json::{json, Map, Value};

use crate::backend::{GenerateRequest, Tool, ToolCall, ToolChoice};
use crate::store::Fnv;

/// Whether the mock reasons before it answers `request`.
pub fn thinks(request: &GenerateRequest) -> bool {
    request.prompt_text().to_lowercase().contains("think")
}

/// The reasoning, word by word.
pub fn reasoning(request: &GenerateRequest) -> Vec<String> {
    let next = match (tool_result(request), chosen_tool(request)) {
        (Some(_), _) => "The tool has answered; I will pass its answer on.".to_owned(),
        (None, Some(tool)) => format!("I should call {}.", tool.name),
        (None, None) => "I will answer in a few words.".to_owned(),
    };
    words(&format!(
        "The user asks: \"{}\". {next}",
        request.prompt_text().trim()
    ))
}

/// The tool call the mock makes, if the request offers a tool and the
/// conversation does not already end with a tool's result.
pub fn tool_call(request: &GenerateRequest) -> Option<ToolCall> {
    if tool_result(request).is_some() {
        return None;
    }
    let tool = chosen_tool(request)?;
    let prompt = request.prompt_text();
    let mut hash = Fnv::default();
    for m in request.conversation() {
        hash.write(m.role.as_bytes());
        hash.write(m.content.as_bytes());
    }
    hash.write(tool.name.as_bytes());
    Some(ToolCall {
        id: format!("call_{:016x}", hash.0),
        name: tool.name.clone(),
        arguments: arguments(&tool.parameters, last_word(&prompt)),
    })
}

/// The text of the tool result that ends the conversation, if it does.
pub fn tool_result(request: &GenerateRequest) -> Option<String> {
    let last = request.messages.as_ref()?.last()?;
    (last.role == "tool").then(|| last.content.clone())
}

/// The answer to a conversation that ends with a tool's result.
pub fn after_tool(result: &str) -> Vec<String> {
    words(&format!("The tool answered: {}", result.trim()))
}

/// The tool `tool_choice` names, or the first one offered.
fn chosen_tool(request: &GenerateRequest) -> Option<Tool> {
    let offered = request.offered_tools();
    match &request.tool_choice {
        Some(ToolChoice::Function(name)) => Some(
            offered
                .iter()
                .find(|t| &t.name == name)
                .cloned()
                .unwrap_or_else(|| Tool {
                    name: name.clone(),
                    description: None,
                    parameters: json!({}),
                }),
        ),
        _ => offered.first().cloned(),
    }
}

/// Arguments that fit `schema`: each property gets a value of its type,
/// strings the first `enum` value or `word`.
fn arguments(schema: &Value, word: &str) -> Value {
    let mut args = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object);
    for (name, property) in properties.into_iter().flatten() {
        let value = match property.get("type").and_then(Value::as_str) {
            Some("string") => property
                .get("enum")
                .and_then(|e| e.get(0))
                .cloned()
                .unwrap_or_else(|| word.into()),
            Some("integer") | Some("number") => 1.into(),
            Some("boolean") => true.into(),
            Some("array") => json!([]),
            Some("object") => json!({}),
            _ => Value::Null,
        };
        args.insert(name.clone(), value);
    }
    Value::Object(args)
}

/// The prompt's last word, without punctuation around it.
fn last_word(prompt: &str) -> &str {
    prompt
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .rfind(|w| !w.is_empty())
        .unwrap_or_default()
}

/// `text` as tokens: its words, each but the first with its leading space.
pub fn words(text: &str) -> Vec<String> {
    text.split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Message;

    fn weather() -> Tool {
        Tool {
            name: "get_weather".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"}
            }}),
        }
    }

    fn asking(prompt: &str, tools: Vec<Tool>) -> GenerateRequest {
        GenerateRequest {
            messages: Some(vec![Message::text("user", prompt)]),
            tools,
            ..Default::default()
        }
    }

    #[test]
    fn a_tool_is_called_with_arguments_from_its_schema() {
        let req = asking("What is the weather in Paris?", vec![weather()]);
        let call = tool_call(&req).unwrap();
        assert_eq!(call.name, "get_weather");
        assert_eq!(
            call.arguments,
            json!({"city": "Paris", "unit": "celsius", "days": 1})
        );
        assert_eq!(tool_call(&req), Some(call.clone()), "deterministic");
        let other = asking("What is the weather in Rome?", vec![weather()]);
        assert_ne!(tool_call(&other).unwrap().id, call.id);
    }

    #[test]
    fn none_no_tools_or_a_result_means_no_call() {
        let mut req = asking("Weather in Paris?", vec![weather()]);
        req.tool_choice = Some(ToolChoice::None);
        assert_eq!(tool_call(&req), None);
        assert_eq!(tool_call(&asking("Weather in Paris?", vec![])), None);
        let mut req = asking("Weather in Paris?", vec![weather()]);
        let mut result = Message::text("tool", "{\"temp_c\": 21}");
        result.tool_call_id = Some("call_1".into());
        req.messages.as_mut().unwrap().push(result);
        assert_eq!(tool_call(&req), None);
        assert_eq!(
            after_tool(&tool_result(&req).unwrap()).concat(),
            "The tool answered: {\"temp_c\": 21}"
        );
    }

    #[test]
    fn thinking_is_asked_for_in_the_prompt() {
        let req = asking("Think: weather in Paris?", vec![weather()]);
        assert!(thinks(&req));
        assert_eq!(
            reasoning(&req).concat(),
            "The user asks: \"Think: weather in Paris?\". I should call get_weather."
        );
        assert!(!thinks(&asking("Weather in Paris?", vec![])));
    }
}
