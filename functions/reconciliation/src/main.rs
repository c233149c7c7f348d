//! Reconciliation as an AWS Lambda function, invoked hourly by an EventBridge schedule
//! (infra/terraform/modules/functions): `golos_control::reconcile::reconcile`, the same check
//! `golos serve` runs hourly and `golos reconcile` runs once: every balance against its
//! ledger (`alert = "ledger_drift"`) and every ended call of the last
//! `GOLOS_RECONCILE_CALL_WINDOW_DAYS` days (default 7) against its one debit
//! (`alert = "unbilled_call"`). Any event triggers it.
//!
//! Findings are not errors of the function: they are logged as alerts, returned, and
//! published as CloudWatch metrics (`ledger_drift_orgs`, `unbilled_calls`, namespace
//! `golos`, dimension `Deployment` = the table) by an Embedded Metric Format line, so an
//! alarm fires on `> 0`. A store that cannot be read fails the invocation (EventBridge
//! retries it; the next hour runs anyway).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (settings, state) = golos_bootstrap::lambda::start().await?;
    let (state, deployment) = (&state, settings.aws.table.as_str());
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move { handle(state, deployment).await })).await
}

async fn handle(state: &golos_control::ControlState, deployment: &str) -> Result<Value, Error> {
    let report = golos_control::reconcile::reconcile(state).await?;
    let now = state.clock.now().as_millis();
    // CloudWatch Embedded Metric Format: Lambda turns this stdout line into two metrics.
    let emf = json!({
        "_aws": {"Timestamp": now, "CloudWatchMetrics": [{
            "Namespace": "golos",
            "Dimensions": [["Deployment"]],
            "Metrics": [{"Name": "ledger_drift_orgs", "Unit": "Count"}, {"Name": "unbilled_calls", "Unit": "Count"}],
        }]},
        "Deployment": deployment,
        "ledger_drift_orgs": report.drifts.len(),
        "unbilled_calls": report.unbilled_calls.len() + report.unswept_leases.len(),
    });
    println!("{emf}");
    let drifts: Vec<Value> =
        report.drifts.iter().map(|d| json!({"org": d.org, "stored": d.stored, "recomputed": d.recomputed})).collect();
    let unbilled: Vec<Value> = report
        .unbilled_calls
        .iter()
        .map(|c| json!({"org": c.org, "call": c.call, "cost": c.cost, "debited": c.debited}))
        .collect();
    Ok(json!({
        "orgs_checked": report.orgs_checked,
        "drifts": drifts,
        "calls_checked": report.calls_checked,
        "unbilled_calls": unbilled,
    }))
}
