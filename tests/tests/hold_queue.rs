//! One hold queue for the whole pool (issue 15): two `golos serve --backend aws` processes on
//! one moto backend tell callers distinct positions in arrival order, let a higher priority
//! go ahead, and give a freed slot to the first in line, whichever process it asks, never to
//! a newcomer.

use golos_tests::{AwsDeployment, RunningGolos};
use serde_json::{json, Value};

async fn post(http: &reqwest::Client, url: String, key: &str, body: &Value) -> (u16, Value) {
    let response = http.post(url).header("X-API-Key", key).json(body).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asks admission for calls of one org and agent, as the operator.
struct Asker {
    http: reqwest::Client,
    operator: String,
    org: String,
    agent: String,
}

impl Asker {
    /// `POST /v1/admissions` on `golos` for `call`; answers the decision and the position.
    async fn ask(&self, golos: &RunningGolos, call: &str, priority: u8) -> (String, Option<u64>) {
        let body = json!({"org_id": self.org, "agent_id": self.agent, "call_id": call, "priority": priority});
        let (status, reply) =
            post(&self.http, format!("{}/v1/admissions", golos.base_url()), &self.operator, &body).await;
        assert_eq!(status, 200, "{reply}");
        (reply["decision"].as_str().unwrap_or_default().to_owned(), reply["position"].as_u64())
    }
}

fn wait(position: u64) -> (String, Option<u64>) {
    ("wait".to_owned(), Some(position))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_one_hold_queue() {
    let aws = AwsDeployment::provision("hold").await;
    let env = aws.env();
    let operator = aws.init_secrets().await;

    // Two workers of one pool: same table, same queues.
    let (a, b) = (RunningGolos::start_aws(&env), RunningGolos::start_aws(&env));
    let http = reqwest::Client::new();
    let (status, org) =
        post(&http, format!("{}/v1/orgs", a.base_url()), &operator, &json!({"name": "Call centre"})).await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_owned();
    let key_body = json!({"name": "owner", "role": "admin"});
    let (_, admin) = post(&http, format!("{}/v1/orgs/{org}/api-keys", b.base_url()), &operator, &key_body).await;
    let admin = admin["token"].as_str().expect("admin token").to_owned();
    let agent_body = serde_json::to_value(golos_testkit::fixtures::agent_config("Line")).unwrap();
    let (status, agent) = post(&http, format!("{}/v1/agents", a.base_url()), &admin, &agent_body).await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["id"].as_str().unwrap().to_owned();
    let quotas = json!({"quotas": {"max_concurrent_calls": 1, "max_concurrent_calls_per_agent": 1}});
    let patched = http
        .patch(format!("{}/v1/orgs/{org}", b.base_url()))
        .header("X-API-Key", &operator)
        .json(&quotas)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200, "{:?}", patched.text().await);
    // Money to take calls with, straight into the shared ledger.
    let credit = golos_testkit::fixtures::credit("p1", 100_000);
    let org_id = golos_domain::OrgId::parse(org.clone()).unwrap();
    aws.platform.stores().ledger.apply(&org_id, &credit, golos_testkit::fixtures::T0).await.unwrap();
    let asker = Asker { http: http.clone(), operator: operator.clone(), org: org.clone(), agent };

    // One call takes the only slot.
    assert_eq!(asker.ask(&a, "call_first", 5).await.0, "admitted");
    // Callers arriving alternately through both workers get distinct places in arrival order.
    assert_eq!(asker.ask(&b, "call_h1", 5).await, wait(1));
    assert_eq!(asker.ask(&a, "call_h2", 5).await, wait(2));
    assert_eq!(asker.ask(&b, "call_h3", 5).await, wait(3));
    // Asking again, on the other worker, keeps each place.
    assert_eq!(asker.ask(&a, "call_h1", 5).await, wait(1));
    assert_eq!(asker.ask(&b, "call_h2", 5).await, wait(2));
    assert_eq!(asker.ask(&a, "call_h3", 5).await, wait(3));
    // A higher priority goes ahead of them all, and they move back one.
    assert_eq!(asker.ask(&a, "call_urgent", 9).await, wait(1));
    assert_eq!(asker.ask(&b, "call_h1", 5).await, wait(2));
    assert_eq!(asker.ask(&a, "call_h3", 5).await, wait(4));

    // The slot is freed through one worker: a newcomer there does not get it; the first in
    // line, asking through the other worker, does.
    let released =
        post(&http, format!("{}/v1/admissions/call_first/release", a.base_url()), &operator, &json!({"org_id": org}))
            .await;
    assert_eq!(released.1["released"], true, "{released:?}");
    assert_eq!(asker.ask(&a, "call_new", 5).await, wait(5), "a newcomer joins the back of the line");
    assert_eq!(asker.ask(&a, "call_h1", 5).await, wait(2), "not first in line");
    assert_eq!(asker.ask(&b, "call_urgent", 9).await.0, "admitted");
    // The line moves up for everyone, on either worker.
    assert_eq!(asker.ask(&b, "call_h1", 5).await, wait(1));
    assert_eq!(asker.ask(&a, "call_h2", 5).await, wait(2));
    assert_eq!(asker.ask(&b, "call_new", 5).await, wait(4));
}
