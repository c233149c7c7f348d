//! The money path of the real `golos serve` binary, over HTTP (issue #4's proofs):
//! - 5,000 signed payment notifications, 30 % of them duplicated, sent concurrently with
//!   5,000 call-ended events for the same org → the balance and the month's minutes are
//!   exact and every payment is credited once;
//! - kill -9 while webhooks with duplicates stream in, restart on the same data, resend
//!   whatever was not acknowledged → the balance is exact.

use futures::StreamExt;
use golos_control::payments::{sign, SIGNATURE_HEADER};
use golos_tests::RunningGolos;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const PROVIDER: &str = "acme";
const SECRET: &str = "whsec_billing_proof_0123456789";
const SECRET_ENV: (&str, &str) = ("GOLOS_SECRET_PAYMENTS_HMAC_ACME", SECRET);
/// The start plan's price of a minute.
const RATE: i64 = 600;

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

struct Org {
    id: String,
    admin: String,
    agent: String,
}

async fn create_org(http: &reqwest::Client, base: &str, operator: &str) -> Org {
    let org: Value = http
        .post(format!("{base}/v1/orgs"))
        .header("X-API-Key", operator)
        // The proofs read the whole ledger back; API rate limits are not what they test.
        .json(&json!({"name": "ООО Доказательство", "plan": "start",
            "quotas": {"api_requests_per_minute_per_key": 1_000_000, "api_requests_per_minute_per_org": 1_000_000}}))
        .send()
        .await
        .expect("create org")
        .json()
        .await
        .expect("org json");
    let id = org["id"].as_str().expect("org id").to_owned();
    let key: Value = http
        .post(format!("{base}/v1/orgs/{id}/api-keys"))
        .header("X-API-Key", operator)
        .json(&json!({"name": "owner", "role": "admin"}))
        .send()
        .await
        .expect("create key")
        .json()
        .await
        .expect("key json");
    let admin = key["token"].as_str().expect("token").to_owned();
    let agent: Value = http
        .post(format!("{base}/v1/agents"))
        .header("X-API-Key", &admin)
        .json(&json!({"name": "кассир", "system_prompt": "Отвечай кратко.", "language": "ru-RU",
            "voice": {"provider": "espeak_ng", "voice_id": "ru"},
            "faq": [{"questions": ["сколько стоит"], "answer": "Сто рублей."}]}))
        .send()
        .await
        .expect("create agent")
        .json()
        .await
        .expect("agent json");
    let agent = agent["id"].as_str().unwrap_or_else(|| panic!("agent id in {agent}")).to_owned();
    Org { id, admin, agent }
}

fn payment(org: &str, index: usize) -> (String, i64) {
    let amount = 10_000 + (index as i64 * 37) % 90_000;
    let body =
        json!({"event": "payment.succeeded", "id": format!("pay_{index:05}"), "org_id": org, "amount_kopecks": amount});
    (body.to_string(), amount)
}

/// Posts a signed notification; true when golos acknowledged it (HTTP 200).
async fn notify(http: &reqwest::Client, base: &str, body: &str) -> bool {
    let signature = sign(SECRET, now_secs(), body.as_bytes());
    let sent = http
        .post(format!("{base}/webhooks/payments/{PROVIDER}"))
        .header(SIGNATURE_HEADER, signature)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            assert!(status == 200 || status.is_server_error(), "unexpected {status}: {:?}", response.text().await);
            status == 200
        }
        Err(_) => false,
    }
}

async fn get_json(http: &reqwest::Client, url: String, key: &str) -> Value {
    http.get(url).header("X-API-Key", key).send().await.expect("get").json().await.expect("json")
}

async fn ledger_keys(http: &reqwest::Client, base: &str, admin: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/v1/ledger?limit=100&cursor={c}"),
            None => format!("{base}/v1/ledger?limit=100"),
        };
        let page = get_json(http, url, admin).await;
        let items = page["items"].as_array().unwrap_or_else(|| panic!("ledger page {page}"));
        keys.extend(items.iter().map(|e| e["key"].as_str().expect("key").to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return keys,
        }
    }
}

