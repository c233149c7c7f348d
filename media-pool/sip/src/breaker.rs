//! The trunk circuit breaker of the reviews, sans-IO with time as input: 5 failures in a row
//! open it; while it is open, new INVITEs from the trunk are refused `503` with Retry-After
//! (a trunk whose health checks or calls keep failing would otherwise take callers into
//! calls that cannot work); 30 s after it opened, OPTIONS probes (health checks every 30 s)
//! test the trunk, and 3 good probes in a row close it, while one bad probe opens it again.
//!
//! Only what says the trunk is unwell counts: transport errors, timeouts and 5xx/6xx. A
//! `486 Busy`, `480 Unavailable` or `487 Terminated` is a callee's or caller's answer and
//! says nothing about the trunk.

use std::time::{Duration, Instant};

/// What one request to the trunk (an OPTIONS probe, an outbound INVITE, a REFER) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkOutcome {
    /// A final response with this status.
    Answered(u16),
    /// No response within the transaction's timer.
    Timeout,
    /// The request could not be sent or the connection failed.
    TransportError,
}

impl TrunkOutcome {
    /// Whether the outcome counts against the trunk.
    pub const fn is_failure(self) -> bool {
        match self {
            Self::Answered(status) => status >= 500,
            Self::Timeout | Self::TransportError => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker.
    pub failures_to_open: u32,
    /// How long it stays open before probes may close it.
    pub open_for: Duration,
    /// Good probes in a row that close it.
    pub probes_to_close: u32,
    /// How often the trunk is health-checked (OPTIONS), open or not.
    pub probe_every: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            open_for: Duration::from_secs(30),
            probes_to_close: 3,
            probe_every: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused; `until` is when probes start to count.
    Open { until: Instant },
    /// Calls are still refused; `good` probes in a row so far.
    Probing { good: u32 },
}

/// One trunk's breaker.
#[derive(Debug, Clone)]
pub struct TrunkBreaker {
    config: BreakerConfig,
    state: BreakerState,
    failures_in_a_row: u32,
    next_probe: Instant,
}

impl TrunkBreaker {
    pub fn new(config: BreakerConfig, now: Instant) -> Self {
        Self { config, state: BreakerState::Closed, failures_in_a_row: 0, next_probe: now + config.probe_every }
    }

    /// The state at `now` (an open breaker becomes probing once `open_for` has passed).
    pub fn state(&mut self, now: Instant) -> BreakerState {
        if let BreakerState::Open { until } = self.state {
            if now >= until {
                self.state = BreakerState::Probing { good: 0 };
            }
        }
        self.state
    }

    /// Whether a new call from or to the trunk may start now; otherwise it is refused `503`
    /// with [`Self::retry_after`].
    pub fn admits_calls(&mut self, now: Instant) -> bool {
        self.state(now) == BreakerState::Closed
    }

    /// How long a refused caller's side should wait: until probes could close the breaker.
    pub fn retry_after(&mut self, now: Instant) -> Duration {
        let probes_left = match self.state(now) {
            BreakerState::Closed => return Duration::ZERO,
            BreakerState::Open { until } => {
                return until.saturating_duration_since(now) + self.config.probe_every * self.config.probes_to_close
            }
            BreakerState::Probing { good } => self.config.probes_to_close.saturating_sub(good),
        };
        self.config.probe_every * probes_left.max(1)
    }

    /// When the next health check is due; the caller sends OPTIONS then and records what
    /// came back with [`Self::record_probe`].
    pub const fn next_probe(&self) -> Instant {
        self.next_probe
    }

    /// What a health check came to.
    pub fn record_probe(&mut self, outcome: TrunkOutcome, now: Instant) {
        self.next_probe = now + self.config.probe_every;
        match (self.state(now), outcome.is_failure()) {
            (BreakerState::Probing { good }, false) => {
                self.state = if good + 1 >= self.config.probes_to_close {
                    self.failures_in_a_row = 0;
                    BreakerState::Closed
                } else {
                    BreakerState::Probing { good: good + 1 }
                };
            }
            (BreakerState::Probing { .. }, true) => self.open(now),
            (_, failed) => self.count(failed, now),
        }
    }

    /// What a call's request to the trunk (an INVITE, a REFER) came to.
    pub fn record_call(&mut self, outcome: TrunkOutcome, now: Instant) {
        if self.state(now) == BreakerState::Closed {
            self.count(outcome.is_failure(), now);
        }
    }

    fn count(&mut self, failed: bool, now: Instant) {
        if !failed {
            self.failures_in_a_row = 0;
            return;
        }
        self.failures_in_a_row += 1;
        if self.state == BreakerState::Closed && self.failures_in_a_row >= self.config.failures_to_open {
            self.open(now);
        }
    }

    fn open(&mut self, now: Instant) {
        self.failures_in_a_row = 0;
        self.state = BreakerState::Open { until: now + self.config.open_for };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn five_failures_open_it_and_three_probes_close_it() {
        let t0 = Instant::now();
        let mut breaker = TrunkBreaker::new(BreakerConfig::default(), t0);
        for i in 0..4 {
            breaker.record_call(TrunkOutcome::Timeout, t0 + S * i);
            assert!(breaker.admits_calls(t0 + S * i), "still closed after {} failures", i + 1);
        }
        breaker.record_call(TrunkOutcome::Answered(503), t0 + S * 4);
        assert!(!breaker.admits_calls(t0 + S * 5), "the fifth failure opens it");
        assert_eq!(breaker.retry_after(t0 + S * 4), S * 30 + S * 90);
        // Probes before `open_for` has passed do not count.
        breaker.record_probe(TrunkOutcome::Answered(200), t0 + S * 10);
        assert!(matches!(breaker.state(t0 + S * 10), BreakerState::Open { .. }));
        breaker.record_probe(TrunkOutcome::Answered(200), t0 + S * 40);
        breaker.record_probe(TrunkOutcome::Answered(200), t0 + S * 70);
        assert_eq!(breaker.state(t0 + S * 70), BreakerState::Probing { good: 2 });
        assert!(!breaker.admits_calls(t0 + S * 70), "probing still refuses calls");
        breaker.record_probe(TrunkOutcome::Answered(200), t0 + S * 100);
        assert!(breaker.admits_calls(t0 + S * 100), "three good probes close it");
        assert_eq!(breaker.next_probe(), t0 + S * 130);
    }

    #[test]
    fn a_bad_probe_reopens_it_and_busy_callees_never_count() {
        let t0 = Instant::now();
        let mut breaker = TrunkBreaker::new(BreakerConfig::default(), t0);
        for status in [486, 480, 487, 404, 200] {
            for _ in 0..10 {
                breaker.record_call(TrunkOutcome::Answered(status), t0);
            }
        }
        assert!(breaker.admits_calls(t0), "only transport errors, timeouts and 5xx/6xx count");
        for _ in 0..5 {
            breaker.record_call(TrunkOutcome::TransportError, t0);
        }
        breaker.record_probe(TrunkOutcome::Answered(200), t0 + S * 31);
        breaker.record_probe(TrunkOutcome::Timeout, t0 + S * 61);
        assert_eq!(breaker.state(t0 + S * 61), BreakerState::Open { until: t0 + S * 91 });
        let mut reset = TrunkBreaker::new(BreakerConfig::default(), t0);
        for _ in 0..4 {
            reset.record_call(TrunkOutcome::Timeout, t0);
        }
        reset.record_call(TrunkOutcome::Answered(200), t0);
        reset.record_call(TrunkOutcome::Timeout, t0);
        assert!(reset.admits_calls(t0), "failures must come in a row");
    }

    #[test]
    fn six_hundreds_count_as_failures() {
        assert!(TrunkOutcome::Answered(600).is_failure() && TrunkOutcome::Answered(500).is_failure());
        assert!(!TrunkOutcome::Answered(200).is_failure());
    }

    proptest! {
        /// Whatever happens, the breaker closes only through `probes_to_close` good probes in a
        /// row after `open_for`, and opens only after `failures_to_open` failures in a row.
        #[test]
        fn it_opens_and_closes_only_by_its_rules(events in proptest::collection::vec((any::<bool>(), 0u16..700, 0u64..20), 1..200)) {
            let t0 = Instant::now();
            let mut breaker = TrunkBreaker::new(BreakerConfig::default(), t0);
            let mut now = t0;
            let mut failures_in_a_row = 0u32;
            for (probe, status, wait) in events {
                now += S * u32::try_from(wait).unwrap();
                let outcome = if status < 100 { TrunkOutcome::Timeout } else { TrunkOutcome::Answered(status) };
                let before = breaker.state(now);
                if probe { breaker.record_probe(outcome, now) } else { breaker.record_call(outcome, now) }
                let after = breaker.state(now);
                failures_in_a_row = if outcome.is_failure() { failures_in_a_row + 1 } else { 0 };
                if before == BreakerState::Closed && after != BreakerState::Closed {
                    prop_assert!(failures_in_a_row >= 5);
                }
                if before != BreakerState::Closed && after == BreakerState::Closed {
                    let closed_by_the_third_good_probe = matches!(before, BreakerState::Probing { good: 2 }) && probe && !outcome.is_failure();
                    prop_assert!(closed_by_the_third_good_probe, "closed from {:?}", before);
                }
            }
        }
    }
}
