//! Google Cloud Text-to-Speech `POST /v1/text:synthesize`, after
//! https://cloud.google.com/text-to-speech/docs/reference/rest/v1/text/synthesize: body
//! `{"input":{"text"|"ssml"},"voice":{"languageCode","name"},"audioConfig":{"audioEncoding","sampleRateHertz"}}`,
//! response `{"audioContent": base64}` where LINEAR16 (and, as Google does, MULAW/ALAW) carry a
//! WAV header. Errors are `{"error":{"code","message","status"}}`. The key is taken from
//! `x-goog-api-key`, `?key=` or an OAuth bearer token.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::audio::{self, Encoding, Format};
use crate::log::Entry;
use crate::paced::{at, truncate_json, Plan};
use crate::scenario::{pick_fault, Fault};
use crate::{common, Provider, Shared};

pub(crate) async fn synthesize(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let t0 = Instant::now();
    let ordinal = shared.next_ordinal(Provider::Google);
    let scenario = shared.scenario();
    let cfg = &scenario.google;
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let voice_name = request.as_ref().and_then(|r| r.pointer("/voice/name")).and_then(Value::as_str).map(str::to_owned);
    let fault = pick_fault(&cfg.faults, ordinal, voice_name.as_deref());
    shared.log.record(&Entry::of(Provider::Google, ordinal, &method, &uri, &headers, &body, fault));
    let request_id = format!("sim{}x{ordinal}", shared.instance);
    let fail = |status: u16, message: &str, retry_after_s: Option<u64>| {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"error": {"code": status, "message": message, "status": grpc_status(status)}});
        common::json_error(code, &body, retry_after_s, "x-request-id", &request_id)
    };

    let key = common::header(&headers, "x-goog-api-key")
        .or(query.get("key").map(String::as_str))
        .or_else(|| common::header(&headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .unwrap_or("");
    if key.is_empty() {
        return fail(
            401,
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            None,
        );
    }
    if cfg.api_key.as_deref().is_some_and(|k| k != key) {
        return fail(400, "API key not valid. Please pass a valid API key.", None);
    }
    let Some(request) = request else {
        return fail(400, "Invalid JSON payload received.", None);
    };
    let text = match (request.pointer("/input/text"), request.pointer("/input/ssml")) {
        (Some(Value::String(t)), _) => t.clone(),
        (_, Some(Value::String(ssml))) => strip_tags(ssml),
        _ => return fail(400, "Either `input.text` or `input.ssml` needs to be set.", None),
    };
    if request.pointer("/voice/languageCode").and_then(Value::as_str).is_none_or(str::is_empty) {
        return fail(400, "Invalid voice: languageCode is required.", None);
    }
    let encoding = match request.pointer("/audioConfig/audioEncoding").and_then(Value::as_str) {
        Some("LINEAR16") => Encoding::Linear16,
        Some("MULAW") => Encoding::Mulaw,
        Some("ALAW") => Encoding::Alaw,
        Some(other) => return fail(400, &format!("golos-simulator does not produce audioEncoding {other}."), None),
        None => return fail(400, "AudioConfig is missing audio_encoding.", None),
    };
    let rate = request.pointer("/audioConfig/sampleRateHertz").and_then(Value::as_u64).unwrap_or(24_000);
    let format = Format { encoding, sample_rate: u32::try_from(rate).unwrap_or(0) };
    if audio::tone_second(format).is_none() {
        return fail(400, &format!("Unsupported sample rate {rate}."), None);
    }

    let fault = match fault {
        Some(Fault::StreamError { .. }) => Some(Fault::status(500)),
        other => other.cloned(),
    };
    match fault {
        Some(Fault::Status { status, retry_after_s }) => {
            let message = match status {
                429 => "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'.",
                503 => "The service is currently unavailable.",
                _ => "Internal error encountered.",
            };
            return fail(status, message, retry_after_s);
        }
        Some(Fault::Hang) => {
            shared.shutdown_signal().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        _ => {}
    }
    let latency = match fault {
        Some(Fault::Slow { first_ms }) => first_ms,
        _ => cfg.ttfb_ms,
    };

    let duration_ms = text.split_whitespace().count() as u64 * cfg.ms_per_word;
    let pcm = audio::tone(format, duration_ms).expect("format was validated");
    let mut wav = Vec::with_capacity(44 + pcm.len());
    wav.extend_from_slice(&audio::wav_header(format, pcm.len()));
    wav.extend_from_slice(&pcm);
    let body = json!({"audioContent": base64::engine::general_purpose::STANDARD.encode(&wav)});
    let mut plan = Plan::new(vec![(at(latency, 0, 0), Bytes::from(body.to_string()))]);
    plan.apply(fault.as_ref(), truncate_json, Bytes::new);
    let mut response = plan.into_body(t0, Arc::clone(&shared)).into_response();
    common::set_header(&mut response, "content-type", "application/json; charset=UTF-8");
    common::set_header(&mut response, "x-request-id", &request_id);
    response
}

fn grpc_status(http: u16) -> &'static str {
    match http {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn strip_tags(ssml: &str) -> String {
    let mut out = String::with_capacity(ssml.len());
    let mut in_tag = false;
    for c in ssml.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}
