//! Exact event dedupe with cheap writes.
//!
//! A B-tree keyed by a random hash dirties about one page per new event, and that cost grows
//! with the table (it was most of the ingest cost). So keys live in tiers, LSM style:
//! - **recent**: the hash → row number of every event logged since the last run, in memory.
//!   Inserting costs nothing on disk: the event row itself (which carries its hash) is the
//!   durable record, and the map is rebuilt from the rows after `keys_archived_through` on start.
//! - **runs**: every [`ARCHIVE_AT`] events (by default) the recent keys are frozen, sorted, and
//!   written to `event_keys` as one immutable run, keyed `(run, hash, seq)`. A new run sorts
//!   after every older one, so writing it only appends fresh pages at the end of the index: no
//!   page of an older run is ever rewritten, whatever the size of the log. The run is written a
//!   slice per commit (in key order, so each slice appends too), at twice the pace of ingestion,
//!   rather than in one long commit that would stall every request waiting behind it. It counts
//!   as archived once its last slice commits; a run cut short by a crash is dropped on start and
//!   its keys rebuilt from the log.
//!
//! Each run has a Bloom filter in memory, so looking a key up probes only the runs that may hold
//! it (for a new event, almost always none). A hash match is always confirmed against the event
//! row itself, so a collision never refuses a genuine event.

use super::backend;
use super::bloom::Bloom;
use crate::{StoreError, StoreResult};
use rusqlite::{params, Connection, OptionalExtension};
// foldhash: the keys are already hashes, and SipHash on them showed in ingest profiles.
use foldhash::HashMap;
use std::sync::{mpsc, Arc};

/// Events kept in memory before their keys are written as a run (default).
pub const ARCHIVE_AT: usize = 1_000_000;

/// Keys written per commit to the run being archived, at least.
const MIN_SLICE: usize = 1024;

struct Run {
    id: i64,
    keys: Bloom,
}

/// The recent keys of a frozen run: they answer lookups until the run is on disk.
struct Frozen {
    first: HashMap<i64, i64>,
    more: HashMap<i64, Vec<i64>>,
}

/// What a helper thread prepares from a frozen run, off the writer thread (sorting a million
/// keys and filling a filter would stall every request waiting on the writer).
struct Prepared {
    /// `(hash, seq)`, sorted.
    keys: Vec<(i64, i64)>,
    filter: Bloom,
}

impl Prepared {
    fn from(frozen: &Frozen) -> Self {
        let mut keys: Vec<(i64, i64)> = frozen.first.iter().map(|(hash, seq)| (*hash, *seq)).collect();
        for (hash, more) in &frozen.more {
            keys.extend(more.iter().map(|seq| (*hash, *seq)));
        }
        keys.sort_unstable();
        let mut filter = Bloom::with_capacity(keys.len());
        for (hash, _) in &keys {
            filter.insert(*hash);
        }
        Self { keys, filter }
    }
}

/// A frozen run being written, a slice per commit.
struct Pending {
    id: i64,
    /// Every event with a row number up to this is in the run.
    through: i64,
    frozen: Arc<Frozen>,
    prepared: Option<Prepared>,
    preparing: Option<mpsc::Receiver<Prepared>>,
    /// Keys committed to `event_keys` so far.
    written: usize,
}

impl Pending {
    fn new(id: i64, through: i64, frozen: Frozen) -> Self {
        let frozen = Arc::new(frozen);
        let (sender, receiver) = mpsc::channel();
        let helper = frozen.clone();
        let spawned = std::thread::Builder::new()
            .name("tally-dedupe-run".into())
            .spawn(move || drop(sender.send(Prepared::from(&helper))));
        let (prepared, preparing) = match spawned {
            Ok(_) => (None, Some(receiver)),
            Err(_) => (Some(Prepared::from(&frozen)), None),
        };
        Self { id, through, frozen, prepared, preparing, written: 0 }
    }

    /// The prepared run: waits for it if `wait`, else only if it is ready.
    fn prepared(&mut self, wait: bool) -> StoreResult<Option<&Prepared>> {
        if self.prepared.is_none() {
            if let Some(receiver) = &self.preparing {
                let received = if wait { receiver.recv().ok() } else { receiver.try_recv().ok() };
                match received {
                    Some(prepared) => self.prepared = Some(prepared),
                    None if wait => return Err(StoreError::Backend("preparing an index run failed".into())),
                    None => {}
                }
            }
        }
        Ok(self.prepared.as_ref())
    }

    fn candidates(&self, hash: i64, seqs: &mut Vec<i64>) {
        seqs.extend(self.frozen.first.get(&hash));
        if let Some(more) = self.frozen.more.get(&hash) {
            seqs.extend(more);
        }
    }
}

/// What a commit wrote of the pending run: apply with [`Dedupe::committed`] once it committed.
pub(super) struct Progress {
    written: usize,
}

