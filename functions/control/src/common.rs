//! Pieces every resource uses: pagination, audit, JSON bodies with problem+json errors.

use crate::error::ApiError;
use crate::middleware::{Caller, RequestContext};
use crate::state::ControlState;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use golos_domain::OrgId;
use golos_ports::{AuditEntry, PageRequest};
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

/// Records an administrative action after it succeeded. If the store refuses the line, the
/// action has already happened, so failing the request would mislead the client into a
/// retry; the full entry goes to the error log instead, which is the secondary audit trail.
pub async fn audit(
    state: &ControlState,
    caller: &Caller,
    context: &RequestContext,
    org: &OrgId,
    action: &str,
    target: &str,
) {
    let entry = AuditEntry {
        org_id: org.clone(),
        at: state.clock.now(),
        actor: caller.actor(),
        action: action.to_owned(),
        target: target.to_owned(),
        ip: context.client_ip.clone(),
        request_id: context.request_id.clone(),
    };
    match state.audit.append(&entry).await {
        Ok(()) => tracing::info!(audit = action, target, actor = %entry.actor, "admin action"),
        Err(err) => {
            tracing::error!(error = %err, audit = action, target, actor = %entry.actor, org = %org, ip = %entry.ip, request_id = %entry.request_id, "audit log write failed");
        }
    }
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
