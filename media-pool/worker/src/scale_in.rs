//! ECS task scale-in protection while this worker has live calls (DESIGN.md §1, issue #19).
//!
//! On ECS the container agent injects `ECS_AGENT_URI`; a `PUT` of
//! `{"ProtectionEnabled": true, "ExpiresInMinutes": N}` to
//! `${ECS_AGENT_URI}/task-protection/v1/state` keeps service autoscaling and deployments from
//! stopping the task for N minutes, and `{"ProtectionEnabled": false}` lets them again. The
//! agent answers `{"protection": {"ProtectionEnabled", "ExpirationDate", "TaskArn"}}`, or
//! `{"failure": {"Arn", "Reason", "Detail"}}` / `{"error": {"Arn", "Code", "Message"}}`.
//!
//! [`Protection`] is the decision, free of I/O and clocks: given the number of live calls
//! and the time, what to send (protect when the first call starts, renew before the
//! protection runs out while calls go on, unprotect when the last one ends) and when to look
//! again. [`AgentClient`] sends it; [`run`] drives both from the call registry. A failed
//! request is logged and retried, never fatal: protection only keeps scale-in away, and a
//! worker that cannot get it still serves its calls (the SIGTERM drain remains).

use serde::Deserialize;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the agent may take to answer before the request counts as failed.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How soon a failed request is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// The agent's range for `ExpiresInMinutes`.
pub const MINUTES: std::ops::RangeInclusive<u32> = 1..=2_880;

/// One request to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `{"ProtectionEnabled": true, "ExpiresInMinutes": n}` (a renewal is the same request).
    Protect { expires_in_minutes: u32 },
    /// `{"ProtectionEnabled": false}`.
    Unprotect,
}

impl Request {
    pub fn body(self) -> serde_json::Value {
        match self {
            Self::Protect { expires_in_minutes } => {
                json!({"ProtectionEnabled": true, "ExpiresInMinutes": expires_in_minutes})
            }
            Self::Unprotect => json!({"ProtectionEnabled": false}),
        }
    }

    fn enables(self) -> bool {
        matches!(self, Self::Protect { .. })
    }
}

/// What the agent was last told successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Unprotected,
    /// Protected, to be renewed at `renew_at` (half-way through the protection).
    Protected {
        renew_at: Instant,
    },
}

/// The protection decision: a state machine fed the live-call count and the time.
#[derive(Debug, Clone)]
pub struct Protection {
    minutes: u32,
    known: Known,
    /// After a failed request: nothing is sent before this.
    retry_at: Option<Instant>,
}

impl Protection {
    /// `minutes` is clamped to the agent's range (1 to 2,880).
    pub fn new(minutes: u32) -> Self {
        Self { minutes: minutes.clamp(*MINUTES.start(), *MINUTES.end()), known: Known::Unprotected, retry_at: None }
    }

    /// How long after a successful protect the protection is renewed: half its length, so a
    /// slow or failed renewal still has the other half to succeed in.
    pub fn renew_after(&self) -> Duration {
        Duration::from_secs(u64::from(self.minutes) * 30)
    }

    pub fn is_protected(&self) -> bool {
        matches!(self.known, Known::Protected { .. })
    }

    /// What to send now, if anything.
    pub fn decide(&self, live_calls: usize, now: Instant) -> Option<Request> {
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        match (live_calls > 0, self.known) {
            (true, Known::Unprotected) => Some(self.protect()),
            (true, Known::Protected { renew_at }) if now >= renew_at => Some(self.protect()),
            (false, Known::Protected { .. }) => Some(Request::Unprotect),
            _ => None,
        }
    }

    /// The agent's answer to `request`, sent at `now`: `true` when it confirmed the state asked.
    pub fn sent(&mut self, request: Request, confirmed: bool, now: Instant) {
        if confirmed {
            self.retry_at = None;
            self.known = if request.enables() {
                Known::Protected { renew_at: now + self.renew_after() }
            } else {
                Known::Unprotected
            };
        } else {
            self.retry_at = Some(now + RETRY_AFTER);
        }
    }

