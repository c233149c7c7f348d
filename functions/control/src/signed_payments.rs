//! Payment notifications from providers that sign their webhooks (issue #4): HMAC-SHA256
//! over `<timestamp>.<raw body>` in `X-Golos-Signature: t=<unix seconds>,v1=<hex>`, a
//! five-minute replay window, a constant-time check, and exactly-once application through
//! the ledger (idempotency key = provider + payment or refund id).

use crate::error::{ApiError, ApiResult};
use crate::middleware::RequestContext;
use crate::state::ControlState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::{Kopecks, OrgId};
use golos_ports::{ApplyOutcome, PortError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

pub const SIGNATURE_HEADER: &str = "x-golos-signature";
/// How far a signature's timestamp may be from now, either way.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// The body a signed provider sends.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedNotification {
    /// `payment.succeeded` or `refund.succeeded`.
    pub event: String,
    /// The provider's payment or refund id.
    pub id: String,
    pub org_id: String,
    /// Positive integer kopecks.
    pub amount_kopecks: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationOutcome {
    /// `applied` the first time, `duplicate` for a repeat (nothing changed), `ignored` for a
    /// notification that moves no money.
    pub status: &'static str,
    /// The ledger idempotency key, e.g. `payment:signed-acme:p_123`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The secret a provider's webhooks are signed with.
pub fn secret_name(provider: &str) -> String {
    format!("payments-hmac-{provider}")
}

/// `t=<secs>,v1=<hex>` for `body` at `timestamp_secs` (what a provider computes).
pub fn sign(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_secs}.").as_bytes());
    mac.update(body);
    let hex = crate::keys::hex(&mac.finalize().into_bytes());
    format!("t={timestamp_secs},v1={hex}")
}

fn parse_signature(header: &str) -> Option<(i64, Vec<u8>)> {
    let mut timestamp = None;
    let mut digest = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse().ok(),
            Some(("v1", hex)) if hex.len() == 64 => {
                digest = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
            }
            _ => {}
        }
    }
    Some((timestamp?, digest?))
}

fn refuse(status: StatusCode, code: &'static str, detail: &str, provider: &str, context: &RequestContext) -> ApiError {
    tracing::warn!(provider, code, client_ip = %context.client_ip, "payment notification refused: {detail}");
    ApiError::new(status, code, detail)
}

/// Receive a signed payment notification.
#[utoipa::path(post, path = "/webhooks/payments/{provider}", tag = "payments", security(()),
    params(("provider" = String, Path, description = "provider name, [a-z0-9-]{1,32}"), ("X-Golos-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    request_body = SignedNotification,
    responses((status = 200, body = NotificationOutcome), (status = 401, description = "bad_signature or stale_signature"), (status = 503, description = "retry later")))]
pub async fn receive(
    State(state): State<ControlState>,
    Extension(context): Extension<RequestContext>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<NotificationOutcome>> {
    if provider.is_empty()
        || provider.len() > 32
        || !provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ApiError::not_found(format!("payment provider {provider}")));
    }
    let secret = match state.secrets.get(&secret_name(&provider)).await {
        Ok(secret) => secret,
        Err(PortError::NotFound { .. }) => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                "no webhook secret is configured for this provider",
                &provider,
                &context,
            ))
        }
        Err(other) => return Err(other.into()),
    };
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some((timestamp, digest)) = parse_signature(header) else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "missing or malformed X-Golos-Signature",
            &provider,
            &context,
        ));
    };
    if state.clock.now().as_secs().abs_diff(timestamp) > REPLAY_WINDOW_SECS.unsigned_abs() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "stale_signature",
            "the signature's timestamp is outside the 5-minute window",
            &provider,
            &context,
        ));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    if mac.verify_slice(&digest).is_err() {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the signature does not match the body",
            &provider,
            &context,
        ));
    }
    let notification: SignedNotification = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_notification", &e.to_string(), &provider, &context))?;
    let org = OrgId::parse(&notification.org_id).ok();
    let org = match org {
        Some(org) if state.stores.orgs.get(&org).await?.is_some() => org,
        _ => {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_org",
                "org_id is not an organisation",
                &provider,
                &context,
            ))
        }
    };
    let (amount, source) = (Kopecks::new(notification.amount_kopecks), PaymentProvider::Signed(provider.clone()));
    let event = match notification.event.as_str() {
        "payment.succeeded" => LedgerEventKind::PaymentCredit { provider: source, payment_id: notification.id, amount },
        "refund.succeeded" => LedgerEventKind::Refund { provider: source, refund_id: notification.id, amount },
        _ => {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_event",
                "event must be payment.succeeded or refund.succeeded",
                &provider,
                &context,
            ))
        }
    };
    let outcome = state.stores.ledger.apply(&org, &event, state.clock.now()).await.map_err(|e| match e {
        PortError::Invalid { reason } => {
            refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_notification", &reason, &provider, &context)
        }
        other => other.into(),
    })?;
    let status = if let ApplyOutcome::Duplicate(_) = outcome { "duplicate" } else { "applied" };
    tracing::info!(provider, %org, key = %outcome.entry().key, status, "payment notification");
    Ok(Json(NotificationOutcome { status, key: Some(outcome.entry().key.clone()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_parse_back() {
        let header = sign("s3cret", 1_795_305_600, b"{}");
        let (t, digest) = parse_signature(&header).unwrap();
        assert_eq!((t, digest.len()), (1_795_305_600, 32));
        assert!(parse_signature("t=1").is_none());
        assert!(parse_signature("v1=zz").is_none());
    }
}
