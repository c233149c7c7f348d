//! ElevenLabs `POST /v1/text-to-speech/{voice_id}/stream` (and the non-streaming
//! `POST /v1/text-to-speech/{voice_id}`), after
//! https://elevenlabs.io/docs/api-reference/text-to-speech/stream: `xi-api-key` header, JSON body
//! `{"text", "model_id", …}`, `output_format` query (`pcm_16000`, `ulaw_8000`, …), raw audio
//! in a chunked body. Errors are `{"detail":{"status","message"}}`; validation errors 422.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::audio::{self, Encoding, Format};
use crate::log::Entry;
use crate::paced::{at, Plan};
use crate::scenario::{pick_fault, Fault, Pacing};
use crate::{common, Provider, Shared};

type Q = Query<HashMap<String, String>>;

pub(crate) async fn stream(
    state: State<Arc<Shared>>,
    voice: Path<String>,
    query: Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, voice, query, method, uri, headers, body, true).await
}

pub(crate) async fn convert(
    state: State<Arc<Shared>>,
    voice: Path<String>,
    query: Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, voice, query, method, uri, headers, body, false).await
}

pub(crate) fn parse_output_format(name: &str) -> Option<Format> {
    let (codec, rate) = name.split_once('_')?;
    let sample_rate: u32 = rate.parse().ok()?;
    let encoding = match codec {
        "pcm" => Encoding::Linear16,
        "ulaw" if sample_rate == 8000 => Encoding::Mulaw,
        "alaw" if sample_rate == 8000 => Encoding::Alaw,
        _ => return None,
    };
    let format = Format { encoding, sample_rate };
    audio::tone_second(format).map(|_| format)
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(voice_id): Path<String>,
    Query(query): Q,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    streaming: bool,
) -> Response {
    let t0 = Instant::now();
    let ordinal = shared.next_ordinal(Provider::ElevenLabs);
    let scenario = shared.scenario();
    let cfg = &scenario.elevenlabs;
    let fault = pick_fault(&cfg.faults, ordinal, Some(&voice_id));
    shared.log.record(&Entry::of(Provider::ElevenLabs, ordinal, &method, &uri, &headers, &body, fault));
    let request_id = format!("sim{}x{ordinal}", shared.instance);
    let detail = |status: StatusCode, kind: &str, message: &str| {
        common::json_error(
            status,
            &json!({"detail": {"status": kind, "message": message}}),
            None,
            "request-id",
            &request_id,
        )
    };

    let key = common::header(&headers, "xi-api-key").unwrap_or("");
    if key.is_empty() {
        return detail(
            StatusCode::UNAUTHORIZED,
            "needs_authorization",
            "Neither authorization header nor xi-api-key received, please provide one.",
        );
    }
    if cfg.api_key.as_deref().is_some_and(|k| k != key) {
        return detail(StatusCode::UNAUTHORIZED, "invalid_api_key", "Invalid API key");
    }
    let text = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned));
    let Some(text) = text else {
        let body =
            json!({"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required", "input": null}]});
        return common::json_error(StatusCode::UNPROCESSABLE_ENTITY, &body, None, "request-id", &request_id);
    };
    let format_name = query.get("output_format").map_or("mp3_44100_128", String::as_str);
    let Some(format) = parse_output_format(format_name) else {
        return detail(
            StatusCode::BAD_REQUEST,
            "invalid_output_format",
            "golos-simulator produces pcm_8000/16000/22050/24000/44100/48000, ulaw_8000 and alaw_8000 only",
        );
    };

    match fault {
        Some(Fault::Status { status, retry_after_s }) => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (kind, message) = match status {
                401 => ("invalid_api_key", "Invalid API key"),
                429 => (
                    "too_many_concurrent_requests",
                    "Too many concurrent requests. Your current subscription allows a limited number of concurrent requests.",
                ),
                503 => ("service_unavailable", "The service is temporarily unavailable."),
                _ => ("internal_server_error", "An internal server error occurred (simulated)."),
            };
            let body = json!({"detail": {"status": kind, "message": message}});
            return common::json_error(code, &body, *retry_after_s, "request-id", &request_id);
        }
        Some(Fault::Hang) => {
            shared.shutdown_signal().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        _ => {}
    }

    let ttfb = match fault {
        Some(Fault::Slow { first_ms }) => *first_ms,
        _ => cfg.ttfb_ms,
    };
    let duration_ms = text.split_whitespace().count() as u64 * cfg.ms_per_word;
    let second = audio::tone_second(format).expect("format was validated");
    let mut plan = if streaming {
        // Chunks longer than the cached second would need another buffer; a second is plenty.
        let chunk_ms = cfg.chunk_ms.clamp(1, 1000);
        let interval = match cfg.pacing {
            Pacing::Realtime => chunk_ms,
            Pacing::AsFastAsPossible => 0,
            Pacing::IntervalMs(ms) => ms,
        };
        let chunks = duration_ms.div_ceil(chunk_ms) as usize;
        let full = format.bytes_for_ms(chunk_ms);
        let mut items = Vec::with_capacity(chunks);
        for k in 0..chunks {
            let remaining = duration_ms - k as u64 * chunk_ms;
            let len = if remaining >= chunk_ms { full } else { format.bytes_for_ms(remaining) };
            items.push((at(ttfb, interval, k), audio::static_bytes(&second[..len])));
        }
        Plan::new(items)
    } else {
        let all = audio::tone(format, duration_ms).expect("format was validated");
        Plan::new(vec![(at(ttfb, 0, 0), Bytes::from(all))])
    };
    // Raw audio has no JSON to break and no in-band error: both become a cut connection.
    let fault = match fault {
        Some(Fault::StreamError { events }) => Some(Fault::ResetAfter { events: *events }),
        Some(Fault::Malformed { .. }) => None,
        other => other.cloned(),
    };
    plan.apply(fault.as_ref(), Bytes::clone, Bytes::new);
    let mut response = plan.into_body(t0, Arc::clone(&shared)).into_response();
    let content_type = match format.encoding {
        Encoding::Linear16 => "audio/pcm",
        Encoding::Mulaw => "audio/basic",
        Encoding::Alaw => "audio/x-alaw-basic",
    };
    common::set_header(&mut response, "content-type", content_type);
    common::set_header(&mut response, "request-id", &request_id);
    response
}