/// Deterministic shuffle (no rand dependency for one permutation).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicated_payments_and_call_ends_leave_an_exact_balance() {
    let golos = RunningGolos::start(&[SECRET_ENV]);
    let (base, operator) = (golos.base_url(), golos.operator_key());
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let org = create_org(&http, &base, &operator).await;

    const PAYMENTS: usize = 5_000;
    const CALLS: usize = 5_000;
    let mut deliveries: Vec<(usize, String)> = (0..PAYMENTS).map(|i| (i, payment(&org.id, i).0)).collect();
    deliveries.extend((0..PAYMENTS * 3 / 10).map(|i| (i * 3 % PAYMENTS, payment(&org.id, i * 3 % PAYMENTS).0)));
    shuffle(&mut deliveries, 0x9e37_79b9_7f4a_7c15);
    let credited: i64 = (0..PAYMENTS).map(|i| payment(&org.id, i).1).sum();

    let started_at = now_ms() - 3_600_000;
    let calls: Vec<(String, u64)> =
        (0..CALLS).map(|i| (format!("call_proof{i:05}"), 1 + (i as u64 * 53) % 900)).collect();
    let minutes: u64 = calls.iter().map(|(_, d)| d.div_ceil(60)).sum();
    let debited = minutes as i64 * RATE;

    let payments = futures::stream::iter(deliveries.iter().map(|(_, body)| {
        let (http, base) = (&http, &base);
        async move { assert!(notify(http, base, body).await, "every notification is acknowledged") }
    }))
    .buffer_unordered(32)
    .collect::<Vec<()>>();
    let call_ends = futures::stream::iter(calls.iter().map(|(call, duration)| {
        let (http, base, operator, org) = (&http, &base, &operator, &org);
        async move {
            let event = json!({"type": "call.ended", "call_id": call, "org_id": org.id, "agent_id": org.agent,
                "direction": "inbound", "from": "+79161234567", "started_at": started_at,
                "ended_at": started_at + *duration as i64 * 1000, "duration_secs": duration, "end_reason": "caller_hangup"});
            let response = http
                .post(format!("{base}/v1/call-events"))
                .header("X-API-Key", operator)
                .json(&event)
                .send()
                .await
                .expect("queue a call event");
            assert_eq!(response.status(), 202);
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<()>>();
    tokio::join!(payments, call_ends);

    // The call events are applied by the queue consumer; wait until it has drained.
    let expected = credited - debited;
    let mut balance = Value::Null;
    for _ in 0..600 {
        balance = get_json(&http, format!("{base}/v1/balance"), &org.admin).await;
        if balance["balance_kopecks"].as_i64() == Some(expected) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        balance["balance_kopecks"].as_i64(),
        Some(expected),
        "credited {credited}, debited {debited}: {balance}"
    );
    let usage = get_json(&http, format!("{base}/v1/usage"), &org.admin).await;
    assert_eq!(usage["minutes_used"].as_u64(), Some(minutes), "{usage}");

    let keys = ledger_keys(&http, &base, &org.admin).await;
    let unique: BTreeSet<&String> = keys.iter().collect();
    assert_eq!((keys.len(), unique.len()), (PAYMENTS + CALLS, PAYMENTS + CALLS), "one entry per payment and per call");

    // Replaying everything changes nothing.
    for (_, body) in deliveries.iter().take(200) {
        assert!(notify(&http, &base, body).await);
    }
    let after = get_json(&http, format!("{base}/v1/balance"), &org.admin).await;
    assert_eq!(after["balance_kopecks"].as_i64(), Some(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_loses_and_doubles_nothing() {
    let golos = RunningGolos::start(&[SECRET_ENV]);
    let (base, operator) = (golos.base_url(), golos.operator_key());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let org = create_org(&http, &base, &operator).await;

    const PAYMENTS: usize = 3_000;
    let mut deliveries: Vec<(usize, String)> = (0..PAYMENTS).map(|i| (i, payment(&org.id, i).0)).collect();
    deliveries.extend((0..PAYMENTS * 3 / 10).map(|i| (i * 7 % PAYMENTS, payment(&org.id, i * 7 % PAYMENTS).0)));
    shuffle(&mut deliveries, 42);
    let credited: i64 = (0..PAYMENTS).map(|i| payment(&org.id, i).1).sum();

    // Stream everything; kill -9 the server once a third has been acknowledged.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let killer = {
        let acknowledged = Arc::clone(&acknowledged);
        tokio::spawn(async move {
            while acknowledged.load(Ordering::Relaxed) < PAYMENTS / 3 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            golos.crash()
        })
    };
    let outcomes: Vec<bool> = futures::stream::iter(deliveries.iter().map(|(_, body)| {
        let (http, base, acknowledged) = (&http, &base, &acknowledged);
        async move {
            let ok = notify(http, base, body).await;
            if ok {
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            ok
        }
    }))
    // `buffered`, not `buffer_unordered`: the outcomes are zipped with the deliveries below,
    // so they must come back in the order the deliveries were sent.
    .buffered(16)
    .collect()
    .await;
    let data_dir = killer.await.expect("killer");
    let unacknowledged: Vec<&String> =
        deliveries.iter().zip(&outcomes).filter(|(_, ok)| !**ok).map(|((_, body), _)| body).collect();
    assert!(!unacknowledged.is_empty(), "the crash happened mid-stream");
    assert!(unacknowledged.len() < deliveries.len(), "and after some were acknowledged");

    // Restart on the same data; a provider resends what it did not see acknowledged.
    let golos = RunningGolos::start_in(data_dir, &[SECRET_ENV]);
    let base = golos.base_url();
    let resent: Vec<bool> = futures::stream::iter(unacknowledged.iter().map(|body| {
        let (http, base) = (&http, &base);
        async move { notify(http, base, body).await }
    }))
    .buffer_unordered(16)
    .collect()
    .await;
    assert!(resent.iter().all(|ok| *ok), "every resent notification is acknowledged after the restart");
    let balance = get_json(&http, format!("{base}/v1/balance"), &org.admin).await;
    assert_eq!(balance["balance_kopecks"].as_i64(), Some(credited), "{balance}");
    let keys = ledger_keys(&http, &base, &org.admin).await;
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), PAYMENTS);
    assert_eq!(keys.len(), PAYMENTS, "each payment credited exactly once");
    let (status, _) = golos.get("/health");
    assert_eq!(status, 200);
}
