//! The writer thread: group commit of concurrent requests, each in its own savepoint.

use super::backend;
use super::schema::event_hash;
use crate::{AppendOutcome, Condition, EventBatch, StoreError, StoreResult, Write};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;
use std::sync::mpsc::Receiver;
use tokio::sync::oneshot;

/// Most requests committed in one transaction.
const MAX_GROUP: usize = 256;

pub(super) enum Job {
    Transact { writes: Vec<Write>, reply: oneshot::Sender<StoreResult<()>> },
    Append { batch: EventBatch, reply: oneshot::Sender<StoreResult<AppendOutcome>> },
}

enum Done {
    Transact(oneshot::Sender<StoreResult<()>>, StoreResult<()>),
    Append(oneshot::Sender<StoreResult<AppendOutcome>>, StoreResult<AppendOutcome>),
}

pub(super) fn run(mut conn: Connection, jobs: Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let done = commit_group(&mut conn, group);
        for d in done {
            // A caller that went away no longer needs its answer.
            match d {
                Done::Transact(reply, result) => drop(reply.send(result)),
                Done::Append(reply, result) => drop(reply.send(result)),
            }
        }
    }
}

fn commit_group(conn: &mut Connection, group: Vec<Job>) -> Vec<Done> {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(group, &e.to_string()),
    };
    let mut done = Vec::with_capacity(group.len());
    let mut pending = Vec::new();
    for job in group {
        let savepoint = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                pending.push(job);
                tracing::error!("savepoint failed: {e}");
                continue;
            }
        };
        match job {
            Job::Transact { writes, reply } => {
                let result = apply_writes(&savepoint, &writes);
                let result = finish(savepoint, result.is_ok()).and(result);
                done.push(Done::Transact(reply, result));
            }
            Job::Append { batch, reply } => {
                let result = append(&savepoint, batch);
                let keep = matches!(result, Ok(AppendOutcome::Appended));
                let result = finish(savepoint, keep).and(result);
                done.push(Done::Append(reply, result));
            }
        }
    }
    if let Err(e) = tx.commit() {
        let message = format!("commit failed: {e}");
        return done
            .into_iter()
            .map(|d| match d {
                Done::Transact(reply, _) => Done::Transact(reply, Err(StoreError::Unavailable(message.clone()))),
                Done::Append(reply, _) => Done::Append(reply, Err(StoreError::Unavailable(message.clone()))),
            })
            .chain(fail_all(pending, &message))
            .collect();
    }
    done.extend(fail_all(pending, "savepoint failed"));
    done
}

/// Releases the savepoint (keeping its writes) or rolls it back.
fn finish(savepoint: rusqlite::Savepoint<'_>, keep: bool) -> StoreResult<()> {
    if keep {
        savepoint.commit().map_err(backend)
    } else {
        savepoint.finish().map_err(backend)
    }
}

fn fail_all(group: Vec<Job>, message: &str) -> Vec<Done> {
    group
        .into_iter()
        .map(|job| match job {
            Job::Transact { reply, .. } => Done::Transact(reply, Err(StoreError::Unavailable(message.to_owned()))),
            Job::Append { reply, .. } => Done::Append(reply, Err(StoreError::Unavailable(message.to_owned()))),
        })
        .collect()
}

fn current_version(conn: &Connection, pk: &str, sk: &str) -> StoreResult<Option<u64>> {
    let mut stmt = conn.prepare_cached("SELECT version FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
    let version = stmt.query_row(params![pk, sk], |row| row.get::<_, i64>(0)).optional().map_err(backend)?;
    Ok(version.map(i64::unsigned_abs))
}

fn apply_writes(conn: &Connection, writes: &[Write]) -> StoreResult<()> {
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

fn append(conn: &Connection, batch: EventBatch) -> StoreResult<AppendOutcome> {
    // 1. Refuse the whole batch if any event is already stored or repeats an earlier one.
    let mut duplicates = Vec::new();
    let mut seen = HashSet::with_capacity(batch.events.len());
    {
        let mut stored = conn
            .prepare_cached(
                "SELECT 1 FROM event_keys k JOIN events e ON e.seq = k.seq
                 WHERE k.hash = ?1 AND e.org = ?2 AND e.sub = ?3 AND e.tx = ?4 LIMIT 1",
            )
            .map_err(backend)?;
        for (index, event) in batch.events.iter().enumerate() {
            let key = (&event.organization_id, &event.external_subscription_id, &event.transaction_id);
            let hash = event_hash(&event.organization_id, &event.transaction_id);
            let known = !seen.insert(key)
                || stored
                    .exists(params![hash, event.organization_id, event.external_subscription_id, event.transaction_id])
                    .map_err(backend)?;
            if known {
                duplicates.push(index);
            }
        }
    }
    if !duplicates.is_empty() {
        return Ok(AppendOutcome::Duplicates(duplicates));
    }
    apply_writes(conn, &batch.writes)?;
    // 2. Log the events and their dedupe keys.
    {
        let mut insert_event = conn
            .prepare_cached("INSERT INTO events (org, sub, tx, code, ts_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(backend)?;
        let mut insert_key =
            conn.prepare_cached("INSERT INTO event_keys (hash, seq) VALUES (?1, ?2)").map_err(backend)?;
        for event in &batch.events {
            let seq = insert_event
                .insert(params![
                    event.organization_id,
                    event.external_subscription_id,
                    event.transaction_id,
                    event.code,
                    event.timestamp_ms,
                    event.body
                ])
                .map_err(backend)?;
            insert_key
                .execute(params![event_hash(&event.organization_id, &event.transaction_id), seq])
                .map_err(backend)?;
        }
    }
    // 3. Merge usage deltas into their states, in the same transaction.
    for usage in batch.usage {
        let current = {
            let mut stmt = conn.prepare_cached("SELECT value FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
            stmt.query_row(params![usage.key.pk, usage.key.sk], |row| row.get::<_, Vec<u8>>(0))
                .optional()
                .map_err(backend)?
        };
        let merged = (usage.merge)(current.as_deref()).map_err(StoreError::Merge)?;
        put(conn, &usage.key.pk, &usage.key.sk, &merged)?;
    }
    Ok(AppendOutcome::Appended)
}