pub(super) struct Dedupe {
    /// First row number per hash, for events not yet in a run.
    recent: HashMap<i64, i64>,
    /// Further rows sharing a hash (the same transaction id on other subscriptions).
    recent_more: HashMap<i64, Vec<i64>>,
    recent_count: usize,
    /// Highest row number recorded.
    last_seq: i64,
    /// Every event with a row number up to this is in a run.
    archived_through: i64,
    archive_at: usize,
    runs: Vec<Run>,
    pending: Option<Pending>,
}

impl Dedupe {
    /// Rebuilds the filters of the runs and the in-memory tier from disk.
    pub(super) fn load(conn: &Connection, archive_at: usize) -> StoreResult<Self> {
        let meta = |name: &str| -> StoreResult<Option<i64>> {
            conn.query_row("SELECT value FROM meta WHERE name = ?1", params![name], |row| row.get(0))
                .optional()
                .map_err(backend)
        };
        let archived_through = meta("keys_archived_through")?.unwrap_or(0);
        // Drop the slices of a run whose writing a crash cut short: runs after the last one
        // completed (none, if no run ever completed; stores from before runs were written in
        // slices record no last run, and every run of theirs is whole).
        let last_run = match (meta("keys_last_run")?, meta("keys_archived_through")?) {
            (Some(run), _) => Some(run),
            (None, None) => Some(0),
            (None, Some(_)) => None,
        };
        if let Some(last_run) = last_run {
            conn.execute("DELETE FROM event_keys WHERE run > ?1", params![last_run]).map_err(backend)?;
        }
        let mut dedupe = Self {
            recent: HashMap::default(),
            recent_more: HashMap::default(),
            recent_count: 0,
            last_seq: archived_through,
            archived_through,
            archive_at,
            runs: Vec::new(),
            pending: None,
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
        self.last_seq = self.last_seq.max(seq);
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
        if let Some(pending) = &self.pending {
            pending.candidates(hash, &mut seqs);
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

    /// Freezes the recent keys as the next run once there are enough of them (no disk work:
    /// a helper thread sorts them, and [`Dedupe::write_slice`] writes them). A run still being
    /// written is finished first, in the caller's transaction (only when ingestion outpaces the
    /// slices).
    pub(super) fn freeze_if_due(&mut self, conn: &Connection) -> StoreResult<()> {
        if self.recent_count < self.archive_at {
            return Ok(());
        }
        if self.pending.is_some() {
            let rest = self.write_slice(conn, usize::MAX, true)?;
            self.committed(rest);
        }
        let frozen = Frozen { first: std::mem::take(&mut self.recent), more: std::mem::take(&mut self.recent_more) };
        self.recent_count = 0;
        let id = self.runs.last().map_or(1, |r| r.id + 1);
        self.pending = Some(Pending::new(id, self.last_seq, frozen));
        Ok(())
    }

    /// Writes the next slice of the pending run (at least `at_least` keys, once its helper
    /// prepared it; `wait` for that), inside the caller's transaction; the last slice also
    /// records the run as archived. Pass the result to [`Dedupe::committed`] once that
    /// transaction committed (if it does not, the store reloads the index from disk).
    pub(super) fn write_slice(&mut self, conn: &Connection, at_least: usize, wait: bool) -> StoreResult<Progress> {
        let Some(pending) = &mut self.pending else {
            return Ok(Progress { written: 0 });
        };
        let (id, through, start) = (pending.id, pending.through, pending.written);
        let Some(prepared) = pending.prepared(wait)? else {
            return Ok(Progress { written: start });
        };
        let end = start.saturating_add(at_least.max(MIN_SLICE)).min(prepared.keys.len());
        let mut insert =
            conn.prepare_cached("INSERT INTO event_keys (run, hash, seq) VALUES (?1, ?2, ?3)").map_err(backend)?;
        for (hash, seq) in &prepared.keys[start..end] {
            insert.execute(params![id, hash, seq]).map_err(backend)?;
        }
        if end == prepared.keys.len() {
            let mut meta = conn
                .prepare_cached(
                    "INSERT INTO meta (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .map_err(backend)?;
            meta.execute(params!["keys_archived_through", through]).map_err(backend)?;
            meta.execute(params!["keys_last_run", id]).map_err(backend)?;
        }
        Ok(Progress { written: end })
    }

    /// The slice committed; a run whose last slice committed gets its filter and leaves memory.
    pub(super) fn committed(&mut self, progress: Progress) {
        let Some(pending) = &mut self.pending else { return };
        pending.written = progress.written;
        let done = pending.prepared.as_ref().is_some_and(|p| pending.written >= p.keys.len());
        if !done {
            return;
        }
        if let Some(Pending { id, through, prepared: Some(prepared), .. }) = self.pending.take() {
            self.runs.push(Run { id, keys: prepared.filter });
            self.archived_through = through;
        }
    }
}
