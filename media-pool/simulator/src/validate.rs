//! The request rules the providers document and enforce with a 400, checked here so a client that
//! builds a bad conversation (for example after cutting it at a barge-in) fails in tests, not in
//! production. Only documented, commonly hit rules; the messages follow the providers' wording.

use std::collections::BTreeSet;

use serde_json::Value;

/// An OpenAI `invalid_request_error`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OpenAiInvalid {
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

fn invalid(message: String, param: Option<String>, code: Option<&'static str>) -> OpenAiInvalid {
    OpenAiInvalid { message, param, code }
}

/// Chat Completions: roles, required fields per role, tool call / tool response pairing, tools.
pub(crate) fn openai(request: &Value) -> Result<(), OpenAiInvalid> {
    let messages = request.get("messages").and_then(Value::as_array).ok_or_else(|| {
        invalid(
            "Missing required parameter: 'messages'.".into(),
            Some("messages".into()),
            Some("missing_required_parameter"),
        )
    })?;
    if messages.is_empty() {
        return Err(invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead."
                .into(),
            Some("messages".into()),
            Some("empty_array"),
        ));
    }
    let missing = |i: usize, field: &str| {
        invalid(
            format!("Missing required parameter: 'messages[{i}].{field}'."),
            Some(format!("messages.[{i}].{field}")),
            Some("missing_required_parameter"),
        )
    };
    // Tool calls of the latest assistant message still waiting for their `tool` responses.
    let mut open_calls: BTreeSet<String> = BTreeSet::new();
    // Ids a `tool` message may answer: those of the assistant message right before the run of
    // tool messages it belongs to.
    let mut answerable: BTreeSet<String> = BTreeSet::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).ok_or_else(|| missing(i, "role"))?;
        if role != "tool" {
            if !open_calls.is_empty() {
                return Err(unanswered(&open_calls));
            }
            answerable.clear();
        }
        match role {
            "system" | "developer" | "user" => {
                if m.get("content").is_none_or(Value::is_null) {
                    return Err(missing(i, "content"));
                }
            }
            "assistant" => {
                let calls = m.get("tool_calls").and_then(Value::as_array);
                if m.get("content").is_none_or(Value::is_null) && calls.is_none_or(Vec::is_empty) {
                    return Err(missing(i, "content"));
                }
                for (j, call) in calls.into_iter().flatten().enumerate() {
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| missing(i, &format!("tool_calls[{j}].id")))?;
                    if call.pointer("/function/name").and_then(Value::as_str).is_none() {
                        return Err(missing(i, &format!("tool_calls[{j}].function.name")));
                    }
                    if call.pointer("/function/arguments").and_then(Value::as_str).is_none() {
                        return Err(missing(i, &format!("tool_calls[{j}].function.arguments")));
                    }
                    open_calls.insert(id.to_owned());
                }
                answerable.clone_from(&open_calls);
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| missing(i, "tool_call_id"))?;
                open_calls.remove(id);
                if !answerable.contains(id) {
                    return Err(invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'."
                            .into(),
                        Some(format!("messages.[{i}].role")),
                        None,
                    ));
                }
                if m.get("content").is_none_or(Value::is_null) {
                    return Err(missing(i, "content"));
                }
            }
            "function" => {}
            other => {
                return Err(invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                    ),
                    Some(format!("messages.[{i}].role")),
                    Some("invalid_value"),
                ));
            }
        }
    }
    if !open_calls.is_empty() {
        return Err(unanswered(&open_calls));
    }
    for (i, tool) in request.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid(
                format!("Missing required parameter: 'tools[{i}].type'."),
                Some(format!("tools[{i}].type")),
                Some("missing_required_parameter"),
            ));
        }
        let name = tool.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(invalid(
                format!("Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."),
                Some(format!("tools[{i}].function.name")),
                Some("invalid_value"),
            ));
        }
    }
    Ok(())
}

fn unanswered(open: &BTreeSet<String>) -> OpenAiInvalid {
    let ids: Vec<&str> = open.iter().map(String::as_str).collect();
    invalid(
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            ids.join(", ")
        ),
        Some("messages".into()),
        None,
    )
}

