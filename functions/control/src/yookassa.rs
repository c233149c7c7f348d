//! YooKassa payment notifications (issue #4). YooKassa does not sign its HTTP
//! notifications, so a notification is only a hint: it is accepted only from YooKassa's
//! published address ranges, and the payment or refund it names is then fetched from the
//! YooKassa API (`GET /v3/payments/{id}`, `GET /v3/refunds/{id}`, Basic auth
//! `shopId:secretKey` from the `yookassa` secret). The amount, status and the org
//! (`metadata.org_id` of the payment) come from that answer, never from the notification.

use crate::error::{ApiError, ApiResult};
use crate::middleware::RequestContext;
use crate::signed_payments::NotificationOutcome;
use crate::state::ControlState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::{Kopecks, OrgId};
use golos_ports::{ApplyOutcome, PortError};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Duration;
use utoipa::ToSchema;

/// Name of the secret holding `shopId:secretKey`.
pub const SECRET_NAME: &str = "yookassa";

/// Where notifications may come from, as YooKassa publishes it
/// (<https://yookassa.ru/developers/using-api/webhooks#ip>).
pub const PUBLISHED_NETWORKS: [&str; 7] = [
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.156.11/32",
    "77.75.156.35/32",
    "77.75.154.128/25",
    "2a02:5180::/32",
];

#[derive(Debug, Clone)]
pub struct YookassaConfig {
    /// The API root, `https://api.yookassa.ru/v3` in production.
    pub api_base: String,
    /// Source networks notifications are accepted from.
    pub allowed_networks: Vec<IpNet>,
    /// Budget for confirming one notification against the API.
    pub timeout: Duration,
}

impl Default for YookassaConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.yookassa.ru/v3".to_owned(),
            allowed_networks: parse_networks(&PUBLISHED_NETWORKS.join(",")).expect("published ranges parse"),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Parses a comma-separated list of networks (`185.71.76.0/27`, `77.75.156.11`, `::1/128`).
/// A bare address is a network of one.
pub fn parse_networks(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not an IP network (like 185.71.76.0/27) or address"))
        })
        .collect()
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

#[derive(Debug, Deserialize)]
struct Amount {
    value: String,
    currency: String,
}

#[derive(Debug, Deserialize)]
struct Payment {
    id: String,
    status: String,
    #[serde(default)]
    paid: bool,
    amount: Amount,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
struct Refund {
    id: String,
    payment_id: String,
    status: String,
    amount: Amount,
}

fn refuse(status: StatusCode, code: &'static str, detail: &str, context: &RequestContext) -> ApiError {
    tracing::warn!(provider = "yookassa", code, client_ip = %context.client_ip, "payment notification refused: {detail}");
    ApiError::new(status, code, detail)
}

fn unavailable(detail: &str, context: &RequestContext) -> ApiError {
    tracing::error!(provider = "yookassa", client_ip = %context.client_ip, "cannot confirm a notification: {detail}");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
        "the payment could not be confirmed with YooKassa right now; retry later",
    )
}

/// YooKassa object ids are UUID-like; anything else is refused before it reaches a URL.
fn valid_object_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

enum Fetched<T> {
    Found(T),
    Missing,
}

async fn fetch<T: serde::de::DeserializeOwned>(
    state: &ControlState,
    credentials: &str,
    path: &str,
    context: &RequestContext,
) -> Result<Fetched<T>, ApiError> {
    let config = &state.config.yookassa;
    let (shop_id, secret_key) = credentials
        .split_once(':')
        .ok_or_else(|| unavailable("the `yookassa` secret must be `shopId:secretKey`", context))?;
    let url = format!("{}/{path}", config.api_base.trim_end_matches('/'));
    let response = state
        .http
        .get(&url)
        .basic_auth(shop_id, Some(secret_key))
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| unavailable(&format!("GET {path}: {e}"), context))?;
    match response.status() {
        s if s.is_success() => {
            let body = response.bytes().await.map_err(|e| unavailable(&format!("GET {path}: {e}"), context))?;
            serde_json::from_slice(&body)
                .map(Fetched::Found)
                .map_err(|e| unavailable(&format!("GET {path}: unexpected answer: {e}"), context))
        }
        reqwest::StatusCode::NOT_FOUND => Ok(Fetched::Missing),
        s => Err(unavailable(&format!("GET {path}: HTTP {s}"), context)),
    }
}

fn amount_in_roubles(amount: &Amount, context: &RequestContext) -> Result<Kopecks, ApiError> {
    if amount.currency != "RUB" {
        return Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_currency",
            "only RUB payments credit a balance",
            context,
        ));
    }
    Kopecks::parse_roubles(&amount.value)
        .map_err(|e| refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount", &e.to_string(), context))
}

async fn org_of(state: &ControlState, payment: &Payment, context: &RequestContext) -> Result<OrgId, ApiError> {
    let org = payment
        .metadata
        .as_ref()
        .and_then(|m| m.get("org_id"))
        .and_then(serde_json::Value::as_str)
        .and_then(|raw| OrgId::parse(raw).ok());
    match org {
        Some(org) if state.stores.orgs.get(&org).await?.is_some() => Ok(org),
        _ => Err(refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_org",
            "the payment's metadata.org_id is not an organisation",
            context,
        )),
    }
}

fn not_confirmed(what: &str, context: &RequestContext) -> ApiError {
    refuse(StatusCode::UNPROCESSABLE_ENTITY, "not_confirmed", what, context)
}

