//! `POST /v1/call-events`: call events from media workers or call sources outside this
//! process ([`crate::call_events`]).

use super::error::{ApiError, ApiResult};
use super::extract::Authed;
use crate::call_events;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::Json;
use golos_domain::events::CallEvent;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedEvent {
    /// The queue message id.
    pub message_id: String,
}

/// Queue a `call.started` / `call.ended` event (operator): how media workers that do not
/// share this process, or other call sources, report calls. Processed like every queued event.
#[utoipa::path(post, path = "/v1/call-events", tag = "admission",
    request_body(content = Object, description = "a call event: {\"type\": \"call.started\" | \"call.ended\", \"call_id\", \"org_id\", \"agent_id\", \"direction\", \"started_at\" (ms), and for call.ended \"ended_at\", \"duration_secs\", \"end_reason\", \"transcript\" (plaintext turns [{role, text, at_ms}], sealed here before queueing, or a sealed transcript), \"metrics\"}"),
    responses((status = 202, body = QueuedEvent), (status = 400, description = "not a call event"), (status = 403, description = "not the operator")))]
pub async fn enqueue_http(
    Authed { state, caller, .. }: Authed,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<QueuedEvent>)> {
    caller.require_operator()?;
    // serde's message may quote a value (a caller's number): say only where it failed.
    let event: CallEvent = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_call_event",
            format!("not a call event: {:?} error at line {} column {}", e.classify(), e.line(), e.column()),
        )
    })?;
    let message_id = call_events::enqueue(&state, event).await?;
    Ok((StatusCode::ACCEPTED, Json(QueuedEvent { message_id })))
}
