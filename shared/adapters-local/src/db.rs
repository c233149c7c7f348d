//! The SQLite engine under every local port: one writer thread that group-commits, and a
//! small pool of read-only connections.
//!
//! SQLite allows one writer at a time, so instead of letting connections fight over the
//! write lock (and sleep in `busy_timeout`), every write is a job sent to a single thread
//! that owns the write connection. That thread drains whatever is queued, runs it all in one
//! transaction (one fsync for the batch), each job inside its own savepoint so a failing job
//! undoes only itself, and answers each caller only once the batch is durable.

use crate::LocalError;
use golos_ports::{PortError, Result};
use rusqlite::{Connection, OpenFlags};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most jobs committed together. Bounds the latency a large burst adds to its first caller.
const MAX_BATCH: usize = 256;
const READERS: usize = 4;

/// A unit of work for the writer thread.
trait WriteJob: Send {
    /// Runs inside the job's savepoint; `false` rolls the savepoint back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the fate of the whole batch is known.
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panicking job must not take the writer (and with it every store) down.
        let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
            .unwrap_or_else(|_| Err(PortError::unavailable("write job panicked")));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<()>) {
        let answer = match committed {
            Ok(()) => self.result.unwrap_or_else(|| Err(PortError::unavailable("write job did not run"))),
            Err(err) => Err(err),
        };
        // The caller may have gone away (a cancelled request); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// Owns the database: the writer thread and the read pool.
pub(crate) struct Db {
    path: PathBuf,
    sender: Option<crossbeam_channel::Sender<Box<dyn WriteJob>>>,
    writer: Option<JoinHandle<()>>,
    checkpointer: Option<(crossbeam_channel::Sender<()>, JoinHandle<()>)>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).field("readers", &self.readers.len()).finish_non_exhaustive()
    }
}

/// How hard a commit holds on to its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: an acknowledged commit survives power loss. Money, keys, agents.
    Full,
    /// `synchronous=OFF`: survives a killed process (WAL), may lose the last commits on
    /// power loss. Only for data that is worthless after a crash anyway: rate-limit windows.
    Volatile,
}

impl Db {
    pub(crate) fn open(path: &Path, durability: Durability) -> Result<Arc<Self>, LocalError> {
        let conn = Connection::open(path)?;
        configure(&conn, durability)?;
        crate::schema::migrate(&conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            reader.set_prepared_statement_cache_capacity(64);
            readers.push(Mutex::new(reader));
        }
        // Checkpoints move on their own thread: run by the writer (SQLite's default
        // autocheckpoint) they would add their fsyncs of the database file to some unlucky
        // commit's latency.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = spawn_checkpointer(path)?;
        let (sender, receiver) = crossbeam_channel::unbounded::<Box<dyn WriteJob>>();
        let writer = std::thread::Builder::new()
            .name("golos-sqlite-writer".into())
            .spawn(move || writer_loop(&conn, &receiver))
            .map_err(|source| LocalError::Io { path: path.to_path_buf(), source })?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            sender: Some(sender),
            writer: Some(writer),
            checkpointer: Some(checkpointer),
            readers,
            next_reader: AtomicUsize::new(0),
        }))
    }

    /// Runs `work` in the next group commit and answers after the commit is durable.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob { work: Some(work), result: None, reply });
        self.sender
            .as_ref()
            .ok_or_else(|| PortError::unavailable("database is closed"))?
            .send(job)
            .map_err(|_| PortError::unavailable("database writer stopped"))?;
        answer.await.map_err(|_| PortError::unavailable("database writer dropped the job"))?
    }

    /// Runs `work` on a read-only connection, off the async runtime.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let start = db.next_reader.fetch_add(1, Ordering::Relaxed);
            // Prefer an idle connection; wait on the round-robin one only if all are busy.
            for i in 0..db.readers.len() {
                if let Ok(conn) = db.readers[(start + i) % db.readers.len()].try_lock() {
                    return work(&conn);
                }
            }
            let conn = db.readers[start % db.readers.len()].lock().unwrap_or_else(PoisonError::into_inner);
            work(&conn)
        })
        .await
        .map_err(|e| PortError::unavailable(format!("read task failed: {e}")))?
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its batch and close the connection, so
        // a reopen of the same directory right after finds everything checkpointed or in WAL.
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("sqlite writer thread panicked");
            }
        }
        if let Some((stop, handle)) = self.checkpointer.take() {
            drop(stop);
            if handle.join().is_err() {
                tracing::error!("sqlite checkpointer thread panicked");
            }
        }
    }
}

/// How often committed WAL frames are copied into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn spawn_checkpointer(path: &Path) -> Result<(crossbeam_channel::Sender<()>, JoinHandle<()>), LocalError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let handle = std::thread::Builder::new()
        .name("golos-sqlite-checkpoint".into())
        .spawn(move || {
            // Disconnection is the stop signal; a final pass leaves the WAL short on exit.
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                checkpoint(&conn, "PASSIVE");
            }
            checkpoint(&conn, "TRUNCATE");
        })
        .map_err(crate::io_error(path))?;
    Ok((stop, handle))
}

fn checkpoint(conn: &Connection, mode: &str) {
    // PASSIVE never blocks the writer: it copies what it can and leaves the rest for later.
    let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(0));
    if let Err(err) = result {
        tracing::warn!(error = %err, "sqlite checkpoint failed");
    }
}

