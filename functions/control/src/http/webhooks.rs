//! `/v1/webhook-endpoints`: the caller's organisation's webhook endpoints
//! ([`crate::webhooks`]). Admins manage them, editors read them. The signing secret is shown
//! only in the answer that created or rotated it.

use super::error::ApiResult;
use super::extract::{if_match, optional_json, Authed, JsonBody, ListQuery, QueryParams};
use super::middleware::SecretInResponse;
use crate::webhook_delivery;
use crate::webhooks::{self, EndpointChanges, EndpointWithSecret, NewEndpoint};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use golos_domain::rbac::Action;
use golos_ports::{WebhookDelivery, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where deliveries are POSTed: `https://`; plain `http://` only to a destination the
    /// operator allows (`GOLOS_EGRESS_ALLOW`); never a private, loopback or metadata address.
    pub url: String,
    /// What the endpoint receives, a non-empty set of `call.started`, `call.ended`,
    /// `balance.low`, `quota.exceeded`, `agent.escalation_triggered`, `call.transfer`,
    /// `call.shutdown_initiated`, `endpoint.disabled`. There is no wildcard.
    #[schema(min_items = 1, max_items = 8)]
    pub event_types: Vec<String>,
    /// At most 500 characters; default empty.
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 8)]
    pub event_types: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// `true` re-enables an endpoint disabled after failed deliveries.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing, 0-604800 seconds; default 86400.
    #[schema(maximum = 604_800)]
    pub overlap_secs: Option<u64>,
}

/// An endpoint as the API shows it: never a secret, only fingerprints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub org_id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// The first 16 hex digits of the signing secret's SHA-256.
    pub secret_fingerprint: String,
    /// The rotated-out secret that still signs, if any, and when it stops.
    pub previous_secret_fingerprint: Option<String>,
    pub previous_secret_expires_at: Option<String>,
    /// Also the `ETag`.
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        let previous = e.previous_secret;
        Self {
            id: e.id.to_string(),
            org_id: e.org_id.to_string(),
            url: e.url,
            event_types: e.event_types.iter().map(|kind| kind.as_str().to_owned()).collect(),
            description: e.description,
            enabled: e.enabled,
            secret_fingerprint: e.secret.fingerprint,
            previous_secret_fingerprint: previous.as_ref().map(|p| p.fingerprint.clone()),
            previous_secret_expires_at: previous.and_then(|p| p.expires_at).map(|t| t.to_string()),
            version: e.version,
            created_at: e.created_at.to_string(),
            updated_at: e.updated_at.to_string(),
        }
    }
}

/// An endpoint with its new signing secret: shown in this answer only, golos keeps it sealed.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecretView {
    pub endpoint: EndpointView,
    /// `whsec_` and the base64 of 32 random bytes: the HMAC-SHA256 key deliveries are signed
    /// with. It cannot be shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<EndpointView>,
    pub next_cursor: Option<String>,
}

fn with_etag(status: StatusCode, version: u64, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The answer that carries a secret: never stored by the idempotency layer (a replay is
/// `409 replay_of_secret`).
fn with_secret(status: StatusCode, issued: EndpointWithSecret) -> Response {
    let marker = SecretInResponse { resource_id: issued.endpoint.id.to_string() };
    let version = issued.endpoint.version;
    let body = EndpointWithSecretView { secret: issued.secret.expose().to_owned(), endpoint: issued.endpoint.into() };
    (Extension(marker), with_etag(status, version, body)).into_response()
}

/// Create a webhook endpoint (admin); its signing secret is in this answer only.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhook-endpoints", request_body = CreateEndpoint,
    responses((status = 201, body = EndpointWithSecretView),
        (status = 403, description = "insufficient_role, or max_webhook_endpoints_reached (20 per organisation)"),
        (status = 409, description = "replay_of_secret: an Idempotency-Key replay of a creation, whose secret is not stored"),
        (status = 422, description = "validation_failed: url (https_required, forbidden_destination, userinfo_not_allowed, invalid_url), event_types, description")))]
pub async fn create(
    Authed { state, caller, actor }: Authed,
    JsonBody(body): JsonBody<CreateEndpoint>,
) -> ApiResult<Response> {
    let org = caller.member(Action::ManageWebhooks)?.id.clone();
    let new = NewEndpoint {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    Ok(with_secret(StatusCode::CREATED, webhooks::create(&state, &actor, &org, new).await?))
}

/// The organisation's webhook endpoints (admin, editor), ordered by id.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhook-endpoints", params(ListQuery),
    responses((status = 200, body = EndpointList)))]
