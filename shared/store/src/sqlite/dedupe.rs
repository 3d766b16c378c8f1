//! Exact event dedupe with cheap writes.
//!
//! A B-tree keyed by a random hash dirties about one page per new event, and that cost grows
//! with the table (it was most of the ingest cost). So keys live in tiers, LSM style:
//! - **recent**: the hash → row number of every event logged since the last run, in memory.
//!   Inserting costs nothing on disk: the event row itself (which carries its hash) is the
//!   durable record, and the map is rebuilt from the rows after `keys_archived_through` on start.
//! - **runs**: every [`ARCHIVE_AT`] events (by default) the recent keys are written to
//!   `event_keys` as one immutable run, keyed `(run, hash, seq)`. A new run sorts after every
//!   older one, so writing it only appends fresh pages at the end of the index: no page of an
//!   older run is ever rewritten, whatever the size of the log.
//!
//! Each run has a Bloom filter in memory, so looking a key up probes only the runs that may hold
//! it (for a new event, almost always none). A hash match is always confirmed against the event
//! row itself, so a collision never refuses a genuine event.

use super::backend;
use super::bloom::Bloom;
use crate::StoreResult;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// Events kept in memory before their keys are written as a run (default).
pub const ARCHIVE_AT: usize = 1_000_000;

struct Run {
    id: i64,
    keys: Bloom,
}

pub(super) struct Dedupe {
    /// First row number per hash, for events not yet in a run.
    recent: HashMap<i64, i64>,
    /// Further rows sharing a hash (the same transaction id on other subscriptions).
    recent_more: HashMap<i64, Vec<i64>>,
    recent_count: usize,
    /// Every event with a row number up to this is in a run.
    archived_through: i64,
    archive_at: usize,
    runs: Vec<Run>,
}

impl Dedupe {
    /// Rebuilds the filters of the runs and the in-memory tier from disk.
    pub(super) fn load(conn: &Connection, archive_at: usize) -> StoreResult<Self> {
        let archived_through: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'keys_archived_through'", [], |row| row.get(0))
            .optional()
            .map_err(backend)?
            .unwrap_or(0);
        let mut dedupe = Self {
            recent: HashMap::new(),
            recent_more: HashMap::new(),
            recent_count: 0,
            archived_through,
            archive_at,
            runs: Vec::new(),
        };
        {
            let mut sizes =
                conn.prepare("SELECT run, COUNT(*) FROM event_keys GROUP BY run ORDER BY run").map_err(backend)?;
            let sizes = sizes
                .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let mut keys = conn.prepare("SELECT hash FROM event_keys WHERE run = ?1").map_err(backend)?;
            for (id, size) in sizes {
                let mut bloom = Bloom::with_capacity(usize::try_from(size).unwrap_or(0));
                for hash in keys.query_map(params![id], |row| row.get::<_, i64>(0)).map_err(backend)? {
                    bloom.insert(hash.map_err(backend)?);
                }
                dedupe.runs.push(Run { id, keys: bloom });
            }
        }
        let mut stmt = conn.prepare("SELECT hash, seq FROM events WHERE seq > ?1").map_err(backend)?;
        let rows = stmt.query_map(params![archived_through], |row| Ok((row.get(0)?, row.get(1)?))).map_err(backend)?;
        for row in rows {
            let (hash, seq) = row.map_err(backend)?;
            dedupe.record(hash, seq);
        }
        Ok(dedupe)
    }

    pub(super) fn record(&mut self, hash: i64, seq: i64) {
        self.recent_count += 1;
        if let Some(existing) = self.recent.insert(hash, seq) {
            // Keep the first in `recent`, the others beside it.
            self.recent.insert(hash, existing);
            self.recent_more.entry(hash).or_default().push(seq);
        }
    }

    /// Row numbers of logged events with this hash.
    pub(super) fn candidates(&self, conn: &Connection, hash: i64) -> StoreResult<Vec<i64>> {
        let mut seqs: Vec<i64> = self.recent.get(&hash).copied().into_iter().collect();
        if let Some(more) = self.recent_more.get(&hash) {
            seqs.extend(more);
        }
        let mut probe = None;
        for run in self.runs.iter().filter(|r| r.keys.may_contain(hash)) {
            let stmt = match &mut probe {
                Some(stmt) => stmt,
                None => probe.insert(
                    conn.prepare_cached("SELECT seq FROM event_keys WHERE run = ?1 AND hash = ?2").map_err(backend)?,
                ),
            };
            for seq in stmt.query_map(params![run.id, hash], |row| row.get::<_, i64>(0)).map_err(backend)? {
                seqs.push(seq.map_err(backend)?);
            }
        }
        Ok(seqs)
    }

    pub(super) fn archive_at(&self) -> usize {
        self.archive_at
    }

    pub(super) fn should_archive(&self) -> bool {
        self.recent_count >= self.archive_at
    }

    /// Writes the recent keys as a new run, inside the caller's transaction. Returns what to
    /// pass to [`Dedupe::archived`] once that transaction committed.
    pub(super) fn archive(&self, conn: &Connection) -> StoreResult<(i64, i64)> {
        let through: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0)).map_err(backend)?;
        let run = self.runs.last().map_or(1, |r| r.id + 1);
        conn.execute(
            "INSERT INTO event_keys (run, hash, seq)
             SELECT ?1, hash, seq FROM events WHERE seq > ?2 AND seq <= ?3 ORDER BY hash, seq",
            params![run, self.archived_through, through],
        )
        .map_err(backend)?;
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('keys_archived_through', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![through],
        )
        .map_err(backend)?;
        Ok((run, through))
    }

    /// The run committed: its keys get their filter, and the in-memory tier starts afresh.
    pub(super) fn archived(&mut self, (run, through): (i64, i64)) {
        let mut keys = Bloom::with_capacity(self.recent.len());
        for hash in self.recent.keys() {
            keys.insert(*hash);
        }
        self.runs.push(Run { id: run, keys });
        self.recent.clear();
        self.recent_more.clear();
        self.recent.shrink_to(1024);
        self.archived_through = through;
        self.recent_count = 0;
    }
}
