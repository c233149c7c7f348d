//! OpenAI chat completions with SSE streaming and tool calls; with another base URL, any
//! server of the same protocol (llama.cpp, vLLM, Ollama).
//!
//! Wire shape (API reference, "chat/create" and "chat streaming"): POST `{base}/chat/completions`
//! with `stream: true`; `data: {chat.completion.chunk}` events whose `choices[0].delta` carries
//! `content` and `tool_calls[{index, id, function{name, arguments}}]`, the arguments split across
//! chunks of the same `index`; `finish_reason` on the last choice chunk; `data: [DONE]` closes.
//! An error inside the stream is `data: {"error": {...}}`.

use crate::error::check_status;
use crate::llm::{FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, Message, ToolCall};
use crate::sse;
use crate::ProviderError;
use async_trait::async_trait;
use golos_egress::net::EgressClient;
use golos_ports::SecretString;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Name in logs and chain attempts, e.g. `openai` or `local-llama`.
    pub name: String,
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Local servers often need none.
    pub api_key: Option<SecretString>,
    pub model: String,
}

pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const OPENAI_DEFAULT_MODEL: &str = "gpt-4o-mini";

#[derive(Debug, Clone)]
pub struct OpenAiLlm {
    config: OpenAiConfig,
    client: EgressClient,
}

impl OpenAiLlm {
    pub fn new(config: OpenAiConfig, client: EgressClient) -> Self {
        Self { config, client }
    }

    fn body(&self, request: &LlmRequest) -> Value {
        let mut body = json!({
            "model": self.config.model,
            "messages": request.messages.iter().map(message_json).collect::<Vec<_>>(),
            "stream": true,
            "max_tokens": request.max_tokens,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters,
                    }})
                })
                .collect();
        }
        body
    }
}

fn message_json(message: &Message) -> Value {
    match message {
        Message::System(text) => json!({"role": "system", "content": text}),
        Message::User(text) => json!({"role": "user", "content": text}),
        Message::Assistant { text, tool_calls } if tool_calls.is_empty() => {
            json!({"role": "assistant", "content": text})
        }
        Message::Assistant { text, tool_calls } => json!({
            "role": "assistant",
            "content": if text.is_empty() { Value::Null } else { json!(text) },
            "tool_calls": tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments},
            })).collect::<Vec<_>>(),
        }),
        Message::ToolResult { call_id, content } => {
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
    }
}

#[async_trait]
impl LlmProvider for OpenAiLlm {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn stream(&self, request: &LlmRequest) -> Result<LlmStream, ProviderError> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let mut http = self.client.post(&url)?.header("accept", "text/event-stream").json(&self.body(request));
        if let Some(key) = &self.config.api_key {
            http = http.bearer_auth(key.expose());
        }
        let response = check_status(http.send().await?).await?;
        Ok(sse::llm_stream(response, ChunkDecoder::default()))
    }
}

/// Turns the `data:` payloads of a completion into events, holding tool calls until their
/// arguments are complete.
#[derive(Debug, Default)]
struct ChunkDecoder {
    /// By `index`: id, name, arguments so far.
    calls: BTreeMap<u64, (String, String, String)>,
    finish: Option<FinishReason>,
    done: bool,
}

