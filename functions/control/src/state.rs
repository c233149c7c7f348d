//! What every handler shares: the stores, secrets, clock and configuration.

use golos_ports::{AuditLog, CallStore, Clock, Crypto, HealthCheck, Ids, NumberStore, SecretString, Secrets, Stores};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Secret names looked up through the `Secrets` port at start-up.
pub const PEPPER_SECRET: &str = "api-key-pepper";
pub const OPERATOR_KEY_SECRET: &str = "operator-api-key";

#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Behind a proxy or API Gateway, the client address is the first `X-Forwarded-For`
    /// entry; directly exposed, forwarded headers are ignored (they would be spoofable).
    pub trust_forwarded_for: bool,
    /// How long a completed `Idempotency-Key` response is replayed.
    pub idempotency_ttl_ms: i64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self { trust_forwarded_for: false, idempotency_ttl_ms: 24 * 3_600_000, max_body_bytes: 1 << 20 }
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
    /// HMAC of the operator key under the pepper; `None` disables operator routes.
    pub operator_key_hash: Option<String>,
    pub config: ControlConfig,
    pub metrics: Arc<ControlMetrics>,
    /// One per dependency, reported by `/health`.
    pub health_checks: Arc<Vec<Arc<dyn HealthCheck>>>,
}
