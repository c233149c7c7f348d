//! Customer webhook deliveries against real HTTP receivers in the test: signatures checked
//! by the Standard Webhooks reference implementation, retries with per-message delays on the
//! backend's queue (SQLite, or SQS on moto), dead letters, redrive, and disabling.
//!
//! The queue's delays are real seconds on both backends (SQS counts whole seconds); the
//! app's clock is manual, so the failure window of an endpoint is exact.

use super::TestApp;
use golos_control::webhook_delivery::deliver_ready;
use golos_control::ControlConfig;
use golos_domain::events::{WebhookEvent, WebhookEventType};
use golos_domain::OrgId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The suite's configuration for these cases: loopback receivers allowed, a short timeout
/// standing in for the 10 s one.
pub fn config() -> ControlConfig {
    let mut config = ControlConfig {
        egress: golos_egress::EgressAllowlist::parse("127.0.0.1/32").unwrap(),
        ..ControlConfig::default()
    };
    config.webhooks.timeout = Duration::from_millis(700);
    config
}

/// What a receiver saw of one request.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug, Default)]
struct Script {
    /// Answers to give, in order; once empty, `otherwise`.
    answers: VecDeque<(u16, Duration)>,
    otherwise: u16,
    received: Vec<Received>,
}

/// A webhook receiver on a loopback port: answers as scripted and keeps what it got.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script { otherwise: 200, ..Script::default() }));
        let shared = Arc::clone(&script);
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let script = Arc::clone(&shared);
            async move {
                let (status, delay) = {
                    let mut script = script.lock().unwrap();
                    let mut copied = reqwest::header::HeaderMap::new();
                    for (name, value) in &headers {
                        if let (Ok(name), Ok(value)) = (
                            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
                        ) {
                            copied.insert(name, value);
                        }
                    }
                    script.received.push(Received { headers: copied, body: body.to_vec(), at: Instant::now() });
                    let otherwise = script.otherwise;
                    script.answers.pop_front().unwrap_or((otherwise, Duration::ZERO))
                };
                tokio::time::sleep(delay).await;
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url: format!("http://{addr}/hooks"), script }
    }

    pub fn answer(&self, answers: &[(u16, Duration)]) {
        self.script.lock().unwrap().answers.extend(answers.iter().copied());
    }

    pub fn otherwise(&self, status: u16) {
        self.script.lock().unwrap().otherwise = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

/// An HTTPS server whose certificate no public root signed: golos must not deliver to it.
async fn untrusted_tls_server() -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(include_bytes!("../fixtures/untrusted-cert.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(include_bytes!("../fixtures/untrusted-key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            // The client gives up during the handshake; nothing else is served.
            tokio::spawn(async move { drop(acceptor.accept(stream).await) });
        }
    });
    addr
}

