//! The SIP trunks' circuit breakers, one per trunk that golos health-checks: the probe loop
//! (`calls::trunk_probes`) feeds them OPTIONS outcomes, the INVITE path asks them whether a
//! trunk's new calls may start, and `/metrics` shows them. Sans-IO: every method takes the
//! time, so tests move it instead of waiting.
//!
//! A trunk with no breaker here (not probed: no `sip_address`, disabled, or not yet checked)
//! admits its calls: nothing has said it is unwell.

use golos_domain::TrunkId;
use golos_sip::breaker::{BreakerConfig, BreakerState, TrunkBreaker, TrunkOutcome};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// What a health check came to, as `golos_sip_trunk_probes_total{outcome}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeOutcome {
    /// A final answer that does not count against the trunk (2xx-4xx: it is up and speaking SIP).
    Answered,
    /// 5xx or 6xx.
    ErrorStatus,
    Timeout,
    TransportError,
}

impl ProbeOutcome {
    const ALL: [Self; 4] = [Self::Answered, Self::ErrorStatus, Self::Timeout, Self::TransportError];

    fn of(outcome: TrunkOutcome) -> Self {
        match outcome {
            TrunkOutcome::Answered(_) if outcome.is_failure() => Self::ErrorStatus,
            TrunkOutcome::Answered(_) => Self::Answered,
            TrunkOutcome::Timeout => Self::Timeout,
            TrunkOutcome::TransportError => Self::TransportError,
        }
    }

    const fn label(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::ErrorStatus => "error_status",
            Self::Timeout => "timeout",
            Self::TransportError => "transport_error",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// How a health check changed whether the trunk's calls are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    /// Its new calls are refused from now on.
    Opened,
    /// Its new calls are taken again.
    Closed,
}

#[derive(Debug)]
struct Trunk {
    breaker: TrunkBreaker,
    /// Health checks by outcome, indexed like `ProbeOutcome::ALL`.
    probes: [u64; ProbeOutcome::ALL.len()],
}

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    trunks: BTreeMap<TrunkId, Trunk>,
}

/// Every probed trunk's breaker and check counts. Share it as an `Arc`.
#[derive(Debug)]
pub struct TrunkHealth {
    inner: Mutex<Inner>,
}

