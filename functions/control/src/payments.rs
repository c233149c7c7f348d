//! Payments (issue #4): notifications from providers, applied exactly once through the
//! ledger (idempotency key = provider + payment or refund id).
//!
//! - Signed providers: HMAC-SHA256 over `<timestamp>.<raw body>` in
//!   `X-Golos-Signature: t=<unix seconds>,v1=<hex>` with a five-minute replay window, checked
//!   by the HTTP layer before [`apply_signed`] sees the notification.
//! - YooKassa does not sign its notifications, so a notification is only a hint: the HTTP
//!   layer accepts it only from YooKassa's published address ranges, and [`confirm_yookassa`]
//!   fetches the payment or refund it names from the YooKassa API (`GET /v3/payments/{id}`,
//!   `GET /v3/refunds/{id}`, Basic auth `shopId:secretKey` from the `yookassa` secret). The
//!   amount, status and the org (`metadata.org_id` of the payment) come from that answer,
//!   never from the notification.

use crate::state::ControlState;
use crate::{ControlError, ControlResult};
use golos_domain::billing::{LedgerEventKind, PaymentProvider};
use golos_domain::{Kopecks, OrgId};
use golos_ports::{ApplyOutcome, PortError};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use serde::Deserialize;
use sha2::Sha256;
use std::net::IpAddr;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "x-golos-signature";
/// How far a signature's timestamp may be from now, either way.
pub const REPLAY_WINDOW_SECS: i64 = 300;

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

/// What a notification did to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Credited or refunded now; the ledger key.
    Applied(String),
    /// Seen before: nothing changed.
    Duplicate(String),
    /// A notification that moves no money (a canceled or uncaptured payment, an event
    /// golos does not handle).
    Ignored,
}

/// A payment or refund a signed provider reports.
#[derive(Debug, Clone)]
pub struct SignedPayment {
    pub provider: String,
    /// `payment.succeeded` or `refund.succeeded`.
    pub event: String,
    /// The provider's payment or refund id.
    pub id: String,
    pub org_id: String,
    pub amount_kopecks: i64,
}

async fn apply(state: &ControlState, org: &OrgId, event: &LedgerEventKind) -> ControlResult<PaymentOutcome> {
    let outcome = state.stores.ledger.apply(org, event, state.clock.now()).await.map_err(|e| match e {
        PortError::Invalid { reason } => ControlError::unprocessable("invalid_notification", reason),
        other => other.into(),
    })?;
    Ok(match outcome {
        ApplyOutcome::Duplicate(entry) => PaymentOutcome::Duplicate(entry.key),
        ApplyOutcome::Applied(entry) => PaymentOutcome::Applied(entry.key),
    })
}

/// Applies a notification whose signature the caller has checked.
pub async fn apply_signed(state: &ControlState, payment: SignedPayment) -> ControlResult<PaymentOutcome> {
    let org = match OrgId::parse(&payment.org_id).ok() {
        Some(org) if state.stores.orgs.get(&org).await?.is_some() => org,
        _ => return Err(ControlError::unprocessable("unknown_org", "org_id is not an organisation")),
    };
    let (amount, source) = (Kopecks::new(payment.amount_kopecks), PaymentProvider::Signed(payment.provider));
    let event = match payment.event.as_str() {
        "payment.succeeded" => LedgerEventKind::PaymentCredit { provider: source, payment_id: payment.id, amount },
        "refund.succeeded" => LedgerEventKind::Refund { provider: source, refund_id: payment.id, amount },
        _ => {
            return Err(ControlError::unprocessable(
                "unknown_event",
                "event must be payment.succeeded or refund.succeeded",
            ))
        }
    };
    apply(state, &org, &event).await
}

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

fn unavailable(detail: &str) -> ControlError {
    tracing::error!(provider = "yookassa", "cannot confirm a notification: {detail}");
    ControlError::unavailable(
        "provider_unavailable",
        "the payment could not be confirmed with YooKassa right now; retry later",
    )
}

fn not_confirmed(what: &str) -> ControlError {
    ControlError::unprocessable("not_confirmed", what)
}

/// YooKassa object ids are UUID-like; anything else is refused before it reaches a URL.
pub fn valid_object_id(id: &str) -> bool {
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
) -> ControlResult<Fetched<T>> {
    let config = &state.config.yookassa;
    let (shop_id, secret_key) =
        credentials.split_once(':').ok_or_else(|| unavailable("the `yookassa` secret must be `shopId:secretKey`"))?;
    let url = format!("{}/{path}", config.api_base.trim_end_matches('/'));
    let response = state
        .http
        .get(&url)
        .basic_auth(shop_id, Some(secret_key))
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| unavailable(&format!("GET {path}: {e}")))?;
    match response.status() {
        s if s.is_success() => {
            let body = response.bytes().await.map_err(|e| unavailable(&format!("GET {path}: {e}")))?;
            serde_json::from_slice(&body)
                .map(Fetched::Found)
                .map_err(|e| unavailable(&format!("GET {path}: unexpected answer: {e}")))
        }
        reqwest::StatusCode::NOT_FOUND => Ok(Fetched::Missing),
        s => Err(unavailable(&format!("GET {path}: HTTP {s}"))),
    }
}

