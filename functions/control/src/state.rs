//! What every handler shares: the stores, secrets, clock and configuration.

use crate::payments::YookassaConfig;
use golos_ports::{
    AuditLog, CallStore, Clock, Crypto, HealthCheck, Ids, NumberStore, Queue, SecretString, Secrets, Stores,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Secret names looked up through the `Secrets` port at start-up.
pub const PEPPER_SECRET: &str = "api-key-pepper";
pub const OPERATOR_KEY_SECRET: &str = "operator-api-key";
/// Signs call tokens. Its own key, so rotating it (which ends every outstanding call token)
/// leaves API keys alone, and a leak of one key says nothing about the other.
pub const CALL_TOKEN_KEY_SECRET: &str = "call-token-key";

#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Behind a proxy, the client address is the last `X-Forwarded-For` entry (the one the
    /// proxy appended); directly exposed, forwarded headers are ignored (they would be spoofable).
    pub trust_forwarded_for: bool,
    /// How long a completed `Idempotency-Key` response is replayed.
    pub idempotency_ttl_ms: i64,
    /// How long a claimed `Idempotency-Key` whose request has not finished keeps retries
    /// out (`409 idempotency_in_progress`). A crash or a dropped connection leaves a claim
    /// behind; it lapses after this, so the client's retry runs within seconds.
    pub idempotency_claim_ttl_ms: i64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Where YooKassa notifications may come from and how they are confirmed.
    pub yookassa: YookassaConfig,
    /// How long an admission lease lives without a heartbeat.
    pub lease_ttl_ms: i64,
    /// How long a held caller keeps its place in the hold queue without asking again.
    pub hold_stale_after_ms: i64,
    /// How often a long-lived process runs the sweeper (lost calls billed, outbox relayed).
    pub sweep_interval_ms: u64,
    /// Most callers one org may have in its hold queue; more are refused `hold_queue_full`.
    pub hold_max_waiters_per_org: u32,
    /// The operator's exceptions to the egress policy (`GOLOS_EGRESS_ALLOW`): agents may name
    /// these destinations in tool URLs and provider endpoints.
    pub egress: golos_egress::EgressAllowlist,
    /// Failed authentications one client address may make in a minute; after that its
    /// requests are answered `429 auth_throttled` until the minute ends.
    pub auth_failures_per_ip_per_minute: u32,
    /// Reconciliation checks the debits of calls that started in this many last days.
    pub reconcile_call_window_days: u32,
    /// How customer webhooks are delivered.
    pub webhooks: crate::webhook_delivery::DeliveryConfig,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            trust_forwarded_for: false,
            idempotency_ttl_ms: 24 * 3_600_000,
            idempotency_claim_ttl_ms: 30_000,
            max_body_bytes: 1 << 20,
            yookassa: YookassaConfig::default(),
            lease_ttl_ms: 30_000,
            hold_stale_after_ms: 15_000,
            sweep_interval_ms: 10_000,
            hold_max_waiters_per_org: 100,
            auth_failures_per_ip_per_minute: 20,
            egress: golos_egress::EgressAllowlist::none(),
            reconcile_call_window_days: crate::reconcile::DEFAULT_CALL_WINDOW_DAYS,
            webhooks: crate::webhook_delivery::DeliveryConfig::default(),
        }
    }
}

/// Counters exported as metrics (and logged); the worker's `/metrics` renders them.
#[derive(Debug, Default)]
pub struct ControlMetrics {
    pub requests_total: AtomicU64,
    pub auth_failures_total: AtomicU64,
    pub rate_limited_total: AtomicU64,
    pub idempotent_replays_total: AtomicU64,
    /// Organisations whose stored balance differed from their ledger at the last
    /// reconciliation; anything but 0 is an incident.
    pub ledger_drift_orgs: AtomicU64,
    /// Ended calls without their one debit at the last reconciliation.
    pub unbilled_calls: AtomicU64,
    pub call_events_processed_total: AtomicU64,
    pub call_events_failed_total: AtomicU64,
    pub leases_swept_total: AtomicU64,
    pub webhook_events_emitted_total: AtomicU64,
    pub webhook_deliveries_succeeded_total: AtomicU64,
    pub webhook_deliveries_failed_total: AtomicU64,
    pub webhook_dead_letters_total: AtomicU64,
    pub webhook_endpoints_disabled_total: AtomicU64,
}

impl ControlMetrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone)]
pub struct ControlState {
    pub stores: Stores,
    pub numbers: Arc<dyn NumberStore>,
    pub calls: Arc<dyn CallStore>,
    pub audit: Arc<dyn AuditLog>,
    pub crypto: Arc<dyn Crypto>,
    /// Named secrets read per request (payment providers' webhook keys may be rotated).
    pub secrets: Arc<dyn Secrets>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub pepper: SecretString,
    /// The HMAC key of call tokens (`CALL_TOKEN_KEY_SECRET`).
    pub call_token_key: SecretString,
    /// HMAC of the operator key under the pepper; `None` disables operator routes.
    pub operator_key_hash: Option<String>,
    pub config: ControlConfig,
    pub metrics: Arc<ControlMetrics>,
    /// One per dependency, reported by `/health`.
    pub health_checks: Arc<Vec<Arc<dyn HealthCheck>>>,
    pub queues: EventQueues,
    /// Outbound HTTP (confirming payments with providers).
    pub http: reqwest::Client,
    /// Outbound HTTP to customers' webhook endpoints, under the egress policy
    /// (`config.egress`): built once, since a client holds connection pools and TLS roots.
    pub webhook_http: golos_egress::net::EgressClient,
}

/// The queues between the media pool, the control plane and customers.
#[derive(Debug, Clone)]
pub struct EventQueues {
    /// `call.started` / `call.ended` from the media pool, consumed by `call_events`.
    pub call_events: Arc<dyn Queue>,
    /// Customer webhook events, delivered by the webhooks consumer.
    pub webhooks: Arc<dyn Queue>,
}

impl EventQueues {
    pub const CALL_EVENTS: &'static str = "call-events";
    pub const WEBHOOKS: &'static str = "webhooks";
}