/// Messages API: roles, non-empty content, tool_use / tool_result pairing, tools.
pub(crate) fn anthropic(request: &Value) -> Result<(), String> {
    let messages =
        request.get("messages").and_then(Value::as_array).ok_or_else(|| "messages: Field required".to_owned())?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    if let Some(system) = request.get("system") {
        if !system.is_string() && !system.is_array() {
            return Err("system: Input should be a valid string or a list of text blocks".into());
        }
    }
    let mut pending_tool_use: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        let last = i + 1 == messages.len();
        let blocks: Vec<&Value> = match m.get("content") {
            Some(Value::String(text)) => {
                if text.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
                Vec::new()
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !(last && role == "assistant") {
                    return Err(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
                blocks.iter().collect()
            }
            _ => return Err(format!("messages.{i}.content: Field required")),
        };
        let mut results: Vec<String> = Vec::new();
        let mut uses: Vec<String> = Vec::new();
        for (j, block) in blocks.iter().enumerate() {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if block.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return Err(format!("messages.{i}.content.{j}.text: text content blocks must be non-empty"));
                    }
                }
                Some("tool_use") => {
                    if role != "assistant" {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_use blocks can only be in assistant messages"
                        ));
                    }
                    let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                    if id.is_empty()
                        || block.get("name").and_then(Value::as_str).is_none()
                        || block.get("input").is_none()
                    {
                        return Err(format!("messages.{i}.content.{j}.tool_use: id, name and input are required"));
                    }
                    uses.push(id.to_owned());
                }
                Some("tool_result") => {
                    let id = block.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    if !pending_tool_use.iter().any(|u| u == id) {
                        return Err(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    results.push(id.to_owned());
                }
                Some(_) => {}
                None => return Err(format!("messages.{i}.content.{j}.type: Field required")),
            }
        }
        let missing: Vec<&str> = pending_tool_use.iter().filter(|u| !results.contains(u)).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                i - 1,
                missing.join(", ")
            ));
        }
        pending_tool_use = uses;
    }
    // A trailing assistant tool_use with no result is a prefill the API refuses as well.
    if !pending_tool_use.is_empty() {
        return Err(format!(
            "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
            messages.len() - 1,
            pending_tool_use.join(", ")
        ));
    }
    for (i, tool) in request.get("tools").and_then(Value::as_array).into_iter().flatten().enumerate() {
        // Server tools (web search, …) carry a `type`; custom tools need a name and a schema.
        if tool.get("type").is_some_and(|t| t != "custom") {
            continue;
        }
        if tool.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("tools.{i}.custom.name: Field required"));
        }
        if !tool.get("input_schema").is_some_and(Value::is_object) {
            return Err(format!("tools.{i}.custom.input_schema: Field required"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn openai_tool_round_trip_is_valid_and_broken_pairs_are_not() {
        let call = json!({"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let good = json!({"model": "m", "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            {"role": "assistant", "content": "done"},
        ], "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
        assert_eq!(openai(&good), Ok(()));

        let mut orphan = good.clone();
        orphan["messages"][3]["tool_call_id"] = json!("call_other");
        assert!(openai(&orphan).unwrap_err().message.contains("must be a response to a preceeding message"));

        let mut unanswered = good.clone();
        unanswered["messages"].as_array_mut().unwrap().remove(3);
        assert!(openai(&unanswered).unwrap_err().message.contains("did not have response messages: call_1"));

        let mut bad_role = good.clone();
        bad_role["messages"][0]["role"] = json!("robot");
        assert_eq!(openai(&bad_role).unwrap_err().param.as_deref(), Some("messages.[0].role"));

        let mut bad_tool = good;
        bad_tool["tools"][0]["function"]["name"] = json!("has space");
        assert!(openai(&bad_tool).is_err());
    }

    #[test]
    fn anthropic_rules() {
        let good = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]},
            {"role": "assistant", "content": ""},
        ], "tools": [{"name": "f", "input_schema": {"type": "object"}}]});
        assert_eq!(anthropic(&good), Ok(()));

        let mut system_in_messages = good.clone();
        system_in_messages["messages"][0]["role"] = json!("system");
        assert_eq!(
            anthropic(&system_in_messages).unwrap_err(),
            "messages.0.role: Input should be 'user' or 'assistant'"
        );

        let mut empty_middle = good.clone();
        empty_middle["messages"][1]["content"][0]["text"] = json!("");
        assert!(anthropic(&empty_middle).unwrap_err().contains("text content blocks must be non-empty"));

        let mut no_result = good.clone();
        no_result["messages"][2]["content"] = json!("never mind");
        assert!(anthropic(&no_result).unwrap_err().starts_with("messages.1: `tool_use` ids were found"));

        let mut stray = good.clone();
        stray["messages"][2]["content"][0]["tool_use_id"] = json!("toolu_9");
        assert!(anthropic(&stray).unwrap_err().contains("unexpected `tool_use_id`"));

        let mut no_schema = good;
        no_schema["tools"][0].as_object_mut().unwrap().remove("input_schema");
        assert_eq!(anthropic(&no_schema).unwrap_err(), "tools.0.custom.input_schema: Field required");
    }
}
