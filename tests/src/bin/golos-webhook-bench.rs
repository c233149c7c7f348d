//! Load generator for payment webhooks: signs distinct `payment.succeeded` notifications
//! (with a share of duplicates) for one org and posts them to a running golos with a fixed
//! number of connections, then reports throughput and latency percentiles as the client
//! saw them (which bound the server's processing time from above).
//!
//! usage: golos-webhook-bench <base-url> <org-id> [requests=20000] [connections=32] [duplicate-%=30]
//! The provider is `bench`; its secret comes from GOLOS_BENCH_SECRET.

use futures::StreamExt;
use golos_control::payments::{sign, SIGNATURE_HEADER};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), Some(org)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: golos-webhook-bench <base-url> <org-id> [requests] [connections] [duplicate-%]");
        std::process::exit(2);
    };
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (requests, connections, duplicate_pct) = (number(3, 20_000), number(4, 32), number(5, 30));
    let secret = std::env::var("GOLOS_BENCH_SECRET").expect("GOLOS_BENCH_SECRET");
    let unique = requests * 100 / (100 + duplicate_pct);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    let bodies: Vec<(String, String)> = (0..requests)
        .map(|i| {
            let payment = if i < unique { i } else { (i * 7919) % unique };
            let body = format!(
                r#"{{"event":"payment.succeeded","id":"bench_{payment:07}","org_id":"{org}","amount_kopecks":{}}}"#,
                10_000 + payment % 1_000
            );
            (sign(&secret, now, body.as_bytes()), body)
        })
        .collect();
    let http = reqwest::Client::builder().pool_max_idle_per_host(connections).build().expect("client");
    let url = format!("{base}/webhooks/payments/bench");
    let started = Instant::now();
    let results: Vec<(Duration, u16)> = futures::stream::iter(bodies.into_iter().map(|(signature, body)| {
        let (http, url) = (&http, &url);
        async move {
            let sent = Instant::now();
            let status = http
                .post(url)
                .header(SIGNATURE_HEADER, signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            (sent.elapsed(), status)
        }
    }))
    .buffer_unordered(connections)
    .collect()
    .await;
    let wall = started.elapsed();
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for (latency, _) in &results {
        histogram.record(latency.as_micros() as u64).expect("record");
    }
    let failed = results.iter().filter(|(_, status)| *status != 200).count();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{requests} notifications ({unique} distinct, {duplicate_pct}% duplicates) over {connections} connections in {:.2} s",
        wall.as_secs_f64()
    );
    println!(
        "throughput {:.0}/s  latency p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  non-200 {failed}",
        requests as f64 / wall.as_secs_f64(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
