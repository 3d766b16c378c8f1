//! The writer thread: group commit of concurrent requests, each checked before it writes.

use super::dedupe::Dedupe;
use super::schema::event_hash;
use super::{backend, logged_event};
use crate::{AppendOutcome, Condition, EventBatch, LoggedEvent, StoreError, StoreResult, Write};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::sync::mpsc::Receiver;
use tokio::sync::oneshot;

/// Most requests committed in one transaction.
const MAX_GROUP: usize = 256;

const GROUP_FAILED: &str = "write failed, group rolled back";
const COMMIT_FAILED: &str = "commit failed";

pub(super) enum Job {
    Transact {
        writes: Vec<Write>,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    Append {
        batch: EventBatch,
        reply: oneshot::Sender<StoreResult<AppendOutcome>>,
    },
    /// Is the writer alive, and did its last commit succeed? (`/health`.)
    Ping {
        reply: oneshot::Sender<StoreResult<()>>,
    },
    /// Events by transaction id: answered here, where the newest keys are indexed.
    Lookup {
        organization_id: String,
        transaction_id: String,
        reply: oneshot::Sender<StoreResult<Vec<LoggedEvent>>>,
    },
}

enum Done {
    Transact(oneshot::Sender<StoreResult<()>>, StoreResult<()>),
    Append(oneshot::Sender<StoreResult<AppendOutcome>>, StoreResult<AppendOutcome>),
    Lookup(oneshot::Sender<StoreResult<Vec<LoggedEvent>>>, StoreResult<Vec<LoggedEvent>>),
}

pub(super) fn run(mut conn: Connection, jobs: Receiver<Job>, archive_at: usize) {
    let mut dedupe = match Dedupe::load(&conn, archive_at) {
        Ok(dedupe) => dedupe,
        Err(e) => {
            tracing::error!("cannot load the event index: {e}");
            for job in jobs {
                fail_all(vec![job], "event index unavailable").into_iter().for_each(Done::send);
            }
            return;
        }
    };
    // Why the last group failed to commit, until one commits again (`/health` reports it).
    let mut last_failure: Option<String> = None;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (reads, writes): (Vec<Job>, Vec<Job>) =
            group.into_iter().partition(|j| matches!(j, Job::Lookup { .. } | Job::Ping { .. }));
        for read in reads {
            match read {
                Job::Lookup { organization_id, transaction_id, reply } => {
                    drop(reply.send(find_by_transaction(&conn, &dedupe, &organization_id, &transaction_id)));
                }
                Job::Ping { reply } => {
                    let health = last_failure.clone().map_or(Ok(()), |e| Err(StoreError::Unavailable(e)));
                    drop(reply.send(health));
                }
                _ => {}
            }
        }
        if writes.is_empty() {
            continue;
        }
        let (size, started) = (writes.len(), std::time::Instant::now());
        // No request may end the writer: a panic in a group (a bug; inputs are checked before
        // they get here) rolls that group back and fails its requests, and the writer goes on.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit_group(&mut conn, &mut dedupe, writes)));
        let done = match outcome {
            Ok(done) => done,
            Err(_) => {
                tracing::error!("a write group panicked: rolled back, its requests failed");
                // Its senders were dropped (callers see the store unavailable); the in-memory
                // index may name rows that rolled back. (Unwinding dropped the transaction,
                // which rolls it back; make sure.)
                if !conn.is_autocommit() {
                    if let Err(e) = conn.execute_batch("ROLLBACK") {
                        tracing::error!("rollback after a panic failed: {e}");
                    }
                }
                reload_index(&conn, &mut dedupe);
                continue;
            }
        };
        last_failure = done.iter().find_map(Done::commit_failure);
        tracing::debug!(requests = size, elapsed_us = started.elapsed().as_micros() as u64, "group committed");
        done.into_iter().for_each(Done::send);
    }
}

fn reload_index(conn: &Connection, dedupe: &mut Dedupe) {
    match Dedupe::load(conn, dedupe.archive_at()) {
        Ok(fresh) => *dedupe = fresh,
        Err(e) => tracing::error!("cannot reload the event index: {e}"),
    }
}

