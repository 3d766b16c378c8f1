//! The embedded store: SQLite in WAL mode, `synchronous=FULL` (durable on commit).
//!
//! One writer thread owns the write connection and commits *groups* of concurrent requests in
//! one transaction (one fsync for many requests). Each request is checked (conditions,
//! duplicates) before it writes anything, so a refused request leaves no trace in the group.
//! Reads use a small pool of read connections.
//!
//! Event dedupe: a 64-bit hash of `(organization, transaction_id)` names the event rows to
//! compare; recent hashes live in memory, older ones in an index written in sorted runs (see
//! `dedupe.rs`). A hit is confirmed against the stored event itself, so a hash collision can
//! never refuse a genuine event (exact idempotency). The same index answers
//! `GET /events/{transaction_id}`.

mod bloom;
mod dedupe;
mod schema;
mod writer;

use crate::{
    AppendOutcome, EventBatch, EventFilter, Item, Key, LoggedEvent, Page, Query, Store, StoreError, StoreResult, Write,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;
use writer::Job;

/// Upper bound appended to a prefix to make a sort-key range (the largest Unicode scalar).
const PREFIX_END: char = '\u{10FFFF}';

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Option<Checkpointer>,
}

/// Copies the write-ahead log into the database in the background, so the writer never stalls
/// on a checkpoint inside a commit (the writer's automatic checkpoint is off).
///
/// Often, so each pass is small: a checkpoint ends with an fsync of the database file, and
/// while that flushes, the writer's own fsync of the log can wait behind it (the file system
/// journals both). Passes of 250 ms of writes made some commits wait over 100 ms; passes of
/// 25 ms keep every commit under about 10 ms. An idle log (unchanged since the last pass) is
/// left alone.
struct Checkpointer {
    stop: mpsc::Sender<()>,
    handle: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(25);

    fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("tally-sqlite-checkpoint".into())
            .spawn(move || {
                let mut copied = None;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Self::EVERY) {
                    let written = std::fs::metadata(&wal).and_then(|m| m.modified()).ok();
                    if written.is_some() && written == copied {
                        continue;
                    }
                    // PASSIVE: copies what it can without blocking the writer or readers.
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => copied = written,
                        Err(e) => tracing::warn!("checkpoint failed: {e}"),
                    }
                }
                let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(backend)?;
        Ok(Self { stop, handle })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer thread once it has drained its queue.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.stop.send(());
            let _ = checkpointer.handle.join();
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database `tally.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        Self::open_with(data_dir, dedupe::ARCHIVE_AT)
    }

    /// Like [`SqliteStore::open`], moving event keys to the on-disk index every `archive_at`
    /// events (tests use a small number to exercise that path).
    pub fn open_with(data_dir: &Path, archive_at: usize) -> StoreResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(backend)?;
        let path = data_dir.join("tally.db");
        let conn = schema::open_writer(&path)?;
        let (sender, receiver) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tally-sqlite-writer".into())
            .spawn(move || writer::run(conn, receiver, archive_at.max(1)))
            .map_err(backend)?;
        let checkpointer = Checkpointer::start(&path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                jobs: Mutex::new(Some(sender)),
                readers: Mutex::new(Vec::new()),
                writer: Mutex::new(Some(handle)),
                checkpointer: Some(checkpointer),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn submit<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Job,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        {
            let jobs = self.inner.jobs.lock().map_err(backend)?;
            let sender = jobs.as_ref().ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
            sender.send(make(reply)).map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        }
        answer.await.map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// Runs a long read (a scan) on a pooled read connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(f)).await.map_err(backend)?
    }
}

impl Inner {
    /// Runs `f` on a pooled read connection, on the calling thread. Point reads and key-range
    /// queries take microseconds from the memory-mapped file: running them in place spares a
    /// hop to a blocking thread, which under load costs more than the read (and a request
    /// making several reads pays it each time).
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.readers.lock().map_err(backend)?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags).map_err(backend)?;
                conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(backend)?;
                conn.execute_batch("PRAGMA mmap_size = 4294967296;").map_err(backend)?;
                conn
            }
        };
        let result = f(&conn);
        if let Ok(mut readers) = self.readers.lock() {
            if readers.len() < 16 {
                readers.push(conn);
            }
        }
        result
    }
}

pub(super) fn logged_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<LoggedEvent> {
    Ok(LoggedEvent {
        organization_id: row.get(0)?,
        external_subscription_id: row.get(1)?,
        transaction_id: row.get(2)?,
        code: row.get(3)?,
        timestamp_ms: row.get(4)?,
        body: row.get(5)?,
    })
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        self.submit(|reply| Job::Ping { reply }).await
    }

    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.with_reader(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT value, version FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
            let found = stmt
                .query_row(params![key.pk, key.sk], |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?)))
                .optional()
                .map_err(backend)?;
            Ok(found.map(|(value, version)| Item { key: key.clone(), value, version: version.unsigned_abs() }))
        })
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.inner.with_reader(|conn| {
            let limit = query.limit.clamp(1, crate::MAX_PAGE);
            let low = query.sk_prefix.clone();
            let high = format!("{}{PREFIX_END}", query.sk_prefix);
            let (low, high) = match (&query.after, query.descending) {
                (Some(after), false) => (format!("{after}\u{0}"), high),
                (Some(after), true) => (low, after.clone()),
                (None, _) => (low, high),
            };
            let order = if query.descending { "DESC" } else { "ASC" };
            let sql = format!(
                "SELECT sk, value, version FROM items WHERE pk = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk {order} LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params![query.pk, low, high, to_i64(limit + 1)], |row| {
                    Ok(Item {
                        key: Key::new(query.pk.clone(), row.get::<_, String>(0)?),
                        value: row.get(1)?,
                        version: row.get::<_, i64>(2)?.unsigned_abs(),
                    })
                })
                .map_err(backend)?;
            let mut items = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|i| i.key.sk.clone())
            } else {
                None
            };
            Ok(Page { items, next })
        })
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        crate::contract::check_transaction_shape(&writes)?;
        self.submit(|reply| Job::Transact { writes, reply }).await
    }

    async fn append_events(&self, batch: EventBatch) -> StoreResult<AppendOutcome> {
        if batch.events.is_empty() && batch.usage.is_empty() && batch.writes.is_empty() {
            return Ok(AppendOutcome::Appended);
        }
        crate::contract::check_distinct_keys(&batch.writes)?;
        self.submit(|reply| Job::Append { batch, reply }).await
    }

    async fn events_by_transaction(
        &self,
        organization_id: &str,
        transaction_id: &str,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let (organization_id, transaction_id) = (organization_id.to_owned(), transaction_id.to_owned());
        self.submit(|reply| Job::Lookup { organization_id, transaction_id, reply }).await
    }

    async fn list_events(
        &self,
        organization_id: &str,
        filter: &EventFilter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<LoggedEvent>, u64)> {
        let (org, filter) = (organization_id.to_owned(), filter.clone());
        self.read(move |conn| {
            let mut clauses = vec!["org = ?1".to_owned()];
            let mut values: Vec<rusqlite::types::Value> = vec![org.into()];
            if let Some(sub) = filter.external_subscription_id {
                values.push(sub.into());
                clauses.push(format!("sub = ?{}", values.len()));
            }
            if let Some(code) = filter.code {
                values.push(code.into());
                clauses.push(format!("code = ?{}", values.len()));
            }
            if let Some(from) = filter.timestamp_from_ms {
                values.push(from.into());
                clauses.push(format!("ts_ms >= ?{}", values.len()));
            }
            if let Some(to) = filter.timestamp_to_ms {
                values.push(to.into());
                clauses.push(format!("ts_ms <= ?{}", values.len()));
            }
            let filter_sql = clauses.join(" AND ");
            let total: i64 = conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM events WHERE {filter_sql}"),
                    rusqlite::params_from_iter(values.iter()),
                    |row| row.get(0),
                )
                .map_err(backend)?;
            values.push(to_i64(limit).into());
            values.push(to_i64(offset).into());
            let sql = format!(
                "SELECT org, sub, tx, code, ts_ms, body FROM events WHERE {filter_sql} ORDER BY seq DESC LIMIT ?{} OFFSET ?{}",
                values.len() - 1,
                values.len()
            );
            let mut stmt = conn.prepare(&sql).map_err(backend)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(values.iter()), logged_event).map_err(backend)?;
            let events = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
            Ok((events, total.unsigned_abs()))
        })
        .await
    }
}
