//! Google Cloud Text-to-Speech. Not implemented yet.

use axum::http::StatusCode;

pub(crate) async fn synthesize() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
