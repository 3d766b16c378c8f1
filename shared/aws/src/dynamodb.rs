//! The storage port on DynamoDB: one on-demand table, keys `pk`/`sk` (strings), the value in
//! `v` (binary) and the item version in `ver` (number). No secondary index: every write costs
//! exactly the units of the items it writes.
//!
//! Events: one item per event, `pk = {org}#txn#{transaction_id}`, `sk = {external_subscription_id}`,
//! written with `attribute_not_exists(pk)`: the item is both the log entry and the dedupe
//! marker, so a duplicate is refused by DynamoDB itself. Each append also writes one arrival
//! record (`pk = {org}#arrivals#{shard}`, `sk` = arrival time): the batch's event keys, codes
//! and timestamps, which `list_events` reads newest first (spread over [`ARRIVAL_SHARDS`]
//! partitions so no partition takes every append of a busy organization).
//!
//! Every write that must be atomic is one `TransactWriteItems` (at most 100 items). Usage merges
//! are optimistic: read the state, merge, write it back on condition that its version did not
//! move; a conflict retries the whole batch. Throttling is retried by the SDK with backoff; when
//! retries run out the caller gets [`StoreError::Unavailable`], never a silent drop.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ScalarAttributeType, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where an appended event is, as its batch's arrival record lists it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Arrived(String, String, String, i64);
use tally_store::{
    AppendOutcome, Condition, EventBatch, EventFilter, Item, Key, LoggedEvent, Page, Query, Store, StoreError,
    StoreResult, Write, MAX_PAGE, MAX_TRANSACTION_WRITES,
};

/// Partitions an organization's arrival records are spread over.
pub const ARRIVAL_SHARDS: u32 = 8;

/// Keys one `BatchGetItem` reads at most.
const BATCH_GET: usize = 100;

/// Attempts at a batch whose usage states moved under it (with jittered backoff between them).
const MERGE_ATTEMPTS: u32 = 40;

/// Waits before another attempt: exponential from 2 ms, capped at 250 ms, with full jitter so
/// contending writers spread out.
async fn back_off(attempt: u32) {
    use rand::Rng;
    let cap_ms = 2u64.saturating_pow(attempt + 1).min(250);
    let wait_ms = rand::rng().random_range(1..=cap_ms);
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
}

type Attributes = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    write_units: std::sync::Arc<AtomicU64>,
    conflicts: std::sync::Arc<AtomicU64>,
    faults: Option<std::sync::Arc<Faults>>,
}

/// Faults a test injects into the adapter, as DynamoDB produces them: a throttled call (what
/// the adapter sees once the SDK's own retries are spent), a transaction cancelled by a
/// conflict with another one, and a transaction that committed but whose answer was lost.
/// Seeded, so a failing run replays.
pub struct Faults {
    rng: std::sync::Mutex<rand::rngs::StdRng>,
    percent: u32,
    pub injected: AtomicU64,
}

enum Fault {
    Throttled,
    Conflict,
    LostAnswer,
}

impl Faults {
    /// `percent` of calls fail, the kind drawn at random.
    pub fn new(seed: u64, percent: u32) -> Self {
        use rand::SeedableRng;
        Self {
            rng: std::sync::Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
            percent,
            injected: AtomicU64::new(0),
        }
    }

    fn draw(&self, transaction: bool) -> Option<Fault> {
        use rand::Rng;
        let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if rng.random_range(0..100) >= self.percent {
            return None;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(match (transaction, rng.random_range(0..3)) {
            (false, _) | (true, 0) => Fault::Throttled,
            (true, 1) => Fault::Conflict,
            _ => Fault::LostAnswer,
        })
    }
}

fn throttled() -> StoreError {
    StoreError::Unavailable("ThrottlingException: injected".into())
}

/// DynamoDB's size of an item: attribute names plus values (numbers counted as their text,
/// an upper bound of their encoded size).
fn item_bytes(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 1,
                }
        })
        .sum()
}

/// Write request units of one transaction item: 2 per started KB (transactions cost double).
fn transaction_units(item: &TransactWriteItem) -> u64 {
    let bytes = if let Some(put) = item.put() {
        item_bytes(put.item())
    } else if let Some(update) = item.update() {
        // Key, the value written (`v`) and the version (`ver`).
        let value = update.expression_attribute_values().and_then(|v| v.get(":v"));
        item_bytes(update.key()) + value.map_or(0, |v| 1 + v.as_b().map_or(0, |b| b.as_ref().len())) + 3 + 20
    } else if let Some(delete) = item.delete() {
        item_bytes(delete.key())
    } else {
        item.condition_check().map_or(0, |c| item_bytes(c.key()))
    };
    2 * (bytes.max(1) as u64).div_ceil(1024)
}

