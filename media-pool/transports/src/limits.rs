//! What a peer on the open internet may make a transport hold or do, and the counters that
//! show when a limit bit (docs/security.md, "Sockets and queues").
//!
//! - [`RateLimiter`]: a token bucket over durations, sans-IO (time is an argument). Caller
//!   audio is charged its own duration, so audio faster than real time beyond a small burst
//!   is dropped; key presses are charged [`DTMF_COST`] each.
//! - [`ConnectionLimiter`]: a global and a per-client-address cap on open sockets, answered
//!   before the WebSocket upgrade.
//! - [`EdgeCounters`]: lock-free counters the worker renders on `/metrics`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How much caller audio may arrive ahead of real time before the excess is dropped. A
/// second absorbs a network stall that delivers its backlog at once and a client that
/// pre-buffers; more would let a peer push the STT and the VAD far ahead of the call's clock.
pub const AUDIO_BURST: Duration = Duration::from_secs(1);

/// What one key press costs from its bucket: RFC 4733 tones are at least 40 ms with a 40 ms
/// gap, so a human (or a dialler) presses at most about 12 keys a second.
pub const DTMF_COST: Duration = Duration::from_millis(80);
/// Key presses that may come at once (one second's worth at [`DTMF_COST`]).
pub const DTMF_BURST: Duration = Duration::from_secs(1);

/// A token bucket whose tokens are durations: it refills by the time that passed (one
/// second per second) up to `burst`, and [`RateLimiter::admit`] takes `cost` out if it is
/// there. Starts full.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    burst: Duration,
    tokens: Duration,
    last: Instant,
}

impl RateLimiter {
    pub fn new(burst: Duration, now: Instant) -> Self {
        Self { burst, tokens: burst, last: now }
    }

    /// Whether something costing `cost` may pass at `now`; if so its cost is taken. A refused
    /// item costs nothing, so a flood does not push the bucket into debt: audio at real time
    /// passes again as soon as the flood stops. `now` earlier than a previous call counts as
    /// no time passing.
    pub fn admit(&mut self, cost: Duration, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed).min(self.burst);
        if cost <= self.tokens {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// What may pass right now without waiting.
    pub const fn available(&self) -> Duration {
        self.tokens
    }
}

/// The duration of `samples` at `rate` Hz (0 for a zero rate).
pub fn audio_duration(samples: usize, rate: u32) -> Duration {
    if rate == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos((samples as u64).saturating_mul(1_000_000_000) / u64::from(rate))
}

/// Counters of limits that bit, shared by every connection of a worker (relaxed atomics: a
/// few adds on paths that are already dropping something).
#[derive(Debug, Default)]
pub struct EdgeCounters {
    /// Caller audio messages dropped by the real-time rate limit.
    pub caller_audio_dropped_frames: AtomicU64,
    /// Caller key presses dropped by their rate limit.
    pub caller_dtmf_dropped: AtomicU64,
    /// Outbound 20 ms frames shed because a call's playout queue was full.
    pub playout_shed_frames: AtomicU64,
    /// Connections closed with 1009 for a frame or message over the dialect's limit.
    pub oversize_closed: AtomicU64,
    /// Connections closed with 1008 because `start` did not come in time.
    pub start_timeouts: AtomicU64,
    /// Upgrades refused with 503 because the worker had its maximum of sockets open.
    pub connections_refused_global: AtomicU64,
    /// Upgrades refused with 503 because the client's address had its maximum open.
    pub connections_refused_per_ip: AtomicU64,
    /// Call sockets open now (a gauge, kept by [`ConnectionPermit`]s).
    pub connections_open: AtomicU64,
}

impl EdgeCounters {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefused {
    /// The worker holds its maximum of sockets.
    Global,
    /// This client address holds its maximum of sockets on the endpoint.
    PerIp,
}

impl ConnectionRefused {
    /// The stable `code` of the 503 problem document.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Global => "too_many_connections",
            Self::PerIp => "too_many_connections_from_address",
        }
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Counts open call sockets against a global cap and, per endpoint, a cap per client address
/// (for IPv6 per /64: one host usually holds a whole /64, so per-address counting would not
/// cap it). A [`ConnectionPermit`] holds one place until dropped (when the socket's task ends,
/// or the upgrade never completes). A cap of `0` is off.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    global: usize,
    open: Arc<Mutex<Open>>,
    counters: Arc<EdgeCounters>,
}

/// One open socket's place; gives it back on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    client: IpAddr,
    open: Arc<Mutex<Open>>,
    counters: Arc<EdgeCounters>,
}

