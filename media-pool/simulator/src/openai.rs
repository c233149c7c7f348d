//! OpenAI-compatible `POST /v1/chat/completions`, after the API reference
//! (https://platform.openai.com/docs/api-reference/chat/create and .../chat-streaming): SSE of
//! `chat.completion.chunk` objects (`data: {json}\n\n`) closed by `data: [DONE]`, tool calls as
//! `delta.tool_calls[{index, id, type, function{name, arguments}}]` with the arguments split
//! across chunks, and errors as `{"error":{"message","type","param","code"}}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::log::Entry;
use crate::paced::{at, truncate_json, Plan};
use crate::scenario::{pick_fault, Fault, LlmReply};
use crate::{common, Provider, Shared};

pub(crate) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t0 = Instant::now();
    let ordinal = shared.next_ordinal(Provider::OpenAi);
    let scenario = shared.scenario();
    let cfg = &scenario.openai;
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let model = request.as_ref().and_then(|r| r.get("model")).and_then(Value::as_str).map(str::to_owned);
    let fault = pick_fault(&cfg.faults, ordinal, model.as_deref());
    shared.log.record(&Entry::of(Provider::OpenAi, ordinal, &method, &uri, &headers, &body, fault));
    let request_id = format!("req_sim{}x{ordinal}", shared.instance);

    let bearer = common::header(&headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if bearer.is_empty() || cfg.api_key.as_deref().is_some_and(|k| k != bearer) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
            &request_id,
        );
    }
    let Some(request) = request else {
        return error(
            StatusCode::BAD_REQUEST,
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
            "invalid_request_error",
            None,
            None,
            &request_id,
        );
    };
    let Some(model) = model else {
        return error(
            StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            None,
            &request_id,
        );
    };
    if let Err(e) = crate::validate::openai(&request) {
        let body =
            json!({"error": {"message": e.message, "type": "invalid_request_error", "param": e.param, "code": e.code}});
        return common::json_error(StatusCode::BAD_REQUEST, &body, None, "x-request-id", &request_id);
    }

    match fault {
        Some(Fault::Status { status, retry_after_s }) => return status_error(*status, *retry_after_s, &request_id),
        Some(Fault::Hang) => {
            shared.shutdown_signal().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        _ => {}
    }

    let last = request.get("messages").and_then(Value::as_array).and_then(|m| m.last());
    let reply = common::pick_reply(&cfg.replies, ordinal, last);
    let ttft = match fault {
        Some(Fault::Slow { first_ms }) => *first_ms,
        _ => cfg.latency.ttft_ms,
    };
    let interval = cfg.latency.token_interval_ms;
    let stream = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = request.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let ids = Ids { completion: format!("chatcmpl-sim{}x{ordinal}", shared.instance), ordinal };
    let prompt_tokens = (body.len() / 4) as u64;

    let (mut plan, content_type) = if stream {
        (
            stream_plan(&reply, &ids, &model, include_usage, prompt_tokens, ttft, interval),
            "text/event-stream; charset=utf-8",
        )
    } else {
        (complete_plan(&reply, &ids, &model, prompt_tokens, ttft, interval), "application/json")
    };
    plan.apply(fault, truncate_json, || {
        if stream {
            common::sse_data(&error_json(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ))
        } else {
            Bytes::from(
                error_json(
                    "The server had an error while processing your request. Sorry about that!",
                    "server_error",
                    None,
                )
                .to_string(),
            )
        }
    });
    let mut response = plan.into_body(t0, Arc::clone(&shared)).into_response();
    common::set_header(&mut response, "content-type", content_type);
    common::set_header(&mut response, "x-request-id", &request_id);
    if stream {
        common::set_header(&mut response, "cache-control", "no-cache");
    }
    response
}

struct Ids {
    completion: String,
    ordinal: u64,
}

