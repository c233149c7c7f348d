//! The black-box API suite: a real HTTP server on port 0, a real HTTP client, and the
//! control plane over whichever adapter the including test file wires (embedded SQLite or
//! AWS on moto). Time is a `ManualClock`, so rate-limit windows and key expiry are exact.

#![allow(dead_code)]

pub mod cases;
pub mod spending;
pub mod webhooks;
#[macro_use]
pub mod macros;

use golos_control::{ControlConfig, ControlMetrics, ControlState, EventQueues};
use golos_domain::Timestamp;
use golos_ports::{
    AuditLog, CallStore, Crypto, HealthCheck, ManualClock, NumberStore, SecretString, Secrets, Stores, UuidIds,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

pub const T0: Timestamp = Timestamp::from_millis(1_795_305_600_000);
pub const OPERATOR_TOKEN: &str = "operator-token-for-tests-0123456789";

pub struct Backend {
    pub stores: Stores,
    pub numbers: Arc<dyn NumberStore>,
    pub calls: Arc<dyn CallStore>,
    pub audit: Arc<dyn AuditLog>,
    pub crypto: Arc<dyn Crypto>,
    pub secrets: Arc<dyn Secrets>,
    pub health: Arc<dyn HealthCheck>,
    pub queues: EventQueues,
    /// Keeps a temp dir or similar alive for the app's lifetime.
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

pub struct TestApp {
    pub base: String,
    pub clock: ManualClock,
    pub state: ControlState,
    pub metrics: Arc<ControlMetrics>,
    pub http: reqwest::Client,
    _backend_guard: Box<dyn std::any::Any + Send + Sync>,
}

/// The embedded backend in a temp dir; `prepare` may put secrets in place before use.
pub fn local_backend(prepare: impl FnOnce(&golos_local::LocalPlatform)) -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn golos_ports::Clock> = Arc::new(golos_ports::SystemClock);
    let platform = golos_local::LocalPlatform::open(dir.path(), clock).expect("open local platform");
    prepare(&platform);
    let queue = |name: &str| platform.queue(golos_ports::QueueConfig::new(name)).expect("queue");
    Backend {
        stores: platform.stores(),
        numbers: platform.numbers(),
        calls: platform.calls(),
        audit: platform.audit(),
        crypto: platform.crypto(),
        secrets: platform.secrets(),
        health: platform.health(),
        queues: EventQueues { call_events: queue(EventQueues::CALL_EVENTS), webhooks: queue(EventQueues::WEBHOOKS) },
        guard: Box::new((dir, platform)),
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, ControlConfig::default()).await
}

pub async fn spawn_app_with(backend: Backend, config: ControlConfig) -> TestApp {
    let clock = ManualClock::new(T0);
    let pepper = SecretString::new("test-pepper");
    let metrics = Arc::new(ControlMetrics::default());
    let webhook_http = golos_egress::net::EgressClient::new(config.egress.clone()).expect("webhook client");
    let state = ControlState {
        stores: backend.stores,
        numbers: backend.numbers,
        calls: backend.calls,
        audit: backend.audit,
        crypto: backend.crypto,
        secrets: backend.secrets,
        clock: Arc::new(clock.clone()),
        ids: Arc::new(UuidIds),
        operator_key_hash: Some(golos_control::keys::hash_secret(&pepper, OPERATOR_TOKEN)),
        pepper,
        call_token_key: SecretString::new("test-call-token-key"),
        config,
        metrics: Arc::clone(&metrics),
        health_checks: Arc::new(vec![backend.health]),
        queues: backend.queues,
        http: reqwest::Client::new(),
        webhook_http,
    };
    let app = golos_control::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
    });
    TestApp {
        base: format!("http://{addr}"),
        clock,
        state,
        metrics,
        http: reqwest::Client::new(),
        _backend_guard: backend.guard,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str, key: &str) -> Reply {
        self.call(Method::GET, path, Some(key), None, &[]).await
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(key), Some(body), &[]).await
    }

    /// Creates an org as the operator and returns (org id, admin token).
    pub async fn org_with_admin(&self) -> (String, String) {
        let org = self.post("/v1/orgs", OPERATOR_TOKEN, &json!({"name": "Кафе «Ромашка»", "plan": "start"})).await;
        assert_eq!(org.status, StatusCode::CREATED, "{:?}", org.body);
        let org_id = org.body["id"].as_str().expect("org id").to_owned();
        let key = self
            .post(&format!("/v1/orgs/{org_id}/api-keys"), OPERATOR_TOKEN, &json!({"name": "owner", "role": "admin"}))
            .await;
        assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.body);
        (org_id, key.body["token"].as_str().expect("token").to_owned())
    }

    /// A key of `role` in the admin's org.
    pub async fn key_with_role(&self, admin: &str, role: &str) -> String {
        let key = self.post("/v1/api-keys", admin, &json!({"name": format!("{role} key"), "role": role})).await;
        assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.body);
        key.body["token"].as_str().expect("token").to_owned()
    }

    pub async fn create_agent(&self, key: &str, name: &str) -> Reply {
        self.post("/v1/agents", key, &agent_body(name)).await
    }
}

pub fn agent_body(name: &str) -> Value {
    json!({
        "name": name,
        "system_prompt": "You are the friendly host of a small café.",
        "greeting": "Hello, Café Romashka!",
        "language": "en-US",
        "voice": {"provider": "espeak_ng", "voice_id": "en-us"},
        "tools": [
            {"type": "function", "name": "book_table", "description": "Book a table",
             "parameters": {"type": "object", "properties": {"guests": {"type": "integer"}}, "required": ["guests"]},
             "url": "https://cafe.example/book"},
            {"type": "end_call"}
        ],
        "faq": [{"questions": ["when are you open"], "answer": "From nine to nine."}]
    })
}
