//! Request ids, authentication, roles, rate limits and `Idempotency-Key` replay.

use super::error::ApiError;
use crate::keys;
use crate::state::{ControlMetrics, ControlState};
use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use golos_domain::rbac::{can, Action, Role};
use golos_domain::{ApiKeyId, OrgId};
use golos_ports::{IdempotencyBegin, Org, StoredResponse};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

pub const API_KEY_HEADER: &str = "x-api-key";
pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The platform operator: creates organisations and their first keys.
    Operator,
    Member {
        org: Arc<Org>,
        key_id: ApiKeyId,
        role: Role,
    },
}

impl Caller {
    /// The member's org if its role allows `action`; operators are not org members.
    pub fn member(&self, action: Action) -> Result<&Org, ApiError> {
        match self {
            Self::Member { org, role, .. } if can(*role, action) => Ok(org),
            Self::Member { role, .. } => {
                Err(ApiError::forbidden("insufficient_role", format!("role {} may not {action:?}", role.as_str())))
            }
            Self::Operator => Err(ApiError::forbidden(
                "operator_not_member",
                "this route acts on the caller's organisation; use an organisation API key",
            )),
        }
    }

    /// Operator, or a member of `org_id` whose role allows `action`.
    pub fn operator_or_member(&self, org_id: &OrgId, action: Action) -> Result<(), ApiError> {
        match self {
            Self::Operator => Ok(()),
            Self::Member { org, .. } if &org.id != org_id => Err(ApiError::not_found(format!("organisation {org_id}"))),
            member @ Self::Member { .. } => member.member(action).map(|_| ()),
        }
    }

    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Self::Operator => Ok(()),
            Self::Member { .. } => Err(ApiError::forbidden("operator_only", "only the platform operator may do this")),
        }
    }

    /// How the audit log names the actor.
    pub fn actor(&self) -> String {
        match self {
            Self::Operator => "operator".into(),
            Self::Member { key_id, .. } => format!("key:{key_id}"),
        }
    }

    /// Whose `Idempotency-Key`s these are: one API key's. A replay goes only to the key that
    /// made the request, so it never hands one caller what another was given (a viewer
    /// repeating an admin's key creation gets nothing of it), and the key is authenticated,
    /// unrevoked and of the same role as when the request first ran.
    fn idempotency_scope(&self) -> String {
        match self {
            Self::Operator => "operator".into(),
            Self::Member { org, key_id, .. } => format!("{}/{key_id}", org.id),
        }
    }
}

/// Per-request context every handler can read.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub trace_id: String,
    pub client_ip: String,
}

