//! The LLM port: a conversation and tool definitions in, a stream of events out.

use crate::ProviderError;
use async_trait::async_trait;
use futures::stream::BoxStream;
use golos_domain::agent::ToolSpec;
use serde_json::{json, Value};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDefinition>,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

impl LlmRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages, tools: Vec::new(), max_tokens: 1_024, temperature: None }
    }

    /// The text of the caller's most recent message, which the canned tier answers.
    pub fn last_user_text(&self) -> Option<&str> {
        self.messages.iter().rev().find_map(|m| match m {
            Message::User(text) => Some(text.as_str()),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    System(String),
    User(String),
    /// What the agent said (cut to what was actually played) and the tools it called.
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call, answered to the call's id.
    ToolResult {
        call_id: String,
        content: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    /// A JSON schema of `"type": "object"`.
    pub parameters: Value,
}

impl ToolDefinition {
    /// What the model is told of an agent's tool. Built-ins get the schemas the call engine
    /// reads: `send_dtmf` takes `digits`, the others an optional `reason`.
    pub fn from_spec(spec: &ToolSpec) -> Self {
        let reason = || json!({"type": "object", "properties": {"reason": {"type": "string"}}});
        let (description, parameters) = match spec {
            ToolSpec::Function { description, parameters, .. } => (description.clone(), parameters.clone()),
            ToolSpec::EndCall => ("End the call politely once the caller has what they need.".to_owned(), reason()),
            ToolSpec::TransferCall { .. } => ("Transfer the caller to a person at the business.".to_owned(), reason()),
            ToolSpec::EscalateToHuman { .. } => ("Ask a person to take over this conversation.".to_owned(), reason()),
            ToolSpec::SendDtmf => (
                "Press keys on the phone line, e.g. to navigate a menu.".to_owned(),
                json!({"type": "object", "properties": {"digits": {"type": "string", "pattern": "^[0-9*#A-D]+$"}}, "required": ["digits"]}),
            ),
        };
        Self { name: spec.name().to_owned(), description, parameters }
    }
}

/// A complete tool call. `arguments` is the JSON text exactly as the model produced it: the
/// call engine decides what to do with invalid JSON (retry, then continue without tools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl ToolCall {
    pub fn parse_arguments(&self) -> Result<Value, serde_json::Error> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        serde_json::from_str(&self.arguments)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    ToolCalls,
    /// The `max_tokens` limit cut the answer.
    Length,
    ContentFilter,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmEvent {
    TextDelta(String),
    ToolCall(ToolCall),
    /// The last event of a successful stream.
    End(FinishReason),
}

/// Events as they arrive; an `Err` item ends the stream.
pub type LlmStream = BoxStream<'static, Result<LlmEvent, ProviderError>>;

#[async_trait]
pub trait LlmProvider: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics, e.g. `openai`.
    fn name(&self) -> &str;

    /// Starts a completion. Errors known before the first event (connection, HTTP status)
    /// come back here; later ones as the stream's last item.
    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_definitions_come_from_the_agent_tools() {
        let book = ToolSpec::Function {
            name: "book".into(),
            description: "Book a table".into(),
            parameters: json!({"type": "object"}),
            url: "https://x.example/".into(),
            timeout_ms: 1_000,
        };
        assert_eq!(ToolDefinition::from_spec(&book).parameters, json!({"type": "object"}));
        let dtmf = ToolDefinition::from_spec(&ToolSpec::SendDtmf);
        assert_eq!((dtmf.name.as_str(), &dtmf.parameters["required"]), ("send_dtmf", &json!(["digits"])));
        assert_eq!(ToolDefinition::from_spec(&ToolSpec::EndCall).name, "end_call");
    }

    #[test]
    fn empty_arguments_are_an_empty_object() {
        let call = ToolCall { id: "1".into(), name: "end_call".into(), arguments: " ".into() };
        assert_eq!(call.parse_arguments().unwrap(), json!({}));
    }
}
