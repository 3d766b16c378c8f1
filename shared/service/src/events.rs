//! Usage events: ingest (single or batch), attribute waiting events, read and list.
//!
//! Ingestion stores every accepted event in the log and, in the same atomic step, merges its
//! pre-aggregated usage into the states of the subscription alive at its timestamp. An event no
//! subscription (or no charge) covers yet is parked under its `external_subscription_id`; it is
//! metered as soon as a subscription or charge covers it ([`attribute_pending`]), so backfilled
//! usage bills the same as live usage. Each write is guarded by the versions of the subscription
//! and plan items it was attributed with, so a concurrent catalog change can never leave an
//! event parked or metered twice: the batch fails, and is attributed again.

use crate::catalog_cache::Epoch;
use crate::metering::{Deltas, EventRecord, Unmeterable};
use crate::records::{CompiledPlan, SubscriptionHistory};
use crate::retry::Retry;
use crate::{keys, new_id, put, unchanged, Org, PageRequest, Paged, ServiceError, ServiceResult, Tally};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use tally_domain::validation::ValidationErrors;
use tally_store::{AppendOutcome, Condition, EventBatch, EventFilter, MergeError, Query, StoreError, Write};

/// Largest batch `POST /events/batch` accepts.
pub const MAX_BATCH: usize = 100;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventInput {
    pub transaction_id: Option<Value>,
    pub external_subscription_id: Option<Value>,
    pub code: Option<Value>,
    pub timestamp: Option<Value>,
    pub properties: Option<Value>,
    pub precise_total_amount_cents: Option<Value>,
}

/// Unix seconds (integer, decimal, or a string of either; RFC 3339 also accepted) as Unix ms.
pub fn timestamp_ms(value: &Value) -> Option<i64> {
    let seconds = match value {
        Value::Number(n) => {
            Decimal::from_str(&n.to_string()).or_else(|_| Decimal::from_scientific(&n.to_string())).ok()
        }
        Value::String(s) => match Decimal::from_str(s.trim()) {
            Ok(d) => Some(d),
            Err(_) => return DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.timestamp_millis()),
        },
        _ => None,
    }?;
    let ms = i64::try_from(seconds.checked_mul(Decimal::ONE_THOUSAND)?.trunc()).ok()?;
    // Billing periods are computed from it: keep to years 1970–9999.
    (0..=MAX_TIMESTAMP_MS).contains(&ms).then_some(ms)
}

/// 9999-12-31T23:59:59.999Z.
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

fn text(value: &Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Validates one event input; Lago's field codes.
/// Takes the input by value: its properties move into the record (no copy per event).
pub fn validate(input: EventInput, now: DateTime<Utc>) -> Result<EventRecord, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let transaction_id = text(&input.transaction_id);
    let external_subscription_id = text(&input.external_subscription_id);
    let code = text(&input.code);
    for (field, value) in
        [("transaction_id", &transaction_id), ("external_subscription_id", &external_subscription_id), ("code", &code)]
    {
        if let Some(Err(rule)) = value.as_deref().map(tally_domain::input_rules::identifier) {
            errors.add(field, rule);
        }
    }
    if transaction_id.is_none() {
        errors.add("transaction_id", "value_is_mandatory");
    }
    if external_subscription_id.is_none() {
        errors.add("external_subscription_id", "value_is_mandatory");
    }
    if code.is_none() {
        errors.add("code", "value_is_mandatory");
    }
    let timestamp = match &input.timestamp {
        None | Some(Value::Null) => Some(now),
        Some(t) => match timestamp_ms(t).and_then(DateTime::<Utc>::from_timestamp_millis) {
            Some(t) => Some(t),
            None => {
                errors.add("timestamp", "invalid_format");
                None
            }
        },
    };
    let properties = match input.properties {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            errors.add("properties", "value_is_invalid");
            None
        }
    };
    let precise_total_amount_cents = match &input.precise_total_amount_cents {
        None | Some(Value::Null) => Some(None),
        Some(v) => match crate::taxes::decimal(v) {
            Some(d) => Some(Some(d)),
            None => {
                errors.add("precise_total_amount_cents", "value_is_invalid");
                None
            }
        },
    };
    match (transaction_id, external_subscription_id, code, timestamp, properties, precise_total_amount_cents) {
        (
            Some(transaction_id),
            Some(external_subscription_id),
            Some(code),
            Some(timestamp),
            Some(properties),
            Some(amount),
        ) if errors.is_empty() => Ok(EventRecord {
            lago_id: new_id(),
            transaction_id,
            external_subscription_id,
            code,
            timestamp,
            properties,
            precise_total_amount_cents: amount,
            lago_subscription_id: None,
            lago_customer_id: None,
            created_at: now,
        }),
        _ => Err(errors),
    }
}

