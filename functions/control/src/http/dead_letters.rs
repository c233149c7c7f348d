//! `/v1/dead-letters`: what golos gave up delivering ([`crate::dead_letters`]). An org's admins
//! and editors list its dead webhook deliveries and its admins redrive them; the operator
//! also sees and redrives the `call-events` queue's.

use super::error::ApiResult;
use super::extract::{Authed, JsonBody, QueryParams};
use super::middleware::Caller;
use crate::dead_letters::{self, DeadLetterEntry, DeadLetterQueue, Scope};
use axum::Json;
use golos_domain::rbac::Action;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// `webhooks` (default) or `call-events` (operator only).
    pub queue: Option<String>,
    /// 1-100, default 100.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// What `POST /v1/dead-letters/redrive` takes.
    pub id: String,
    pub queue: String,
    pub org_id: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub endpoint_id: Option<String>,
    pub call_id: Option<String>,
    /// `permanent_status`, `invalid_url`, `attempts_exhausted`, `endpoint_disabled`, or absent
    /// when it failed to be processed `max_receives` times.
    pub reason: Option<String>,
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub dead_lettered_at: Option<String>,
    /// The event's data, without the transcript.
    pub data: Option<serde_json::Value>,
}

impl From<DeadLetterEntry> for DeadLetterView {
    fn from(e: DeadLetterEntry) -> Self {
        Self {
            id: e.id,
            queue: e.queue.as_str().to_owned(),
            org_id: e.org_id.map(|o| o.to_string()),
            event_id: e.event_id,
            event_type: e.event_type,
            endpoint_id: e.endpoint_id,
            call_id: e.call_id,
            reason: e.reason,
            status_code: e.status_code,
            attempts: e.attempts,
            dead_lettered_at: e.dead_lettered_at,
            data: e.data,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    pub items: Vec<DeadLetterView>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// `webhooks` (default) or `call-events` (operator only).
    pub queue: Option<String>,
    /// The dead letters to redrive; absent redrives all of the caller's (up to 1000 a request).
    #[schema(max_items = 1000)]
    pub ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveResult {
    pub redriven: usize,
    /// Ids asked for that are not (or no longer) the caller's dead letters.
    pub not_found: Vec<String>,
}

fn scope(caller: &Caller, action: Action) -> ApiResult<Scope> {
    Ok(match caller {
        Caller::Operator => Scope::Operator,
        member @ Caller::Member { .. } => Scope::Org(member.member(action)?.id.clone()),
    })
}

fn queue(name: Option<&str>) -> ApiResult<DeadLetterQueue> {
    Ok(DeadLetterQueue::parse(name.unwrap_or("webhooks"))?)
}

/// Dead letters, oldest first: an org's dead webhook deliveries (admin, editor); the operator
/// sees every org's and, with `queue=call-events`, the media pool's call events.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead-letters", params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterList), (status = 400, description = "invalid_queue, invalid_limit"),
        (status = 403, description = "operator_only: call-events as an org member")))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<DeadLetterQuery>,
) -> ApiResult<Json<DeadLetterList>> {
    let scope = scope(&caller, Action::ReadWebhooks)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=100).contains(&limit) {
        return Err(super::ApiError::bad_request("invalid_limit", "limit must be 1-100"));
    }
    let entries = dead_letters::list(&state, &scope, queue(query.queue.as_deref())?, limit as usize).await?;
    Ok(Json(DeadLetterList { items: entries.into_iter().map(Into::into).collect() }))
}

/// Send dead letters back to their queue (admin; the operator for any org and for
/// `call-events`): by id, or all of the caller's. Webhooks get a fresh series of attempts;
/// receivers that drop repeated `webhook-id`s see each event once. Audit-logged.
#[utoipa::path(post, path = "/v1/dead-letters/redrive", tag = "dead-letters", request_body = RedriveRequest,
    responses((status = 200, body = RedriveResult), (status = 400, description = "invalid_queue, too_many_ids"),
        (status = 403, description = "operator_only: call-events as an org member")))]
pub async fn redrive(
    Authed { state, caller, actor }: Authed,
    JsonBody(body): JsonBody<RedriveRequest>,
) -> ApiResult<Json<RedriveResult>> {
    let scope = scope(&caller, Action::RedriveDeadLetters)?;
    if body.ids.as_ref().is_some_and(|ids| ids.len() > dead_letters::SCAN_LIMIT || ids.iter().any(|id| id.len() > 256))
    {
        return Err(super::ApiError::bad_request("too_many_ids", "at most 1000 ids of at most 256 characters"));
    }
    let done =
        dead_letters::redrive(&state, &actor, &scope, queue(body.queue.as_deref())?, body.ids.as_deref()).await?;
    Ok(Json(RedriveResult { redriven: done.redriven, not_found: done.not_found }))
}
