//! Signed payment webhooks over HTTP, on the embedded backend: exactly-once crediting,
//! signature and replay-window checks, and a concurrent burst with duplicates.

mod suite;

use golos_control::payments::{sign, SIGNATURE_HEADER};
use golos_domain::{Kopecks, OrgId};
use golos_ports::Clock;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use suite::{TestApp, T0};

const SECRET: &str = "whsec_acme_0123456789";

async fn app() -> (TestApp, String) {
    let backend =
        suite::local_backend(|platform| platform.put_secret_file("payments-hmac-acme", SECRET).expect("secret"));
    let app = suite::spawn_app(backend).await;
    let (org, _) = app.org_with_admin().await;
    (app, org)
}

async fn notify(app: &TestApp, provider: &str, body: &Value, signature: Option<String>) -> (StatusCode, Value) {
    let raw = body.to_string();
    let signature = signature.unwrap_or_else(|| sign(SECRET, T0.as_secs(), raw.as_bytes()));
    let response = app
        .http
        .post(format!("{}/webhooks/payments/{provider}", app.base))
        .header(SIGNATURE_HEADER, signature)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn balance(app: &TestApp, org: &str) -> Kopecks {
    app.state.stores.ledger.balance(&OrgId::parse(org).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_once_refunds_and_refuses_what_is_not_signed() {
    let (app, org) = app().await;
    let payment = json!({"event": "payment.succeeded", "id": "pay_1", "org_id": org, "amount_kopecks": 150_000});
    let (status, body) = notify(&app, "acme", &payment, None).await;
    assert_eq!(
        (status, body["status"].as_str(), body["key"].as_str()),
        (StatusCode::OK, Some("applied"), Some("payment:signed-acme:pay_1"))
    );
    let (status, body) = notify(&app, "acme", &payment, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "a retried notification is acknowledged"
    );
    assert_eq!(balance(&app, &org).await, Kopecks::new(150_000), "and credited once");

    let refund = json!({"event": "refund.succeeded", "id": "ref_1", "org_id": org, "amount_kopecks": 50_000});
    assert_eq!(notify(&app, "acme", &refund, None).await.0, StatusCode::OK);
    assert_eq!(balance(&app, &org).await, Kopecks::new(100_000));

    let forged = json!({"event": "payment.succeeded", "id": "pay_2", "org_id": org, "amount_kopecks": 999_999});
    let (status, body) =
        notify(&app, "acme", &forged, Some(sign("wrong secret", T0.as_secs(), forged.to_string().as_bytes()))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("bad_signature")));
    let tampered_signature = sign(SECRET, T0.as_secs(), payment.to_string().as_bytes());
    assert_eq!(
        notify(&app, "acme", &forged, Some(tampered_signature)).await.0,
        StatusCode::UNAUTHORIZED,
        "a signature of another body"
    );
    assert_eq!(notify(&app, "acme", &forged, Some("t=1,v1=00".into())).await.0, StatusCode::UNAUTHORIZED);

    let later = json!({"event": "payment.succeeded", "id": "pay_3", "org_id": org, "amount_kopecks": 1});
    app.clock.advance_millis(301_000);
    let (status, body) = notify(&app, "acme", &later, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_signature")),
        "a replay outside 5 minutes"
    );

    let fresh = sign(SECRET, app.clock.now().as_secs(), later.to_string().as_bytes());
    assert_eq!(notify(&app, "acme", &later, Some(fresh)).await.0, StatusCode::OK);
    let now = app.clock.now().as_secs();
    let ghost = json!({"event": "payment.succeeded", "id": "pay_4", "org_id": "org_missing", "amount_kopecks": 5});
    let (status, body) = notify(&app, "acme", &ghost, Some(sign(SECRET, now, ghost.to_string().as_bytes()))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_org")));
    let negative = json!({"event": "payment.succeeded", "id": "pay_5", "org_id": org, "amount_kopecks": -5});
    assert_eq!(
        notify(&app, "acme", &negative, Some(sign(SECRET, now, negative.to_string().as_bytes()))).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (status, body) = notify(&app, "nobody", &later, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_provider")));
    assert_eq!(balance(&app, &org).await, Kopecks::new(100_001), "nothing refused was written");
}

/// 500 notifications, about 30 % of them repeats of earlier ones, sent concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_with_duplicates_credits_each_payment_once() {
    let (app, org) = app().await;
    let mut unique = BTreeMap::new();
    let mut bodies: Vec<Value> = Vec::new();
    let mut seed = 42u64;
    for i in 0..500u64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let body = if i > 0 && seed % 100 < 30 {
            bodies[(seed >> 33) as usize % bodies.len()].clone()
        } else {
            let amount = 100 + (seed >> 40) as i64 % 10_000;
            unique.insert(format!("pay_{i}"), amount);
            json!({"event": "payment.succeeded", "id": format!("pay_{i}"), "org_id": org, "amount_kopecks": amount})
        };
        bodies.push(body);
    }
    let replies = futures::future::join_all(bodies.iter().map(|b| notify(&app, "acme", b, None))).await;
    assert!(replies.iter().all(|(s, _)| *s == StatusCode::OK), "every notification is acknowledged");
    let applied = replies.iter().filter(|(_, b)| b["status"] == "applied").count();
    assert_eq!(applied, unique.len(), "each payment applied exactly once");
    assert_eq!(balance(&app, &org).await, Kopecks::new(unique.values().sum()));
}