fn amount_in_roubles(amount: &Amount) -> ControlResult<Kopecks> {
    if amount.currency != "RUB" {
        return Err(ControlError::unprocessable("unsupported_currency", "only RUB payments credit a balance"));
    }
    Kopecks::parse_roubles(&amount.value).map_err(|e| ControlError::unprocessable("invalid_amount", e.to_string()))
}

async fn org_of(state: &ControlState, payment: &Payment) -> ControlResult<OrgId> {
    let org = payment
        .metadata
        .as_ref()
        .and_then(|m| m.get("org_id"))
        .and_then(serde_json::Value::as_str)
        .and_then(|raw| OrgId::parse(raw).ok());
    match org {
        Some(org) if state.stores.orgs.get(&org).await?.is_some() => Ok(org),
        _ => Err(ControlError::unprocessable("unknown_org", "the payment's metadata.org_id is not an organisation")),
    }
}

/// Confirms what a YooKassa notification (`event` about object `id`) claims with the
/// YooKassa API and applies it.
pub async fn confirm_yookassa(state: &ControlState, event: &str, id: String) -> ControlResult<PaymentOutcome> {
    match event {
        "payment.waiting_for_capture" => {
            tracing::info!(provider = "yookassa", event, "notification acknowledged, nothing to do");
            return Ok(PaymentOutcome::Ignored);
        }
        "payment.succeeded" | "payment.canceled" | "refund.succeeded" => {}
        other => {
            // Payouts, deals and future events move no balance here; an error would only make
            // YooKassa resend them for a day.
            tracing::info!(provider = "yookassa", event = other, "notification of an unhandled event acknowledged");
            return Ok(PaymentOutcome::Ignored);
        }
    }
    if !valid_object_id(&id) {
        return Err(ControlError::invalid("invalid_notification", "expected type \"notification\" and an object id"));
    }
    let credentials = match state.secrets.get(SECRET_NAME).await {
        Ok(secret) => secret,
        Err(PortError::NotFound { .. }) => return Err(unavailable("the `yookassa` secret is not configured")),
        Err(other) => return Err(other.into()),
    };
    let credentials = credentials.expose();
    let (org, ledger_event) = if event == "refund.succeeded" {
        let Fetched::Found(refund) = fetch::<Refund>(state, credentials, &format!("refunds/{id}")).await? else {
            return Err(not_confirmed("YooKassa does not know this refund"));
        };
        if refund.id != id || refund.status != "succeeded" || !valid_object_id(&refund.payment_id) {
            return Err(not_confirmed("YooKassa does not report this refund as succeeded"));
        }
        let amount = amount_in_roubles(&refund.amount)?;
        let Fetched::Found(payment) =
            fetch::<Payment>(state, credentials, &format!("payments/{}", refund.payment_id)).await?
        else {
            return Err(not_confirmed("YooKassa does not know the refunded payment"));
        };
        let org = org_of(state, &payment).await?;
        (org, LedgerEventKind::Refund { provider: PaymentProvider::Yookassa, refund_id: id, amount })
    } else {
        let Fetched::Found(payment) = fetch::<Payment>(state, credentials, &format!("payments/{id}")).await? else {
            return Err(not_confirmed("YooKassa does not know this payment"));
        };
        if payment.id != id {
            return Err(not_confirmed("YooKassa answered with another payment"));
        }
        if event == "payment.canceled" {
            if payment.status != "canceled" {
                return Err(not_confirmed("YooKassa does not report this payment as canceled"));
            }
            // A canceled payment never moved money (only unconfirmed payments can be
            // canceled), so there is nothing to write.
            tracing::info!(provider = "yookassa", "payment canceled; nothing to credit");
            return Ok(PaymentOutcome::Ignored);
        }
        if payment.status != "succeeded" || !payment.paid {
            return Err(not_confirmed("YooKassa does not report this payment as succeeded"));
        }
        let amount = amount_in_roubles(&payment.amount)?;
        let org = org_of(state, &payment).await?;
        (org, LedgerEventKind::PaymentCredit { provider: PaymentProvider::Yookassa, payment_id: id, amount })
    };
    apply(state, &org, &ledger_event).await
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
    fn yookassa_object_ids_are_url_safe() {
        assert!(valid_object_id("22d6d597-000f-5000-9000-145f6df21d6f"));
        assert!(!valid_object_id("../payments"));
        assert!(!valid_object_id(""));
    }
}
