//! Exact event dedupe with cheap writes.
//!
//! A B-tree keyed by a random hash dirties about one page per new event, and that cost grows
//! with the table (it was most of the ingest cost). So keys are kept in two tiers, LSM style:
//! - **recent**: the hash → row number of every event logged since the last archive run, in
//!   memory. Inserting costs nothing on disk: the event row itself (which carries its hash) is
//!   the durable record, and the map is rebuilt from the rows after `archived_through` on start.
//! - **archive**: the `event_keys` index on disk, appended in hash order every
//!   [`ARCHIVE_AT`] events (by default), so each index page is written once per run, not once per event.
//!
//! A Bloom filter over the archived keys skips the on-disk probe for nearly every new event.
//! A hash match is always confirmed against the event row, so a collision never refuses a
//! genuine event.

use super::backend;
use super::bloom::Bloom;
use crate::StoreResult;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// Events kept in memory before their keys move to the on-disk index (default).
pub const ARCHIVE_AT: usize = 1_000_000;

pub(super) struct Dedupe {
    /// First row number per hash, for events not yet archived.
    recent: HashMap<i64, i64>,
    /// Further rows sharing a hash (the same transaction id on other subscriptions).
    recent_more: HashMap<i64, Vec<i64>>,
    /// Every event with a row number up to this is in `event_keys`.
    archived_through: i64,
    recent_count: usize,
    archive_at: usize,
    /// Every archived hash is in it (no false negatives).
    archived: Bloom,
    archived_count: usize,
}

impl Dedupe {
    /// Rebuilds the in-memory tier from the rows logged since the last archive run.
    pub(super) fn load(conn: &Connection, archive_at: usize) -> StoreResult<Self> {
        let archived_through: i64 = conn
            .query_row("SELECT value FROM meta WHERE name = 'keys_archived_through'", [], |row| row.get(0))
            .optional()
            .map_err(backend)?
            .unwrap_or(0);
        let archived_count: i64 =
            conn.query_row("SELECT COUNT(*) FROM event_keys", [], |row| row.get(0)).map_err(backend)?;
        let archived_count = usize::try_from(archived_count).unwrap_or(0);
        let mut dedupe = Self {
            recent: HashMap::new(),
            recent_more: HashMap::new(),
            archived_through,
            recent_count: 0,
            archive_at,
            archived: Bloom::with_capacity(0),
            archived_count,
        };
        dedupe.rebuild_bloom(conn, archived_count + archive_at)?;
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
        if !self.archived.may_contain(hash) {
            return Ok(seqs);
        }
        let mut stmt = conn.prepare_cached("SELECT seq FROM event_keys WHERE hash = ?1").map_err(backend)?;
        let archived = stmt.query_map(params![hash], |row| row.get::<_, i64>(0)).map_err(backend)?;
        for seq in archived {
            seqs.push(seq.map_err(backend)?);
        }
        Ok(seqs)
    }

    /// Rebuilds the filter from the on-disk index, sized for `capacity` keys.
    fn rebuild_bloom(&mut self, conn: &Connection, capacity: usize) -> StoreResult<()> {
        let mut bloom = Bloom::with_capacity(capacity);
        let mut stmt = conn.prepare("SELECT hash FROM event_keys").map_err(backend)?;
        let hashes = stmt.query_map([], |row| row.get::<_, i64>(0)).map_err(backend)?;
        for hash in hashes {
            bloom.insert(hash.map_err(backend)?);
        }
        self.archived = bloom;
        Ok(())
    }

    pub(super) fn archive_at(&self) -> usize {
        self.archive_at
    }

    pub(super) fn should_archive(&self) -> bool {
        self.recent_count >= self.archive_at
    }

    /// Appends the recent keys to the on-disk index, in hash order, inside the caller's
    /// transaction. Returns the new watermark, to pass to [`Dedupe::archived`] once committed.
    pub(super) fn archive(&self, conn: &Connection) -> StoreResult<i64> {
        let through: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0)).map_err(backend)?;
        conn.execute(
            "INSERT INTO event_keys (hash, seq) SELECT hash, seq FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY hash, seq",
            params![self.archived_through, through],
        )
        .map_err(backend)?;
        conn.execute(
            "INSERT INTO meta (name, value) VALUES ('keys_archived_through', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![through],
        )
        .map_err(backend)?;
        Ok(through)
    }

    /// The archive run committed: the archived keys join the filter (rebuilt larger when it is
    /// full), and the in-memory tier starts afresh.
    pub(super) fn archived(&mut self, conn: &Connection, through: i64) -> StoreResult<()> {
        self.archived_count += self.recent_count;
        if self.archived_count > self.archived.capacity() {
            self.rebuild_bloom(conn, self.archived_count * 2)?;
        } else {
            for hash in self.recent.keys() {
                self.archived.insert(*hash);
            }
        }
        self.recent.clear();
        self.recent_more.clear();
        self.recent.shrink_to(1024);
        self.archived_through = through;
        self.recent_count = 0;
        Ok(())
    }
}
