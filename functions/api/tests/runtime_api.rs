//! The real `golos-api` Lambda binary driven through the Lambda Runtime API, as the Lambda
//! service drives it: a local implementation of the Runtime API hands it API Gateway HTTP
//! API (v2) events and collects its responses; state lives in DynamoDB on moto.

use golos_testkit::lambda::{workspace_binary, LambdaProcess};
use serde_json::{json, Value};

struct Lambda {
    process: LambdaProcess,
    next_id: u64,
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
        let response = self.process.invoke(event).await;
        assert!(response.get("lambda_error").is_none(), "invocation error: {response}");
        let status = u16::try_from(response["statusCode"].as_u64().expect("statusCode")).expect("u16");
        let body = response["body"]
            .as_str()
            .map_or(Value::Null, |b| serde_json::from_str(b).unwrap_or(Value::String(b.to_owned())));
        (status, body)
    }
}

async fn start_function() -> Lambda {
    let table = golos_testkit::moto::unique_name("golos-fn");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision table");
    platform.put_secret("api-key-pepper", "lambda-test-pepper").await.expect("pepper");
    platform.put_secret("call-token-key", "lambda-test-call-token-key").await.expect("call-token key");
    platform.put_secret("operator-api-key", "operator-lambda-token-0123456789").await.expect("operator key");
    let process = LambdaProcess::start(&workspace_binary("golos-api"), "golos-api", &platform.config().to_env()).await;
    Lambda { process, next_id: 0 }
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
