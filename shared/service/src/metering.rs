//! From an event to usage-state deltas: which subscription, charge, bucket and period it counts
//! in, and the pre-aggregated delta that is merged into the stored state.

use crate::records::{CompiledCharge, CompiledPlan, SubscriptionRecord};
use crate::{keys, ServiceError};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tally_domain::aggregation::{measure, EventInput, MeasureError, StateError, Window};
use tally_domain::catalog::PricingProperties;
use tally_domain::periods::{billed_span, BillingSchedule, Period, SubscriptionLife};
use tally_domain::pricing::{matching_filter, pricing_group, ChargeUsage};
use tally_store::{LoggedEvent, MergeError, UsageMerge};

/// A usage event as stored (the body of the event log, and of events waiting for a subscription).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub lago_id: String,
    pub transaction_id: String,
    pub external_subscription_id: String,
    pub code: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub precise_total_amount_cents: Option<Decimal>,
    #[serde(default)]
    pub lago_subscription_id: Option<String>,
    #[serde(default)]
    pub lago_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What the event log keeps beside the indexed columns (organization, subscription,
/// transaction id, code, timestamp): the rest of the event, compactly.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct LoggedPayload {
    #[serde(rename = "i")]
    lago_id: String,
    #[serde(rename = "p", default)]
    properties: Map<String, Value>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    precise_total_amount_cents: Option<Decimal>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    lago_subscription_id: Option<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    lago_customer_id: Option<String>,
    #[serde(rename = "t")]
    created_at_ms: i64,
}

/// [`LoggedPayload`] borrowed from the record, to encode it without copying.
#[derive(Serialize)]
struct LoggedPayloadRef<'a> {
    #[serde(rename = "i")]
    lago_id: &'a str,
    #[serde(rename = "p")]
    properties: &'a Map<String, Value>,
    #[serde(rename = "a", skip_serializing_if = "Option::is_none")]
    precise_total_amount_cents: Option<Decimal>,
    #[serde(rename = "s", skip_serializing_if = "Option::is_none")]
    lago_subscription_id: Option<&'a str>,
    #[serde(rename = "c", skip_serializing_if = "Option::is_none")]
    lago_customer_id: Option<&'a str>,
    #[serde(rename = "t")]
    created_at_ms: i64,
}

impl EventRecord {
    /// The log entry of this event.
    pub fn to_logged(&self, organization_id: &str) -> Result<LoggedEvent, ServiceError> {
        let payload = LoggedPayloadRef {
            lago_id: &self.lago_id,
            properties: &self.properties,
            precise_total_amount_cents: self.precise_total_amount_cents,
            lago_subscription_id: self.lago_subscription_id.as_deref(),
            lago_customer_id: self.lago_customer_id.as_deref(),
            created_at_ms: self.created_at.timestamp_millis(),
        };
        Ok(LoggedEvent {
            organization_id: organization_id.to_owned(),
            external_subscription_id: self.external_subscription_id.clone(),
            transaction_id: self.transaction_id.clone(),
            code: self.code.clone(),
            timestamp_ms: self.timestamp.timestamp_millis(),
            body: crate::records::encode(&payload)?,
        })
    }

    /// The event back from its log entry.
    pub fn from_logged(logged: &LoggedEvent) -> Result<Self, ServiceError> {
        let payload: LoggedPayload = crate::records::decode(&logged.body)?;
        let time = |ms: i64| {
            DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(|| ServiceError::Internal("bad time".into()))
        };
        Ok(Self {
            lago_id: payload.lago_id,
            transaction_id: logged.transaction_id.clone(),
            external_subscription_id: logged.external_subscription_id.clone(),
            code: logged.code.clone(),
            timestamp: time(logged.timestamp_ms)?,
            properties: payload.properties,
            precise_total_amount_cents: payload.precise_total_amount_cents,
            lago_subscription_id: payload.lago_subscription_id,
            lago_customer_id: payload.lago_customer_id,
            created_at: time(payload.created_at_ms)?,
        })
    }
}

/// One stored usage state: the bucket it belongs to and its mergeable usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredUsage {
    /// `lago_id` of the charge filter, or `None` for events matching no filter.
    pub filter_id: Option<String>,
    /// Values of the charge's pricing group keys.
    pub group: Vec<Option<String>>,
    pub usage: ChargeUsage,
}

/// The plan's schedule and the schedule its charges follow.
#[derive(Clone, Copy)]
pub struct Schedules {
    pub plan: BillingSchedule,
    pub charges: BillingSchedule,
    pub life: SubscriptionLife,
}