/// What ingestion reads to attribute a batch: plans under one catalog epoch, histories at their
/// versions; both guard the write.
struct Reads {
    epoch: Epoch,
    /// Each history with the version of its item, which the write is checked against.
    subscriptions: HashMap<String, (Arc<SubscriptionHistory>, Option<u64>)>,
    plans: HashMap<String, Option<Arc<CompiledPlan>>>,
}

impl Reads {
    /// Reads start with the epoch, so nothing read after it can be older than it.
    async fn start(tally: &Tally, org: &Org) -> ServiceResult<Self> {
        let epoch = crate::plans::current_epoch(tally, org).await?;
        Ok(Self { epoch, subscriptions: HashMap::new(), plans: HashMap::new() })
    }

    async fn subscription(
        &mut self,
        tally: &Tally,
        org: &Org,
        external_id: &str,
    ) -> ServiceResult<Arc<SubscriptionHistory>> {
        if let Some((history, _)) = self.subscriptions.get(external_id) {
            return Ok(history.clone());
        }
        let cached = match tally.cache.subscription(&org.id, external_id) {
            Some(hit) => hit,
            None => {
                let loaded = tally.load::<SubscriptionHistory>(&keys::subscription(&org.id, external_id)).await?;
                let version = loaded.as_ref().map(|(_, v)| *v);
                let cached = (Arc::new(loaded.map(|(h, _)| h).unwrap_or_default()), version);
                tally.cache.put_subscription(&org.id, external_id, cached.clone());
                cached
            }
        };
        let history = cached.0.clone();
        self.subscriptions.insert(external_id.to_owned(), cached);
        Ok(history)
    }

    async fn plan(&mut self, tally: &Tally, org: &Org, code: &str) -> ServiceResult<Option<Arc<CompiledPlan>>> {
        if let Some(entry) = self.plans.get(code) {
            return Ok(entry.clone());
        }
        let entry = crate::plans::compiled_at(tally, org, code, self.epoch).await?;
        self.plans.insert(code.to_owned(), entry.clone());
        Ok(entry)
    }

    /// The checks the batch commits under: plans and metrics are as they were read, and so is
    /// every subscription history it attributed with (a subscription created meanwhile, for
    /// an event parked as uncovered, fails its check too).
    fn guards(&self, org: &Org) -> Vec<Write> {
        let mut guards = vec![Write::Check { key: keys::catalog_epoch(&org.id), condition: unchanged(self.epoch) }];
        let mut read: Vec<_> = self.subscriptions.iter().collect();
        read.sort_by(|a, b| a.0.cmp(b.0));
        guards.extend(read.into_iter().map(|(external_id, (_, version))| Write::Check {
            key: keys::subscription(&org.id, external_id),
            condition: unchanged(*version),
        }));
        guards
    }
}

enum Attribution {
    Metered,
    Parked,
}

/// Attributes one event: folds it into `deltas` if a subscription and charge cover it.
async fn attribute(
    tally: &Tally,
    org: &Org,
    reads: &mut Reads,
    deltas: &mut Deltas,
    event: &mut EventRecord,
) -> ServiceResult<Result<Attribution, Unmeterable>> {
    let history = reads.subscription(tally, org, &event.external_subscription_id).await?;
    let Some(subscription) = history.covering(event.timestamp) else {
        return Ok(Ok(Attribution::Parked));
    };
    event.lago_subscription_id = Some(subscription.lago_id.clone());
    event.lago_customer_id = Some(subscription.lago_customer_id.clone());
    let Some(plan) = reads.plan(tally, org, &subscription.plan_code).await? else {
        return Ok(Ok(Attribution::Parked));
    };
    Ok(match deltas.add(&org.id, subscription, &plan, event) {
        Ok(0) => Ok(Attribution::Parked),
        Ok(_) => Ok(Attribution::Metered),
        Err(e) => Err(e),
    })
}

