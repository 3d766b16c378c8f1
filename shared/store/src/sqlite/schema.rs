use crate::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk      TEXT    NOT NULL,
    sk      TEXT    NOT NULL,
    value   BLOB    NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;

-- The event log, in arrival order.
CREATE TABLE IF NOT EXISTS events (
    seq   INTEGER PRIMARY KEY,
    hash  INTEGER NOT NULL,
    org   TEXT    NOT NULL,
    sub   TEXT    NOT NULL,
    tx    TEXT    NOT NULL,
    code  TEXT    NOT NULL,
    ts_ms INTEGER NOT NULL,
    body  BLOB    NOT NULL
);
-- No index by subscription: nothing hot reads the log by subscription (events waiting for a
-- subscription are parked as items), and each index is one more write per event.

-- Dedupe and lookup by transaction id: 64-bit hash of (org, transaction_id) → event row, in
-- immutable runs, for events up to `keys_archived_through` (newer ones are indexed in memory:
-- see dedupe.rs).
CREATE TABLE IF NOT EXISTS event_keys (
    run  INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (run, hash, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

pub(super) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(|e| StoreError::Backend(e.to_string()))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -65536;
         PRAGMA mmap_size = 4294967296;
         PRAGMA wal_autocheckpoint = 0;",
    )
    .and_then(|_| conn.execute_batch(SCHEMA))
    .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(30)))
    .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(conn)
}

/// The dedupe hash of an event: xxh3 over organization and transaction id, as a signed integer
/// (SQLite's integer type). A hit is always confirmed against the stored event.
pub(super) fn event_hash(organization_id: &str, transaction_id: &str) -> i64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(organization_id.as_bytes());
    hasher.update(&[0]);
    hasher.update(transaction_id.as_bytes());
    i64::from_ne_bytes(hasher.digest().to_ne_bytes())
}