/// Assigns the request id (kept from the client if sane) and trace id (from W3C
/// `traceparent` or new), echoes both, and wraps the request in a span carrying them.
pub async fn request_context(State(state): State<ControlState>, mut request: Request, next: Next) -> Response {
    ControlMetrics::incr(&state.metrics.requests_total);
    let headers = request.headers();
    let request_id = header_str(headers, REQUEST_ID_HEADER)
        .filter(|id| id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let trace_id = header_str(headers, "traceparent")
        .and_then(|tp| tp.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let client_ip = client_ip(&request, state.config.trust_forwarded_for);
    let context = RequestContext { request_id: request_id.clone(), trace_id: trace_id.clone(), client_ip };
    request.extensions_mut().insert(context);
    let path = loggable_path(request.uri().path());
    let span = tracing::info_span!("request", method = %request.method(), path = %path, request_id = %request_id, trace_id = %trace_id);
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    for (name, value) in [(REQUEST_ID_HEADER, request_id), (TRACE_ID_HEADER, trace_id)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The request path as it may be logged: a phone number in it (`/v1/numbers/+7…`) is
/// masked, because logs never carry raw numbers. The query is left out entirely.
fn loggable_path(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let decoded = segment.replace("%2B", "+").replace("%2b", "+");
            match golos_domain::PhoneNumber::parse(&decoded) {
                Ok(number) => number.masked(),
                Err(_) if decoded.starts_with('+') => "+<invalid number>".to_owned(),
                Err(_) => segment.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn client_ip(request: &Request, trust_forwarded_for: bool) -> String {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr);
    client_ip_of(request.headers(), peer, trust_forwarded_for)
}

/// The client's address as every limit and log of the platform sees it: with
/// `trust_forwarded_for`, the last `X-Forwarded-For` entry; otherwise (or without one) the
/// TCP peer; `"unknown"` with neither. Public so the worker's call sockets count clients the
/// same way as the API does.
pub fn client_ip_of(headers: &HeaderMap, peer: Option<SocketAddr>, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        // The last entry is the one our proxy appended; earlier ones are whatever the client
        // sent and could name any address (an allowlisted one, say).
        if let Some(last) = header_str(headers, "x-forwarded-for").and_then(|v| v.rsplit(',').next()) {
            return last.trim().to_owned();
        }
    }
    peer.map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
}

/// Authenticates `X-API-Key`, refuses keys in the URL, and applies the per-key+IP and
/// per-org rate limits through the shared counters.
pub async fn authenticate(State(state): State<ControlState>, mut request: Request, next: Next) -> Response {
    match authenticate_inner(&state, &mut request).await {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

async fn authenticate_inner(state: &ControlState, request: &mut Request) -> Result<(), ApiError> {
    let context = request
        .extensions()
        .get::<RequestContext>()
        .cloned()
        .ok_or_else(|| ApiError::internal("request context missing"))?;
    if let Some(query) = request.uri().query() {
        let lowered = query.to_ascii_lowercase();
        if ["api_key=", "apikey=", "api-key=", "key=", "x-api-key=", "token="]
            .iter()
            .any(|p| lowered.split('&').any(|pair| pair.starts_with(p)))
            || lowered.contains("gk_")
        {
            return Err(ApiError::bad_request("api_key_in_url", "API keys are accepted only in the X-API-Key header; a key sent in a URL must be considered leaked — revoke it"));
        }
    }
    let now = state.clock.now();
    // An address that keeps failing is answered 429 before any key is looked at, so keys
    // cannot be guessed at the rate of the network; its own good keys wait out the window too.
    let failures =
        state.stores.counters.count(&auth_failures_key(&context.client_ip), AUTH_FAILURE_WINDOW_MS, now).await?;
    if failures >= u64::from(state.config.auth_failures_per_ip_per_minute) {
        ControlMetrics::incr(&state.metrics.rate_limited_total);
        let retry_after =
            u64::try_from((AUTH_FAILURE_WINDOW_MS - now.as_millis().rem_euclid(AUTH_FAILURE_WINDOW_MS) + 999) / 1000)
                .unwrap_or(1);
        tracing::warn!(client_ip = %context.client_ip, failures, "authentication throttled for this address");
        return Err(ApiError {
            code: "auth_throttled",
            ..ApiError::rate_limited(retry_after, "too many failed authentications from this address; wait and retry")
        });
    }
    let Some(token) = header_str(request.headers(), API_KEY_HEADER).map(str::to_owned) else {
        return Err(auth_failed(state, &context, "missing X-API-Key header").await);
    };
    let caller = if let Some((key_id, secret)) = keys::parse(&token) {
        let record = state.stores.api_keys.get(&key_id).await?;
        let Some(record) = record.filter(|r| keys::verify(&state.pepper, secret, &r.secret_hash)) else {
            return Err(auth_failed(state, &context, "unknown key or wrong secret").await);
        };
        if !record.is_usable_at(now) {
            return Err(auth_failed(state, &context, "the key is revoked or expired").await);
        }
        let Some(org) = state.stores.orgs.get(&record.org_id).await? else {
            return Err(auth_failed(state, &context, "the key's organisation no longer exists").await);
        };
        if org.disabled {
            return Err(ApiError::forbidden("org_disabled", "this organisation is disabled"));
        }
        rate_limit(state, &org, &record.id, &context.client_ip).await?;
        Caller::Member { org: Arc::new(org), key_id: record.id, role: record.role }
    } else if state.operator_key_hash.as_deref().is_some_and(|hash| keys::verify(&state.pepper, &token, hash)) {
        Caller::Operator
    } else {
        return Err(auth_failed(state, &context, "malformed key").await);
    };
    request.extensions_mut().insert(caller);
    Ok(())
}

/// Failed authentications are counted per client address in fixed windows of a minute.
const AUTH_FAILURE_WINDOW_MS: i64 = 60_000;

fn auth_failures_key(client_ip: &str) -> String {
    format!("auth-fail:{client_ip}")
}

async fn auth_failed(state: &ControlState, context: &RequestContext, reason: &'static str) -> ApiError {
    ControlMetrics::incr(&state.metrics.auth_failures_total);
    let now = state.clock.now();
    if let Err(err) =
        state.stores.counters.hit(&auth_failures_key(&context.client_ip), AUTH_FAILURE_WINDOW_MS, now).await
    {
        tracing::warn!(error = %err, "could not count a failed authentication for its address");
    }
    let alert_at = u64::from(golos_domain::plans::Quotas::DEFAULT.failed_auth_alert_per_hour);
    match state.stores.counters.hit("auth-failures", 3_600_000, state.clock.now()).await {
        Ok(count) if count == alert_at => {
            tracing::error!(
                alert = "auth_failures_per_hour",
                count,
                "failed authentications reached the alert threshold this hour"
            );
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not count a failed authentication"),
    }
    tracing::warn!(reason, client_ip = %context.client_ip, "authentication failed");
    ApiError::unauthorized(reason)
}

async fn rate_limit(state: &ControlState, org: &Org, key: &ApiKeyId, ip: &str) -> Result<(), ApiError> {
    const WINDOW_MS: i64 = 60_000;
    let now = state.clock.now();
    let retry_after = u64::try_from((WINDOW_MS - now.as_millis().rem_euclid(WINDOW_MS) + 999) / 1000).unwrap_or(1);
    let per_key = state.stores.counters.hit(&format!("rl:key:{key}:{ip}"), WINDOW_MS, now).await?;
    if per_key > u64::from(org.quotas.api_requests_per_minute_per_key) {
        ControlMetrics::incr(&state.metrics.rate_limited_total);
        return Err(ApiError::rate_limited(
            retry_after,
            format!("more than {} requests per minute with this key", org.quotas.api_requests_per_minute_per_key),
        ));
    }
    let per_org = state.stores.counters.hit(&format!("rl:org:{}", org.id), WINDOW_MS, now).await?;
    if per_org > u64::from(org.quotas.api_requests_per_minute_per_org) {
        ControlMetrics::incr(&state.metrics.rate_limited_total);
        return Err(ApiError::rate_limited(
            retry_after,
            format!(
                "more than {} requests per minute for this organisation",
                org.quotas.api_requests_per_minute_per_org
            ),
        ));
    }
    Ok(())
}

/// Marks a response that carries a secret shown once (a new API key's token). The
/// idempotency layer never stores such a response: a replay is answered `409
/// replay_of_secret` naming the resource, so no store holds the secret in plaintext.
#[derive(Debug, Clone)]
pub struct SecretInResponse {
    /// What the request created, e.g. the new key's id.
    pub resource_id: String,
}

/// `Idempotency-Key` on POST: the first request runs and its response is stored; a retry
/// with the same key, route and body by the same API key gets the stored response; the same
/// key with another route or body is refused. Failed (5xx) attempts release the key so a
/// retry can run, and a claim whose request never finishes lapses after
/// `idempotency_claim_ttl_ms` (seconds), not after the replay window.
pub async fn idempotency(State(state): State<ControlState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = header_str(request.headers(), "idempotency-key").map(str::to_owned) else {
        return next.run(request).await;
    };
    match idempotent(&state, key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn idempotent(state: &ControlState, key: String, request: Request, next: Next) -> Result<Response, Response> {
    if key.is_empty() || key.len() > 255 {
        return Err(ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1-255 characters")
            .into_response());
    }
    let Some(scope) = request.extensions().get::<Caller>().map(Caller::idempotency_scope) else {
        return Err(ApiError::unauthorized("authentication is required").into_response());
    };
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, state.config.max_body_bytes).await.map_err(|_| {
        ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body too large")
            .into_response()
    })?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.path());
    hasher.update([0]);
    hasher.update(&bytes);
    let fingerprint = format!("{:x}", hasher.finalize());
    let now = state.clock.now();
    let begun = state
        .stores
        .idempotency
        .begin(&scope, &key, &fingerprint, state.config.idempotency_claim_ttl_ms, now)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    match begun {
        IdempotencyBegin::Started => {}
        IdempotencyBegin::InProgress => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed",
            )
            .into_response());
        }
        IdempotencyBegin::Mismatch => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            )
            .into_response());
        }
        IdempotencyBegin::Completed(stored) => {
            ControlMetrics::incr(&state.metrics.idempotent_replays_total);
            return Ok(replay(stored));
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if response.status().is_server_error() {
        if let Err(err) = state.stores.idempotency.abandon(&scope, &key).await {
            tracing::warn!(error = %err, "could not release an idempotency key");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.map_err(|e| ApiError::internal(e).into_response())?;
    let stored = if let Some(secret) = parts.extensions.get::<SecretInResponse>() {
        replay_of_secret(&secret.resource_id)
    } else {
        let content_type =
            parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        StoredResponse { status: parts.status.as_u16(), content_type: content_type.to_owned(), body: body.to_vec() }
    };
    let expires_at = state.clock.now().plus_millis(state.config.idempotency_ttl_ms);
    if let Err(err) = state.stores.idempotency.complete(&scope, &key, &stored, expires_at).await {
        tracing::warn!(error = %err, "could not store an idempotent response");
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// What a replay of a secret-bearing response answers instead of the secret.
fn replay_of_secret(resource_id: &str) -> StoredResponse {
    let problem = ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "replay_of_secret",
        format!(
            "this request already ran and created {resource_id}; its response held a secret that is shown only once \
             and is not stored. Use {resource_id}, or revoke it and send a new request with a new Idempotency-Key"
        ),
    );
    let mut body = serde_json::to_value(problem.body()).unwrap_or_default();
    body["resource_id"] = serde_json::Value::String(resource_id.to_owned());
    StoredResponse { status: 409, content_type: "application/problem+json".into(), body: body.to_string().into_bytes() }
}

fn replay(stored: StoredResponse) -> Response {
    let status = axum::http::StatusCode::from_u16(stored.status).unwrap_or(axum::http::StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    if let Ok(ct) = HeaderValue::from_str(&stored.content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn phone_numbers_in_paths_are_masked() {
        assert_eq!(loggable_path("/v1/numbers/+79161234567"), "/v1/numbers/+7*****4567");
        assert_eq!(loggable_path("/v1/routing/%2B79161234567"), "/v1/routing/+7*****4567");
        assert_eq!(loggable_path("/v1/numbers/+7916123"), "/v1/numbers/+<invalid number>");
        assert_eq!(loggable_path("/v1/agents/agt_1"), "/v1/agents/agt_1");
    }
}