impl Ids {
    fn tool_call(&self, index: usize, script_id: Option<&String>) -> String {
        script_id.cloned().unwrap_or_else(|| format!("call_sim{}_{index}", self.ordinal))
    }
}

fn stream_plan(
    reply: &LlmReply,
    ids: &Ids,
    model: &str,
    include_usage: bool,
    prompt_tokens: u64,
    ttft: u64,
    interval: u64,
) -> Plan {
    let created = common::unix_now();
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut v = json!({
            "id": ids.completion,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_golos_sim",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        common::sse_data(&v)
    };
    let mut items = Vec::with_capacity(reply.tokens.len() + 8);
    // The role arrives before any generated token; clients that take the first event as the
    // first token measure a TTFT of zero and are wrong.
    items.push((at(0, 0, 0), chunk(json!({"role": "assistant", "content": "", "refusal": null}), None)));
    let mut k = 0;
    for token in &reply.tokens {
        items.push((at(ttft, interval, k), chunk(json!({"content": token}), None)));
        k += 1;
    }
    let mut completion_tokens = reply.tokens.len() as u64;
    for (index, call) in reply.tool_calls.iter().enumerate() {
        let start = json!({"tool_calls": [{
            "index": index,
            "id": ids.tool_call(index, call.id.as_ref()),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]});
        items.push((at(ttft, interval, k), chunk(start, None)));
        k += 1;
        for piece in common::split_fragments(&call.arguments, call.fragments) {
            let delta = json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
            items.push((at(ttft, interval, k), chunk(delta, None)));
            k += 1;
            completion_tokens += 1;
        }
    }
    let last = at(ttft, interval, k.saturating_sub(1));
    let finish = if reply.tool_calls.is_empty() { "stop" } else { "tool_calls" };
    items.push((last, chunk(json!({}), Some(finish))));
    if include_usage {
        let usage = json!({
            "id": ids.completion,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_golos_sim",
            "choices": [],
            "usage": usage(prompt_tokens, completion_tokens),
        });
        items.push((last, common::sse_data(&usage)));
    }
    items.push((last, Bytes::from_static(b"data: [DONE]\n\n")));
    Plan::new(items)
}

fn complete_plan(reply: &LlmReply, ids: &Ids, model: &str, prompt_tokens: u64, ttft: u64, interval: u64) -> Plan {
    let events = reply.tokens.len() + reply.tool_calls.iter().map(|c| 1 + c.fragments.max(1)).sum::<usize>();
    let tool_calls: Vec<Value> = reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            json!({
                "id": ids.tool_call(index, call.id.as_ref()),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })
        })
        .collect();
    let text: String = reply.tokens.concat();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let finish = if reply.tool_calls.is_empty() { "stop" } else { "tool_calls" };
    let body = json!({
        "id": ids.completion,
        "object": "chat.completion",
        "created": common::unix_now(),
        "model": model,
        "system_fingerprint": "fp_golos_sim",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage(prompt_tokens, events as u64),
    });
    Plan::new(vec![(at(ttft, interval, events.saturating_sub(1)), Bytes::from(body.to_string()))])
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn error_json(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
    retry_after_s: Option<u64>,
    request_id: &str,
) -> Response {
    common::json_error(status, &error_json(message, kind, code), retry_after_s, "x-request-id", request_id)
}

fn status_error(status: u16, retry_after_s: Option<u64>, request_id: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (message, kind, err_code) = match status {
        400 => ("Invalid request (simulated).", "invalid_request_error", None),
        401 => ("Incorrect API key provided.", "invalid_request_error", Some("invalid_api_key")),
        403 => ("You are not allowed to sample from this model", "invalid_request_error", None),
        404 => (
            "The model does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        ),
        429 => (
            "Rate limit reached for requests per min (RPM). Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        503 => ("The engine is currently overloaded, please try again later.", "server_error", None),
        _ => ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    };
    error(code, message, kind, err_code, retry_after_s, request_id)
}
