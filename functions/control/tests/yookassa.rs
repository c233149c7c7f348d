//! YooKassa notifications over HTTP against a local server implementing the YooKassa API
//! parts golos uses: the address allowlist, confirmation by the API (its amount, not the
//! notification's), exactly-once crediting, refunds, and retries during a provider outage.

mod suite;

use golos_control::payments::{parse_networks, YookassaConfig};
use golos_control::ControlConfig;
use golos_domain::{Kopecks, OrgId};
use golos_testkit::yookassa::{credentials, notification, YookassaApi};
use reqwest::StatusCode;
use serde_json::Value;
use suite::TestApp;

async fn app(api: &YookassaApi, allowed: &str, trust_forwarded_for: bool) -> (TestApp, String) {
    let backend = suite::local_backend(|p| p.put_secret_file("yookassa", &credentials()).expect("secret"));
    let config = ControlConfig {
        trust_forwarded_for,
        yookassa: YookassaConfig {
            api_base: api.base_url.clone(),
            allowed_networks: parse_networks(allowed).unwrap(),
            ..YookassaConfig::default()
        },
        ..ControlConfig::default()
    };
    let app = suite::spawn_app_with(backend, config).await;
    let (org, _) = app.org_with_admin().await;
    (app, org)
}

async fn notify(app: &TestApp, body: &Value, forwarded_for: Option<&str>) -> (StatusCode, Value) {
    let mut request = app.http.post(format!("{}/webhooks/payments/yookassa", app.base)).json(body);
    if let Some(ip) = forwarded_for {
        request = request.header("X-Forwarded-For", ip);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn balance(app: &TestApp, org: &str) -> Kopecks {
    app.state.stores.ledger.balance(&OrgId::parse(org).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_payments_credit_once_and_refunds_debit() {
    let api = YookassaApi::start().await;
    let (app, org) = app(&api, "127.0.0.1", false).await;
    let payment = "2f5c1a3e-000f-5000-8000-1a2b3c4d5e6f";
    api.add_payment(payment, "succeeded", "1500.50", "RUB", Some(&org));

    // The notification claims a million; the API says 1 500.50 ₽, and that is what counts.
    let body = notification("payment.succeeded", payment, "1000000.00");
    let (status, reply) = notify(&app, &body, None).await;
    assert_eq!((status, reply["status"].as_str()), (StatusCode::OK, Some("applied")), "{reply:?}");
    assert_eq!(reply["key"], format!("payment:yookassa:{payment}"));
    let (status, reply) = notify(&app, &body, None).await;
    assert_eq!((status, reply["status"].as_str()), (StatusCode::OK, Some("duplicate")));
    assert_eq!(balance(&app, &org).await, Kopecks::new(150_050));

    api.add_refund("2f5c1a3e-0015-5000-9000-aaaaaaaaaaaa", payment, "succeeded", "500.00");
    let refund = notification("refund.succeeded", "2f5c1a3e-0015-5000-9000-aaaaaaaaaaaa", "0.01");
    assert_eq!(notify(&app, &refund, None).await.0, StatusCode::OK);
    assert_eq!(notify(&app, &refund, None).await.1["status"], "duplicate");
    assert_eq!(balance(&app, &org).await, Kopecks::new(100_050));

    // Acknowledged without moving money: waiting for capture (not even asked), canceled.
    let payout = notification("payout.succeeded", "2f5c1a3e-0000-0000-0000-00000000000a", "10.00");
    assert_eq!(
        notify(&app, &payout, None).await.1["status"],
        "ignored",
        "events that move no balance are acknowledged"
    );
    let asked = api.requests();
    let waiting = notification("payment.waiting_for_capture", "2f5c1a3e-0000-0000-0000-000000000001", "10.00");
    assert_eq!(notify(&app, &waiting, None).await.1["status"], "ignored");
    assert_eq!(api.requests(), asked);
    api.add_payment("2f5c1a3e-0000-0000-0000-000000000002", "canceled", "10.00", "RUB", Some(&org));
    let canceled = notification("payment.canceled", "2f5c1a3e-0000-0000-0000-000000000002", "10.00");
    assert_eq!(notify(&app, &canceled, None).await, (StatusCode::OK, serde_json::json!({"status": "ignored"})));
    assert_eq!(balance(&app, &org).await, Kopecks::new(100_050));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_or_foreign_notifications_write_nothing() {
    let api = YookassaApi::start().await;
    let (app, org) = app(&api, "127.0.0.1", false).await;
    let cases: Vec<(&str, Value, StatusCode, &str)> = {
        api.add_payment("p-pending", "pending", "100.00", "RUB", Some(&org));
        api.add_payment("p-usd", "succeeded", "100.00", "USD", Some(&org));
        api.add_payment("p-no-org", "succeeded", "100.00", "RUB", None);
        api.add_payment("p-other-org", "succeeded", "100.00", "RUB", Some("org_doesnotexist"));
        api.add_payment("p-live", "succeeded", "100.00", "RUB", Some(&org));
        api.add_refund("r-pending", "p-live", "pending", "100.00");
        vec![
            (
                "unknown payment",
                notification("payment.succeeded", "p-unknown", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_confirmed",
            ),
            (
                "not paid yet",
                notification("payment.succeeded", "p-pending", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_confirmed",
            ),
            (
                "canceled claim for a paid payment",
                notification("payment.canceled", "p-live", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_confirmed",
            ),
            (
                "refund not done",
                notification("refund.succeeded", "r-pending", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_confirmed",
            ),
            (
                "foreign currency",
                notification("payment.succeeded", "p-usd", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsupported_currency",
            ),
            (
                "no org in metadata",
                notification("payment.succeeded", "p-no-org", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_org",
            ),
            (
                "unknown org",
                notification("payment.succeeded", "p-other-org", "100.00"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_org",
            ),
            (
                "path in the id",
                notification("payment.succeeded", "../refunds/r-pending", "1.00"),
                StatusCode::BAD_REQUEST,
                "invalid_notification",
            ),
            (
                "not a notification",
                serde_json::json!({"hello": "world"}),
                StatusCode::BAD_REQUEST,
                "invalid_notification",
            ),
        ]
    };
    for (what, body, status, code) in cases {
        let (got, reply) = notify(&app, &body, None).await;
        assert_eq!((got, reply["code"].as_str()), (status, Some(code)), "{what}: {reply:?}");
    }
    assert_eq!(balance(&app, &org).await, Kopecks::ZERO, "nothing was written");
    assert!(app
        .state
        .stores
        .ledger
        .list(&OrgId::parse(&org).unwrap(), &golos_ports::PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_published_addresses_are_heard() {
    let api = YookassaApi::start().await;
    // The production list: 127.0.0.1 is not on it.
    let published =
        YookassaConfig::default().allowed_networks.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let (app, org) = app(&api, &published, false).await;
    api.add_payment("p-1", "succeeded", "100.00", "RUB", Some(&org));
    let body = notification("payment.succeeded", "p-1", "100.00");
    let (status, reply) = notify(&app, &body, Some("185.71.76.1")).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ip_not_allowed")),
        "X-Forwarded-For is not trusted here"
    );
    assert_eq!(api.requests(), 0, "a refused notification costs no API call");

    // Behind a proxy or API Gateway the reported source address decides.
    let (proxied, org) = app_behind_proxy(&api, &published).await;
    api.add_payment("p-2", "succeeded", "100.00", "RUB", Some(&org));
    let body = notification("payment.succeeded", "p-2", "100.00");
    assert_eq!(notify(&proxied, &body, Some("203.0.113.9")).await.0, StatusCode::FORBIDDEN);
    let spoofed = notify(&proxied, &body, Some("185.71.76.1, 203.0.113.9")).await;
    assert_eq!(spoofed.0, StatusCode::FORBIDDEN, "a client-supplied entry before the proxy's does not count");
    let (status, reply) = notify(&proxied, &body, Some("203.0.113.9, 77.75.156.11")).await;
    assert_eq!((status, reply["status"].as_str()), (StatusCode::OK, Some("applied")), "{reply:?}");
    assert_eq!(balance(&proxied, &org).await, Kopecks::new(10_000));
}

async fn app_behind_proxy(api: &YookassaApi, allowed: &str) -> (TestApp, String) {
    app(api, allowed, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_outage_asks_for_a_retry_and_the_retry_credits() {
    let api = YookassaApi::start().await;
    let (app, org) = app(&api, "127.0.0.1", false).await;
    api.add_payment("p-outage", "succeeded", "250.00", "RUB", Some(&org));
    let body = notification("payment.succeeded", "p-outage", "250.00");
    api.set_outage(true);
    let (status, reply) = notify(&app, &body, None).await;
    assert_eq!((status, reply["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("provider_unavailable")));
    assert_eq!(balance(&app, &org).await, Kopecks::ZERO);
    api.set_outage(false);
    assert_eq!(notify(&app, &body, None).await.1["status"], "applied");
    assert_eq!(balance(&app, &org).await, Kopecks::new(25_000));

    // Wrong credentials in the secret: also a 5xx, so YooKassa keeps retrying until fixed.
    let wrong = suite::local_backend(|p| p.put_secret_file("yookassa", "506751:not-the-key").expect("secret"));
    let config = ControlConfig {
        yookassa: YookassaConfig {
            api_base: api.base_url.clone(),
            allowed_networks: parse_networks("127.0.0.1").unwrap(),
            ..YookassaConfig::default()
        },
        ..ControlConfig::default()
    };
    let misconfigured = suite::spawn_app_with(wrong, config).await;
    assert_eq!(notify(&misconfigured, &body, None).await.0, StatusCode::SERVICE_UNAVAILABLE);
}