impl Done {
    /// The message of a failed commit (every job of a failed group carries it).
    fn commit_failure(&self) -> Option<String> {
        let message = match self {
            Done::Transact(_, Err(StoreError::Unavailable(m))) | Done::Append(_, Err(StoreError::Unavailable(m))) => m,
            _ => return None,
        };
        (message.starts_with(GROUP_FAILED) || message.starts_with(COMMIT_FAILED)).then(|| message.clone())
    }

    fn send(self) {
        // A caller that went away no longer needs its answer.
        match self {
            Done::Transact(reply, result) => drop(reply.send(result)),
            Done::Append(reply, result) => drop(reply.send(result)),
            Done::Lookup(reply, result) => drop(reply.send(result)),
        }
    }
}

fn find_by_transaction(conn: &Connection, dedupe: &Dedupe, org: &str, tx: &str) -> StoreResult<Vec<LoggedEvent>> {
    let mut seqs = dedupe.candidates(conn, event_hash(org, tx))?;
    seqs.sort_unstable();
    let mut stmt = conn
        .prepare_cached("SELECT org, sub, tx, code, ts_ms, body FROM events WHERE seq = ?1 AND org = ?2 AND tx = ?3")
        .map_err(backend)?;
    let mut found = Vec::new();
    for seq in seqs {
        if let Some(event) = stmt.query_row(params![seq, org, tx], logged_event).optional().map_err(backend)? {
            found.push(event);
        }
    }
    Ok(found)
}

fn commit_group(conn: &mut Connection, dedupe: &mut Dedupe, group: Vec<Job>) -> Vec<Done> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(group, &e.to_string()),
    };
    // Each job is checked first (reads only: conditions, duplicates, merges computed in memory),
    // then written. A refused job has written nothing, so no savepoint is needed; a failed
    // write leaves the transaction unknown, so the whole group rolls back and every job fails.
    let mut done = Vec::with_capacity(group.len());
    let mut jobs = group.into_iter();
    let mut broken: Option<StoreError> = None;
    // Usage states merged by this group, written once at the end: concurrent batches touching
    // the same states cost one write per state, not one per batch.
    let mut states = Overlay::default();
    let mut appended = 0;
    for job in jobs.by_ref() {
        let touches_states = match &job {
            Job::Transact { writes, .. } => writes.iter().any(|w| states.0.contains_key(w.key())),
            Job::Append { batch, .. } => batch.writes.iter().any(|w| states.0.contains_key(w.key())),
            Job::Lookup { .. } | Job::Ping { .. } => false,
        };
        if touches_states {
            if let Err(e) = states.flush(&tx) {
                broken = Some(e);
                done.extend(fail_all(vec![job], "write failed"));
                break;
            }
        }
        match job {
            Job::Transact { writes, reply } => match check_conditions(&tx, &writes) {
                Err(e) => done.push(Done::Transact(reply, Err(e))),
                Ok(()) => {
                    let written = apply_writes(&tx, &writes);
                    let failed = written.is_err();
                    done.push(Done::Transact(reply, written));
                    if failed {
                        broken = Some(StoreError::Unavailable("write failed".into()));
                    }
                }
            },
            Job::Lookup { organization_id, transaction_id, reply } => {
                done.push(Done::Lookup(reply, find_by_transaction(&tx, dedupe, &organization_id, &transaction_id)));
            }
            Job::Ping { reply } => done.push(Done::Transact(reply, Ok(()))),
            Job::Append { batch, reply } => match prepare_append(&tx, dedupe, batch, &states) {
                Err(e) => done.push(Done::Append(reply, Err(e))),
                Ok(Prepared::Refused(duplicates)) => {
                    done.push(Done::Append(reply, Ok(AppendOutcome::Duplicates(duplicates))))
                }
                Ok(Prepared::Ready(plan)) => {
                    appended += plan.events.len();
                    match apply_append(&tx, dedupe, plan, &mut states) {
                        Ok(()) => done.push(Done::Append(reply, Ok(AppendOutcome::Appended))),
                        Err(e) => {
                            done.push(Done::Append(reply, Err(StoreError::Unavailable(e.to_string()))));
                            broken = Some(e);
                        }
                    }
                }
            },
        }
        if broken.is_some() {
            break;
        }
    }
    if broken.is_none() {
        broken = states.flush(&tx).err();
    }
    // Move the event keys to disk a slice per commit, at twice the pace events arrive.
    let mut archived = None;
    if broken.is_none() {
        let slice = dedupe.freeze_if_due(&tx).and_then(|_| dedupe.write_slice(&tx, 2 * appended, false));
        match slice {
            Ok(progress) => archived = Some(progress),
            Err(e) => broken = Some(e),
        }
    }
    let committing = std::time::Instant::now();
    let outcome = match broken {
        Some(e) => {
            drop(tx); // rolls back
            Err(format!("{GROUP_FAILED}: {e}"))
        }
        None => tx.commit().map_err(|e| format!("{COMMIT_FAILED}: {e}")),
    };
    tracing::trace!(commit_us = committing.elapsed().as_micros() as u64, "commit");
    match outcome {
        Ok(()) => {
            if let Some(progress) = archived {
                dedupe.committed(progress);
            }
            done
        }
        Err(message) => {
            // The in-memory index may name rolled-back rows: rebuild it from what committed.
            reload_index(conn, dedupe);
            done.into_iter()
                .map(|d| match d {
                    Done::Transact(reply, _) => Done::Transact(reply, Err(StoreError::Unavailable(message.clone()))),
                    Done::Append(reply, _) => Done::Append(reply, Err(StoreError::Unavailable(message.clone()))),
                    Done::Lookup(reply, _) => Done::Lookup(reply, Err(StoreError::Unavailable(message.clone()))),
                })
                .chain(fail_all(jobs.collect(), &message))
                .collect()
        }
    }
}

