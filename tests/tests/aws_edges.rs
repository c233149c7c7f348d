//! The store-level attacks of issue 14 against the real `golos serve --backend aws`, over
//! DynamoDB, SQS, KMS and Secrets Manager on a moto server: the platform's keys made by
//! `golos init-secrets --backend aws`, a viewer replaying an admin's key creation, and an
//! admin's edits racing the operator's disable.

use golos_tests::{golos_binary, AwsDeployment, RunningGolos};
use serde_json::{json, Value};

async fn provisioned() -> AwsDeployment {
    AwsDeployment::provision("edges").await
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http.request(method, url).header("X-API-Key", key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_backend_keeps_keys_apart_replays_private_and_disables_final() {
    let aws = provisioned().await;
    let env = aws.env();

    // The platform's keys come from golos, once, into Secrets Manager.
    let init = || {
        std::process::Command::new(golos_binary())
            .args(["init-secrets", "--backend", "aws"])
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .output()
            .expect("golos init-secrets")
    };
    let first = init();
    assert!(first.status.success(), "{first:?}");
    let created = String::from_utf8_lossy(&first.stdout).into_owned();
    for name in ["api-key-pepper", "call-token-key", "tool-signing-key", "operator-api-key"] {
        assert!(created.contains(&format!("created secret {name}")), "{created}");
    }
    let pepper = aws.platform.secrets().get("api-key-pepper").await.unwrap();
    assert!(String::from_utf8_lossy(&init().stdout).contains("nothing was changed"));
    assert_eq!(aws.platform.secrets().get("api-key-pepper").await.unwrap(), pepper, "never replaced");
    let operator = aws.platform.secrets().get("operator-api-key").await.unwrap().expose().to_owned();

    let golos = RunningGolos::start_aws(&env);
    let base = golos.base_url();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let (status, org) =
        call(&http, post.clone(), format!("{base}/v1/orgs"), &operator, Some(&json!({"name": "Кафе"})), &[]).await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let (_, admin) = call(
        &http,
        post.clone(),
        format!("{base}/v1/orgs/{org_id}/api-keys"),
        &operator,
        Some(&json!({"name": "owner", "role": "admin"})),
        &[],
    )
    .await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let (_, viewer) = call(
        &http,
        post.clone(),
        format!("{base}/v1/api-keys"),
        &admin,
        Some(&json!({"name": "v", "role": "viewer"})),
        &[],
    )
    .await;
    let viewer = viewer["token"].as_str().unwrap().to_owned();

    // A viewer replaying an admin's key creation gets nothing of it.
    let body = json!({"name": "deploy", "role": "admin"});
    let idem = [("Idempotency-Key", "create-admin-1")];
    let (status, created) = call(&http, post.clone(), format!("{base}/v1/api-keys"), &admin, Some(&body), &idem).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let (status, stolen) = call(&http, post.clone(), format!("{base}/v1/api-keys"), &viewer, Some(&body), &idem).await;
    assert_eq!((status, stolen["code"].as_str()), (403, Some("insufficient_role")), "{stolen}");
    assert!(!stolen.to_string().contains(&token));
    let (status, replay) = call(&http, post.clone(), format!("{base}/v1/api-keys"), &admin, Some(&body), &idem).await;
    assert_eq!((status, replay["code"].as_str()), (409, Some("replay_of_secret")), "{replay}");
    assert!(!replay.to_string().contains(&token));

    // Edits racing the operator's disable never undo it.
    let org_url = format!("{base}/v1/orgs/{org_id}");
    let edits =
        (0..6).map(|i| {
            let (http, url, admin) = (http.clone(), org_url.clone(), admin.clone());
            async move {
                call(&http, reqwest::Method::PATCH, url, &admin, Some(&json!({"settings": {"theme": i}})), &[]).await
            }
        });
    let disable_body = json!({"disabled": true});
    let disable = call(&http, reqwest::Method::PATCH, org_url.clone(), &operator, Some(&disable_body), &[]);
    let (edits, (status, disabled)) = tokio::join!(futures::future::join_all(edits), disable);
    assert_eq!(status, 200, "{disabled}");
    for (status, reply) in edits {
        assert!(
            status == 200
                || ["org_disabled", "concurrent_update"].contains(&reply["code"].as_str().unwrap_or_default()),
            "{status} {reply}"
        );
    }
    let (_, after) = call(&http, reqwest::Method::GET, org_url, &operator, None, &[]).await;
    assert_eq!(after["disabled"], true, "{after}");
}
