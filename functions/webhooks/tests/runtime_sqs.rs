//! The real `golos-webhooks` Lambda binary through the Lambda Runtime API, on moto, delivering
//! to a real receiver: one record delivered (its signature checked by the Standard Webhooks
//! reference implementation against the wall clock), one whose endpoint answers 500 (a retry
//! message queued with a delay; the record itself succeeds), one whose endpoint answers 404
//! (dead-lettered at once), and a malformed one (dead-lettered, not failed).

use golos_control::webhook_delivery::{EndpointDelivery, QueuedWebhook};
use golos_domain::events::{WebhookEvent, WebhookEventType};
use golos_domain::{Timestamp, WebhookEndpointId};
use golos_ports::{QueueConfig, WebhookEndpoint};
use golos_testkit::fixtures;
use golos_testkit::lambda::{sqs_record, workspace_binary, LambdaProcess};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A receiver answering `status` and keeping what it got.
async fn receiver(status: u16) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let kept = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
        let kept = Arc::clone(&kept);
        async move {
            kept.lock().unwrap().push((headers, body.to_vec()));
            axum::http::StatusCode::from_u16(status).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

fn now() -> Timestamp {
    Timestamp::from_millis(i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_batches_are_delivered_retried_and_dead_lettered_through_the_runtime_api() {
    let table = golos_testkit::moto::unique_name("golos-wh");
    let config = golos_aws::AwsConfig::on_endpoint(golos_testkit::moto::endpoint(), &table);
    let mut platform = golos_aws::AwsPlatform::connect(config).await.expect("connect to moto");
    platform.provision().await.expect("provision");
    platform.put_secret("api-key-pepper", "lambda-test-pepper").await.expect("pepper");
    platform.put_secret("call-token-key", "lambda-test-call-token-key").await.expect("call-token key");
    let stores = platform.stores();
    let org = fixtures::org_id();
    stores.orgs.create(&fixtures::org(&org)).await.unwrap();

    let mut secrets = Vec::new();
    let mut endpoints = Vec::new();
    for (n, status) in [200, 500, 404].into_iter().enumerate() {
        let (url, seen) = receiver(status).await;
        let id = WebhookEndpointId::parse(format!("whe_lambda{n}")).unwrap();
        let (secret, sealed) =
            golos_control::webhooks::new_sealed_secret(platform.crypto().as_ref(), &org, &id).await.unwrap();
        let endpoint = WebhookEndpoint {
            id: id.clone(),
            org_id: org.clone(),
            url,
            event_types: vec![if n == 0 { WebhookEventType::CallStarted } else { WebhookEventType::BalanceLow }],
            description: String::new(),
            enabled: true,
            secret: sealed,
            previous_secret: None,
            version: 1,
            created_at: now(),
            updated_at: now(),
        };
        stores.webhook_endpoints.create(&endpoint, 20).await.unwrap();
        secrets.push(secret);
        endpoints.push((id, seen));
    }

    let mut env = platform.config().to_env();
    env.push(("GOLOS_EGRESS_ALLOW".into(), "127.0.0.1/32".into()));
    let mut function = LambdaProcess::start(&workspace_binary("golos-webhooks"), "golos-webhooks", &env).await;
    let started =
        WebhookEvent::new(WebhookEventType::CallStarted, "call_l1", org.clone(), now(), json!({"call_id": "call_l1"}));
    let low =
        WebhookEvent::new(WebhookEventType::BalanceLow, "low_l1", org.clone(), now(), json!({"balance_kopecks": 1}));
    let batch = json!({"Records": [
        sqs_record("golos-webhooks", "m-1", &serde_json::to_string(&started).unwrap()),
        sqs_record("golos-webhooks", "m-2", &serde_json::to_string(&low).unwrap()),
        sqs_record("golos-webhooks", "m-3", "{not json"),
    ]});
    let answer = function.invoke(batch).await;
    assert_eq!(answer, json!({"batchItemFailures": []}), "every record is settled");

    // Delivered, signed: the reference implementation verifies it against the wall clock.
    let delivered = endpoints[0].1.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1);
    let (headers, body) = &delivered[0];
    let reference = standardwebhooks::Webhook::new(secrets[0].expose()).unwrap();
    reference.verify(body, headers).expect("a valid Standard Webhooks signature");
    assert_eq!(headers["webhook-id"], "evt_call_started_call_l1");
    assert_eq!(headers["x-webhook-attempt"], "1");

    // The 500: one attempt now, and the endpoint's retry on the queue, due in a second.
    assert_eq!(endpoints[1].1.lock().unwrap().len(), 1);
    let queue = platform.queue(QueueConfig::new("webhooks")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let retry = loop {
        let got = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        if let Some(message) = got.first() {
            break message.clone();
        }
        assert!(Instant::now() < deadline, "no retry message");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let QueuedWebhook::Endpoint(EndpointDelivery { endpoint_id, attempt, event, .. }) =
        QueuedWebhook::parse(&retry.body).unwrap()
    else {
        panic!("not an endpoint delivery: {}", retry.body)
    };
    assert_eq!((endpoint_id, attempt, event.id.as_str()), (endpoints[1].0.clone(), 2, "evt_balance_low_low_l1"));

    // The 404 and the malformed record are dead letters.
    assert_eq!(endpoints[2].1.lock().unwrap().len(), 1);
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().any(|l| l.body == "{not json"));
    assert!(letters.iter().any(|l| l.body.contains("\"permanent_status\"") && l.body.contains("whe_lambda2")));

    // Each attempt is in the deliveries log.
    let page = stores
        .webhook_deliveries
        .list(&org, &endpoints[1].0, &golos_ports::PageRequest::first(10), now())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!((page.items[0].status_code, page.items[0].attempt), (Some(500), 1));
}
