//! The real `golos-api` Lambda binary driven through the Lambda Runtime API, as the Lambda
//! service drives it: a local implementation of the Runtime API hands it API Gateway HTTP
//! API (v2) events and collects its responses; state lives in DynamoDB on moto.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Mutex, Notify};

#[derive(Default)]
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

struct Lambda {
    runtime: Arc<Runtime>,
    child: Child,
    next_id: u64,
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lambda {
    async fn invoke(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.next_id += 1;
        let id = format!("req-{}", self.next_id);
        let header_map: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| ((*k).to_lowercase(), json!(v)))
            .chain([("content-type".into(), json!("application/json"))])
            .collect();
        let event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": header_map,
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.golos.test", "domainPrefix": "api",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
                "requestId": id, "routeKey": "$default", "stage": "$default", "time": "22/Nov/2026:10:00:00 +0000", "timeEpoch": 1_795_341_600_000_u64
            },
            "body": body.map(Value::to_string),
            "isBase64Encoded": false
        });
        let (tx, rx) = oneshot::channel();
        self.runtime.waiting.lock().await.insert(id.clone(), tx);
        self.runtime.pending.lock().await.push_back((id, event));
        self.runtime.arrived.notify_waiters();
        self.runtime.arrived.notify_one();
        let response = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the function answered within 60 s")
            .expect("response");
        assert!(response.get("lambda_error").is_none(), "invocation error: {response}");
        let status = u16::try_from(response["statusCode"].as_u64().expect("statusCode")).expect("u16");
        let body = response["body"]
            .as_str()
            .map_or(Value::Null, |b| serde_json::from_str(b).unwrap_or(Value::String(b.to_owned())));
        (status, body)
    }
}

fn function_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.parent().and_then(std::path::Path::parent).expect("target dir").join("golos-api");
    assert!(bin.exists(), "{} missing: build the workspace binaries first", bin.display());
    bin
}

async fn start_function() -> Lambda {
    let endpoint = golos_testkit::moto::endpoint();
    let table = golos_testkit::moto::unique_name("golos-fn");
    let config = golos_aws::AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(endpoint.clone()),
        table_name: table.clone(),
        queue_prefix: table.clone(),
        kms_key_id: None,
        secrets_prefix: table.clone(),
    };
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision table");
    platform.put_secret("api-key-pepper", "lambda-test-pepper").await.expect("pepper");
    platform.put_secret("operator-api-key", "operator-lambda-token-0123456789").await.expect("operator key");

    let runtime = Arc::new(Runtime::default());
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(invocation_result))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(Arc::clone(&runtime));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("runtime api") });

    let child = Command::new(function_binary())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "golos-api")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/golos-api")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("GOLOS_AWS_REGION", "us-east-1")
        .env("GOLOS_AWS_ENDPOINT_URL", &endpoint)
        .env("GOLOS_TABLE", &table)
        .env("GOLOS_QUEUE_PREFIX", &table)
        .env("GOLOS_SECRETS_PREFIX", &table)
        .env("GOLOS_KMS_KEY_ID", platform.config().kms_key_id.clone().expect("provisioned key"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the function");
    Lambda { runtime, child, next_id: 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_gateway_events_through_the_runtime_api() {
    let mut lambda = start_function().await;
    let (status, health) = lambda.invoke("GET", "/health", &[], None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["checks"]["dynamodb"], "ok");

    let operator = [("X-API-Key", "operator-lambda-token-0123456789")];
    let (status, org) = lambda.invoke("POST", "/v1/orgs", &operator, Some(&json!({"name": "ООО Лямбда"}))).await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().expect("org id");
    let (status, key) = lambda
        .invoke(
            "POST",
            &format!("/v1/orgs/{org_id}/api-keys"),
            &operator,
            Some(&json!({"name": "owner", "role": "admin"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let admin = [("X-API-Key", key["token"].as_str().expect("token"))];
    let (status, agents) = lambda.invoke("GET", "/v1/agents", &admin, None).await;
    assert_eq!((status, agents["items"].as_array().map(Vec::len)), (200, Some(0)));
    let (status, audit) = lambda.invoke("GET", "/v1/audit-log", &admin, None).await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["items"][0]["ip"], "203.0.113.7", "the client address comes from the API Gateway request context");
    let (status, problem) = lambda.invoke("GET", "/v1/agents", &[("X-API-Key", "wrong")], None).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")));
}