impl ChunkDecoder {
    fn data(&mut self, data: &str) -> Result<Vec<LlmEvent>, ProviderError> {
        if self.done {
            return Ok(Vec::new());
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return self.end();
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| ProviderError::BadResponse(format!("chunk is not JSON ({e}): {}", cut(data))))?;
        if let Some(error) = chunk.get("error") {
            return Err(stream_error(error));
        }
        let mut out = Vec::new();
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return Ok(out);
        };
        for choice in choices.iter().filter(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0) {
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                out.push(LlmEvent::TextDelta(text.to_owned()));
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(self.calls.len() as u64);
                let entry = self.calls.entry(index).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    id.clone_into(&mut entry.0);
                }
                let function = call.get("function").unwrap_or(&Value::Null);
                if let Some(name) = function.get("name").and_then(Value::as_str) {
                    entry.1.push_str(name);
                }
                if let Some(arguments) = function.get("arguments").and_then(Value::as_str) {
                    entry.2.push_str(arguments);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(match reason {
                    "stop" => FinishReason::Stop,
                    "tool_calls" | "function_call" => FinishReason::ToolCalls,
                    "length" => FinishReason::Length,
                    "content_filter" => FinishReason::ContentFilter,
                    other => FinishReason::Other(other.to_owned()),
                });
            }
        }
        Ok(out)
    }

    fn end(&mut self) -> Result<Vec<LlmEvent>, ProviderError> {
        let mut out = Vec::new();
        for (index, (id, name, arguments)) in std::mem::take(&mut self.calls) {
            if name.is_empty() {
                return Err(ProviderError::BadResponse(format!("tool call {index} has no name")));
            }
            out.push(LlmEvent::ToolCall(ToolCall { id, name, arguments }));
        }
        let reason =
            self.finish.take().ok_or_else(|| ProviderError::BadResponse("[DONE] without a finish_reason".into()))?;
        out.push(LlmEvent::End(reason));
        Ok(out)
    }
}

impl sse::EventDecoder for ChunkDecoder {
    fn event(&mut self, event: &sse::SseEvent) -> Result<Vec<LlmEvent>, ProviderError> {
        self.data(&event.data)
    }

    /// Some OpenAI-compatible servers close the body after the finish reason without
    /// `[DONE]`; the answer is complete all the same.
    fn end_of_body(&mut self) -> Option<Result<Vec<LlmEvent>, ProviderError>> {
        (!self.done && self.finish.is_some()).then(|| self.end())
    }
}

fn stream_error(error: &Value) -> ProviderError {
    let message = error.get("message").and_then(Value::as_str).unwrap_or("error event").to_owned();
    let kind = error.get("type").or_else(|| error.get("code")).and_then(Value::as_str).unwrap_or_default();
    match kind {
        "rate_limit_exceeded" | "rate_limit_error" => ProviderError::RateLimited { retry_after: None },
        "invalid_request_error" => ProviderError::BadResponse(message),
        _ => ProviderError::Server { status: 500, message },
    }
}

pub(crate) fn cut(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&str]) -> Vec<Result<LlmEvent, ProviderError>> {
        let mut decoder = ChunkDecoder::default();
        chunks
            .iter()
            .flat_map(|c| decoder.data(c).map_or_else(|e| vec![Err(e)], |v| v.into_iter().map(Ok).collect()))
            .collect()
    }

    #[test]
    fn reassembles_tool_call_arguments_by_index() {
        let events = decode(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"book","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"end_call","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"gue"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"sts\": 2}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ]);
        assert_eq!(
            events,
            vec![
                Ok(LlmEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "book".into(),
                    arguments: "{\"guests\": 2}".into()
                })),
                Ok(LlmEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "end_call".into(),
                    arguments: "{}".into()
                })),
                Ok(LlmEvent::End(FinishReason::ToolCalls)),
            ]
        );
    }

    #[test]
    fn a_body_that_ends_after_the_finish_reason_is_complete() {
        use crate::sse::EventDecoder as _;
        let mut decoder = ChunkDecoder::default();
        decoder.data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}"#).unwrap();
        assert_eq!(decoder.end_of_body(), Some(Ok(vec![LlmEvent::End(FinishReason::Stop)])));
        let mut cut = ChunkDecoder::default();
        cut.data(r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#).unwrap();
        assert_eq!(cut.end_of_body(), None);
    }

    #[test]
    fn an_error_event_is_classified() {
        let events = decode(&[r#"{"error":{"message":"slow down","type":"rate_limit_exceeded"}}"#]);
        assert_eq!(events, vec![Err(ProviderError::RateLimited { retry_after: None })]);
    }
}
