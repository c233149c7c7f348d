//! A local server implementing the parts of the YooKassa API v3 that golos uses:
//! `GET /v3/payments/{id}` and `GET /v3/refunds/{id}` with HTTP Basic auth
//! (`shopId:secretKey`), answering YooKassa's object shapes and its error body
//! (`{"type":"error","code":…}`) — see <https://yookassa.ru/developers/api>.
//! Tests register payments and refunds, and can switch on an outage (HTTP 500).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub const SHOP_ID: &str = "506751";
pub const SECRET_KEY: &str = "test_sk_0123456789abcdef";

#[derive(Debug, Default)]
struct Objects {
    payments: Mutex<HashMap<String, Value>>,
    refunds: Mutex<HashMap<String, Value>>,
    outage: AtomicBool,
    requests: AtomicU64,
}

/// A running fake YooKassa API; dropped, it stops.
#[derive(Debug)]
pub struct YookassaApi {
    /// `http://127.0.0.1:<port>/v3`: what golos is configured with.
    pub base_url: String,
    objects: Arc<Objects>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for YookassaApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `shopId:secretKey`, as stored in the `yookassa` secret.
pub fn credentials() -> String {
    format!("{SHOP_ID}:{SECRET_KEY}")
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    (status, Json(json!({"type": "error", "id": id, "code": code, "description": description}))).into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(credentials());
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Basic {expected}"))
}

fn lookup(objects: &Objects, headers: &HeaderMap, table: &Mutex<HashMap<String, Value>>, id: &str) -> Response {
    objects.requests.fetch_add(1, Ordering::Relaxed);
    if objects.outage.load(Ordering::Relaxed) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", "Internal server error");
    }
    if !authorised(headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid_credentials", "Authentication by given credentials failed");
    }
    match table.lock().expect("lock").get(id) {
        Some(object) => Json(object.clone()).into_response(),
        None => {
            error(StatusCode::NOT_FOUND, "not_found", "Incorrect payment_id. Payment doesn't exist or access denied")
        }
    }
}

impl YookassaApi {
    pub async fn start() -> Self {
        let objects = Arc::new(Objects::default());
        let app = Router::new()
            .route(
                "/v3/payments/{id}",
                get(|State(o): State<Arc<Objects>>, headers: HeaderMap, Path(id): Path<String>| async move {
                    lookup(&o, &headers, &o.payments, &id)
                }),
            )
            .route(
                "/v3/refunds/{id}",
                get(|State(o): State<Arc<Objects>>, headers: HeaderMap, Path(id): Path<String>| async move {
                    lookup(&o, &headers, &o.refunds, &id)
                }),
            )
            .with_state(Arc::clone(&objects));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { base_url: format!("http://{addr}/v3"), objects, server }
    }

    /// Registers a payment as YooKassa reports it. `status`: `pending`,
    /// `waiting_for_capture`, `succeeded` or `canceled`; `amount` like `"100.00"`.
    pub fn add_payment(&self, id: &str, status: &str, amount: &str, currency: &str, org_id: Option<&str>) {
        let metadata = org_id.map_or_else(|| json!({}), |org| json!({"org_id": org}));
        let payment = json!({
            "id": id,
            "status": status,
            "paid": status == "succeeded" || status == "waiting_for_capture",
            "amount": {"value": amount, "currency": currency},
            "income_amount": {"value": amount, "currency": currency},
            "description": "Пополнение баланса golos",
            "recipient": {"account_id": SHOP_ID, "gateway_id": "2019208"},
            "payment_method": {"type": "bank_card", "id": id, "saved": false, "title": "Bank card *4444"},
            "captured_at": "2026-11-25T10:00:00.000Z",
            "created_at": "2026-11-25T09:59:00.000Z",
            "test": true,
            "refunded_amount": {"value": "0.00", "currency": currency},
            "refundable": status == "succeeded",
            "metadata": metadata,
        });
        self.objects.payments.lock().expect("lock").insert(id.to_owned(), payment);
    }

    pub fn add_refund(&self, id: &str, payment_id: &str, status: &str, amount: &str) {
        let refund = json!({
            "id": id,
            "payment_id": payment_id,
            "status": status,
            "created_at": "2026-11-25T11:00:00.000Z",
            "amount": {"value": amount, "currency": "RUB"},
            "description": "Возврат",
        });
        self.objects.refunds.lock().expect("lock").insert(id.to_owned(), refund);
    }

    /// While on, every request answers HTTP 500 as during an incident.
    pub fn set_outage(&self, on: bool) {
        self.objects.outage.store(on, Ordering::Relaxed);
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.objects.requests.load(Ordering::Relaxed)
    }
}

/// The body YooKassa posts for `event` about `object_id` (only `object.id` is trusted).
pub fn notification(event: &str, object_id: &str, claimed_amount: &str) -> Value {
    json!({
        "type": "notification",
        "event": event,
        "object": {"id": object_id, "status": event.rsplit('.').next(), "paid": true,
            "amount": {"value": claimed_amount, "currency": "RUB"}, "metadata": {}},
    })
}