impl Default for TrunkHealth {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

impl TrunkHealth {
    pub fn new(config: BreakerConfig) -> Self {
        Self { inner: Mutex::new(Inner { config, trunks: BTreeMap::new() }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plain maps and counters: a panic elsewhere leaves them usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The timings new breakers get (the SIP edge sets them from the settings at start).
    pub fn configure(&self, config: BreakerConfig) {
        self.lock().config = config;
    }

    pub fn config(&self) -> BreakerConfig {
        self.lock().config
    }

    /// Whether `trunk`'s new calls may start at `now`.
    pub fn admits(&self, trunk: &TrunkId, now: Instant) -> bool {
        self.lock().trunks.get_mut(trunk).is_none_or(|t| t.breaker.admits_calls(now))
    }

    /// One health check of `trunk`; answers when it opened or closed the breaker.
    pub fn record_probe(&self, trunk: &TrunkId, outcome: TrunkOutcome, now: Instant) -> Option<BreakerChange> {
        let mut inner = self.lock();
        let config = inner.config;
        let entry = inner
            .trunks
            .entry(trunk.clone())
            .or_insert_with(|| Trunk { breaker: TrunkBreaker::new(config, now), probes: [0; ProbeOutcome::ALL.len()] });
        entry.probes[ProbeOutcome::of(outcome).index()] += 1;
        let admitted = entry.breaker.admits_calls(now);
        entry.breaker.record_probe(outcome, now);
        match (admitted, entry.breaker.admits_calls(now)) {
            (true, false) => Some(BreakerChange::Opened),
            (false, true) => Some(BreakerChange::Closed),
            _ => None,
        }
    }

    /// Forgets the trunks not in `probed` (deleted, disabled, or no longer given an address):
    /// their calls are admitted and their series leave `/metrics`.
    pub fn retain(&self, probed: &BTreeSet<TrunkId>) {
        self.lock().trunks.retain(|id, _| probed.contains(id));
    }

    /// `golos_sip_trunk_breaker_open{trunk}` and `golos_sip_trunk_probes_total{trunk,outcome}`
    /// in the text exposition format, one series per probed trunk.
    pub fn render(&self, out: &mut String, now: Instant) {
        let mut inner = self.lock();
        let _ = writeln!(
            out,
            "# HELP golos_sip_trunk_breaker_open 1 while the trunk's circuit breaker refuses its new calls (open, or \
             closing through health checks), else 0.\n# TYPE golos_sip_trunk_breaker_open gauge"
        );
        for (id, trunk) in &mut inner.trunks {
            let refusing = !matches!(trunk.breaker.state(now), BreakerState::Closed);
            let _ = writeln!(out, "golos_sip_trunk_breaker_open{{trunk=\"{id}\"}} {}", u8::from(refusing));
        }
        let _ = writeln!(
            out,
            "# HELP golos_sip_trunk_probes_total OPTIONS health checks of the trunk by outcome (answered: 1xx-4xx; \
             error_status: 5xx/6xx).\n# TYPE golos_sip_trunk_probes_total counter"
        );
        for (id, trunk) in &inner.trunks {
            for outcome in ProbeOutcome::ALL {
                let count = trunk.probes[outcome.index()];
                let _ = writeln!(
                    out,
                    "golos_sip_trunk_probes_total{{trunk=\"{id}\",outcome=\"{}\"}} {count}",
                    outcome.label()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn trunk(id: &str) -> TrunkId {
        TrunkId::parse(id).unwrap()
    }

    fn quick() -> BreakerConfig {
        BreakerConfig {
            failures_to_open: 5,
            open_for: Duration::from_secs(1),
            probes_to_close: 3,
            probe_every: Duration::from_millis(200),
        }
    }

    #[test]
    fn failed_checks_open_one_trunks_breaker_and_good_ones_close_it() {
        let health = TrunkHealth::new(quick());
        let (sick, well) = (trunk("trk_sick"), trunk("trk_well"));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(health.admits(&sick, t0), "a trunk never checked takes calls");
        for i in 0..4 {
            assert_eq!(health.record_probe(&sick, TrunkOutcome::Answered(503), at(i * 200)), None);
            health.record_probe(&well, TrunkOutcome::Answered(200), at(i * 200));
        }
        assert!(health.admits(&sick, at(700)));
        assert_eq!(health.record_probe(&sick, TrunkOutcome::Timeout, at(800)), Some(BreakerChange::Opened));
        assert!(!health.admits(&sick, at(800)) && health.admits(&well, at(800)), "only the sick trunk");
        // After `open_for`, three good checks in a row; calls stay refused until the third.
        for ms in [1_900, 2_100] {
            assert_eq!(health.record_probe(&sick, TrunkOutcome::Answered(200), at(ms)), None);
            assert!(!health.admits(&sick, at(ms)));
        }
        assert_eq!(health.record_probe(&sick, TrunkOutcome::Answered(404), at(2_300)), Some(BreakerChange::Closed));
        assert!(health.admits(&sick, at(2_300)), "a 404 is an answer: the trunk is up");
    }

    #[test]
    fn metrics_show_each_probed_trunk_until_it_is_no_longer_probed() {
        let health = TrunkHealth::new(quick());
        let (a, b) = (trunk("trk_a"), trunk("trk_b"));
        let t0 = Instant::now();
        for _ in 0..5 {
            health.record_probe(&a, TrunkOutcome::TransportError, t0);
        }
        health.record_probe(&b, TrunkOutcome::Answered(200), t0);
        health.record_probe(&b, TrunkOutcome::Answered(600), t0);
        let mut page = String::new();
        health.render(&mut page, t0);
        for line in [
            "golos_sip_trunk_breaker_open{trunk=\"trk_a\"} 1",
            "golos_sip_trunk_breaker_open{trunk=\"trk_b\"} 0",
            "golos_sip_trunk_probes_total{trunk=\"trk_a\",outcome=\"transport_error\"} 5",
            "golos_sip_trunk_probes_total{trunk=\"trk_a\",outcome=\"answered\"} 0",
            "golos_sip_trunk_probes_total{trunk=\"trk_b\",outcome=\"answered\"} 1",
            "golos_sip_trunk_probes_total{trunk=\"trk_b\",outcome=\"error_status\"} 1",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} in\n{page}");
        }
        health.retain(&BTreeSet::from([b.clone()]));
        assert!(health.admits(&a, t0), "a trunk no longer probed is no longer refused");
        let mut page = String::new();
        health.render(&mut page, t0);
        assert!(!page.contains("trk_a") && page.contains("trk_b"), "{page}");
    }
}