pub async fn list(
    Authed { state, caller, .. }: Authed,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<EndpointList>> {
    let org = caller.member(Action::ReadWebhooks)?.id.clone();
    let page = webhooks::list(&state, &org, &query.page()?).await?;
    Ok(Json(EndpointList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// One webhook endpoint (admin, editor); the `ETag` header carries its version.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhook-endpoints",
    params(("endpoint_id" = String, Path)), responses((status = 200, body = EndpointView), (status = 404)))]
pub async fn get(Authed { state, caller, .. }: Authed, Path(endpoint_id): Path<String>) -> ApiResult<Response> {
    let org = caller.member(Action::ReadWebhooks)?.id.clone();
    let endpoint = webhooks::get(&state, &org, &endpoint_id).await?;
    Ok(with_etag(StatusCode::OK, endpoint.version, EndpointView::from(endpoint)))
}

/// Change a webhook endpoint (admin): only the fields sent change; with `If-Match` only over
/// that version (`412 version_mismatch` otherwise).
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhook-endpoints",
    params(("endpoint_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateEndpoint,
    responses((status = 200, body = EndpointView), (status = 404), (status = 412, description = "version_mismatch"),
        (status = 422, description = "validation_failed")))]
pub async fn update(
    Authed { state, caller, actor }: Authed,
    Path(endpoint_id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<UpdateEndpoint>,
) -> ApiResult<Response> {
    let org = caller.member(Action::ManageWebhooks)?.id.clone();
    let changes = EndpointChanges {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    let endpoint = webhooks::update(&state, &actor, &org, &endpoint_id, changes, if_match(&headers)?).await?;
    Ok(with_etag(StatusCode::OK, endpoint.version, EndpointView::from(endpoint)))
}

/// Delete a webhook endpoint (admin): nothing more is delivered to it.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{endpoint_id}", tag = "webhook-endpoints",
    params(("endpoint_id" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn delete(Authed { state, caller, actor }: Authed, Path(endpoint_id): Path<String>) -> ApiResult<StatusCode> {
    let org = caller.member(Action::ManageWebhooks)?.id.clone();
    webhooks::delete(&state, &actor, &org, &endpoint_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate an endpoint's signing secret (admin): the new one is in this answer only; the
/// previous one keeps signing for the overlap (default a day), so deliveries carry a
/// signature by each until then.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/rotate-secret", tag = "webhook-endpoints",
    params(("endpoint_id" = String, Path)), request_body = RotateSecret,
    responses((status = 200, body = EndpointWithSecretView), (status = 400, description = "invalid_overlap"), (status = 404),
        (status = 409, description = "replay_of_secret")))]
pub async fn rotate_secret(
    Authed { state, caller, actor }: Authed,
    Path(endpoint_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // An empty POST rotates with the default overlap.
    let body: RotateSecret = optional_json(&body)?;
    let org = caller.member(Action::ManageWebhooks)?.id.clone();
    let rotated = webhooks::rotate_secret(&state, &actor, &org, &endpoint_id, body.overlap_secs).await?;
    Ok(with_secret(StatusCode::OK, rotated))
}

/// One delivery attempt as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_id: String,
    /// The event's id, also its `webhook-id` header.
    pub event_id: String,
    pub event_type: String,
    /// 1-based.
    pub attempt: u32,
    /// `delivered`, `retrying`, `dead_lettered`, `skipped`, or `failed` (a test).
    pub outcome: String,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    /// Why it failed, in golos's words (the endpoint's answer is not kept).
    pub error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        Self {
            id: d.id.to_string(),
            endpoint_id: d.endpoint_id.to_string(),
            event_id: d.event_id,
            event_type: d.event_type.as_str().to_owned(),
            attempt: d.attempt,
            outcome: d.outcome.as_str().to_owned(),
            status_code: d.status_code,
            latency_ms: d.latency_ms,
            error: d.error,
            next_attempt_at: d.next_attempt_at.map(|t| t.to_string()),
            created_at: d.created_at.to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<DeliveryView>,
    pub next_cursor: Option<String>,
}

/// An endpoint's delivery attempts, newest first, kept 30 days (admin, editor).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpoint_id}/deliveries", tag = "webhook-endpoints",
    params(("endpoint_id" = String, Path), ListQuery), responses((status = 200, body = DeliveryList), (status = 404)))]
pub async fn deliveries(
    Authed { state, caller, .. }: Authed,
    Path(endpoint_id): Path<String>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<DeliveryList>> {
    let org = caller.member(Action::ReadWebhooks)?.id.clone();
    let endpoint = webhooks::get(&state, &org, &endpoint_id).await?;
    let page = state
        .stores
        .webhook_deliveries
        .list(&org, &endpoint.id, &query.page()?, state.clock.now())
        .await
        .map_err(crate::ControlError::from)?;
    Ok(Json(DeliveryList { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

/// Send a `webhook.test` event to this endpoint now (admin): one attempt, no retry, logged
/// with the deliveries; the answer is that attempt. Works on a disabled endpoint, to check it
/// before enabling it again.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpoint_id}/test", tag = "webhook-endpoints",
    params(("endpoint_id" = String, Path)), responses((status = 200, body = DeliveryView), (status = 404)))]
pub async fn test(
    Authed { state, caller, .. }: Authed,
    Path(endpoint_id): Path<String>,
) -> ApiResult<Json<DeliveryView>> {
    let org = caller.member(Action::ManageWebhooks)?.id.clone();
    Ok(Json(webhook_delivery::send_test(&state, &org, &endpoint_id).await?.into()))
}