fn unavailable<E: std::fmt::Debug>(e: E) -> StoreError {
    StoreError::Unavailable(format!("{e:?}"))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key_attributes(key: &Key) -> Attributes {
    HashMap::from([("pk".to_owned(), s(&key.pk)), ("sk".to_owned(), s(&key.sk))])
}

fn text(item: &Attributes, name: &str) -> StoreResult<String> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Backend(format!("item lacks string attribute {name}")))
}

fn bytes(item: &Attributes, name: &str) -> StoreResult<Vec<u8>> {
    item.get(name)
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref().to_vec())
        .ok_or_else(|| StoreError::Backend(format!("item lacks binary attribute {name}")))
}

fn number(item: &Attributes, name: &str) -> StoreResult<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Backend(format!("item lacks number attribute {name}")))
}

fn to_item(attributes: &Attributes) -> StoreResult<Item> {
    Ok(Item {
        key: Key::new(text(attributes, "pk")?, text(attributes, "sk")?),
        value: bytes(attributes, "v")?,
        version: number(attributes, "ver")?.unsigned_abs(),
    })
}

fn to_event(attributes: &Attributes) -> StoreResult<LoggedEvent> {
    Ok(LoggedEvent {
        organization_id: text(attributes, "org")?,
        external_subscription_id: text(attributes, "sk")?,
        transaction_id: text(attributes, "tx")?,
        code: text(attributes, "code")?,
        timestamp_ms: number(attributes, "ts")?,
        body: bytes(attributes, "v")?,
    })
}

fn arrivals_partition(organization_id: &str, shard: u32) -> String {
    format!("{organization_id}#arrivals#{shard:02}")
}

fn event_key(organization_id: &str, transaction_id: &str, external_subscription_id: &str) -> Key {
    Key::new(format!("{organization_id}#txn#{transaction_id}"), external_subscription_id)
}

