//! The real `golos serve --backend aws` with DynamoDB answering through a fault proxy
//! (`golos_testkit::fault_proxy`, in front of moto) — issue 15's "retryable means
//! retryable": a transaction DynamoDB cancels for `ValidationError`, `ThrottlingError` or
//! `TransactionConflict` is answered `503 unavailable` with `Retry-After`, never 422, and
//! the same request succeeds once the store recovers; a call event processed while the
//! store keeps cancelling is retried (not dead-lettered) and billed exactly once afterwards.

use golos_testkit::fault_proxy::{target, Fault, FaultProxy};
use golos_tests::{golos_binary, RunningGolos};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REASONS: [&str; 3] = ["ValidationError", "ThrottlingError", "TransactionConflict"];

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<&Value>,
) -> (u16, Option<String>, Value) {
    let mut request = http.request(method, url).header("X-API-Key", key);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, retry_after, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_cancellations_are_503_and_call_events_are_retried_not_dead_lettered() {
    let table = golos_testkit::moto::unique_name("faults");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
    let mut direct = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    direct.provision().await.expect("provision the table and key");
    let credentials = [
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), "test".to_owned()),
    ];
    let mut direct_env = direct.config().to_env();
    direct_env.extend(credentials.iter().cloned());
    let init = std::process::Command::new(golos_binary())
        .args(["init-secrets", "--backend", "aws"])
        .envs(direct_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("golos init-secrets");
    assert!(init.status.success(), "{init:?}");
    let operator = direct.secrets().get("operator-api-key").await.unwrap().expose().to_owned();

    // golos talks to every AWS service through the proxy.
    let proxy = FaultProxy::start(&golos_testkit::moto::endpoint()).await;
    let mut env =
        golos_aws::AwsConfig { endpoint_url: Some(proxy.endpoint.clone()), ..direct.config().clone() }.to_env();
    env.extend(credentials.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Reading the listening line blocks; the proxy answers golos's start-up meanwhile.
    let golos = tokio::task::block_in_place(|| RunningGolos::start_aws(&env));
    let base = golos.base_url();
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;

    let (status, _, org) =
        send(&http, post.clone(), format!("{base}/v1/orgs"), &operator, Some(&json!({"name": "Сбой"}))).await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_owned();
    let (status, _, admin) = send(
        &http,
        post.clone(),
        format!("{base}/v1/orgs/{org_id}/api-keys"),
        &operator,
        Some(&json!({"name": "owner", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 201, "{admin}");
    let admin = admin["token"].as_str().unwrap().to_owned();
    let agent = |i: usize| {
        json!({"name": format!("agent {i}"), "system_prompt": "Отвечай кратко.", "language": "ru-RU",
            "voice": {"provider": "espeak_ng", "voice_id": "ru"},
            "faq": [{"questions": ["сколько стоит"], "answer": "Сто рублей."}]})
    };

    // Creating an agent is one DynamoDB transaction (the agent and the org's agent count).
    for (i, reason) in REASONS.into_iter().enumerate() {
        proxy.fail_for(target::TRANSACT_WRITE_ITEMS, Fault::transaction_canceled(reason), Duration::from_secs(120));
        let before = proxy.injected();
        let (status, retry_after, body) =
            send(&http, post.clone(), format!("{base}/v1/agents"), &admin, Some(&agent(i))).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{reason}: {body}");
        let secs: u64 = retry_after.as_deref().and_then(|s| s.parse().ok()).unwrap_or_default();
        assert!(secs >= 1, "{reason}: Retry-After is {retry_after:?}");
        assert!(proxy.injected() - before >= 3, "{reason}: golos retried the transaction before answering");
        proxy.heal();
        let (status, _, body) = send(&http, post.clone(), format!("{base}/v1/agents"), &admin, Some(&agent(i))).await;
        assert_eq!(status, 201, "{reason}, healed: {body}");
    }
    let (_, _, agents) = send(&http, reqwest::Method::GET, format!("{base}/v1/agents"), &admin, None).await;
    assert_eq!(agents["items"].as_array().map(Vec::len), Some(3), "one agent per request that succeeded: {agents}");
    let agent_id = agents["items"][0]["id"].as_str().unwrap().to_owned();

    // A call ends while every transaction is cancelled for 10 s: the consumer's attempts fail
    // with a retryable error, the message comes back with backoff (2 s, 4 s, 8 s: well
    // before its 5th receive would dead-letter it), and the call is billed once afterwards.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let call_id = "call_during_fault";
    let ended = json!({"type": "call.ended", "call_id": call_id, "org_id": org_id, "agent_id": agent_id,
        "direction": "web", "started_at": now_ms - 61_000, "ended_at": now_ms, "duration_secs": 61,
        "end_reason": "caller_hangup"});
    proxy.fail_for(
        target::TRANSACT_WRITE_ITEMS,
        Fault::transaction_canceled("ValidationError"),
        Duration::from_secs(10),
    );
    let fault_started = Instant::now();
    let before = proxy.injected();
    let (status, _, queued) =
        send(&http, post.clone(), format!("{base}/v1/call-events"), &operator, Some(&ended)).await;
    assert_eq!(status, 202, "queuing goes to SQS, which is healthy: {queued}");
    let rate = 600; // the start plan's minute
    let mut balance = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        balance = send(&http, reqwest::Method::GET, format!("{base}/v1/balance"), &admin, None).await.2;
        if balance["balance_kopecks"].as_i64() == Some(-2 * rate) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(balance["balance_kopecks"].as_i64(), Some(-2 * rate), "billed once for 2 minutes: {balance}");
    assert!(fault_started.elapsed() >= Duration::from_secs(10), "it was billed only after the fault passed");
    assert!(proxy.injected() > before, "the consumer met the fault before it was billed");
    let (_, _, ledger) = send(&http, reqwest::Method::GET, format!("{base}/v1/ledger?limit=100"), &admin, None).await;
    let keys: Vec<&str> = ledger["items"].as_array().unwrap().iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys, vec![format!("call:{call_id}")], "{ledger}");
    let call_events =
        direct.queue(golos_ports::QueueConfig::new(golos_control::EventQueues::CALL_EVENTS)).await.unwrap();
    assert!(call_events.dead_letters(10).await.unwrap().is_empty(), "nothing was dead-lettered");
    let (status, _, record) =
        send(&http, reqwest::Method::GET, format!("{base}/v1/calls/{call_id}"), &admin, None).await;
    assert_eq!((status, record["cost_kopecks"].as_i64()), (200, Some(2 * rate)), "{record}");
}