pub fn schedules(subscription: &SubscriptionRecord, plan: &CompiledPlan) -> Schedules {
    let started_at = subscription.started_at.unwrap_or(subscription.subscription_at);
    let schedule = BillingSchedule::new(plan.plan.interval, subscription.billing_time(), subscription.tz(), started_at);
    let mut life = SubscriptionLife::new(started_at, plan.plan.trial_period_days);
    life.terminated_at = subscription.terminated_at;
    Schedules { plan: schedule, charges: schedule.for_charges(plan.plan.bill_charges_monthly), life }
}

/// The window a weighted sum averages over: the charge period from the subscription's first
/// day. Termination does not move it, so states folded before and after a termination merge.
pub fn usage_window(schedules: &Schedules, period: Period) -> Window {
    let open_life = SubscriptionLife { terminated_at: None, ..schedules.life };
    match billed_span(&schedules.charges, period, &open_life) {
        Some(span) => Window { start_ms: span.from.timestamp_millis(), end_ms: span.to.timestamp_millis() },
        None => Window { start_ms: period.start.timestamp_millis(), end_ms: period.end.timestamp_millis() },
    }
}

fn bucket_key(filter_id: Option<&str>, group: &[Option<String>]) -> String {
    let group = serde_json::to_string(group).unwrap_or_default();
    format!("{}|{group}", filter_id.unwrap_or("-"))
}

/// Why an event cannot be metered: the ingest answers 422 for it and stores nothing. (An event
/// that merely lacks the metric's field is accepted and not metered, as Lago does.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmeterable {
    /// The metric's expression failed on the event (`invalid_expression`).
    Expression,
    /// Its value takes a usage total out of the exact range (`value_is_out_of_range`).
    OutOfRange,
}

/// Pre-aggregated deltas of a batch, one per usage state.
///
/// With several shards per bucket, a batch writes all its usage of a bucket to one shard,
/// picked at random: spreading one hot bucket over several items keeps concurrent writers
/// (Lambdas ingesting one customer's flood) off each other's item, while each batch still
/// writes one item per bucket. States merge, so readers sum the shards.
///
/// Within the batch, states are found by a compact id (subscription slot, charge position,
/// period, filter, group); the store key is spelled out once per state, in `into_merges`.
pub struct Deltas {
    // foldhash: these maps are probed once per event and charge; SipHash showed in profiles.
    states: foldhash::HashMap<StateId, Delta>,
    shard: u32,
    /// Subscriptions seen in the batch, by `lago_id`: their slot and schedules (computed once
    /// per batch rather than once per event).
    subscriptions: foldhash::HashMap<String, (usize, Schedules)>,
}

#[derive(PartialEq, Eq, Hash)]
struct StateId {
    subscription: usize,
    /// Position of the charge in its plan (one plan per subscription within a batch).
    charge: usize,
    period_start_ms: i64,
    filter: Option<usize>,
    group: Vec<Option<String>>,
}

struct Delta {
    org: String,
    subscription_id: String,
    charge_id: String,
    stored: StoredUsage,
    properties: PricingProperties,
}

impl Deltas {
    pub fn new(shards: u32) -> Self {
        use rand::Rng;
        let shard = if shards <= 1 { 0 } else { rand::rng().random_range(0..shards) };
        Self { states: Default::default(), shard, subscriptions: Default::default() }
    }

    /// Folds an event into the deltas of every charge of the plan that meters its code.
    /// Returns how many charges metered it.
    pub fn add(
        &mut self,
        org: &str,
        subscription: &SubscriptionRecord,
        plan: &CompiledPlan,
        event: &EventRecord,
    ) -> Result<usize, Unmeterable> {
        let (slot, schedules) = match self.subscriptions.get(&subscription.lago_id) {
            Some(known) => *known,
            None => {
                let known = (self.subscriptions.len(), schedules(subscription, plan));
                self.subscriptions.insert(subscription.lago_id.clone(), known);
                known
            }
        };
        let mut metered = 0;
        for (position, charge) in plan.charges.iter().enumerate() {
            if charge.metric.code == event.code
                && self.add_for_charge(org, (slot, subscription), &schedules, (position, charge), event)?
            {
                metered += 1;
            }
        }
        Ok(metered)
    }