fn fail_all(group: Vec<Job>, message: &str) -> Vec<Done> {
    group
        .into_iter()
        .map(|job| match job {
            Job::Transact { reply, .. } => Done::Transact(reply, Err(StoreError::Unavailable(message.to_owned()))),
            Job::Append { reply, .. } => Done::Append(reply, Err(StoreError::Unavailable(message.to_owned()))),
            Job::Lookup { reply, .. } => Done::Lookup(reply, Err(StoreError::Unavailable(message.to_owned()))),
            Job::Ping { reply } => Done::Transact(reply, Err(StoreError::Unavailable(message.to_owned()))),
        })
        .collect()
}

fn current_version(conn: &Connection, pk: &str, sk: &str) -> StoreResult<Option<u64>> {
    let mut stmt = conn.prepare_cached("SELECT version FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
    let version = stmt.query_row(params![pk, sk], |row| row.get::<_, i64>(0)).optional().map_err(backend)?;
    Ok(version.map(i64::unsigned_abs))
}

/// Checks every write's condition (reads only).
fn check_conditions(conn: &Connection, writes: &[Write]) -> StoreResult<()> {
    for (index, write) in writes.iter().enumerate() {
        let (key, condition) = match write {
            Write::Put { key, condition, .. } | Write::Delete { key, condition } | Write::Check { key, condition } => {
                (key, *condition)
            }
        };
        let holds = match condition {
            Condition::None => true,
            Condition::Absent => current_version(conn, &key.pk, &key.sk)?.is_none(),
            Condition::Version(v) => current_version(conn, &key.pk, &key.sk)? == Some(v),
        };
        if !holds {
            return Err(StoreError::ConditionFailed { index });
        }
    }
    Ok(())
}

/// Applies writes whose conditions were checked.
fn apply_writes(conn: &Connection, writes: &[Write]) -> StoreResult<()> {
    for write in writes {
        match write {
            Write::Put { key, value, .. } => put(conn, &key.pk, &key.sk, value)?,
            Write::Delete { key, .. } => {
                let mut stmt = conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
                stmt.execute(params![key.pk, key.sk]).map_err(backend)?;
            }
            Write::Check { .. } => {}
        }
    }
    Ok(())
}

fn put(conn: &Connection, pk: &str, sk: &str, value: &[u8]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO items (pk, sk, value, version) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (pk, sk) DO UPDATE SET value = excluded.value, version = items.version + 1",
        )
        .map_err(backend)?;
    stmt.execute(params![pk, sk, value]).map_err(backend)?;
    Ok(())
}

