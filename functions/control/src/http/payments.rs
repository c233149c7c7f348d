//! `/webhooks/payments/*`: payment notifications. Unauthenticated by API key: a signed
//! provider's HMAC is checked here, YooKassa's source address too; what they report is then
//! applied (or, for YooKassa, confirmed with its API first) by [`crate::payments`].

use super::error::{ApiError, ApiResult};
use super::middleware::RequestContext;
use crate::payments::{self, PaymentOutcome, SignedPayment, REPLAY_WINDOW_SECS, SIGNATURE_HEADER};
use crate::state::ControlState;
use crate::ControlError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use golos_ports::PortError;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::net::IpAddr;
use utoipa::ToSchema;

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

impl From<PaymentOutcome> for NotificationOutcome {
    fn from(outcome: PaymentOutcome) -> Self {
        match outcome {
            PaymentOutcome::Applied(key) => Self { status: "applied", key: Some(key) },
            PaymentOutcome::Duplicate(key) => Self { status: "duplicate", key: Some(key) },
            PaymentOutcome::Ignored => Self { status: "ignored", key: None },
        }
    }
}

/// The notification envelope YooKassa posts.
#[derive(Debug, Deserialize, ToSchema)]
pub struct YookassaNotification {
    /// Always `notification`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `payment.succeeded`, `payment.canceled`, `payment.waiting_for_capture`, `refund.succeeded`.
    pub event: String,
    /// The payment or refund; only its `id` is used.
    #[schema(value_type = Object)]
    pub object: NotifiedObject,
}

#[derive(Debug, Deserialize)]
pub struct NotifiedObject {
    pub id: String,
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

/// A use-case's refusal, logged with the provider and the sender's address.
fn refused(error: ControlError, provider: &str, context: &RequestContext) -> ApiError {
    if !matches!(error, ControlError::Port(_) | ControlError::Unavailable { .. }) {
        tracing::warn!(provider, client_ip = %context.client_ip, "payment notification refused: {error}");
    }
    error.into()
}

/// Receive a signed payment notification.
#[utoipa::path(post, path = "/webhooks/payments/{provider}", tag = "payments", security(()),
    params(("provider" = String, Path, description = "provider name, [a-z0-9-]{1,32}"), ("X-Golos-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    request_body = SignedNotification,
    responses((status = 200, body = NotificationOutcome), (status = 401, description = "bad_signature or stale_signature"), (status = 503, description = "retry later")))]
pub async fn receive_signed(
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
    let secret = match state.secrets.get(&payments::secret_name(&provider)).await {
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
    let payment = SignedPayment {
        provider: provider.clone(),
        event: notification.event,
        id: notification.id,
        org_id: notification.org_id,
        amount_kopecks: notification.amount_kopecks,
    };
    let outcome = payments::apply_signed(&state, payment).await.map_err(|e| refused(e, &provider, &context))?;
    if let PaymentOutcome::Applied(key) | PaymentOutcome::Duplicate(key) = &outcome {
        tracing::info!(provider, key = %key, "payment notification");
    }
    Ok(Json(outcome.into()))
}

/// Receive a YooKassa notification.
#[utoipa::path(post, path = "/webhooks/payments/yookassa", tag = "payments", security(()),
    request_body = YookassaNotification,
    responses((status = 200, body = NotificationOutcome), (status = 403, description = "ip_not_allowed"), (status = 422, description = "the API did not confirm the notification"), (status = 503, description = "YooKassa could not be asked; retry later")))]
pub async fn receive_yookassa(
    State(state): State<ControlState>,
    Extension(context): Extension<RequestContext>,
    body: Bytes,
) -> ApiResult<Json<NotificationOutcome>> {
    let allowed = context
        .client_ip
        .parse::<IpAddr>()
        // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        .map(|ip| ip.to_canonical())
        .is_ok_and(|ip| state.config.yookassa.allowed_networks.iter().any(|net| net.contains(&ip)));
    if !allowed {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "ip_not_allowed",
            "notifications are accepted only from YooKassa's published addresses",
            "yookassa",
            &context,
        ));
    }
    let notification: YookassaNotification = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_notification", &e.to_string(), "yookassa", &context))?;
    if notification.kind != "notification" || !payments::valid_object_id(&notification.object.id) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_notification",
            "expected type \"notification\" and an object id",
            "yookassa",
            &context,
        ));
    }
    let outcome = payments::confirm_yookassa(&state, &notification.event, notification.object.id)
        .await
        .map_err(|e| refused(e, "yookassa", &context))?;
    if let PaymentOutcome::Applied(key) | PaymentOutcome::Duplicate(key) = &outcome {
        tracing::info!(provider = "yookassa", key = %key, "payment notification");
    }
    Ok(Json(outcome.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::sign;

    #[test]
    fn signatures_parse_back() {
        let header = sign("s3cret", 1_795_305_600, b"{}");
        let (t, digest) = parse_signature(&header).unwrap();
        assert_eq!((t, digest.len()), (1_795_305_600, 32));
        assert!(parse_signature("t=1").is_none());
        assert!(parse_signature("v1=zz").is_none());
    }
}
