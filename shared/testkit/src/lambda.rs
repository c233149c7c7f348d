//! A local implementation of the AWS Lambda Runtime API (the interface the Lambda service
//! offers a function's bootstrap process), so the real function binaries run in tests
//! exactly as in Lambda: the binary polls `invocation/next`, gets an event, and posts its
//! response or error. State lives on moto.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::Path as FsPath;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Mutex, Notify};

#[derive(Debug, Default)]
struct Runtime {
    pending: Mutex<VecDeque<(String, Value)>>,
    arrived: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Value>>>,
}

async fn next_invocation(State(rt): State<Arc<Runtime>>) -> impl IntoResponse {
    loop {
        if let Some((id, event)) = rt.pending.lock().await.pop_front() {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).expect("id"));
            headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(u64::MAX / 2));
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:golos-api"),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                HeaderValue::from_static("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"),
            );
            return (headers, event.to_string());
        }
        rt.arrived.notified().await;
    }
}

async fn invocation_result(
    State(rt): State<Arc<Runtime>>,
    Path((id, kind)): Path<(String, String)>,
    body: String,
) -> &'static str {
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let value = if kind == "error" { json!({"lambda_error": value}) } else { value };
    if let Some(waiter) = rt.waiting.lock().await.remove(&id) {
        let _ = waiter.send(value);
    }
    "accepted"
}

async fn init_error(body: String) -> &'static str {
    panic!("the function failed to initialise: {body}");
}

/// A function binary running against the local Runtime API.
#[derive(Debug)]
pub struct LambdaProcess {
    runtime: Arc<Runtime>,
    child: Child,
    next_id: u64,
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LambdaProcess {
    /// Starts `binary` as function `name` with `env` (plus the variables Lambda sets).
    pub async fn start(binary: &FsPath, name: &str, env: &[(String, String)]) -> Self {
        assert!(binary.exists(), "{} missing: build the workspace binaries first", binary.display());
        let runtime = Arc::new(Runtime::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(invocation_result))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&runtime));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("runtime api") });
        let mut command = Command::new(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start the function");
        Self { runtime, child, next_id: 0 }
    }

    /// Hands the function one event and returns its answer; an error answer comes back as
    /// `{"lambda_error": …}`.
    pub async fn invoke(&mut self, event: Value) -> Value {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        let (tx, rx) = oneshot::channel();
        self.runtime.waiting.lock().await.insert(id.clone(), tx);
        self.runtime.pending.lock().await.push_back((id, event));
        self.runtime.arrived.notify_waiters();
        self.runtime.arrived.notify_one();
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the function answered within 60 s")
            .expect("response")
    }
}

/// A binary of this workspace next to the running test (`target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(FsPath::parent).expect("target dir").join(name)
}

/// One record of an SQS event as the Lambda service hands it to a function, from `queue`.
pub fn sqs_record(queue: &str, message_id: &str, body: &str) -> Value {
    json!({
        "messageId": message_id,
        "receiptHandle": format!("receipt-{message_id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795305600000",
            "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795305600000"},
        "messageAttributes": {},
        "md5OfBody": "00000000000000000000000000000000",
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
        "awsRegion": "us-east-1"
    })
}