enum Prepared {
    Refused(Vec<usize>),
    Ready(AppendPlan),
}

/// An append that passed its checks: everything to write.
struct AppendPlan {
    events: Vec<crate::LoggedEvent>,
    writes: Vec<Write>,
    states: Vec<(crate::Key, Vec<u8>)>,
}

/// Usage states merged in the current group and not yet written.
#[derive(Default)]
struct Overlay(foldhash::HashMap<crate::Key, Vec<u8>>);

impl Overlay {
    fn flush(&mut self, conn: &Connection) -> StoreResult<()> {
        for (key, value) in self.0.drain() {
            put(conn, &key.pk, &key.sk, &value)?;
        }
        Ok(())
    }
}

/// Checks an append (duplicates, then conditions) and computes its merged states, reading only.
fn prepare_append(conn: &Connection, dedupe: &Dedupe, batch: EventBatch, overlay: &Overlay) -> StoreResult<Prepared> {
    let mut duplicates = Vec::new();
    let mut seen = foldhash::HashSet::with_capacity_and_hasher(batch.events.len(), Default::default());
    {
        let mut stored = conn
            .prepare_cached("SELECT 1 FROM events WHERE seq = ?1 AND org = ?2 AND sub = ?3 AND tx = ?4")
            .map_err(backend)?;
        for (index, event) in batch.events.iter().enumerate() {
            let key = (&event.organization_id, &event.external_subscription_id, &event.transaction_id);
            let mut known = !seen.insert(key);
            if !known {
                // A hash match is confirmed against the event row itself.
                for seq in dedupe.candidates(conn, event_hash(&event.organization_id, &event.transaction_id))? {
                    let params =
                        params![seq, event.organization_id, event.external_subscription_id, event.transaction_id];
                    if stored.exists(params).map_err(backend)? {
                        known = true;
                        break;
                    }
                }
            }
            if known {
                duplicates.push(index);
            }
        }
    }
    if !duplicates.is_empty() {
        return Ok(Prepared::Refused(duplicates));
    }
    check_conditions(conn, &batch.writes)?;
    let mut states = Vec::with_capacity(batch.usage.len());
    {
        let mut read = conn.prepare_cached("SELECT value FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
        for usage in batch.usage {
            let from_disk: Option<Vec<u8>>;
            let stored = match overlay.0.get(&usage.key) {
                Some(pending) => Some(pending.as_slice()),
                None => {
                    from_disk = read
                        .query_row(params![usage.key.pk, usage.key.sk], |row| row.get::<_, Vec<u8>>(0))
                        .optional()
                        .map_err(backend)?;
                    from_disk.as_deref()
                }
            };
            let merged = usage.apply(stored).map_err(StoreError::Merge)?;
            states.push((usage.key, merged));
        }
    }
    Ok(Prepared::Ready(AppendPlan { events: batch.events, writes: batch.writes, states }))
}

fn apply_append(conn: &Connection, dedupe: &mut Dedupe, plan: AppendPlan, overlay: &mut Overlay) -> StoreResult<()> {
    apply_writes(conn, &plan.writes)?;
    let mut insert_event = conn
        .prepare_cached(
            "INSERT INTO events (hash, org, sub, tx, code, ts_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(backend)?;
    for event in &plan.events {
        let hash = event_hash(&event.organization_id, &event.transaction_id);
        let seq = insert_event
            .insert(params![
                hash,
                event.organization_id,
                event.external_subscription_id,
                event.transaction_id,
                event.code,
                event.timestamp_ms,
                event.body
            ])
            .map_err(backend)?;
        dedupe.record(hash, seq);
    }
    overlay.0.extend(plan.states);
    Ok(())
}
