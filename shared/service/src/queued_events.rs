//! Queued ingestion (the AWS deployment): the API checks events and puts them on a queue; a
//! consumer (the `ingest` Lambda, or `tally serve --backend aws` in process) meters them.
//!
//! A message body is `{"events": [...]}`, `{"event": {...}}` or one bare event, each event
//! Lago-shaped, so usage producers may write to the queue directly. Events the API enqueued
//! also carry the `lago_id` and `created_at` it answered with.
//!
//! The queue delivers at least once, so the consumer treats an event stored already as done:
//! it was counted the first time. Events are committed in chunks that fit one store
//! transaction, each chunk pre-aggregated per usage state with its dedupe records. A message
//! that can never be ingested (bad JSON, an invalid event) fails on its own and, after its last
//! delivery, lands in the dead-letter queue; the rest of the batch goes through.

use crate::events::{self, EventInput, Refused};
use crate::{EventRecord, Org, ServiceError, ServiceResult, Tally};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;
use tally_domain::validation::ValidationErrors;
use tally_queue::{Queue, QueueError, MAX_MESSAGE_BYTES, MAX_RECEIVE};
use tally_store::MAX_TRANSACTION_WRITES;

/// One event as the API enqueues it: Lago's fields, with the timestamp it resolved.
#[derive(Serialize)]
struct QueuedEvent<'a> {
    transaction_id: &'a str,
    external_subscription_id: &'a str,
    code: &'a str,
    timestamp: String,
    properties: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    precise_total_amount_cents: Option<String>,
    lago_id: &'a str,
    created_at: String,
}

#[derive(Serialize)]
struct QueuedBatch<'a> {
    /// Whose events these are; a message without one belongs to the default organization
    /// (producers writing to the queue directly).
    organization_id: &'a str,
    events: Vec<QueuedEvent<'a>>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Message bodies for `records`: as few as fit the queue's message size.
fn bodies(organization_id: &str, records: &[EventRecord]) -> ServiceResult<Vec<String>> {
    let events = records
        .iter()
        .map(|r| QueuedEvent {
            transaction_id: &r.transaction_id,
            external_subscription_id: &r.external_subscription_id,
            code: &r.code,
            timestamp: rfc3339(r.timestamp),
            properties: &r.properties,
            precise_total_amount_cents: r.precise_total_amount_cents.map(|d| d.to_string()),
            lago_id: &r.lago_id,
            created_at: rfc3339(r.created_at),
        })
        .collect();
    let body = serde_json::to_string(&QueuedBatch { organization_id, events })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    if body.len() <= MAX_MESSAGE_BYTES || records.len() == 1 {
        return Ok(vec![body]);
    }
    let (first, second) = records.split_at(records.len() / 2);
    let mut out = bodies(organization_id, first)?;
    out.extend(bodies(organization_id, second)?);
    Ok(out)
}

/// Validates events, refuses those already stored (or repeated in the batch) with Lago's 422
/// `value_already_exist`, and enqueues the rest; answers only once the queue took them.
pub async fn enqueue(
    tally: &Tally,
    org: &Org,
    queue: &dyn Queue,
    inputs: Vec<EventInput>,
) -> ServiceResult<Vec<EventRecord>> {
    let records = events::validate_all(inputs, tally.now())?;
    let keys: Vec<(String, String)> =
        records.iter().map(|r| (r.external_subscription_id.clone(), r.transaction_id.clone())).collect();
    let stored = tally.store.events_exist(&org.id, &keys).await?;
    let mut seen = HashSet::new();
    let duplicates: std::collections::BTreeMap<usize, ValidationErrors> = keys
        .iter()
        .enumerate()
        .filter(|(i, key)| !seen.insert(*key) || stored.get(*i).copied().unwrap_or(false))
        .map(|(i, _)| (i, ValidationErrors::single("transaction_id", "value_already_exist")))
        .collect();
    if !duplicates.is_empty() {
        return Err(ServiceError::BatchValidation(duplicates));
    }
    match queue.send(bodies(&org.id, &records)?).await {
        Ok(()) => Ok(records),
        Err(QueueError::TooLarge(_)) => Err(ServiceError::invalid("properties", "value_is_too_long")),
        Err(QueueError::Unavailable(reason)) => Err(ServiceError::Unavailable(reason)),
    }
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub body: String,
}

