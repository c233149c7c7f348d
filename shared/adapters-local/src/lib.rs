//! The embedded default adapter: every port of `golos-ports` over one SQLite file, a local
//! master key file and secrets from the environment or files.
//!
//! A self-hosted golos needs nothing but a data directory. Its layout:
//! `golos.db` (WAL mode, with its `-wal`/`-shm` companions), `master.key` (32 random bytes,
//! mode 0600) and `secrets/<name>` (one secret per file, mode 0600).

mod control;
mod crypto;
mod db;
mod hold;
mod queue;
mod schema;
mod secrets;
mod stores;

use db::Db;
use golos_ports::{
    AuditLog, CallStore, Clock, Crypto, HealthCheck, NumberStore, PortError, Queue, QueueConfig, Secrets, Stores,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crypto::LocalCrypto;
pub use secrets::LocalSecrets;

/// Why the local platform could not be opened or written to.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The master key file exists but cannot be trusted (size or permissions).
    #[error("master key {}: {reason}", path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error("invalid: {0}")]
    Invalid(String),
}

impl From<LocalError> for PortError {
    fn from(err: LocalError) -> Self {
        match err {
            LocalError::Invalid(reason) => Self::Invalid { reason },
            other => Self::unavailable(other),
        }
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io { path: path.to_path_buf(), source }
}

/// Maps an SQLite failure inside a port call; the store is what failed, so it may be retried.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(sql)`
pub(crate) fn sql(err: rusqlite::Error) -> PortError {
    PortError::unavailable(format!("sqlite: {err}"))
}

/// One data directory opened: cheap to clone, every clone shares the database and writer.
#[derive(Debug, Clone)]
pub struct LocalPlatform {
    db: Arc<Db>,
    /// Rate-limit counters: written on every API request and worthless after a crash, so
    /// they live in their own database without fsyncs and never wait on the ledger's.
    counters_db: Arc<Db>,
    clock: Arc<dyn Clock>,
    crypto: Arc<LocalCrypto>,
    secrets: Arc<LocalSecrets>,
    secrets_dir: PathBuf,
}

impl LocalPlatform {
    /// Opens (creating if needed) `data_dir/golos.db`, `data_dir/master.key` and
    /// `data_dir/secrets/`.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, LocalError> {
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let secrets_dir = data_dir.join("secrets");
        secrets::create_private_dir(&secrets_dir)?;
        let master_key = crypto::load_or_create_master_key(&data_dir.join("master.key"))?;
        let db = Db::open(&data_dir.join("golos.db"), db::Durability::Full)?;
        let counters_db = Db::open(&data_dir.join("counters.db"), db::Durability::Volatile)?;
        Ok(Self {
            db,
            counters_db,
            clock,
            crypto: Arc::new(LocalCrypto::new(&master_key)),
            secrets: Arc::new(LocalSecrets::new(secrets_dir.clone())),
            secrets_dir,
        })
    }

    pub fn stores(&self) -> Stores {
        let store = Arc::new(stores::SqliteStores::new(Arc::clone(&self.db)));
        Stores {
            orgs: store.clone(),
            agents: store.clone(),
            api_keys: store.clone(),
            ledger: store.clone(),
            leases: store.clone(),
            idempotency: store.clone(),
            credentials: store.clone(),
            outbox: store.clone(),
            hold: store.clone(),
            trunks: store.clone(),
            webhook_endpoints: store.clone(),
            webhook_deliveries: store.clone(),
            contexts: store,
            counters: Arc::new(stores::SqliteStores::new(Arc::clone(&self.counters_db))),
        }
    }

    pub fn numbers(&self) -> Arc<dyn NumberStore> {
        Arc::new(stores::SqliteStores::new(Arc::clone(&self.db)))
    }

    pub fn calls(&self) -> Arc<dyn CallStore> {
        Arc::new(stores::SqliteStores::new(Arc::clone(&self.db)))
    }

    pub fn audit(&self) -> Arc<dyn AuditLog> {
        Arc::new(stores::SqliteStores::new(Arc::clone(&self.db)))
    }

    /// The queue `config.name` and its dead-letter queue `<name>-dlq`, timed by the clock
    /// given to [`LocalPlatform::open`].
    pub fn queue(&self, config: QueueConfig) -> Result<Arc<dyn Queue>, LocalError> {
        Ok(Arc::new(queue::SqliteQueue::new(Arc::clone(&self.db), Arc::clone(&self.clock), config)?))
    }

