//! Load generator for customer webhook deliveries through a running `golos serve`: starts a
//! receiver on loopback, gives an org one endpoint for `call.started`, then reports calls to
//! golos (`POST /v1/call-events`, the operator's route media workers use) at a fixed rate.
//! Each report goes through the call-events consumer (the call record, the event) and the
//! webhooks consumer (signed POST) to the receiver. Prints deliveries per second and the
//! latency from the report's `202` to the delivery's arrival.
//!
//! usage: golos-delivery-bench <base-url> <operator-key> [events=5000] [rate-per-s=1000] [connections=32]
//! golos must allow plain HTTP to 127.0.0.1 (`GOLOS_EGRESS_ALLOW=127.0.0.1`).

use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), Some(operator)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: golos-delivery-bench <base-url> <operator-key> [events] [rate-per-s] [connections]");
        std::process::exit(2);
    };
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (events, rate, connections) = (number(3, 5_000), number(4, 1_000).max(1), number(5, 32));
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build().expect("client");

    let arrivals: Arrivals = Arc::default();
    let receiver_url = receiver(Arc::clone(&arrivals)).await;
    let post = |path: String, key: String, body: Value| {
        let http = http.clone();
        async move {
            let reply = http.post(path).header("X-API-Key", key).json(&body).send().await.expect("request");
            let status = reply.status();
            let body: Value = reply.json().await.unwrap_or_default();
            assert!(status.is_success(), "{status}: {body}");
            body
        }
    };
    let org = post(format!("{base}/v1/orgs"), operator.clone(), json!({"name": "delivery bench"})).await;
    let org = org["id"].as_str().expect("org id").to_owned();
    let admin =
        post(format!("{base}/v1/orgs/{org}/api-keys"), operator.clone(), json!({"name": "bench", "role": "admin"}))
            .await;
    let admin = admin["token"].as_str().expect("token").to_owned();
    post(
        format!("{base}/v1/webhook-endpoints"),
        admin.clone(),
        json!({"url": receiver_url, "event_types": ["call.started"]}),
    )
    .await;

    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let started = Instant::now();
    let sent: Vec<(String, Instant)> = futures::stream::iter((0..events).map(|i| {
        let (http, base, operator, org) = (&http, base, operator, &org);
        async move {
            // Paced: report i leaves at i × interval, however fast the answers come.
            tokio::time::sleep_until((started + interval * u32::try_from(i).unwrap_or(u32::MAX)).into()).await;
            let call = format!("call_bench{i:07}");
            let body = json!({"type": "call.started", "call_id": call, "org_id": org, "agent_id": "agt_bench",
                "direction": "inbound", "from": "+79990000000", "to": "+74950000000", "started_at": 0});
            let reply = http
                .post(format!("{base}/v1/call-events"))
                .header("X-API-Key", operator)
                .json(&body)
                .send()
                .await
                .expect("report");
            assert_eq!(reply.status().as_u16(), 202, "{:?}", reply.text().await);
            (format!("evt_call_started_{call}"), Instant::now())
        }
    }))
    .buffer_unordered(connections)
    .collect()
    .await;
    let reported = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().expect("arrivals").len() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = arrivals.lock().expect("arrivals").clone();
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let mut last = started;
    for (id, at) in &sent {
        if let Some(arrived) = arrivals.get(id) {
            histogram.record(arrived.saturating_duration_since(*at).as_micros() as u64).expect("record");
            last = last.max(*arrived);
        }
    }
    let delivered = histogram.len();
    let window = last.saturating_duration_since(started).as_secs_f64();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "events {events}, offered {rate}/s, reported in {:.2} s; delivered {delivered} ({} missing) in {window:.2} s = {:.0}/s",
        reported.as_secs_f64(),
        events as u64 - delivered,
        delivered as f64 / window.max(1e-9),
    );
    println!(
        "report→delivery ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
}

/// A receiver answering 204 at once and keeping each `webhook-id`'s first arrival.
async fn receiver(arrivals: Arrivals) -> String {
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let arrivals = Arc::clone(&arrivals);
        async move {
            let now = Instant::now();
            if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                arrivals.lock().expect("arrivals").entry(id.to_owned()).or_insert(now);
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    format!("http://{addr}/hooks")
}
