//! Anthropic `POST /v1/messages`, after https://docs.anthropic.com/en/docs/build-with-claude/streaming
//! and https://docs.anthropic.com/en/api/errors: named SSE events `message_start`,
//! `content_block_start` (text / tool_use), `ping`, `content_block_delta` (`text_delta`,
//! `input_json_delta` with `partial_json`), `content_block_stop`, `message_delta` (stop_reason),
//! `message_stop`; errors as `{"type":"error","error":{"type","message"}}`, in a stream as
//! `event: error`; 529 is `overloaded_error`.

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

pub(crate) async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t0 = Instant::now();
    let ordinal = shared.next_ordinal(Provider::Anthropic);
    let scenario = shared.scenario();
    let cfg = &scenario.anthropic;
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let model = request.as_ref().and_then(|r| r.get("model")).and_then(Value::as_str).map(str::to_owned);
    let fault = pick_fault(&cfg.faults, ordinal, model.as_deref());
    shared.log.record(&Entry::of(Provider::Anthropic, ordinal, &method, &uri, &headers, &body, fault));
    let request_id = format!("req_sim{}x{ordinal}", shared.instance);
    let fail = |status: StatusCode, kind: &str, message: &str| error(status, kind, message, None, &request_id);

    let key = common::header(&headers, "x-api-key").unwrap_or("");
    if key.is_empty() {
        return fail(StatusCode::UNAUTHORIZED, "authentication_error", "x-api-key header is required");
    }
    if cfg.api_key.as_deref().is_some_and(|k| k != key) {
        return fail(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if common::header(&headers, "anthropic-version").is_none_or(str::is_empty) {
        return fail(StatusCode::BAD_REQUEST, "invalid_request_error", "anthropic-version: header is required");
    }
    let Some(request) = request else {
        return fail(StatusCode::BAD_REQUEST, "invalid_request_error", "The request body is not valid JSON.");
    };
    let Some(model) = model else {
        return fail(StatusCode::BAD_REQUEST, "invalid_request_error", "model: Field required");
    };
    if !request.get("max_tokens").is_some_and(Value::is_u64) {
        return fail(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    }
    if let Err(message) = crate::validate::anthropic(&request) {
        return fail(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
    }

    match fault {
        Some(Fault::Status { status, retry_after_s }) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (kind, message) = error_kind(*status);
            return error(code, kind, message, *retry_after_s, &request_id);
        }
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
    let ids = Ids { message: format!("msg_sim{}x{ordinal}", shared.instance), ordinal };
    let input_tokens = (body.len() / 4) as u64;
    let (mut plan, content_type) = if stream {
        (stream_plan(&reply, &ids, &model, input_tokens, ttft, interval), "text/event-stream; charset=utf-8")
    } else {
        (complete_plan(&reply, &ids, &model, input_tokens, ttft, interval), "application/json")
    };
    plan.apply(fault, truncate_json, || {
        let overloaded = error_json("overloaded_error", "Overloaded", None);
        if stream {
            common::sse_event("error", &overloaded)
        } else {
            Bytes::from(overloaded.to_string())
        }
    });
    let mut response = plan.into_body(t0, Arc::clone(&shared)).into_response();
    common::set_header(&mut response, "content-type", content_type);
    common::set_header(&mut response, "request-id", &request_id);
    if stream {
        common::set_header(&mut response, "cache-control", "no-cache");
    }
    response
}

struct Ids {
    message: String,
    ordinal: u64,
}

impl Ids {
    fn tool_use(&self, index: usize, script_id: Option<&String>) -> String {
        script_id.cloned().unwrap_or_else(|| format!("toolu_sim{}_{index}", self.ordinal))
    }
}

fn stop_reason(reply: &LlmReply) -> &'static str {
    if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    }
}

fn stream_plan(reply: &LlmReply, ids: &Ids, model: &str, input_tokens: u64, ttft: u64, interval: u64) -> Plan {
    let ev = common::sse_event;
    let zero = at(0, 0, 0);
    let mut items = Vec::with_capacity(reply.tokens.len() + 8);
    items.push((
        zero,
        ev(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": ids.message,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": model,
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            }}),
        ),
    ));
    let mut block = 0;
    let mut k = 0;
    if reply.tokens.is_empty() {
        items.push((zero, ev("ping", &json!({"type": "ping"}))));
    } else {
        items.push((
            zero,
            ev(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
        ));
        items.push((zero, ev("ping", &json!({"type": "ping"}))));
        for token in &reply.tokens {
            let delta =
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": token}});
            items.push((at(ttft, interval, k), ev("content_block_delta", &delta)));
            k += 1;
        }
        items.push((
            at(ttft, interval, k - 1),
            ev("content_block_stop", &json!({"type": "content_block_stop", "index": 0})),
        ));
        block += 1;
    }
    let mut output_tokens = reply.tokens.len() as u64;
    for (n, call) in reply.tool_calls.iter().enumerate() {
        let start = json!({"type": "content_block_start", "index": block, "content_block": {
            "type": "tool_use",
            "id": ids.tool_use(n, call.id.as_ref()),
            "name": call.name,
            "input": {},
        }});
        items.push((at(ttft, interval, k), ev("content_block_start", &start)));
        for piece in common::split_fragments(&call.arguments, call.fragments) {
            let delta = json!({"type": "content_block_delta", "index": block,
                "delta": {"type": "input_json_delta", "partial_json": piece}});
            items.push((at(ttft, interval, k), ev("content_block_delta", &delta)));
            k += 1;
            output_tokens += 1;
        }
        items.push((
            at(ttft, interval, k - 1),
            ev("content_block_stop", &json!({"type": "content_block_stop", "index": block})),
        ));
        block += 1;
    }
    let last = at(ttft, interval, k.saturating_sub(1));
    items.push((
        last,
        ev(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(reply), "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
        ),
    ));
    items.push((last, ev("message_stop", &json!({"type": "message_stop"}))));
    Plan::new(items)
}

