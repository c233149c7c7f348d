//! A circuit breaker per provider, as a pure state machine: the caller passes the time in,
//! so every transition is tested exactly.
//!
//! Closed: requests flow; `failure_threshold` consecutive failures open it. Open: requests are
//! refused until `open_for` has passed. Half-open: one probe at a time; `success_threshold`
//! successful probes close it, any failure opens it again for another `open_for`.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, open_for: Duration::from_secs(30), success_threshold: 3 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { consecutive_failures: u32 },
    Open { until: Instant },
    HalfOpen { successes: u32, probe_in_flight: bool },
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: BreakerState::Closed { consecutive_failures: 0 } }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a request may go to the provider now. In half-open state a `true` is the
    /// permission to send the one probe; its outcome must be reported.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { successes: 0, probe_in_flight: true };
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { probe_in_flight: true, .. } => false,
            BreakerState::HalfOpen { successes, probe_in_flight: false } => {
                self.state = BreakerState::HalfOpen { successes, probe_in_flight: true };
                true
            }
        }
    }

    pub fn on_success(&mut self, _now: Instant) {
        self.state = match self.state {
            BreakerState::HalfOpen { successes, .. } if successes + 1 >= self.config.success_threshold => {
                BreakerState::Closed { consecutive_failures: 0 }
            }
            BreakerState::HalfOpen { successes, .. } => {
                BreakerState::HalfOpen { successes: successes + 1, probe_in_flight: false }
            }
            // A success reported while open is a request that started before the breaker
            // opened; it says nothing about the provider now.
            open @ BreakerState::Open { .. } => open,
            BreakerState::Closed { .. } => BreakerState::Closed { consecutive_failures: 0 },
        };
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { consecutive_failures }
                if consecutive_failures + 1 < self.config.failure_threshold =>
            {
                BreakerState::Closed { consecutive_failures: consecutive_failures + 1 }
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => {
                BreakerState::Open { until: now + self.config.open_for }
            }
            open @ BreakerState::Open { .. } => open,
        };
    }

    /// A permitted request that ended with neither verdict (cancelled by a barge-in, say):
    /// frees the half-open probe slot without counting anything.
    pub fn on_abandoned(&mut self) {
        if let BreakerState::HalfOpen { successes, .. } = self.state {
            self.state = BreakerState::HalfOpen { successes, probe_in_flight: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn five_consecutive_failures_open_it_for_thirty_seconds() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig::default());
        for _ in 0..4 {
            assert!(b.try_acquire(t0));
            b.on_failure(t0);
        }
        b.on_success(t0);
        assert_eq!(b.state(), BreakerState::Closed { consecutive_failures: 0 }, "a success resets the count");
        for i in 0..5 {
            assert!(b.try_acquire(t0 + i * S));
            b.on_failure(t0 + i * S);
        }
        let opened = t0 + 4 * S;
        assert_eq!(b.state(), BreakerState::Open { until: opened + 30 * S });
        assert!(!b.try_acquire(opened + 29 * S + Duration::from_millis(999)));
        assert!(b.try_acquire(opened + 30 * S), "the half-open probe goes out at exactly 30 s");
    }

    #[test]
    fn half_open_allows_one_probe_at_a_time_and_three_successes_close_it() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig::default());
        for _ in 0..5 {
            b.on_failure(t0);
        }
        let t = t0 + 30 * S;
        for successes in 0..3 {
            assert!(b.try_acquire(t));
            assert!(!b.try_acquire(t), "a second request while the probe is out");
            assert_eq!(b.state(), BreakerState::HalfOpen { successes, probe_in_flight: true });
            b.on_success(t);
        }
        assert_eq!(b.state(), BreakerState::Closed { consecutive_failures: 0 });
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig::default());
        for _ in 0..5 {
            b.on_failure(t0);
        }
        let t = t0 + 31 * S;
        assert!(b.try_acquire(t));
        b.on_success(t);
        assert!(b.try_acquire(t));
        b.on_failure(t);
        assert_eq!(b.state(), BreakerState::Open { until: t + 30 * S });
        assert!(b.try_acquire(t + 30 * S));
        b.on_abandoned();
        assert_eq!(b.state(), BreakerState::HalfOpen { successes: 0, probe_in_flight: false });
    }
}