/// Validates every input; 422 keyed by batch index if any is invalid.
pub(crate) fn validate_all(inputs: Vec<EventInput>, now: DateTime<Utc>) -> ServiceResult<Vec<EventRecord>> {
    let mut invalid = BTreeMap::new();
    let mut records = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.into_iter().enumerate() {
        match validate(input, now) {
            Ok(record) => records.push(record),
            Err(errors) => {
                invalid.insert(index, errors);
            }
        }
    }
    if invalid.is_empty() {
        Ok(records)
    } else {
        Err(ServiceError::BatchValidation(invalid))
    }
}

/// `POST /events`: ingested now on a store that takes it directly (embedded), or, when the
/// application has a queue (AWS), checked and enqueued for the consumer to meter.
pub async fn accept(tally: &Tally, org: &Org, inputs: Vec<EventInput>) -> ServiceResult<Vec<EventRecord>> {
    match &tally.queue {
        Some(queue) => crate::queued_events::enqueue(tally, org, queue.as_ref(), inputs).await,
        None => ingest(tally, org, inputs).await,
    }
}

/// Ingests events all or nothing: 422 with errors keyed by batch index if any is invalid or
/// already stored (`value_already_exist`), else every event is logged and metered or parked.
pub async fn ingest(tally: &Tally, org: &Org, inputs: Vec<EventInput>) -> ServiceResult<Vec<EventRecord>> {
    let mut records = validate_all(inputs, tally.now())?;
    match commit(tally, org, &mut records).await {
        Ok(()) => Ok(records),
        Err(Refused::Rejected(by_index)) => Err(ServiceError::BatchValidation(by_index)),
        // A store with a transaction limit (DynamoDB: 100 items) cannot take this batch in
        // one atomic step; say so instead of failing obscurely. Smaller batches go through
        // (and the queued path, which AWS deployments use, splits batches itself).
        Err(Refused::TooLarge(_)) => Err(ServiceError::invalid("events", "too_many_events")),
        Err(Refused::OutOfRange) => Err(ServiceError::out_of_range("properties")),
        Err(Refused::Failed(e)) => Err(e),
    }
}

/// Why a commit wrote nothing.
pub(crate) enum Refused {
    /// By batch index: already stored (`value_already_exist`) or the metric's expression
    /// failed (`invalid_expression`).
    Rejected(BTreeMap<usize, ValidationErrors>),
    /// The batch needs this many items in one transaction, more than the store takes.
    TooLarge(usize),
    /// Merged into what is stored, the batch takes a usage total out of range.
    OutOfRange,
    Failed(ServiceError),
}

impl From<ServiceError> for Refused {
    fn from(e: ServiceError) -> Self {
        Refused::Failed(e)
    }
}

/// Logs valid events and meters (or parks) them, all or nothing: the dedupe records and the
/// usage merges commit together, under the catalog epoch and history versions they were
/// attributed with.
pub(crate) async fn commit(tally: &Tally, org: &Org, records: &mut [EventRecord]) -> Result<(), Refused> {
    let mut invalid = BTreeMap::new();
    let mut retry = Retry::new("the catalog");
    loop {
        let mut reads = Reads::start(tally, org).await?;
        let mut deltas = Deltas::new(tally.usage_shards);
        let mut writes = Vec::new();
        for (index, event) in records.iter_mut().enumerate() {
            match attribute(tally, org, &mut reads, &mut deltas, event).await? {
                Ok(Attribution::Metered) => {}
                Ok(Attribution::Parked) => writes.push(put(
                    keys::pending_event(&org.id, &event.external_subscription_id, &event.transaction_id),
                    event,
                    Condition::None,
                )?),
                Err(refusal) => {
                    invalid.insert(index, refusal_errors(refusal));
                }
            }
        }
        if !invalid.is_empty() {
            return Err(Refused::Rejected(invalid));
        }
        let mut guards = reads.guards(org);
        guards.extend(writes);
        let logged = records.iter().map(|e| e.to_logged(&org.id)).collect::<ServiceResult<Vec<_>>>()?;
        let batch = EventBatch { events: logged, usage: deltas.into_merges(), writes: guards };
        match tally.store.append_events(batch).await {
            Ok(AppendOutcome::Appended) => return Ok(()),
            Ok(AppendOutcome::Duplicates(indexes)) => {
                let errors = indexes
                    .into_iter()
                    .map(|i| (i, ValidationErrors::single("transaction_id", "value_already_exist")))
                    .collect();
                return Err(Refused::Rejected(errors));
            }
            // The catalog changed since it was read: read it again.
            Err(StoreError::ConditionFailed { .. }) => {
                tally.cache.forget(&org.id);
                retry.lost_race().await?;
            }
            Err(StoreError::TooManyWrites(items)) => return Err(Refused::TooLarge(items)),
            Err(StoreError::Merge(MergeError::OutOfRange)) => return Err(Refused::OutOfRange),
            Err(e) => return Err(Refused::Failed(e.into())),
        }
    }
}