/// Receive a YooKassa notification.
#[utoipa::path(post, path = "/webhooks/payments/yookassa", tag = "payments", security(()),
    request_body = YookassaNotification,
    responses((status = 200, body = NotificationOutcome), (status = 403, description = "ip_not_allowed"), (status = 422, description = "the API did not confirm the notification"), (status = 503, description = "YooKassa could not be asked; retry later")))]
pub async fn receive(
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
            &context,
        ));
    }
    let notification: YookassaNotification = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_notification", &e.to_string(), &context))?;
    if notification.kind != "notification" || !valid_object_id(&notification.object.id) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "invalid_notification",
            "expected type \"notification\" and an object id",
            &context,
        ));
    }
    let id = notification.object.id;
    match notification.event.as_str() {
        "payment.waiting_for_capture" => {
            tracing::info!(provider = "yookassa", event = %notification.event, "notification acknowledged, nothing to do");
            return Ok(Json(NotificationOutcome { status: "ignored", key: None }));
        }
        "payment.succeeded" | "payment.canceled" | "refund.succeeded" => {}
        other => {
            // Payouts, deals and future events move no balance here; an error would only make
            // YooKassa resend them for a day.
            tracing::info!(provider = "yookassa", event = other, "notification of an unhandled event acknowledged");
            return Ok(Json(NotificationOutcome { status: "ignored", key: None }));
        }
    }
    let credentials = match state.secrets.get(SECRET_NAME).await {
        Ok(secret) => secret,
        Err(PortError::NotFound { .. }) => {
            return Err(unavailable("the `yookassa` secret is not configured", &context))
        }
        Err(other) => return Err(other.into()),
    };
    let credentials = credentials.expose();
    let (org, event) = if notification.event == "refund.succeeded" {
        let Fetched::Found(refund) = fetch::<Refund>(&state, credentials, &format!("refunds/{id}"), &context).await?
        else {
            return Err(not_confirmed("YooKassa does not know this refund", &context));
        };
        if refund.id != id || refund.status != "succeeded" || !valid_object_id(&refund.payment_id) {
            return Err(not_confirmed("YooKassa does not report this refund as succeeded", &context));
        }
        let amount = amount_in_roubles(&refund.amount, &context)?;
        let Fetched::Found(payment) =
            fetch::<Payment>(&state, credentials, &format!("payments/{}", refund.payment_id), &context).await?
        else {
            return Err(not_confirmed("YooKassa does not know the refunded payment", &context));
        };
        let org = org_of(&state, &payment, &context).await?;
        (org, LedgerEventKind::Refund { provider: PaymentProvider::Yookassa, refund_id: id, amount })
    } else {
        let Fetched::Found(payment) =
            fetch::<Payment>(&state, credentials, &format!("payments/{id}"), &context).await?
        else {
            return Err(not_confirmed("YooKassa does not know this payment", &context));
        };
        if payment.id != id {
            return Err(not_confirmed("YooKassa answered with another payment", &context));
        }
        if notification.event == "payment.canceled" {
            if payment.status != "canceled" {
                return Err(not_confirmed("YooKassa does not report this payment as canceled", &context));
            }
            // A canceled payment never moved money (only unconfirmed payments can be
            // canceled), so there is nothing to write.
            tracing::info!(provider = "yookassa", "payment canceled; nothing to credit");
            return Ok(Json(NotificationOutcome { status: "ignored", key: None }));
        }
        if payment.status != "succeeded" || !payment.paid {
            return Err(not_confirmed("YooKassa does not report this payment as succeeded", &context));
        }
        let amount = amount_in_roubles(&payment.amount, &context)?;
        let org = org_of(&state, &payment, &context).await?;
        (org, LedgerEventKind::PaymentCredit { provider: PaymentProvider::Yookassa, payment_id: id, amount })
    };
    let outcome = state.stores.ledger.apply(&org, &event, state.clock.now()).await.map_err(|e| match e {
        PortError::Invalid { reason } => {
            refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_notification", &reason, &context)
        }
        other => other.into(),
    })?;
    let status = if let ApplyOutcome::Duplicate(_) = outcome { "duplicate" } else { "applied" };
    tracing::info!(provider = "yookassa", %org, key = %outcome.entry().key, status, "payment notification");
    Ok(Json(NotificationOutcome { status, key: Some(outcome.entry().key.clone()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ranges_cover_yookassa_and_nothing_else() {
        let nets = YookassaConfig::default().allowed_networks;
        let allowed = |ip: &str| nets.iter().any(|n| n.contains(&ip.parse::<IpAddr>().unwrap()));
        for ip in [
            "185.71.76.1",
            "185.71.77.31",
            "77.75.153.100",
            "77.75.156.11",
            "77.75.156.35",
            "77.75.154.200",
            "2a02:5180::1",
        ] {
            assert!(allowed(ip), "{ip}");
        }
        for ip in ["185.71.76.32", "77.75.156.12", "127.0.0.1", "77.75.154.127", "::1"] {
            assert!(!allowed(ip), "{ip}");
        }
    }

    #[test]
    fn network_lists_parse_with_bare_addresses() {
        let nets = parse_networks(" 127.0.0.1, 10.0.0.0/8 ,::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("yookassa").is_err());
    }

    #[test]
    fn object_ids_are_url_safe() {
        assert!(valid_object_id("22d6d597-000f-5000-9000-145f6df21d6f"));
        assert!(!valid_object_id("../payments"));
        assert!(!valid_object_id(""));
    }
}