/// What became of a batch of messages.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Events stored and metered (or parked for a subscription to come).
    pub ingested: usize,
    /// Events stored by an earlier delivery.
    pub duplicates: usize,
    /// Ids of messages to deliver again (and, after the last attempt, dead-letter).
    pub failed: Vec<String>,
}

/// What the API adds to an event it enqueues.
#[derive(Deserialize)]
struct Assigned {
    lago_id: Option<String>,
    created_at: Option<DateTime<Utc>>,
}

/// The organization (if the message names one) and events of one message, or why it can never
/// be ingested.
fn parse(body: &str, now: DateTime<Utc>) -> Result<(Option<String>, Vec<EventRecord>), String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("not a JSON object".into());
    };
    let organization_id = match object.remove("organization_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id),
        Some(_) => return Err("`organization_id` is not a string".into()),
    };
    let events = match (object.remove("events"), object.remove("event")) {
        (Some(Value::Array(events)), _) => events,
        (_, Some(event)) => vec![event],
        (None, None) => vec![Value::Object(object)],
        (Some(_), None) => return Err("`events` is not a list".into()),
    };
    if events.is_empty() {
        return Err("no events".into());
    }
    let records = events
        .into_iter()
        .map(|event| {
            let input: EventInput = serde_json::from_value(event.clone()).map_err(|e| format!("not an event: {e}"))?;
            let assigned: Assigned = serde_json::from_value(event).map_err(|e| format!("not an event: {e}"))?;
            let mut record = events::validate(input, now).map_err(|e| format!("invalid event: {e:?}"))?;
            if let Some(lago_id) = assigned.lago_id.filter(|id| !id.is_empty()) {
                record.lago_id = lago_id;
            }
            if let Some(created_at) = assigned.created_at {
                record.created_at = created_at;
            }
            Ok(record)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((organization_id, records))
}

/// Ingests a batch of delivered messages, each for the organization it names (or
/// `default_org`).
pub async fn consume(tally: &Tally, default_org: &Org, messages: &[Message]) -> Outcome {
    let mut outcome = Outcome::default();
    let now = tally.now();
    let mut failed = BTreeSet::new();
    // Every event with the index of its message, by organization.
    let mut by_org: std::collections::BTreeMap<String, Vec<(usize, EventRecord)>> = Default::default();
    for (index, message) in messages.iter().enumerate() {
        match parse(&message.body, now) {
            Ok((org_id, records)) => by_org
                .entry(org_id.unwrap_or_else(|| default_org.id.clone()))
                .or_default()
                .extend(records.into_iter().map(|r| (index, r))),
            Err(reason) => {
                tracing::warn!(message_id = %message.id, "cannot ingest message: {reason}");
                failed.insert(index);
            }
        }
    }
    for (org_id, entries) in by_org {
        let org = if org_id == default_org.id {
            default_org.clone()
        } else {
            match crate::organizations::get(tally, &org_id).await {
                Ok(org) => org,
                Err(e) => {
                    // Unknown (or unreadable): delivered again, and dead-lettered in the end.
                    tracing::warn!(organization = %org_id, "cannot ingest messages: {e}");
                    failed.extend(entries.iter().map(|(message, _)| *message));
                    continue;
                }
            }
        };
        ingest_entries(tally, &org, messages, entries, &mut outcome, &mut failed).await;
    }
    outcome.failed = failed.into_iter().map(|i| messages[i].id.clone()).collect();
    outcome
}

/// Stores and meters one organization's events of a delivery, in chunks that fit a
/// transaction; the messages that cannot be go to `failed`.
async fn ingest_entries(
    tally: &Tally,
    org: &Org,
    messages: &[Message],
    entries: Vec<(usize, EventRecord)>,
    outcome: &mut Outcome,
    failed: &mut BTreeSet<usize>,
) {
    // `alive` until stored, or dropped.
    let mut alive = vec![true; entries.len()];
    let mut chunk = entries.len().max(1);
    let mut start = 0;
    while start < entries.len() {
        let end = (start + chunk).min(entries.len());
        let positions: Vec<usize> = (start..end).filter(|&p| alive[p]).collect();
        if positions.is_empty() {
            start = end;
            continue;
        }
        let mut records: Vec<EventRecord> = positions.iter().map(|&p| entries[p].1.clone()).collect();
        match events::commit(tally, org, &mut records).await {
            Ok(()) => {
                outcome.ingested += records.len();
                start = end;
            }
            Err(Refused::Rejected(by_index)) => {
                for (index, errors) in by_index {
                    let Some(&position) = positions.get(index) else { continue };
                    if events::only_duplicate(&errors) {
                        outcome.duplicates += 1;
                        alive[position] = false;
                    } else {
                        // The whole message fails (its other events may be stored already:
                        // they count once, and are duplicates on redelivery).
                        let message = entries[position].0;
                        tracing::warn!(message_id = %messages[message].id, ?errors, "invalid event");
                        failed.insert(message);
                        drop_message(&entries, &mut alive, message);
                    }
                }
            }
            // Shrink the chunk to fit one transaction, in proportion (a little under it).
            Err(Refused::TooLarge(items)) if positions.len() > 1 => {
                chunk = (positions.len() * MAX_TRANSACTION_WRITES / items.max(1)).saturating_sub(1).max(1);
            }
            Err(Refused::TooLarge(items)) => {
                let message = entries[positions[0]].0;
                tracing::error!(message_id = %messages[message].id, items, "one event needs more writes than a transaction holds");
                failed.insert(message);
                drop_message(&entries, &mut alive, message);
            }
            // One of these events takes a stored total out of range: narrow down to it, so
            // it fails alone (with its message) and the others are metered.
            Err(Refused::OutOfRange) if positions.len() > 1 => chunk = positions.len().div_ceil(2),
            Err(Refused::OutOfRange) => {
                let message = entries[positions[0]].0;
                tracing::warn!(message_id = %messages[message].id, "event takes a usage total out of range");
                failed.insert(message);
                drop_message(&entries, &mut alive, message);
            }
            Err(Refused::Failed(e)) => {
                tracing::error!("ingest failed, the rest will be redelivered: {e}");
                for p in start..entries.len() {
                    if alive[p] {
                        failed.insert(entries[p].0);
                    }
                }
                break;
            }
        }
    }
}

/// Drops the events of a failed message that are not stored yet.
fn drop_message(entries: &[(usize, EventRecord)], alive: &mut [bool], message: usize) {
    for (position, (of, _)) in entries.iter().enumerate() {
        if *of == message {
            alive[position] = false;
        }
    }
}

/// Receives one batch from `queue` (waiting up to `wait`), ingests it, and deletes the messages
/// that are done; failed ones come back after the queue's visibility timeout.
pub async fn poll(tally: &Tally, org: &Org, queue: &dyn Queue, wait: Duration) -> Result<Outcome, QueueError> {
    let deliveries = queue.receive(MAX_RECEIVE, wait).await?;
    if deliveries.is_empty() {
        return Ok(Outcome::default());
    }
    let messages: Vec<Message> =
        deliveries.iter().map(|d| Message { id: d.id.clone(), body: d.body.clone() }).collect();
    let outcome = consume(tally, org, &messages).await;
    let done: Vec<String> =
        deliveries.into_iter().filter(|d| !outcome.failed.contains(&d.id)).map(|d| d.receipt).collect();
    queue.delete(done).await?;
    Ok(outcome)
}
