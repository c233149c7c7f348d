//! Deepgram live transcription (`GET /v1/listen`, WebSocket). Not implemented yet.

use axum::http::StatusCode;

pub(crate) async fn listen() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
