//! The API suite over the embedded adapter (SQLite in a temp dir).

mod suite;

#[allow(clippy::unused_async)] // the suite macro awaits every backend constructor
async fn local() -> suite::Backend {
    suite::local_backend(|_| {})
}

api_tests!(local());
