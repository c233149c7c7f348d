use golos_domain::Timestamp;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time as an input. Stores take `now` explicitly; this is where it comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        Timestamp::from_millis(ms)
    }
}

/// A clock that moves only when told to: tests of expiry, visibility and TTL use it.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_millis())))
    }

    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Source of unique suffixes for new ids.
pub trait Ids: Send + Sync + std::fmt::Debug {
    fn new_suffix(&self) -> String;
}

/// Random ids (UUID v4, 32 hex digits, no dashes so they read as one token).
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidIds;

impl Ids for UuidIds {
    fn new_suffix(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// Predictable ids for tests and fixtures.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl Ids for SequentialIds {
    fn new_suffix(&self) -> String {
        format!("{:08}", self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}
