//! Anthropic Messages with SSE streaming and tool use.
//!
//! Wire shape (API reference, "Messages" and "Streaming Messages"): POST `{base}/v1/messages`
//! with `x-api-key` and `anthropic-version: 2023-06-01`; events `message_start`,
//! `content_block_start` (a `text` or `tool_use` block), `content_block_delta` (`text_delta`, or
//! `input_json_delta` whose `partial_json` pieces make the tool input), `content_block_stop`,
//! `message_delta` (`stop_reason`), `message_stop`, `ping`, and `error` (e.g.
//! `overloaded_error`, the in-stream form of HTTP 529).

use crate::error::check_status;
use crate::llm::{FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, Message, ToolCall};
use crate::openai::cut;
use crate::sse::{self, SseEvent};
use crate::ProviderError;
use async_trait::async_trait;
use golos_egress::net::EgressClient;
use golos_ports::SecretString;
use serde_json::{json, Value};
use std::collections::HashMap;

pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
pub const ANTHROPIC_DEFAULT_MODEL: &str = "claude-3-5-haiku-latest";

#[derive(Debug, Clone)]
pub struct AnthropicConfig {
    pub name: String,
    /// Without `/v1`, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct AnthropicLlm {
    config: AnthropicConfig,
    client: EgressClient,
}

impl AnthropicLlm {
    pub fn new(config: AnthropicConfig, client: EgressClient) -> Self {
        Self { config, client }
    }
}

/// The request body. System messages go to `system`; consecutive messages of one role are
/// merged, since the API wants user and assistant turns to alternate.
fn body(model: &str, request: &LlmRequest) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message {
            Message::System(text) => {
                system.push(text.as_str());
                continue;
            }
            // The API refuses empty text blocks; an empty turn (silence transcribed) says nothing.
            Message::User(text) if text.trim().is_empty() => continue,
            Message::User(text) => ("user", vec![json!({"type": "text", "text": text})]),
            Message::Assistant { text, tool_calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    let input = call.parse_arguments().unwrap_or_else(|_| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                if blocks.is_empty() {
                    continue;
                }
                ("assistant", blocks)
            }
            Message::ToolResult { call_id, content } => {
                ("user", vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": content})])
            }
        };
        match messages.last_mut() {
            Some((last_role, last_blocks)) if *last_role == role => last_blocks.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "stream": true,
        "messages": messages.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect::<Vec<_>>(),
    });
    if !system.is_empty() {
        body["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = request.temperature {
        body["temperature"] = json!(t);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    body
}

#[async_trait]
impl LlmProvider for AnthropicLlm {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, ProviderError> {
        let url = format!("{}/v1/messages", self.config.base_url.trim_end_matches('/'));
        let response = self
            .client
            .post(&url)?
            .header("x-api-key", self.config.api_key.expose())
            .header("anthropic-version", ANTHROPIC_VERSION)
            .header("accept", "text/event-stream")
            .json(&body(&self.config.model, request))
            .send()
            .await?;
        let response = check_status(response).await?;
        Ok(sse::llm_stream(response, Decoder::default()))
    }
}

#[derive(Debug, Default)]
struct Decoder {
    /// Open `tool_use` blocks by index: id, name, input JSON so far.
    tools: HashMap<u64, (String, String, String)>,
    stop: Option<FinishReason>,
}

impl sse::EventDecoder for Decoder {
    fn event(&mut self, event: &SseEvent) -> Result<Vec<LlmEvent>, ProviderError> {
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::BadResponse(format!("{} event is not JSON ({e}): {}", event.event, cut(&event.data)))
        })?;
        let kind = data.get("type").and_then(Value::as_str).unwrap_or(event.event.as_str());
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let missing = |what: &str| ProviderError::BadResponse(format!("{kind} without {what}"));
        match kind {
            "content_block_start" => {
                let block = data.get("content_block").ok_or_else(|| missing("content_block"))?;
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let id = block.get("id").and_then(Value::as_str).ok_or_else(|| missing("id"))?;
                    let name = block.get("name").and_then(Value::as_str).ok_or_else(|| missing("name"))?;
                    self.tools.insert(index, (id.to_owned(), name.to_owned(), String::new()));
                } else if let Some(text) = block.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    return Ok(vec![LlmEvent::TextDelta(text.to_owned())]);
                }
            }
            "content_block_delta" => {
                let delta = data.get("delta").ok_or_else(|| missing("delta"))?;
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).ok_or_else(|| missing("text"))?;
                        if !text.is_empty() {
                            return Ok(vec![LlmEvent::TextDelta(text.to_owned())]);
                        }
                    }
                    Some("input_json_delta") => {
                        let part =
                            delta.get("partial_json").and_then(Value::as_str).ok_or_else(|| missing("partial_json"))?;
                        let tool = self.tools.get_mut(&index).ok_or_else(|| missing("a tool_use block start"))?;
                        tool.2.push_str(part);
                    }
                    // thinking, signature and citations deltas are not for the caller's ears.
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some((id, name, input)) = self.tools.remove(&index) {
                    // A tool without parameters streams no input at all.
                    let arguments = if input.trim().is_empty() { "{}".to_owned() } else { input };
                    return Ok(vec![LlmEvent::ToolCall(ToolCall { id, name, arguments })]);
                }
            }
            "message_delta" => {
                if let Some(reason) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(match reason {
                        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
                        "tool_use" => FinishReason::ToolCalls,
                        "max_tokens" => FinishReason::Length,
                        "refusal" => FinishReason::ContentFilter,
                        other => FinishReason::Other(other.to_owned()),
                    });
                }
            }
            "message_stop" => {
                let reason = self.stop.take().ok_or_else(|| missing("a stop_reason before it"))?;
                return Ok(vec![LlmEvent::End(reason)]);
            }
            "error" => return Err(stream_error(data.get("error").unwrap_or(&Value::Null))),
            // message_start, ping, and event types added after this was written.
            _ => {}
        }
        Ok(Vec::new())
    }
}

fn stream_error(error: &Value) -> ProviderError {
    let message = error.get("message").and_then(Value::as_str).unwrap_or("error event").to_owned();
    match error.get("type").and_then(Value::as_str).unwrap_or_default() {
        "overloaded_error" => ProviderError::Server { status: 529, message },
        "rate_limit_error" => ProviderError::RateLimited { retry_after: None },
        "authentication_error" => ProviderError::Auth { status: 401 },
        "permission_error" => ProviderError::Auth { status: 403 },
        "timeout_error" => ProviderError::Timeout(message),
        "invalid_request_error" | "not_found_error" | "request_too_large" => ProviderError::BadResponse(message),
        _ => ProviderError::Server { status: 500, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::ToolDefinition;

    #[test]
    fn system_goes_apart_and_tool_results_join_the_user_turn() {
        let mut request = LlmRequest::new(vec![
            Message::System("be brief".into()),
            Message::User("book for two".into()),
            Message::Assistant {
                text: String::new(),
                tool_calls: vec![
                    ToolCall { id: "t1".into(), name: "book".into(), arguments: "{\"guests\":2}".into() },
                    ToolCall { id: "t2".into(), name: "end_call".into(), arguments: String::new() },
                ],
            },
            Message::ToolResult { call_id: "t1".into(), content: "booked".into() },
            Message::ToolResult { call_id: "t2".into(), content: "ok".into() },
        ]);
        request.tools.push(ToolDefinition {
            name: "book".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        });
        let body = body("m", &request);
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
        assert_eq!(body["messages"][1]["content"][0]["input"], json!({"guests": 2}));
        assert_eq!(body["messages"][2]["content"].as_array().unwrap().len(), 2);
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    }
}