/// The key a client is counted under: IPv4 (also when mapped into IPv6) as is, IPv6 by /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl ConnectionLimiter {
    /// At most `global` sockets in all (`0`: no cap).
    pub fn new(global: usize, counters: Arc<EdgeCounters>) -> Self {
        Self { global, open: Arc::default(), counters }
    }

    /// Takes a place for a socket from `client`, which may hold at most `per_ip` (`0`: no
    /// cap), or says which cap is full (and counts it).
    pub fn try_acquire(&self, client: IpAddr, per_ip: usize) -> Result<ConnectionPermit, ConnectionRefused> {
        let client = client_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if self.global > 0 && open.total >= self.global {
            EdgeCounters::incr(&self.counters.connections_refused_global);
            return Err(ConnectionRefused::Global);
        }
        let from_client = open.by_client.get(&client).copied().unwrap_or(0);
        if per_ip > 0 && from_client >= per_ip {
            EdgeCounters::incr(&self.counters.connections_refused_per_ip);
            return Err(ConnectionRefused::PerIp);
        }
        open.total += 1;
        open.by_client.insert(client, from_client + 1);
        EdgeCounters::incr(&self.counters.connections_open);
        Ok(ConnectionPermit { client, open: Arc::clone(&self.open), counters: Arc::clone(&self.counters) })
    }

    /// Sockets open now, in all and from `client`.
    pub fn open(&self, client: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        (open.total, open.by_client.get(&client_key(client)).copied().unwrap_or(0))
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        // Entries go when they reach zero, so the map holds only addresses with open sockets.
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
        self.counters.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn real_time_audio_always_passes_and_a_burst_of_one_second_is_absorbed() {
        let t0 = Instant::now();
        let mut bucket = RateLimiter::new(AUDIO_BURST, t0);
        // Ten minutes of 20 ms frames exactly on time: nothing dropped.
        for k in 0..30_000 {
            assert!(bucket.admit(ms(20), t0 + ms(20 * k)), "frame {k}");
        }
        // A 5 s stall, then its backlog at once: a second of it passes, the rest is dropped.
        let after_stall = t0 + ms(20 * 30_000 + 5_000);
        let passed = (0..250).filter(|_| bucket.admit(ms(20), after_stall)).count();
        assert_eq!(passed, 50, "a second's worth of 20 ms frames");
    }

    #[test]
    fn audio_at_fifty_times_real_time_is_held_to_real_time_plus_the_burst() {
        let t0 = Instant::now();
        let mut bucket = RateLimiter::new(AUDIO_BURST, t0);
        // A 20 ms frame every 400 µs for 10 s of virtual time: 25,000 frames, 500 s of audio.
        let mut passed = Duration::ZERO;
        let mut dropped = 0;
        for k in 0..25_000u32 {
            if bucket.admit(ms(20), t0 + Duration::from_micros(400) * k) {
                passed += ms(20);
            } else {
                dropped += 1;
            }
        }
        // What passed is the elapsed time plus the burst, to within one frame.
        let elapsed = Duration::from_micros(400) * 24_999;
        assert!(passed <= elapsed + AUDIO_BURST + ms(20) && passed + ms(20) >= elapsed + AUDIO_BURST, "{passed:?}");
        assert_eq!(dropped, 25_000 - passed.as_millis() as u32 / 20);
        // Back to real time: it passes at once, refused frames left no debt.
        let later = t0 + Duration::from_micros(400) * 25_000 + ms(20);
        assert!(bucket.admit(ms(20), later));
    }

    #[test]
    fn a_clock_that_goes_backwards_refills_nothing() {
        let t0 = Instant::now() + ms(1_000);
        let mut bucket = RateLimiter::new(ms(100), t0);
        assert!(bucket.admit(ms(100), t0));
        assert!(!bucket.admit(ms(20), t0.checked_sub(ms(500)).unwrap()));
        assert!(!bucket.admit(ms(20), t0 + ms(10)));
        assert!(bucket.admit(ms(20), t0 + ms(20)));
        assert_eq!(bucket.available(), Duration::ZERO);
    }

    #[test]
    fn durations_of_audio() {
        assert_eq!(audio_duration(320, 16_000), ms(20));
        assert_eq!(audio_duration(4_800, 48_000), ms(100));
        assert_eq!(audio_duration(160, 8_000), ms(20));
        assert_eq!(audio_duration(1, 0), Duration::ZERO);
    }

    #[test]
    fn connections_are_capped_per_address_and_in_all_and_places_come_back() {
        let counters = Arc::new(EdgeCounters::default());
        let limiter = ConnectionLimiter::new(5, Arc::clone(&counters));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limiter.try_acquire(a, 2).unwrap();
        let _second = limiter.try_acquire(a, 2).unwrap();
        assert_eq!(limiter.try_acquire(a, 2).unwrap_err(), ConnectionRefused::PerIp);
        let others: Vec<_> = (0..3).map(|i| limiter.try_acquire(format!("10.0.0.{i}").parse().unwrap(), 2)).collect();
        assert!(others.iter().all(Result::is_ok));
        assert_eq!(limiter.try_acquire(b, 2).unwrap_err(), ConnectionRefused::Global);
        assert_eq!(EdgeCounters::get(&counters.connections_open), 5);
        drop(first);
        assert_eq!(limiter.open(a), (4, 1));
        let _third = limiter.try_acquire(a, 2).expect("a place came back");
        // Another endpoint with a higher cap per address takes more from the same address.
        drop(others);
        let _fourth = limiter.try_acquire(a, 3).expect("under the other endpoint's cap");
        assert_eq!(EdgeCounters::get(&counters.connections_refused_per_ip), 1);
        assert_eq!(EdgeCounters::get(&counters.connections_refused_global), 1);
        assert_eq!(limiter.open(b), (3, 0));
    }

    #[test]
    fn zero_turns_a_cap_off() {
        let limiter = ConnectionLimiter::new(0, Arc::default());
        let permits: Vec<_> = (0..100).map(|_| limiter.try_acquire(IpAddr::from([127, 0, 0, 1]), 0).unwrap()).collect();
        assert_eq!(permits.len(), 100);
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limiter = ConnectionLimiter::new(0, Arc::default());
        let _one = limiter.try_acquire("2001:db8:1:2::1".parse().unwrap(), 1).unwrap();
        let same_64 = limiter.try_acquire("2001:db8:1:2:ffff::9".parse().unwrap(), 1);
        assert_eq!(same_64.unwrap_err(), ConnectionRefused::PerIp);
        let _other_64 = limiter.try_acquire("2001:db8:1:3::1".parse().unwrap(), 1).unwrap();
        let _v4 = limiter.try_acquire("192.0.2.7".parse().unwrap(), 1).unwrap();
        assert_eq!(limiter.try_acquire("::ffff:192.0.2.7".parse().unwrap(), 1).unwrap_err(), ConnectionRefused::PerIp);
    }
}
