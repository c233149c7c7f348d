//! An HTTP proxy in front of moto that answers chosen AWS operations with real AWS error
//! responses, so the real SDK parses a real wire answer and the adapters' error mapping is
//! tested end to end. Everything else is forwarded unchanged.
//!
//! An operation is chosen by its `X-Amz-Target` header (`DynamoDB_20120810.TransactWriteItems`,
//! `AmazonSQS.SendMessage`, `TrentService.Decrypt`, …: every JSON-protocol call carries one).
//! A fault is answered a number of times ([`FaultProxy::fail_times`]) or for a time window
//! ([`FaultProxy::fail_for`]); each request while it is armed is answered by the fault and
//! never reaches moto, so it changes nothing there.
//!
//! ```ignore
//! let proxy = FaultProxy::start(&moto::endpoint()).await;
//! proxy.fail_times(target::TRANSACT_WRITE_ITEMS, Fault::transaction_canceled("ThrottlingError"), 3);
//! // point the AWS config's endpoint at proxy.endpoint
//! ```

use axum::body::{to_bytes, Body};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `X-Amz-Target` values of the operations tests fault most.
pub mod target {
    pub const TRANSACT_WRITE_ITEMS: &str = "DynamoDB_20120810.TransactWriteItems";
    pub const PUT_ITEM: &str = "DynamoDB_20120810.PutItem";
    pub const UPDATE_ITEM: &str = "DynamoDB_20120810.UpdateItem";
    pub const GET_ITEM: &str = "DynamoDB_20120810.GetItem";
    pub const SQS_SEND_MESSAGE: &str = "AmazonSQS.SendMessage";
    pub const KMS_DECRYPT: &str = "TrentService.Decrypt";
    pub const SECRETS_GET_SECRET_VALUE: &str = "secretsmanager.GetSecretValue";
}

/// An error answer, as the service sends it.
#[derive(Debug, Clone)]
pub enum Fault {
    /// DynamoDB's `TransactionCanceledException` (HTTP 400): one `CancellationReasons` entry
    /// per item of the request; the first item gets `reason` (`ValidationError`,
    /// `ThrottlingError`, `TransactionConflict`, `ConditionalCheckFailed`, …), the others
    /// `None`, as DynamoDB reports items that did not cause the cancellation.
    TransactionCanceled { reason: String },
    /// Any JSON-protocol error: `{"__type": type_, "message": message}` with `status`.
    /// `type_` is the full shape id, e.g. `com.amazonaws.dynamodb.v20120810#ThrottlingException`.
    Error { status: u16, type_: String, message: String },
}

impl Fault {
    pub fn transaction_canceled(reason: &str) -> Self {
        Self::TransactionCanceled { reason: reason.to_owned() }
    }

    pub fn error(status: u16, type_: &str, message: &str) -> Self {
        Self::Error { status, type_: type_.to_owned(), message: message.to_owned() }
    }

    fn response(&self, request_body: &[u8]) -> Response<Body> {
        let (status, body) = match self {
            Self::TransactionCanceled { reason } => {
                let items = serde_json::from_slice::<Value>(request_body)
                    .ok()
                    .and_then(|v| v.get("TransactItems").and_then(Value::as_array).map(Vec::len))
                    .unwrap_or(1)
                    .max(1);
                let reasons: Vec<Value> = (0..items)
                    .map(|i| {
                        if i == 0 {
                            json!({"Code": reason, "Message": format!("injected {reason}")})
                        } else {
                            json!({"Code": "None"})
                        }
                    })
                    .collect();
                let codes: Vec<&str> = reasons.iter().map(|r| r["Code"].as_str().unwrap_or("None")).collect();
                let body = json!({
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "Message": format!(
                        "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                        codes.join(", ")
                    ),
                    "CancellationReasons": reasons,
                });
                (400, body)
            }
            Self::Error { status, type_, message } => (*status, json!({"__type": type_, "message": message})),
        };
        Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
            .body(Body::from(body.to_string()))
            .expect("fault response")
    }
}

#[derive(Debug)]
struct Rule {
    target: String,
    fault: Fault,
    remaining: Option<u64>,
    until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Faults {
    rules: Mutex<Vec<Rule>>,
    injected: AtomicU64,
    forwarded: AtomicU64,
}

impl Faults {
    /// The fault for a request with this target, counting it down; expired rules go.
    fn take(&self, target: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().expect("rules");
        let now = Instant::now();
        rules.retain(|r| r.remaining != Some(0) && r.until.is_none_or(|u| now < u));
        let rule = rules.iter_mut().find(|r| r.target == target)?;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }
}

/// A running proxy; dropped, it stops.
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: what the AWS configuration's endpoint is set to.
    pub endpoint: String,
    faults: Arc<Faults>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (moto's endpoint).
    pub async fn start(upstream: &str) -> Self {
        let faults = Arc::new(Faults::default());
        let client = reqwest::Client::builder().build().expect("HTTP client");
        let upstream: Arc<str> = upstream.trim_end_matches('/').into();
        let state = Arc::clone(&faults);
        let app = Router::new().fallback(move |request: Request<Body>| {
            let (faults, client, upstream) = (Arc::clone(&state), client.clone(), Arc::clone(&upstream));
            async move { handle(&faults, &client, &upstream, request).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("fault proxy") });
        Self { endpoint: format!("http://{addr}"), faults, server }
    }

    /// Answers the next `times` requests for `target` with `fault`.
    pub fn fail_times(&self, target: &str, fault: Fault, times: u64) {
        self.arm(Rule { target: target.to_owned(), fault, remaining: Some(times), until: None });
    }

    /// Answers every request for `target` with `fault` for the next `window`.
    pub fn fail_for(&self, target: &str, fault: Fault, window: Duration) {
        self.arm(Rule { target: target.to_owned(), fault, remaining: None, until: Some(Instant::now() + window) });
    }

    /// Removes every armed fault: from now on everything is forwarded.
    pub fn heal(&self) {
        self.faults.rules.lock().expect("rules").clear();
    }

    /// How many requests were answered by a fault so far.
    pub fn injected(&self) -> u64 {
        self.faults.injected.load(Ordering::Relaxed)
    }

    /// How many requests were forwarded to the upstream so far.
    pub fn forwarded(&self) -> u64 {
        self.faults.forwarded.load(Ordering::Relaxed)
    }

    fn arm(&self, rule: Rule) {
        self.faults.rules.lock().expect("rules").push(rule);
    }
}

const HOP_BY_HOP: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "keep-alive"];

async fn handle(faults: &Faults, client: &reqwest::Client, upstream: &str, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        return plain(StatusCode::BAD_REQUEST, "unreadable request body");
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(fault) = faults.take(target) {
        faults.injected.fetch_add(1, Ordering::Relaxed);
        return fault.response(&body);
    }
    faults.forwarded.fetch_add(1, Ordering::Relaxed);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forward = client.request(parts.method.clone(), format!("{upstream}{path}")).body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            forward = forward.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match forward.send().await {
        Ok(answer) => answer,
        Err(err) => return plain(StatusCode::BAD_GATEWAY, &format!("upstream: {err}")),
    };
    let status = answer.status().as_u16();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name.as_str().as_bytes()), HeaderValue::from_bytes(value.as_bytes()))
            {
                headers.append(name, value);
            }
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::builder().status(status).body(Body::from(bytes)).expect("response");
    *response.headers_mut() = headers;
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder().status(status).body(Body::from(text.to_owned())).expect("response")
}