    /// When `decide` may have something new to say although the live-call count did not
    /// change: a retry or a renewal is due.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        // Nothing is sent before a pending retry, whatever else is due.
        if let Some(retry_at) = self.retry_at.filter(|at| *at > now) {
            return Some(retry_at);
        }
        match self.known {
            Known::Protected { renew_at } => Some(renew_at),
            Known::Unprotected => None,
        }
    }

    fn protect(&self) -> Request {
        Request::Protect { expires_in_minutes: self.minutes }
    }
}

/// What `/metrics` shows of the protection: on or off as the agent last confirmed it, and
/// the requests it did not confirm (0 and 0 off ECS).
#[derive(Debug, Default)]
pub struct ProtectionStatus {
    protected: AtomicBool,
    failures: AtomicU64,
}

impl ProtectionStatus {
    pub fn is_protected(&self) -> bool {
        self.protected.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP golos_worker_scale_in_protected 1 while the ECS agent confirmed this task's scale-in protection \
             (set while calls are live), else 0.\n# TYPE golos_worker_scale_in_protected gauge\n\
             golos_worker_scale_in_protected {}",
            u8::from(self.is_protected())
        );
        let _ = writeln!(
            out,
            "# HELP golos_scale_in_protection_failures_total Requests to the ECS agent's task protection endpoint \
             that did not set the state asked (retried).\n# TYPE golos_scale_in_protection_failures_total counter\n\
             golos_scale_in_protection_failures_total {}",
            self.failures()
        );
    }
}

/// The agent's answer (the documented shapes; every field optional so an unexpected one is
/// reported rather than unparsed).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentReply {
    pub protection: Option<ProtectionState>,
    pub failure: Option<AgentFailure>,
    pub error: Option<AgentErrorBody>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProtectionState {
    #[serde(rename = "ProtectionEnabled", default)]
    pub protection_enabled: bool,
    #[serde(rename = "ExpirationDate", default)]
    pub expiration_date: Option<String>,
    #[serde(rename = "TaskArn", default)]
    pub task_arn: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentFailure {
    #[serde(rename = "Reason", default)]
    pub reason: Option<String>,
    #[serde(rename = "Detail", default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentErrorBody {
    #[serde(rename = "Code", default)]
    pub code: Option<String>,
    #[serde(rename = "Message", default)]
    pub message: Option<String>,
}

/// Why a request did not set the state asked.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the ECS agent could not be reached: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("the ECS agent reported a failure: {reason} ({detail})")]
    Failure { reason: String, detail: String },
    #[error("the ECS agent answered {status} with error {code}: {message}")]
    Error { status: u16, code: String, message: String },
    #[error("the ECS agent answered {status} without the state asked: {body}")]
    Unexpected { status: u16, body: String },
}

/// The thin HTTP side: PUT one request to the agent, read its answer.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    url: String,
}