/// Creates an endpoint of the admin's org; returns (id, secret).
async fn endpoint(app: &TestApp, admin: &str, url: &str, event_types: &[&str]) -> (String, String) {
    let created = app.post("/v1/webhook-endpoints", admin, &json!({"url": url, "event_types": event_types})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["endpoint"]["id"].as_str().unwrap().to_owned();
    (id, created.body["secret"].as_str().unwrap().to_owned())
}

async fn emit(app: &TestApp, org: &str, kind: WebhookEventType, subject: &str, data: Value) -> String {
    let event = WebhookEvent::new(kind, subject, OrgId::parse(org).unwrap(), app.state.clock.now(), data);
    let id = event.id.clone();
    golos_control::call_events::emit(&app.state, event).await.unwrap();
    id
}

/// Runs the consumer until `done` holds, for at most `within` of real time (queue delays are
/// real). The app's clock moves on by a millisecond a round, so attempts are ordered.
async fn deliver_until(app: &TestApp, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    loop {
        while deliver_ready(&app.state).await > 0 {
            app.clock.advance_millis(1);
        }
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "not done within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets the consumer run a while longer (to see that nothing more arrives).
async fn settle(app: &TestApp, for_: Duration) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        while deliver_ready(&app.state).await > 0 {}
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn verify(secret: &str, received: &Received) {
    let reference = standardwebhooks::Webhook::new(secret).unwrap();
    let timestamp: i64 = received.header("webhook-timestamp").parse().unwrap();
    let expected = reference.sign(received.header("webhook-id"), timestamp, &received.body).unwrap();
    let signatures: Vec<&str> = received.header("webhook-signature").split(' ').collect();
    assert!(signatures.contains(&expected.as_str()), "{signatures:?} lacks {expected}");
}

async fn deliveries(app: &TestApp, key: &str, endpoint: &str) -> Vec<Value> {
    let page = app.get(&format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=100"), key).await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

async fn dead_letters(app: &TestApp, key: &str) -> Vec<Value> {
    let listed = app.get("/v1/dead-letters", key).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    listed.body["items"].as_array().unwrap().clone()
}

pub async fn failed_deliveries_are_retried_after_one_then_two_seconds(app: &TestApp) {
    let (org, admin) = app.org_with_admin().await;
    let receiver = Receiver::start().await;
    let unsubscribed = Receiver::start().await;
    let (id, secret) = endpoint(app, &admin, &receiver.url, &["call.started"]).await;
    endpoint(app, &admin, &unsubscribed.url, &["call.ended"]).await;
    receiver.answer(&[(500, Duration::ZERO), (503, Duration::ZERO)]);

    let event_id = emit(app, &org, WebhookEventType::CallStarted, "call_w1", json!({"call_id": "call_w1"})).await;
    deliver_until(app, Duration::from_secs(20), || receiver.received().len() >= 3).await;
    settle(app, Duration::from_millis(1500)).await;

    let got = receiver.received();
    assert_eq!(got.len(), 3, "two failures, then delivered once");
    for (n, request) in got.iter().enumerate() {
        assert_eq!(request.header("webhook-id"), event_id, "one id for every attempt");
        assert_eq!(request.header("x-webhook-attempt"), (n + 1).to_string());
        assert_eq!(request.header("content-type"), "application/json");
        verify(&secret, request);
        assert_eq!(request.json()["type"], "call.started");
        assert_eq!(request.json()["data"]["call_id"], "call_w1");
    }
    // Per-message delays of 1 s and 2 s (SQS rounds up to whole seconds; a little slack for
    // the polling).
    let gaps = [got[1].at - got[0].at, got[2].at - got[1].at];
    assert!(gaps[0] >= Duration::from_millis(900) && gaps[0] < Duration::from_millis(2600), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1900) && gaps[1] < Duration::from_millis(3600), "{gaps:?}");
    assert!(unsubscribed.received().is_empty(), "not subscribed to call.started");

    let log = deliveries(app, &admin, &id).await;
    let summary: Vec<(u64, &str, u64)> = log
        .iter()
        .map(|d| (d["attempt"].as_u64().unwrap(), d["outcome"].as_str().unwrap(), d["status_code"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, [(3, "delivered", 200), (2, "retrying", 503), (1, "retrying", 500)], "newest first");
    assert!(log[2]["next_attempt_at"].is_string() && log[0]["next_attempt_at"].is_null());
    assert_eq!(log[2]["error"], "the endpoint answered 500");
    let first = app.get(&format!("/v1/webhook-endpoints/{id}/deliveries?limit=1"), &admin).await;
    let cursor = first.body["next_cursor"].as_str().expect("a next page").to_owned();
    let second = app.get(&format!("/v1/webhook-endpoints/{id}/deliveries?limit=1&cursor={cursor}"), &admin).await;
    assert_eq!(second.body["items"][0]["attempt"], 2);

    // Another org sees none of it.
    let (_, stranger) = app.org_with_admin().await;
    let foreign = app.get(&format!("/v1/webhook-endpoints/{id}/deliveries"), &stranger).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(app.metrics.webhook_deliveries_succeeded_total.load(std::sync::atomic::Ordering::Relaxed), 1);
}

pub async fn permanent_refusals_are_dead_lettered_at_once_and_redriven(app: &TestApp) {
    let (org, admin) = app.org_with_admin().await;
    let editor = app.key_with_role(&admin, "editor").await;
    let receiver = Receiver::start().await;
    let (id, _) = endpoint(app, &admin, &receiver.url, &["balance.low"]).await;
    receiver.otherwise(404);

    let event_id = emit(app, &org, WebhookEventType::BalanceLow, "low_1", json!({"balance_kopecks": 100})).await;
    deliver_until(app, Duration::from_secs(10), || !receiver.received().is_empty()).await;
    settle(app, Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 1, "a 404 is not retried");
    let log = deliveries(app, &admin, &id).await;
    assert_eq!((log.len(), log[0]["outcome"].as_str()), (1, Some("dead_lettered")));

    let letters = dead_letters(app, &editor).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        (letter["reason"].as_str(), letter["status_code"].as_u64(), letter["endpoint_id"].as_str()),
        (Some("permanent_status"), Some(404), Some(id.as_str()))
    );
    assert_eq!((letter["event_id"].as_str(), letter["attempts"].as_u64()), (Some(event_id.as_str()), Some(1)));
    let (_, stranger) = app.org_with_admin().await;
    assert!(dead_letters(app, &stranger).await.is_empty(), "another org's dead letters are not listed");
    let call_events = app.get("/v1/dead-letters?queue=call-events", &admin).await;
    assert_eq!((call_events.status, call_events.code()), (StatusCode::FORBIDDEN, "operator_only"));
    let operator = app.get("/v1/dead-letters", super::OPERATOR_TOKEN).await;
    assert_eq!(operator.body["items"].as_array().map(Vec::len), Some(1), "the operator sees every org's");

    let by_editor = app.post("/v1/dead-letters/redrive", &editor, &json!({})).await;
    assert_eq!((by_editor.status, by_editor.code()), (StatusCode::FORBIDDEN, "insufficient_role"));
    let by_stranger =
        app.post("/v1/dead-letters/redrive", &stranger, &json!({"ids": [letter["id"].as_str().unwrap()]})).await;
    assert_eq!(by_stranger.body["redriven"], 0, "{:?}", by_stranger.body);

    // The receiver is fixed; a redrive delivers the event once more, and once only.
    receiver.otherwise(200);
    let redriven =
        app.post("/v1/dead-letters/redrive", &admin, &json!({"ids": [letter["id"].as_str().unwrap(), "nope"]})).await;
    assert_eq!(redriven.status, StatusCode::OK, "{:?}", redriven.body);
    assert_eq!((redriven.body["redriven"].as_u64(), &redriven.body["not_found"]), (Some(1), &json!(["nope"])));
    deliver_until(app, Duration::from_secs(10), || receiver.received().len() >= 2).await;
    settle(app, Duration::from_millis(1500)).await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!((got[1].header("webhook-id"), got[1].header("x-webhook-attempt")), (event_id.as_str(), "1"));
    assert!(dead_letters(app, &admin).await.is_empty());
    let audit = app.get("/v1/audit-log", &admin).await;
    assert!(
        audit.body["items"].as_array().unwrap().iter().any(|e| e["action"] == "dead_letters.redrive"),
        "{:?}",
        audit.body
    );
}

pub async fn slow_and_untrusted_endpoints_are_retried(app: &TestApp) {
    let (org, admin) = app.org_with_admin().await;
    let slow = Receiver::start().await;
    let (slow_id, _) = endpoint(app, &admin, &slow.url, &["call.started"]).await;
    // Slower than the timeout (700 ms here, 10 s by default), then quick.
    slow.answer(&[(200, Duration::from_millis(1500))]);
    let untrusted = untrusted_tls_server().await;
    let (tls_id, _) = endpoint(app, &admin, &format!("https://{untrusted}/hooks"), &["call.started"]).await;

    emit(app, &org, WebhookEventType::CallStarted, "call_s1", json!({"call_id": "call_s1"})).await;
    deliver_until(app, Duration::from_secs(15), || slow.received().len() >= 2).await;
    let slow_log = deliveries(app, &admin, &slow_id).await;
    let outcomes: Vec<(&str, Option<&str>)> =
        slow_log.iter().map(|d| (d["outcome"].as_str().unwrap(), d["error"].as_str())).collect();
    assert_eq!(outcomes, [("delivered", None), ("retrying", Some("the endpoint did not answer in time"))]);
    let tls_log = deliveries(app, &admin, &tls_id).await;
    assert!(!tls_log.is_empty());
    assert_eq!(
        (tls_log.last().unwrap()["outcome"].as_str(), tls_log.last().unwrap()["error"].as_str()),
        (Some("retrying"), Some("the endpoint's TLS certificate was not accepted"))
    );
}

pub async fn an_endpoint_failing_ten_times_in_an_hour_is_disabled(app: &TestApp) {
    let (org, admin) = app.org_with_admin().await;
    let failing = Receiver::start().await;
    let watcher = Receiver::start().await;
    let (id, _) = endpoint(app, &admin, &failing.url, &["call.ended"]).await;
    let (_, watcher_secret) = endpoint(app, &admin, &watcher.url, &["endpoint.disabled"]).await;
    let mut events = Vec::new();
    // 404s are failures that are not retried, so the count is exact. Six, then an hour
    // passes: those six no longer count.
    failing.otherwise(404);
    for n in 0..6 {
        events.push(emit(app, &org, WebhookEventType::CallEnded, &format!("call_d{n}"), json!({})).await);
    }
    deliver_until(app, Duration::from_secs(10), || failing.received().len() >= 6).await;
    app.clock.advance_millis(3_600_001);
    for n in 6..15 {
        events.push(emit(app, &org, WebhookEventType::CallEnded, &format!("call_d{n}"), json!({})).await);
    }
    deliver_until(app, Duration::from_secs(10), || failing.received().len() >= 15).await;
    let still = app.get(&format!("/v1/webhook-endpoints/{id}"), &admin).await;
    assert_eq!(still.body["enabled"], true, "nine failures within the hour: {:?}", still.body);

    // The tenth within the hour, a 500 whose retry is queued: the endpoint is disabled.
    failing.otherwise(500);
    events.push(emit(app, &org, WebhookEventType::CallEnded, "call_d15", json!({})).await);
    deliver_until(app, Duration::from_secs(10), || !watcher.received().is_empty()).await;
    let now = app.get(&format!("/v1/webhook-endpoints/{id}"), &admin).await;
    assert_eq!(now.body["enabled"], false, "{:?}", now.body);
    let told = &watcher.received()[0];
    verify(&watcher_secret, told);
    assert_eq!(
        (told.json()["type"].as_str(), told.json()["data"]["endpoint_id"].as_str()),
        (Some("endpoint.disabled"), Some(id.as_str()))
    );
    let audit = app.get("/v1/audit-log", &admin).await;
    let entry =
        audit.body["items"].as_array().unwrap().iter().find(|e| e["action"] == "webhook_endpoint.disable").cloned();
    assert_eq!(entry.map(|e| e["target"].clone()), Some(json!(id)));

    // Nothing more reaches a disabled endpoint: the pending retry becomes a dead letter.
    let before = failing.received().len();
    settle(app, Duration::from_millis(2500)).await;
    assert_eq!(failing.received().len(), before, "nothing is sent to a disabled endpoint");
    let letters = dead_letters(app, &admin).await;
    assert_eq!(letters.len(), 16, "{letters:?}");
    assert_eq!(letters.iter().filter(|l| l["reason"] == "endpoint_disabled").count(), 1, "{letters:?}");

    // Re-enabled with one PATCH, the receiver healthy, a redrive: every event arrives once.
    failing.otherwise(200);
    let enabled = app
        .call(Method::PATCH, &format!("/v1/webhook-endpoints/{id}"), Some(&admin), Some(&json!({"enabled": true})), &[])
        .await;
    assert_eq!(enabled.status, StatusCode::OK, "{:?}", enabled.body);
    let redriven = app.post("/v1/dead-letters/redrive", &admin, &json!({})).await;
    assert_eq!(redriven.body["redriven"], 16, "{:?}", redriven.body);
    let after_redrive = |receiver: &Receiver| -> Vec<String> {
        receiver.received()[before..].iter().map(|r| r.header("webhook-id").to_owned()).collect()
    };
    deliver_until(app, Duration::from_secs(15), || after_redrive(&failing).len() >= 16).await;
    settle(app, Duration::from_millis(1500)).await;
    let mut arrived = after_redrive(&failing);
    arrived.sort();
    let mut expected = events.clone();
    expected.sort();
    assert_eq!(arrived, expected, "each event once");
    assert!(dead_letters(app, &admin).await.is_empty());
}

pub async fn a_test_delivery_reports_how_the_endpoint_answers(app: &TestApp) {
    let (_, admin) = app.org_with_admin().await;
    let viewer = app.key_with_role(&admin, "viewer").await;
    let receiver = Receiver::start().await;
    let (id, secret) = endpoint(app, &admin, &receiver.url, &["call.ended"]).await;
    let tested = app.post(&format!("/v1/webhook-endpoints/{id}/test"), &admin, &json!({})).await;
    assert_eq!(tested.status, StatusCode::OK, "{:?}", tested.body);
    assert_eq!(
        (tested.body["outcome"].as_str(), tested.body["status_code"].as_u64(), tested.body["event_type"].as_str()),
        (Some("delivered"), Some(200), Some("webhook.test"))
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    verify(&secret, &got[0]);
    receiver.otherwise(410);
    let refused = app.post(&format!("/v1/webhook-endpoints/{id}/test"), &admin, &json!({})).await;
    assert_eq!((refused.body["outcome"].as_str(), refused.body["status_code"].as_u64()), (Some("failed"), Some(410)));
    assert_eq!(deliveries(app, &admin, &id).await.len(), 2);
    let by_viewer = app.post(&format!("/v1/webhook-endpoints/{id}/test"), &viewer, &json!({})).await;
    assert_eq!(by_viewer.status, StatusCode::FORBIDDEN);
    assert!(dead_letters(app, &admin).await.is_empty(), "a test is not dead-lettered");
}
