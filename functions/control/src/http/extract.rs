//! Pieces every resource's handlers use: pagination, JSON bodies and queries with
//! problem+json errors, `If-Match`, the audit actor.

use super::error::ApiError;
use super::middleware::{Caller, RequestContext};
use crate::audit::Actor;
use crate::state::ControlState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use golos_ports::PageRequest;
use serde::Deserialize;
use utoipa::IntoParams;

/// `?limit=&cursor=`: at most 100 items per page; pass `next_cursor` back for the next one.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request("invalid_limit", "limit must be 1-100"));
        }
        if self.cursor.as_ref().is_some_and(|c| c.is_empty() || c.len() > 1024) {
            return Err(ApiError::bad_request("invalid_cursor", "cursor must come from next_cursor"));
        }
        Ok(PageRequest { cursor: self.cursor.clone(), limit })
    }
}

/// A JSON body whose rejections are problem+json like every other error.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = if status == StatusCode::BAD_REQUEST {
            "invalid_json"
        } else if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            "unsupported_media_type"
        } else {
            "body_too_large"
        };
        Self::new(status, code, rejection.body_text())
    }
}

/// A JSON body that may be left out: an empty (or blank) body is `T::default()`, anything
/// else must parse, or it is a 400 `invalid_json` like every other body.
pub fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))
}

/// Query parameters whose rejections are problem+json like every other error.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct QueryParams<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request("invalid_query", rejection.body_text())
    }
}

/// What an authenticated `/v1` handler starts from: the state, who is calling (for the
/// role check), and how the audit log names them.
#[derive(Debug)]
pub struct Authed {
    pub state: ControlState,
    pub caller: Caller,
    pub actor: Actor,
}

impl FromRequestParts<ControlState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ControlState) -> Result<Self, ApiError> {
        // Both are set by the middleware in front of every `/v1` route.
        let caller = parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("no API key"))?;
        let context = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| ApiError::internal("a /v1 route without the request-context middleware"))?;
        Ok(Self { state: state.clone(), actor: actor(&caller, &context), caller })
    }
}

/// The audit log's name for the caller of this request.
pub fn actor(caller: &Caller, context: &RequestContext) -> Actor {
    Actor { name: caller.actor(), client_ip: context.client_ip.clone(), request_id: context.request_id.clone() }
}

/// `If-Match: "3"` (or `W/"3"`) → 3: the version of a resource whose `ETag` the client read.
pub fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(raw) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().unwrap_or_default().trim();
    let unquoted = text.trim_start_matches("W/").trim_matches('"');
    unquoted
        .parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request("invalid_if_match", "If-Match must be the resource's ETag, e.g. \"3\""))
}