    fn add_for_charge(
        &mut self,
        org: &str,
        (slot, subscription): (usize, &SubscriptionRecord),
        schedules: &Schedules,
        (position, charge): (usize, &CompiledCharge),
        event: &EventRecord,
    ) -> Result<bool, Unmeterable> {
        let input = EventInput {
            code: &event.code,
            timestamp_ms: event.timestamp.timestamp_millis(),
            properties: &event.properties,
            precise_total_amount_cents: event.precise_total_amount_cents,
        };
        let measurement = match measure(&charge.metric, &input) {
            Ok(m) => m,
            Err(MeasureError::Expression(_)) => return Err(Unmeterable::Expression),
            Err(_) => return Ok(false),
        };
        let filter = matching_filter(&charge.charge.filters, &event.properties);
        let group = pricing_group(&charge.charge.pricing_group_keys, &event.properties);
        let period = schedules.charges.period_at(event.timestamp);
        let id = StateId {
            subscription: slot,
            charge: position,
            period_start_ms: period.start.timestamp_millis(),
            filter,
            group,
        };
        let delta = match self.states.entry(id) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let properties = charge.pricing(filter).clone();
                let usage = ChargeUsage::new(&charge.metric, &properties, usage_window(schedules, period));
                let filter_id = filter.and_then(|i| charge.record.filters.get(i)).map(|f| f.lago_id.clone());
                let group = entry.key().group.clone();
                entry.insert(Delta {
                    org: org.to_owned(),
                    subscription_id: subscription.lago_id.clone(),
                    charge_id: charge.record.usage_id().to_owned(),
                    stored: StoredUsage { filter_id, group, usage },
                    properties,
                })
            }
        };
        delta.stored.usage.fold(&delta.properties, &measurement).map_err(|_| Unmeterable::OutOfRange)?;
        Ok(true)
    }

    /// Store merges: each decodes the stored state (if any), merges the delta, encodes.
    pub fn into_merges(self) -> Vec<UsageMerge> {
        let shard = self.shard;
        self.states
            .into_iter()
            .map(|(id, delta)| {
                let key = keys::usage(
                    &delta.org,
                    &delta.subscription_id,
                    id.period_start_ms,
                    &delta.charge_id,
                    shard,
                    &bucket_key(delta.stored.filter_id.as_deref(), &delta.stored.group),
                );
                let (stored, properties) = (delta.stored, delta.properties);
                UsageMerge {
                    key,
                    merge: Box::new(move |current: Option<&[u8]>| {
                        let merged = match current {
                            None => stored.clone(),
                            Some(bytes) => {
                                let mut existing = StoredUsage::decode(bytes).map_err(|e| e.to_string())?;
                                existing.usage.merge(&properties, &stored.usage).map_err(|e| match e {
                                    StateError::Overflow => MergeError::OutOfRange,
                                    StateError::Mismatch => MergeError::Invalid(e.to_string()),
                                })?;
                                existing
                            }
                        };
                        Ok(merged.encode().map_err(|e| e.to_string())?)
                    }),
                }
            })
            .collect()
    }
}

impl StoredUsage {
    /// Usage states are merged on every ingest: they are stored in a compact binary form
    /// (postcard), not JSON, to keep that merge cheap.
    pub fn encode(&self) -> Result<Vec<u8>, ServiceError> {
        postcard::to_allocvec(self).map_err(|e| ServiceError::Internal(format!("encode usage: {e}")))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ServiceError> {
        postcard::from_bytes(bytes).map_err(|e| ServiceError::Internal(format!("decode usage: {e}")))
    }
}

pub(crate) fn decode_usage(bytes: &[u8]) -> Result<StoredUsage, ServiceError> {
    StoredUsage::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use tally_domain::aggregation::{Measurement, Operation};
    use tally_domain::catalog::{AggregationType, BillableMetric, PercentageProperties};

    #[test]
    fn every_kind_of_state_survives_the_binary_encoding() {
        let window = Window { start_ms: 0, end_ms: 1_000_000 };
        let percentage = PricingProperties::Percentage(PercentageProperties {
            rate: dec!(1),
            free_units_per_events: Some(1),
            ..Default::default()
        });
        for aggregation in AggregationType::ALL {
            let metric = BillableMetric::simple("m", aggregation, Some("v"));
            let mut usage = ChargeUsage::new(&metric, &percentage, window);
            usage.fold(&percentage, &Measurement::value(5, dec!(2.5))).unwrap();
            usage.fold(&percentage, &Measurement::unique(6, "ann", Operation::Remove)).unwrap();
            let stored = StoredUsage { filter_id: Some("f".into()), group: vec![None, Some("eu".into())], usage };
            let bytes = stored.encode().expect("encode");
            assert_eq!(StoredUsage::decode(&bytes).expect("decode"), stored, "{aggregation:?}");
        }
    }
}