fn configure(conn: &Connection, durability: Durability) -> Result<(), LocalError> {
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LocalError::Invalid(format!("sqlite refused WAL mode (got {mode})")));
    }
    // FULL: a commit survives power loss, not only a killed process; group commit pays
    // the fsync once per batch.
    conn.pragma_update(None, "synchronous", if durability == Durability::Full { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(())
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn writer_loop(conn: &Connection, receiver: &crossbeam_channel::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = run_batch(conn, &mut batch);
        if let Err(err) = &outcome {
            tracing::error!(error = %err, jobs = batch.len(), "sqlite batch failed");
        }
        for job in batch {
            job.finish(outcome.clone());
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<()> {
    let unavailable = |e: rusqlite::Error| PortError::unavailable(format!("sqlite: {e}"));
    exec(conn, "BEGIN IMMEDIATE").map_err(unavailable)?;
    let body = (|| {
        for job in batch.iter_mut() {
            exec(conn, "SAVEPOINT job")?;
            if !job.run(conn) {
                exec(conn, "ROLLBACK TO job")?;
            }
            exec(conn, "RELEASE job")?;
        }
        exec(conn, "COMMIT")
    })();
    if let Err(err) = body {
        if !conn.is_autocommit() {
            if let Err(rollback) = exec(conn, "ROLLBACK") {
                tracing::error!(error = %rollback, "sqlite rollback failed");
            }
        }
        return Err(unavailable(err));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_rolls_back_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Full).unwrap();
        db.write(|c| c.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)").map_err(PortError::unavailable))
            .await
            .unwrap();
        // Many concurrent jobs so several share a batch; every third one writes, then fails.
        let jobs = (0..60).map(|i| {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [i]).map_err(PortError::unavailable)?;
                    if i % 3 == 0 {
                        return Err(PortError::invalid("refused"));
                    }
                    Ok(i)
                })
                .await
            })
        });
        let results = futures::future::join_all(jobs).await;
        for (i, r) in results.into_iter().enumerate() {
            let r = r.unwrap();
            assert_eq!(r.is_err(), i % 3 == 0, "{i}: {r:?}");
        }
        let stored: Vec<i64> = db
            .read(|c| {
                let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
                let rows = stmt.query_map([], |r| r.get(0)).unwrap();
                Ok(rows.map(Result::unwrap).collect())
            })
            .await
            .unwrap();
        assert_eq!(stored, (0..60).filter(|i| i % 3 != 0).collect::<Vec<_>>());
    }

    /// Holds the writer until `n` more jobs are queued, so they provably share one batch.
    /// Returns once the writer is held.
    async fn hold_writer_until_queued(db: &Arc<Db>, n: usize) -> tokio::task::JoinHandle<()> {
        let queue = db.sender.clone().unwrap();
        let (running, is_running) = oneshot::channel();
        let db = Arc::clone(db);
        let hold = tokio::spawn(async move {
            db.write(move |_| {
                let _ = running.send(());
                while queue.len() < n {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Ok(())
            })
            .await
            .unwrap();
        });
        is_running.await.unwrap();
        hold
    }

    async fn table(db: &Arc<Db>) {
        db.write(|c| c.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)").map_err(PortError::unavailable))
            .await
            .unwrap();
    }

    async fn stored(db: &Arc<Db>) -> Vec<i64> {
        db.read(|c| {
            let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
            let rows = stmt.query_map([], |r| r.get(0)).unwrap();
            Ok(rows.map(Result::unwrap).collect())
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_batch_keeps_the_good_jobs_and_drops_the_failing_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Full).unwrap();
        table(&db).await;
        let hold = hold_writer_until_queued(&db, 3).await;
        let insert = |v: i64, fail: bool| {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [v]).map_err(PortError::unavailable)?;
                    if fail {
                        return Err(PortError::invalid("refused after writing"));
                    }
                    Ok(v)
                })
                .await
            })
        };
        let (a, b, c) = (insert(1, false), insert(2, true), insert(3, false));
        hold.await.unwrap();
        assert_eq!(a.await.unwrap().unwrap(), 1);
        assert!(matches!(b.await.unwrap(), Err(PortError::Invalid { .. })));
        assert_eq!(c.await.unwrap().unwrap(), 3);
        assert_eq!(stored(&db).await, vec![1, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Full).unwrap();
        table(&db).await;
        let hold = hold_writer_until_queued(&db, 2).await;
        let good = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                db.write(|c| c.execute("INSERT INTO t (v) VALUES (1)", []).map_err(PortError::unavailable)).await
            })
        };
        // Ends the transaction under the writer's feet, so the batch cannot commit.
        let saboteur = {
            let db = Arc::clone(&db);
            tokio::spawn(async move { db.write(|c| c.execute_batch("ROLLBACK").map_err(PortError::unavailable)).await })
        };
        hold.await.unwrap();
        assert!(matches!(good.await.unwrap(), Err(PortError::Unavailable { .. })));
        assert!(matches!(saboteur.await.unwrap(), Err(PortError::Unavailable { .. })));
        assert!(stored(&db).await.is_empty(), "nothing of the batch was kept");
        assert_eq!(db.write(|_| Ok(5)).await.unwrap(), 5, "the writer carries on");
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Full).unwrap();
        let r: Result<()> = db.write(|_| panic!("boom")).await;
        assert!(matches!(r, Err(PortError::Unavailable { .. })));
        assert_eq!(db.write(|_| Ok(7)).await.unwrap(), 7);
    }
}