    pub fn crypto(&self) -> Arc<dyn Crypto> {
        self.crypto.clone()
    }

    pub fn secrets(&self) -> Arc<dyn Secrets> {
        self.secrets.clone()
    }

    pub fn health(&self) -> Arc<dyn HealthCheck> {
        Arc::new(DatabaseHealth { db: Arc::clone(&self.db) })
    }

    /// Stores a secret as the file `secrets/<name>`, readable by this user only.
    pub fn put_secret_file(&self, name: &str, value: &str) -> Result<(), LocalError> {
        secrets::write_secret_file(&self.secrets_dir, name, value)
    }
}

#[derive(Debug)]
struct DatabaseHealth {
    db: Arc<Db>,
}

#[async_trait::async_trait]
impl HealthCheck for DatabaseHealth {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> golos_ports::Result<()> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map_err(sql)?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golos_domain::billing::{LedgerEventKind, PaymentProvider};
    use golos_domain::{Kopecks, OrgId, Timestamp};
    use golos_ports::{ManualClock, PageRequest};
    use std::time::Duration;

    fn clock() -> Arc<dyn Clock> {
        Arc::new(ManualClock::new(Timestamp::from_millis(1_795_305_600_000)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopening_after_drop_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgId::parse("org_reopen").unwrap();
        let event = LedgerEventKind::PaymentCredit {
            provider: PaymentProvider::Yookassa,
            payment_id: "p1".into(),
            amount: Kopecks::new(700),
        };
        let envelope;
        let context = golos_ports::EncryptionContext::new([("org", "org_reopen")]);
        {
            let platform = LocalPlatform::open(dir.path(), clock()).unwrap();
            platform.stores().ledger.apply(&org, &event, Timestamp::from_millis(1)).await.unwrap();
            let queue = platform.queue(QueueConfig::new("jobs")).unwrap();
            queue.send("survives", Duration::ZERO).await.unwrap();
            envelope = platform.crypto().encrypt(b"secret", &context).await.unwrap();
        }
        let platform = LocalPlatform::open(dir.path(), clock()).unwrap();
        let ledger = platform.stores().ledger;
        assert_eq!(ledger.balance(&org).await.unwrap(), Kopecks::new(700));
        assert!(ledger.apply(&org, &event, Timestamp::from_millis(2)).await.unwrap().is_duplicate());
        assert_eq!(ledger.list(&org, &PageRequest::first(10)).await.unwrap().items.len(), 1);
        let queue = platform.queue(QueueConfig::new("jobs")).unwrap();
        let got = queue.receive(10, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "survives");
        assert_eq!(
            platform.crypto().decrypt(&envelope, &context).await.unwrap(),
            b"secret",
            "the master key file is reused"
        );
        platform.health().check().await.unwrap();
    }

    #[tokio::test]
    async fn poison_message_moves_to_the_dead_letter_queue_only() {
        let dir = tempfile::tempdir().unwrap();
        let manual = ManualClock::new(Timestamp::from_millis(0));
        let platform = LocalPlatform::open(dir.path(), Arc::new(manual.clone())).unwrap();
        let config = QueueConfig { max_receives: 2, ..QueueConfig::new("hooks") };
        let queue = platform.queue(config).unwrap();
        let other = platform.queue(QueueConfig::new("other")).unwrap();
        queue.send("poison", Duration::ZERO).await.unwrap();
        queue.send("fine", Duration::from_secs(60)).await.unwrap();
        other.send("elsewhere", Duration::ZERO).await.unwrap();
        for attempt in 1..=2 {
            let got = queue.receive(10, Duration::from_secs(1)).await.unwrap();
            assert_eq!((got.len(), got[0].receive_count), (1, attempt));
            manual.advance_millis(1_001);
        }
        // Third receive: over max_receives, so it goes to `hooks-dlq` instead.
        assert!(queue.receive(10, Duration::from_secs(1)).await.unwrap().is_empty());
        assert_eq!(queue.depth().await.unwrap(), 1, "the delayed message stays");
        let dead = queue.dead_letters(10).await.unwrap();
        assert_eq!((dead.len(), dead[0].receive_count), (1, 2));
        assert!(other.dead_letters(10).await.unwrap().is_empty());
        assert_eq!(other.depth().await.unwrap(), 1);
    }
}
