//! The API suite over the embedded adapter (SQLite in a temp dir).

mod suite;

use golos_ports::{Clock, SystemClock};
use std::sync::Arc;

#[allow(clippy::unused_async)] // the suite macro awaits every backend constructor
async fn local() -> suite::Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = golos_local::LocalPlatform::open(dir.path(), clock).expect("open local platform");
    suite::Backend {
        stores: platform.stores(),
        numbers: platform.numbers(),
        calls: platform.calls(),
        audit: platform.audit(),
        crypto: platform.crypto(),
        secrets: platform.secrets(),
        health: platform.health(),
        guard: Box::new((dir, platform)),
    }
}

api_tests!(local());