fn complete_plan(reply: &LlmReply, ids: &Ids, model: &str, input_tokens: u64, ttft: u64, interval: u64) -> Plan {
    let mut content = Vec::new();
    if !reply.tokens.is_empty() {
        content.push(json!({"type": "text", "text": reply.tokens.concat()}));
    }
    let mut events = reply.tokens.len();
    for (n, call) in reply.tool_calls.iter().enumerate() {
        // A scripted invalid argument string cannot become a JSON object; keep it visible as a string.
        let input = serde_json::from_str::<Value>(&call.arguments).unwrap_or(Value::String(call.arguments.clone()));
        content.push(
            json!({"type": "tool_use", "id": ids.tool_use(n, call.id.as_ref()), "name": call.name, "input": input}),
        );
        events += call.fragments.max(1);
    }
    let body = json!({
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(reply),
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": events},
    });
    Plan::new(vec![(at(ttft, interval, events.saturating_sub(1)), Bytes::from(body.to_string()))])
}

fn error_kind(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("invalid_request_error", "Invalid request (simulated)."),
        401 => ("authentication_error", "invalid x-api-key"),
        402 => ("billing_error", "Your credit balance is too low."),
        403 => ("permission_error", "Your API key does not have permission to use the specified resource."),
        404 => ("not_found_error", "The requested resource could not be found."),
        413 => ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        429 => ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
        529 => ("overloaded_error", "Overloaded"),
        _ => ("api_error", "Internal server error"),
    }
}

fn error_json(kind: &str, message: &str, request_id: Option<&str>) -> Value {
    let mut v = json!({"type": "error", "error": {"type": kind, "message": message}});
    if let Some(id) = request_id {
        v["request_id"] = Value::String(id.to_owned());
    }
    v
}

fn error(status: StatusCode, kind: &str, message: &str, retry_after_s: Option<u64>, request_id: &str) -> Response {
    common::json_error(status, &error_json(kind, message, Some(request_id)), retry_after_s, "request-id", request_id)
}