impl AgentClient {
    /// For `ECS_AGENT_URI` (e.g. `http://169.254.170.2/api/<task-id>`).
    pub fn new(agent_uri: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(AGENT_TIMEOUT).build()?;
        Ok(Self { http, url: format!("{}/task-protection/v1/state", agent_uri.trim_end_matches('/')) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `request`; `Ok` only when the agent answers with the protection state asked.
    pub async fn send(&self, request: Request) -> Result<ProtectionState, AgentError> {
        let response = self.http.put(&self.url).json(&request.body()).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let reply: AgentReply = serde_json::from_str(&text).unwrap_or_default();
        match reply {
            AgentReply { protection: Some(state), .. }
                if (200..300).contains(&status) && state.protection_enabled == request.enables() =>
            {
                Ok(state)
            }
            AgentReply { failure: Some(failure), .. } => Err(AgentError::Failure {
                reason: failure.reason.unwrap_or_default(),
                detail: failure.detail.unwrap_or_default(),
            }),
            AgentReply { error: Some(error), .. } => Err(AgentError::Error {
                status,
                code: error.code.unwrap_or_default(),
                message: error.message.unwrap_or_default(),
            }),
            _ => Err(AgentError::Unexpected { status, body: text.chars().take(512).collect() }),
        }
    }
}

/// Keeps the task protected while `live_calls` is above 0, until `stop` turns true; then
/// removes the protection if it is on (the drain's end) and returns.
pub async fn run(
    client: AgentClient,
    minutes: u32,
    status: std::sync::Arc<ProtectionStatus>,
    live_calls: watch::Receiver<usize>,
    stop: watch::Receiver<bool>,
) {
    tracing::info!(url = %client.url(), minutes, "ECS task scale-in protection while calls are live");
    let send = |request| {
        let client = client.clone();
        async move { client.send(request).await }
    };
    drive(Protection::new(minutes), &status, live_calls, stop, send).await;
}

/// `run` with the request's transport given: the loop feeding `protection` the live count
/// and the time, sending what it decides.
async fn drive<F, Fut>(
    mut protection: Protection,
    status: &ProtectionStatus,
    mut live_calls: watch::Receiver<usize>,
    mut stop: watch::Receiver<bool>,
    mut send: F,
) where
    F: FnMut(Request) -> Fut,
    Fut: std::future::Future<Output = Result<ProtectionState, AgentError>>,
{
    loop {
        let live = *live_calls.borrow_and_update();
        let now = tokio::time::Instant::now().into_std();
        if let Some(request) = protection.decide(live, now) {
            let result = send(request).await;
            record(&mut protection, status, request, result, live);
            continue;
        }
        let wake = protection.next_wake(now).map(tokio::time::Instant::from_std);
        tokio::select! {
            changed = live_calls.changed() => if changed.is_err() { break },
            () = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    if protection.is_protected() {
        let result = send(Request::Unprotect).await;
        record(&mut protection, status, Request::Unprotect, result, 0);
    }
}

fn record(
    protection: &mut Protection,
    status: &ProtectionStatus,
    request: Request,
    result: Result<ProtectionState, AgentError>,
    live: usize,
) {
    let now = tokio::time::Instant::now().into_std();
    protection.sent(request, result.is_ok(), now);
    status.protected.store(protection.is_protected(), Ordering::Relaxed);
    if result.is_err() {
        status.failures.fetch_add(1, Ordering::Relaxed);
    }
    match (result, request) {
        (Ok(state), Request::Protect { expires_in_minutes }) => tracing::info!(
            calls = live,
            minutes = expires_in_minutes,
            expires = state.expiration_date.as_deref().unwrap_or("?"),
            "task scale-in protection on"
        ),
        (Ok(_), Request::Unprotect) => tracing::info!("task scale-in protection off: no live calls"),
        (Err(error), _) => tracing::warn!(
            %error,
            enable = request.enables(),
            retry_secs = RETRY_AFTER.as_secs(),
            "could not set task scale-in protection; calls go on"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTECT: Request = Request::Protect { expires_in_minutes: 10 };

    /// A virtual clock: `at(s)` is `s` seconds after the start.
    fn clock() -> impl Fn(u64) -> Instant {
        let start = Instant::now();
        move |secs| start + Duration::from_secs(secs)
    }

    #[test]
    fn protects_on_the_first_call_renews_half_way_and_unprotects_after_the_last() {
        let at = clock();
        let mut p = Protection::new(10);
        assert_eq!(p.decide(0, at(0)), None, "no calls, nothing to say");
        assert_eq!(p.next_wake(at(0)), None);
        assert_eq!(p.decide(1, at(1)), Some(PROTECT));
        p.sent(PROTECT, true, at(1));
        assert_eq!(p.decide(3, at(2)), None, "more calls: already protected");
        assert_eq!(p.next_wake(at(0)), Some(at(301)), "renewed half-way through 10 minutes");
        assert_eq!(p.decide(2, at(300)), None);
        assert_eq!(p.decide(2, at(301)), Some(PROTECT), "renewal while calls go on");
        p.sent(PROTECT, true, at(301));
        assert_eq!(p.next_wake(at(0)), Some(at(601)));
        assert_eq!(p.decide(0, at(400)), Some(Request::Unprotect), "the last call ended");
        p.sent(Request::Unprotect, true, at(400));
        assert_eq!(p.decide(0, at(10_000)), None, "no renewal without calls");
        assert_eq!(p.next_wake(at(0)), None);
    }

    #[test]
    fn a_failed_request_is_retried_after_a_pause() {
        let at = clock();
        let mut p = Protection::new(10);
        p.sent(PROTECT, false, at(0));
        assert_eq!(p.decide(1, at(1)), None, "not hammering the agent");
        assert_eq!(p.next_wake(at(0)), Some(at(5)));
        assert_eq!(p.decide(1, at(5)), Some(PROTECT));
        p.sent(PROTECT, true, at(5));
        p.sent(Request::Unprotect, false, at(10));
        assert!(p.is_protected(), "still protected as far as we know");
        assert_eq!(p.decide(0, at(12)), None);
        assert_eq!(p.decide(0, at(15)), Some(Request::Unprotect), "the unprotect is retried too");
        p.sent(Request::Unprotect, true, at(15));
        assert!(!p.is_protected());
    }

    #[test]
    fn a_call_that_ends_before_its_protection_was_confirmed_sends_nothing_more() {
        let at = clock();
        let mut p = Protection::new(10);
        p.sent(PROTECT, false, at(0));
        assert_eq!(p.decide(0, at(10)), None, "never protected, nothing to remove");
    }

    #[test]
    fn minutes_are_kept_in_the_agents_range_and_the_bodies_are_the_documented_ones() {
        assert_eq!(Protection::new(0).decide(1, Instant::now()), Some(Request::Protect { expires_in_minutes: 1 }));
        assert_eq!(Protection::new(10_000).renew_after(), Duration::from_secs(2_880 * 30));
        assert_eq!(PROTECT.body(), json!({"ProtectionEnabled": true, "ExpiresInMinutes": 10}));
        assert_eq!(Request::Unprotect.body(), json!({"ProtectionEnabled": false}));
    }

    #[test]
    fn the_agents_answers_parse() {
        let ok: AgentReply = serde_json::from_str(
            r#"{"protection":{"ExpirationDate":"2023-12-20T21:57:44.837Z","ProtectionEnabled":true,"TaskArn":"arn:aws:ecs:us-west-2:111122223333:task/1234567890abcdef0"}}"#,
        )
        .unwrap();
        assert!(ok.protection.unwrap().protection_enabled);
        let failure: AgentReply =
            serde_json::from_str(r#"{"failure":{"Arn":"arn:x","Reason":"TASK_NOT_VALID","Detail":null}}"#).unwrap();
        assert_eq!(failure.failure.unwrap().reason.as_deref(), Some("TASK_NOT_VALID"));
        let error: AgentReply =
            serde_json::from_str(r#"{"error":{"Arn":"arn:x","Code":"AccessDeniedException","Message":"no"}}"#).unwrap();
        assert_eq!(error.error.unwrap().code.as_deref(), Some("AccessDeniedException"));
    }

    /// The loop on tokio's paused clock: protect at the first call, renew every 5 minutes of
    /// a 10-minute protection while calls go on, unprotect after the last, nothing at the stop.
    #[tokio::test(start_paused = true)]
    async fn the_driver_renews_on_the_clock_while_calls_go_on() {
        let (calls, live) = watch::channel(0_usize);
        let (stopping, stop) = watch::channel(false);
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = tokio::time::Instant::now();
        let log = std::sync::Arc::clone(&sent);
        let send = move |request: Request| {
            log.lock().unwrap().push((start.elapsed().as_secs(), request));
            async move {
                Ok(ProtectionState { protection_enabled: request.enables(), expiration_date: None, task_arn: None })
            }
        };
        let status = std::sync::Arc::new(ProtectionStatus::default());
        let driver = tokio::spawn({
            let status = std::sync::Arc::clone(&status);
            async move { drive(Protection::new(10), &status, live, stop, send).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        calls.send_replace(1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(status.is_protected());
        calls.send_replace(2);
        tokio::time::sleep(Duration::from_secs(660)).await;
        calls.send_replace(0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!status.is_protected());
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        stopping.send_replace(true);
        driver.await.unwrap();
        assert_eq!(*sent.lock().unwrap(), [(60, PROTECT), (360, PROTECT), (660, PROTECT), (721, Request::Unprotect)]);
        assert_eq!(status.failures(), 0);
    }
}