/// The condition expression of a write, if any.
fn condition_expression(condition: Condition) -> (Option<&'static str>, Option<AttributeValue>) {
    match condition {
        Condition::None => (None, None),
        Condition::Absent => (Some("attribute_not_exists(pk)"), None),
        Condition::Version(v) => (Some("ver = :expected"), Some(AttributeValue::N(v.to_string()))),
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            write_units: std::sync::Arc::new(AtomicU64::new(0)),
            conflicts: std::sync::Arc::new(AtomicU64::new(0)),
            faults: None,
        }
    }

    /// The same store, failing some calls as `faults` says (tests only).
    pub fn with_faults(mut self, faults: std::sync::Arc<Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    fn fault(&self, transaction: bool) -> Option<Fault> {
        self.faults.as_ref().and_then(|f| f.draw(transaction))
    }

    /// Batches retried because a usage state moved under them (contention on hot items).
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Write request units consumed by committed transactions so far (computed from item sizes
    /// with DynamoDB's rules: 2 units per started KB of each transaction item).
    pub fn write_units(&self) -> u64 {
        self.write_units.load(Ordering::Relaxed)
    }

    /// Creates the table (on demand) unless it exists.
    pub async fn create_table_if_missing(&self) -> StoreResult<()> {
        let exists = self.client.describe_table().table_name(&self.table).send().await;
        if exists.is_ok() {
            return Ok(());
        }
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(unavailable)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(unavailable)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Created meanwhile by another process: just as good.
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// One write as a transaction item. Every put bumps `ver` (`ADD ver 1` starts absent items at 1).
    fn transact_item(&self, write: &Write) -> StoreResult<TransactWriteItem> {
        let (expression, expected) = condition_expression(match write {
            Write::Put { condition, .. } | Write::Delete { condition, .. } | Write::Check { condition, .. } => {
                *condition
            }
        });
        let item = match write {
            Write::Put { key, value, .. } => {
                let mut update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .update_expression("SET v = :v ADD ver :one")
                    .expression_attribute_values(":v", AttributeValue::B(Blob::new(value.clone())))
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .set_condition_expression(expression.map(str::to_owned));
                if let Some(expected) = expected {
                    update = update.expression_attribute_values(":expected", expected);
                }
                TransactWriteItem::builder().update(update.build().map_err(unavailable)?).build()
            }
            Write::Delete { key, .. } => {
                let mut delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .set_condition_expression(expression.map(str::to_owned));
                if let Some(expected) = expected {
                    delete = delete.expression_attribute_values(":expected", expected);
                }
                TransactWriteItem::builder().delete(delete.build().map_err(unavailable)?).build()
            }
            Write::Check { key, .. } => {
                // A check needs an expression: "absent", or "at this version".
                let expression = expression.unwrap_or("attribute_exists(pk) OR attribute_not_exists(pk)");
                let mut check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .condition_expression(expression);
                if let Some(expected) = expected {
                    check = check.expression_attribute_values(":expected", expected);
                }
                TransactWriteItem::builder().condition_check(check.build().map_err(unavailable)?).build()
            }
        };
        Ok(item)
    }

    fn event_item(&self, event: &LoggedEvent) -> StoreResult<TransactWriteItem> {
        let key = event_key(&event.organization_id, &event.transaction_id, &event.external_subscription_id);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                ("pk".to_owned(), s(&key.pk)),
                ("sk".to_owned(), s(&key.sk)),
                ("v".to_owned(), AttributeValue::B(Blob::new(event.body.clone()))),
                ("ver".to_owned(), AttributeValue::N("1".into())),
                ("org".to_owned(), s(&event.organization_id)),
                ("tx".to_owned(), s(&event.transaction_id)),
                ("code".to_owned(), s(&event.code)),
                ("ts".to_owned(), AttributeValue::N(event.timestamp_ms.to_string())),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The arrival record of a batch: its events' keys in order, under a fresh sort key (a
    /// conditional put, so a collision retries rather than overwrites).
    fn arrival_item(&self, events: &[LoggedEvent]) -> StoreResult<TransactWriteItem> {
        use rand::Rng;
        let Some(first) = events.first() else {
            return Err(StoreError::Backend("an arrival record needs events".into()));
        };
        let mut rng = rand::rng();
        let shard = rng.random_range(0..ARRIVAL_SHARDS);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let sk = format!("{now_ms:015}#{:016x}", rng.random::<u64>());
        let arrived: Vec<Arrived> = events
            .iter()
            .map(|e| {
                Arrived(e.external_subscription_id.clone(), e.transaction_id.clone(), e.code.clone(), e.timestamp_ms)
            })
            .collect();
        let value = serde_json::to_vec(&arrived).map_err(|e| StoreError::Backend(e.to_string()))?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(HashMap::from([
                ("pk".to_owned(), s(arrivals_partition(&first.organization_id, shard))),
                ("sk".to_owned(), s(sk)),
                ("v".to_owned(), AttributeValue::B(Blob::new(value))),
                ("ver".to_owned(), AttributeValue::N("1".into())),
            ])))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Reads items by key (consistent), in any order, following unprocessed keys.
    async fn batch_get(&self, keys: Vec<Key>) -> StoreResult<Vec<Attributes>> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET) {
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(key_attributes).collect()))
                .consistent_read(true)
                .build()
                .map_err(unavailable)?;
            for attempt in 0..MERGE_ATTEMPTS {
                if attempt > 0 {
                    back_off(attempt).await;
                }
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request.clone())
                    .send()
                    .await
                    .map_err(unavailable)?;
                if let Some(items) = output.responses().and_then(|r| r.get(&self.table)) {
                    found.extend(items.iter().cloned());
                }
                match output.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    Some(rest) if !rest.keys().is_empty() => request = rest.clone(),
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    /// Sends one transaction; on cancellation, returns the index and code of the first failed item.
    async fn send(&self, items: Vec<TransactWriteItem>) -> StoreResult<Result<(), (usize, String)>> {
        if items.len() > MAX_TRANSACTION_WRITES {
            return Err(StoreError::TooManyWrites(items.len()));
        }
        match self.fault(true) {
            None => self.send_now(items).await,
            Some(Fault::Throttled) => Err(throttled()),
            Some(Fault::Conflict) => Ok(Err((usize::MAX, "TransactionConflict".into()))),
            Some(Fault::LostAnswer) => {
                let _answer_lost = self.send_now(items).await?;
                Err(StoreError::Unavailable("timed out after the write (injected)".into()))
            }
        }
    }

    async fn send_now(&self, items: Vec<TransactWriteItem>) -> StoreResult<Result<(), (usize, String)>> {
        let units: u64 = items.iter().map(transaction_units).sum();
        // One token per transaction: when the SDK retries a call whose answer was lost after it
        // committed, DynamoDB answers the retry as the first success instead of failing its
        // conditions (idempotent for 10 minutes).
        let token = format!("{:032x}", rand::random::<u128>());
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(token)
            .send()
            .await
        {
            Ok(_) => {
                self.write_units.fetch_add(units, Ordering::Relaxed);
                Ok(Ok(()))
            }
            Err(SdkError::ServiceError(e)) => match e.into_err() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => {
                    let failed = cancelled
                        .cancellation_reasons()
                        .iter()
                        .enumerate()
                        .find(|(_, r)| r.code().is_some_and(|c| c != "None"))
                        .map(|(i, r)| (i, r.code().unwrap_or_default().to_owned()));
                    // Without reasons, call it a conflict: the caller retries or reports it.
                    Ok(Err(failed.unwrap_or((usize::MAX, "TransactionConflict".into()))))
                }
                other => Err(StoreError::Unavailable(format!("{}: {}", other.code().unwrap_or("error"), other))),
            },
            Err(other) => Err(unavailable(other)),
        }
    }

    async fn event_exists(&self, event: &LoggedEvent) -> StoreResult<bool> {
        let key = event_key(&event.organization_id, &event.transaction_id, &event.external_subscription_id);
        Ok(self.get(&key).await?.is_some())
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        if self.fault(false).is_some() {
            return Err(throttled());
        }
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item().map(to_item).transpose()
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        if self.fault(false).is_some() {
            return Err(throttled());
        }
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .scan_index_forward(!query.descending)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .expression_attribute_values(":pk", s(&query.pk));
        request = if query.sk_prefix.is_empty() {
            request.key_condition_expression("pk = :pk")
        } else {
            request
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(&query.sk_prefix))
        };
        if let Some(after) = &query.after {
            request = request.set_exclusive_start_key(Some(key_attributes(&Key::new(query.pk.clone(), after.clone()))));
        }
        let output = request.send().await.map_err(unavailable)?;
        let items = output.items().iter().map(to_item).collect::<StoreResult<Vec<_>>>()?;
        let next = match output.last_evaluated_key() {
            Some(_) => items.last().map(|i| i.key.sk.clone()),
            None => None,
        };
        Ok(Page { items, next })
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        tally_store::contract::check_transaction_shape(&writes)?;
        let items = writes.iter().map(|w| self.transact_item(w)).collect::<StoreResult<Vec<_>>>()?;
        match self.send(items).await? {
            Ok(()) => Ok(()),
            Err((index, code)) if code == "ConditionalCheckFailed" => Err(StoreError::ConditionFailed { index }),
            Err((_, code)) => Err(StoreError::Unavailable(format!("transaction cancelled: {code}"))),
        }
    }

    async fn append_events(&self, batch: EventBatch) -> StoreResult<AppendOutcome> {
        tally_store::contract::check_distinct_keys(&batch.writes)?;
        let mut seen = HashSet::new();
        let repeated: Vec<usize> = batch
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| !seen.insert((&e.organization_id, &e.external_subscription_id, &e.transaction_id)))
            .map(|(i, _)| i)
            .collect();
        if !repeated.is_empty() {
            return Ok(AppendOutcome::Duplicates(repeated));
        }
        // Events, their arrival record, the other writes and the merges: one transaction.
        let arrival = usize::from(!batch.events.is_empty());
        let items = batch.events.len() + arrival + batch.writes.len() + batch.usage.len();
        if items > MAX_TRANSACTION_WRITES {
            return Err(StoreError::TooManyWrites(items));
        }
        for attempt in 0..MERGE_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt).await;
            }
            // Usage merges: read, merge, write back if the version did not move.
            let mut merges = Vec::with_capacity(batch.usage.len());
            for usage in &batch.usage {
                let current = self.get(&usage.key).await?;
                let merged = usage.apply(current.as_ref().map(|i| i.value.as_slice())).map_err(StoreError::Merge)?;
                let condition = current.map_or(Condition::Absent, |i| Condition::Version(i.version));
                merges.push(Write::Put { key: usage.key.clone(), value: merged, condition });
            }
            let events = batch.events.len();
            let mut items = batch.events.iter().map(|e| self.event_item(e)).collect::<StoreResult<Vec<_>>>()?;
            for write in batch.writes.iter().chain(&merges) {
                items.push(self.transact_item(write)?);
            }
            if arrival > 0 {
                items.push(self.arrival_item(&batch.events)?);
            }
            match self.send(items).await? {
                Ok(()) => return Ok(AppendOutcome::Appended),
                Err((index, code)) if code == "ConditionalCheckFailed" && index < events => {
                    // Some event is stored already: report every one that is, write nothing.
                    let mut duplicates = Vec::new();
                    for (i, event) in batch.events.iter().enumerate() {
                        if self.event_exists(event).await? {
                            duplicates.push(i);
                        }
                    }
                    if !duplicates.is_empty() {
                        return Ok(AppendOutcome::Duplicates(duplicates));
                    }
                }
                Err((index, code)) if code == "ConditionalCheckFailed" && index < events + batch.writes.len() => {
                    return Err(StoreError::ConditionFailed { index: index - events });
                }
                // A usage state moved under us, or a concurrent transaction: read and try again.
                Err(_) => {
                    self.conflicts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Err(StoreError::Unavailable("usage states kept changing; retry".into()))
    }

    async fn events_by_transaction(
        &self,
        organization_id: &str,
        transaction_id: &str,
    ) -> StoreResult<Vec<LoggedEvent>> {
        let mut events = Vec::new();
        let mut query = Query::partition(format!("{organization_id}#txn#{transaction_id}"));
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&query.pk));
            if let Some(after) = &query.after {
                request =
                    request.set_exclusive_start_key(Some(key_attributes(&Key::new(query.pk.clone(), after.clone()))));
            }
            let output = request.send().await.map_err(unavailable)?;
            for item in output.items() {
                events.push(to_event(item)?);
            }
            match (output.last_evaluated_key(), events.last()) {
                (Some(_), Some(last)) => query.after = Some(last.external_subscription_id.clone()),
                _ => return Ok(events),
            }
        }
    }

    async fn events_exist(&self, organization_id: &str, keys: &[(String, String)]) -> StoreResult<Vec<bool>> {
        let wanted: Vec<Key> = keys.iter().map(|(sub, tx)| event_key(organization_id, tx, sub)).collect();
        let found: HashSet<Key> = self
            .batch_get(wanted.clone())
            .await?
            .iter()
            .map(|item| Ok(Key::new(text(item, "pk")?, text(item, "sk")?)))
            .collect::<StoreResult<_>>()?;
        Ok(wanted.iter().map(|k| found.contains(k)).collect())
    }

    async fn list_events(
        &self,
        organization_id: &str,
        filter: &EventFilter,
        offset: usize,
        limit: usize,
    ) -> StoreResult<(Vec<LoggedEvent>, u64)> {
        // Not a hot path: reads every arrival record of the organization (small: keys only),
        // filters, and fetches the events of the page.
        let mut arrived: Vec<(String, usize, Arrived)> = Vec::new();
        for shard in 0..ARRIVAL_SHARDS {
            let mut query = Query::partition(arrivals_partition(organization_id, shard));
            loop {
                let page = self.query(&query).await?;
                for item in &page.items {
                    let batch: Vec<Arrived> =
                        serde_json::from_slice(&item.value).map_err(|e| StoreError::Backend(e.to_string()))?;
                    arrived.extend(batch.into_iter().enumerate().map(|(i, a)| (item.key.sk.clone(), i, a)));
                }
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
        }
        arrived.retain(|(_, _, Arrived(sub, _, code, ts))| {
            filter.external_subscription_id.as_ref().is_none_or(|s| s == sub)
                && filter.code.as_ref().is_none_or(|c| c == code)
                && filter.timestamp_from_ms.is_none_or(|from| *ts >= from)
                && filter.timestamp_to_ms.is_none_or(|to| *ts <= to)
        });
        // Newest batch first; within a batch, the later event first.
        arrived.sort_by(|a, b| (&b.0, b.1).cmp(&(&a.0, a.1)));
        let total = arrived.len() as u64;
        let keys: Vec<Key> = arrived
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(_, _, Arrived(sub, tx, _, _))| event_key(organization_id, tx, sub))
            .collect();
        let mut by_key: HashMap<Key, LoggedEvent> = HashMap::new();
        for item in self.batch_get(keys.clone()).await? {
            by_key.insert(Key::new(text(&item, "pk")?, text(&item, "sk")?), to_event(&item)?);
        }
        let page = keys.iter().filter_map(|k| by_key.remove(k)).collect();
        Ok((page, total))
    }
}