/// Lago's error for an event that cannot be metered.
pub(crate) fn refusal_errors(refusal: Unmeterable) -> ValidationErrors {
    match refusal {
        Unmeterable::Expression => ValidationErrors::single("properties", "invalid_expression"),
        Unmeterable::OutOfRange => ValidationErrors::single("properties", "value_is_out_of_range"),
    }
}

/// An event refused only because it is stored already.
pub(crate) fn only_duplicate(errors: &ValidationErrors) -> bool {
    errors.fields().len() == 1 && errors.fields().get("transaction_id").is_some_and(|c| c == &["value_already_exist"])
}

/// Meters the events parked under `external_subscription_id` that a subscription and charge now
/// cover (after a subscription is created or a plan gains a charge). Each parked event is
/// metered once: its removal is conditional and commits with its usage.
pub async fn attribute_pending(tally: &Tally, org: &Org, external_subscription_id: &str) -> ServiceResult<usize> {
    let partition = keys::pending_events(&org.id, external_subscription_id);
    let mut after: Option<String> = None;
    let mut metered_total = 0;
    let mut retry = Retry::new("the catalog");
    loop {
        let query = Query { after: after.clone(), limit: 40, ..Query::partition(partition.clone()) };
        let page = tally.store.query(&query).await?;
        if page.items.is_empty() {
            return Ok(metered_total);
        }
        let mut reads = Reads::start(tally, org).await?;
        let mut deltas = Deltas::new(tally.usage_shards);
        let mut removals = Vec::new();
        for item in &page.items {
            let mut event: EventRecord = crate::records::decode(&item.value)?;
            if let Ok(Attribution::Metered) = attribute(tally, org, &mut reads, &mut deltas, &mut event).await? {
                removals.push(Write::Delete { key: item.key.clone(), condition: Condition::Version(item.version) });
            }
        }
        let metered = removals.len();
        if metered > 0 {
            let mut writes = reads.guards(org);
            writes.extend(removals);
            let batch = EventBatch { events: vec![], usage: deltas.into_merges(), writes };
            match tally.store.append_events(batch).await {
                Ok(_) => metered_total += metered,
                Err(StoreError::ConditionFailed { .. }) => {
                    // Changed meanwhile (or metered by a concurrent run): read this page again.
                    tally.cache.forget(&org.id);
                    retry.lost_race().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Deleted items do not shift sort keys: carry on after this page.
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(metered_total),
        }
    }
}

/// `GET /events/{transaction_id}`: the event with this id (of the given subscription, if any).
pub async fn get(
    tally: &Tally,
    org: &Org,
    transaction_id: &str,
    external_subscription_id: Option<&str>,
) -> ServiceResult<EventRecord> {
    let events = tally.store.events_by_transaction(&org.id, transaction_id).await?;
    let found = events.into_iter().find(|e| external_subscription_id.is_none_or(|s| s == e.external_subscription_id));
    let event = found.ok_or(ServiceError::NotFound("event"))?;
    EventRecord::from_logged(&event)
}

/// `GET /events`: newest first, with Lago's paging.
pub async fn list(
    tally: &Tally,
    org: &Org,
    filter: &EventFilter,
    page: PageRequest,
) -> ServiceResult<Paged<EventRecord>> {
    let per_page = page.per_page.clamp(1, 1000);
    let offset = (page.page.max(1) - 1) * per_page;
    let (events, total) = tally.store.list_events(&org.id, filter, offset, per_page).await?;
    let items = events.iter().map(EventRecord::from_logged).collect::<ServiceResult<Vec<EventRecord>>>()?;
    let total_count = usize::try_from(total).unwrap_or(usize::MAX);
    Ok(Paged { items, current_page: page.page.max(1), total_pages: total_count.div_ceil(per_page), total_count })
}
