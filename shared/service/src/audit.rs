//! A seeded auditor: a random workload run against tally on any store, with faults injected
//! into that store, checked against a small reference model.
//!
//! The workload (one seed, one sequence): events in batches (new ones, late arrivals in a
//! period not closed yet, re-sent duplicates), plan updates that re-send their charges,
//! new subscriptions, terminations, closes at random instants, and restarts (a new [`Tally`]
//! over the same data: every cache gone). The store ([`FaultyStore`]) fails some calls the ways
//! DynamoDB does: throttled before anything is written, or timed out after the write applied
//! (the caller cannot know), and the workload retries as a client would.
//!
//! The model knows which events were acknowledged (or found stored on a retry) and which
//! periods each subscription lived through. At the end, after a final close: every
//! acknowledged event is listed and billed exactly once, each subscription period has exactly
//! one invoice, and each invoice's totals add up. A failure names its seed.

use crate::events::{self, EventInput};
use crate::plans::{self, ChargeInput, PlanInput};
use crate::records::InvoiceRecord;
use crate::{invoices, organizations, period_close, subscriptions, testing, FixedClock, Org, ServiceError, Tally};
use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tally_store::intercepted::{Call, Hooks, Intercepted, Then};
use tally_store::{Store, StoreError, StoreResult};

/// Fails some calls of a store: before applying them (throttling, conflicts) or after (a
/// timeout once the write is durable). Seeded, so a failing run can be replayed.
pub struct Faults {
    rng: Mutex<StdRng>,
    /// Chance that a call fails, in percent.
    percent: u32,
    enabled: AtomicBool,
    pub injected: AtomicU64,
}

/// A store failing calls as its [`Faults`] say.
pub type FaultyStore = Intercepted<Faults>;

impl Faults {
    pub fn new(seed: u64, percent: u32) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed)),
            percent,
            enabled: AtomicBool::new(true),
            injected: AtomicU64::new(0),
        }
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
    }
}

#[async_trait]
impl Hooks for Faults {
    async fn before(&self, call: Call) -> StoreResult<Then> {
        if !self.enabled.load(Ordering::SeqCst) {
            return Ok(Then::Answer);
        }
        let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if rng.random_range(0..100) >= self.percent {
            return Ok(Then::Answer);
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        if call.writes() && rng.random_bool(0.5) {
            Ok(Then::Fail(StoreError::Unavailable("injected: timed out after the write".into())))
        } else {
            Err(StoreError::Unavailable("injected: throttled".into()))
        }
    }
}

/// What the model expects of one subscription.
#[derive(Debug, Default)]
struct Expected {
    started_at: DateTime<Utc>,
    terminated_at: Option<DateTime<Utc>>,
    /// Acknowledged events, by period start.
    events: BTreeMap<DateTime<Utc>, u64>,
}

/// What a run did, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub duplicates_refused: u64,
    pub subscriptions: usize,
    pub invoices: usize,
    pub closes: usize,
    pub restarts: usize,
    pub faults: u64,
}

fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0).single().unwrap_or(at)
}

fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if at.month() == 12 { (at.year() + 1, 1) } else { (at.year(), at.month() + 1) };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single().unwrap_or(at)
}

/// Retries a call as a client does after a 503; a failure that is not `Unavailable` is the
/// answer. Faults are a few percent, so 60 attempts fail only if something is really stuck.
async fn retried<T, F, Fut>(mut call: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    let mut attempts = 0;
    loop {
        match call().await {
            Err(ServiceError::Unavailable(_)) if attempts < 60 => attempts += 1,
            other => return other,
        }
    }
}

fn plan_resent(per_event: &str) -> PlanInput {
    PlanInput {
        charges: Some(vec![ChargeInput {
            billable_metric_code: Some("calls".into()),
            charge_model: Some("standard".into()),
            properties: Some(json!({"amount": per_event})),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// Runs the workload of one seed on `store` (fresh, empty), failing `fault_percent` % of the
/// store's calls, and checks it. `Err` says what differed from the model.
pub async fn run(seed: u64, store: Arc<dyn Store>, steps: usize, fault_percent: u32) -> Result<Summary, String> {
    let faulty = Arc::new(Intercepted::new(store, Faults::new(seed, fault_percent)));
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2024, 4, 1, 0, 0, 0).single().ok_or("start")?;
    let last_instant = Utc.with_ymd_and_hms(2024, 7, 31, 0, 0, 0).single().ok_or("end")?;
    let clock = Arc::new(FixedClock::new(start));
    let open = || Tally::new(faulty.clone(), clock.clone());
    let mut tally = open();
    let mut rng = StdRng::seed_from_u64(seed);
    let fail = |what: &str, e: ServiceError| format!("seed {seed}: {what}: {e}");

    // The catalog, as a client sets it up: retried, and what an earlier attempt created counts
    // (the store below may fail too, when it injects faults of its own).
    faulty.hooks.set_enabled(false);
    let org: Org = retried(|| organizations::bootstrap(&tally, "Audit", Some("audit-key".into())))
        .await
        .map_err(|e| fail("org", e))?
        .organization;
    let metric = || crate::billable_metrics::MetricInput {
        name: Some("calls".into()),
        code: Some("calls".into()),
        aggregation_type: Some("count_agg".into()),
        ..Default::default()
    };
    if let Err(e) = retried(|| crate::billable_metrics::create(&tally, &org, metric())).await {
        retried(|| crate::billable_metrics::get(&tally, &org, "calls")).await.map_err(|_| fail("metric", e))?;
    }
    let plan = || PlanInput {
        name: Some("p".into()),
        code: Some("p".into()),
        interval: Some("monthly".into()),
        amount_cents: Some(1000),
        amount_currency: Some("USD".into()),
        ..plan_resent("1")
    };
    if let Err(e) = retried(|| plans::create(&tally, &org, plan())).await {
        retried(|| plans::get(&tally, &org, "p")).await.map_err(|_| fail("plan", e))?;
    }
    faulty.hooks.set_enabled(true);

    let mut model: HashMap<String, Expected> = HashMap::new();
    let mut stored: Vec<(String, String)> = Vec::new(); // (subscription, transaction id)
    let mut summary = Summary::default();
    let mut last_close = start;
    let mut next_tx = 0u64;
    let mut price = "1";

    for step in 0..steps {
        let now = tally.now();
        let active: Vec<String> =
            model.iter().filter(|(_, e)| e.terminated_at.is_none()).map(|(id, _)| id.clone()).collect();
        let roll = rng.random_range(0..100);
        if active.is_empty() || (60..66).contains(&roll) {
            // A new subscription, from now.
            let id = format!("s{}", model.len());
            let customer = format!("c-{id}");
            let created = retried(|| testing::subscribe(&tally, &org, &customer, "p", &id, None))
                .await
                .map_err(|e| fail("subscribe", e))?;
            let started_at = created.started_at.ok_or("a subscription from now is active")?;
            model.insert(id, Expected { started_at, ..Default::default() });
        } else if roll < 55 {
            // A batch of new events, some late (still in a period no close has passed).
            let count = rng.random_range(1..=10);
            let mut inputs = Vec::new();
            let mut expected = Vec::new();
            for _ in 0..count {
                let sub = &active[rng.random_range(0..active.len())];
                // The last period is still open to late events if no close ran since it ended.
                let this_month = month_start(now);
                let open_from = if last_close < this_month {
                    month_start(this_month - Duration::milliseconds(1))
                } else {
                    this_month
                };
                let open_from = open_from.max(model[sub].started_at);
                let span = (now - open_from).num_seconds().max(0);
                let at = open_from + Duration::seconds(rng.random_range(0..=span));
                next_tx += 1;
                let tx = format!("tx-{next_tx}");
                inputs.push(EventInput {
                    transaction_id: Some(json!(tx)),
                    external_subscription_id: Some(json!(sub)),
                    code: Some(json!("calls")),
                    timestamp: Some(json!(at.timestamp())),
                    ..Default::default()
                });
                expected.push((sub.clone(), tx, month_start(at)));
            }
            let mut attempts = 0;
            let outcome = loop {
                match events::ingest(&tally, &org, inputs.clone()).await {
                    Err(ServiceError::Unavailable(_)) if attempts < 60 => attempts += 1,
                    // A retry of a batch that was stored before its answer was lost.
                    Err(ServiceError::BatchValidation(errors))
                        if attempts > 0
                            && errors.len() == inputs.len()
                            && errors.values().all(events::only_duplicate) =>
                    {
                        break Ok(())
                    }
                    other => break other.map(|_| ()),
                }
            };
            outcome.map_err(|e| fail(&format!("step {step}: events"), e))?;
            for (sub, tx, period) in expected {
                *model.get_mut(&sub).ok_or("model")?.events.entry(period).or_default() += 1;
                stored.push((sub, tx));
                summary.events += 1;
            }
        } else if roll < 60 && !stored.is_empty() {
            // A duplicate: refused as already stored, and changes nothing.
            let (sub, tx) = stored[rng.random_range(0..stored.len())].clone();
            let input = EventInput {
                transaction_id: Some(json!(tx)),
                external_subscription_id: Some(json!(sub)),
                code: Some(json!("calls")),
                ..Default::default()
            };
            match retried(|| events::ingest(&tally, &org, vec![input.clone()])).await {
                Err(ServiceError::BatchValidation(errors)) if errors.values().all(events::only_duplicate) => {
                    summary.duplicates_refused += 1
                }
                other => return Err(format!("seed {seed}: step {step}: a duplicate was not refused: {other:?}")),
            }
        } else if roll < 70 {
            // A catalog change racing nothing in particular: the plan re-sends its charge.
            price = if price == "1" { "1.0" } else { "1" };
            retried(|| plans::update(&tally, &org, "p", plan_resent(price))).await.map_err(|e| fail("plan", e))?;
        } else if roll < 73 && active.len() > 1 {
            let sub = active[rng.random_range(0..active.len())].clone();
            if model[&sub].started_at >= now {
                continue;
            }
            let ended = retried(|| subscriptions::terminate(&tally, &org, &sub, None)).await;
            match ended {
                Ok(ended) => model.get_mut(&sub).ok_or("model")?.terminated_at = ended.terminated_at,
                // Terminated by an earlier attempt whose answer was lost.
                Err(ServiceError::NotFound(_)) => model.get_mut(&sub).ok_or("model")?.terminated_at = Some(now),
                Err(e) => return Err(fail("terminate", e)),
            }
        } else if roll < 85 {
            // Whatever it reports, no later event goes to a period that ended before it ran.
            retried(|| period_close::run(&tally, &org, now)).await.map_err(|e| fail("close", e))?;
            last_close = now;
            summary.closes += 1;
        } else if roll < 90 {
            tally = open();
            summary.restarts += 1;
        }
        // Time moves on, up to 36 hours a step.
        let later = (now + Duration::seconds(rng.random_range(0..129_600))).min(last_instant);
        clock.set(later);
    }

    // The final close, after every period of the workload has ended; retried until it has no
    // failure left (faults stay on: the close must get there by itself).
    let end = Utc.with_ymd_and_hms(2024, 8, 1, 0, 0, 0).single().ok_or("end")?;
    clock.set(end);
    tally = open();
    let mut closed = false;
    for _ in 0..500 {
        if let Ok(report) = period_close::run(&tally, &org, end).await {
            summary.closes += 1;
            if report.failures.is_empty() {
                closed = true;
                break;
            }
        }
    }
    if !closed {
        return Err(format!("seed {seed}: the final close never completed"));
    }
    summary.faults = faulty.hooks.injected.load(Ordering::Relaxed);
    faulty.hooks.set_enabled(false);
    check(seed, &tally, &org, &model, &mut summary, end).await?;
    summary.subscriptions = model.len();
    Ok(summary)
}

async fn check(
    seed: u64,
    tally: &Tally,
    org: &Org,
    model: &HashMap<String, Expected>,
    summary: &mut Summary,
    end: DateTime<Utc>,
) -> Result<(), String> {
    let listed = events::list(tally, org, &Default::default(), Default::default()).await.map_err(|e| e.to_string())?;
    if listed.total_count as u64 != summary.events {
        return Err(format!("seed {seed}: {} events listed, {} acknowledged", listed.total_count, summary.events));
    }
    let all: Vec<InvoiceRecord> = invoices::list(tally, org, &Default::default()).await.map_err(|e| e.to_string())?;
    summary.invoices = all.len();
    for invoice in &all {
        let fees: i64 = invoice.fees.iter().map(|f| f.amount_cents).sum();
        if fees != invoice.fees_amount_cents
            || invoice.total_amount_cents != invoice.sub_total_excluding_taxes_amount_cents + invoice.taxes_amount_cents
        {
            return Err(format!("seed {seed}: invoice {} does not add up", invoice.lago_id));
        }
        for fee in invoice.fees.iter().filter(|f| f.fee_type == "charge") {
            // 1.00 per call: 100 cents a unit.
            if rust_decimal::Decimal::from(fee.amount_cents) != fee.units * rust_decimal::Decimal::from(100) {
                return Err(format!(
                    "seed {seed}: fee {} is {} for {} units",
                    fee.lago_id, fee.amount_cents, fee.units
                ));
            }
        }
    }
    for (id, expected) in model {
        let mine: Vec<&InvoiceRecord> = all.iter().filter(|i| &i.subscription.external_id == id).collect();
        // One invoice per period lived: from the start's month to the end's (or July).
        let last_instant = expected.terminated_at.map_or(end, |t| t) - Duration::milliseconds(1);
        let mut periods = Vec::new();
        let mut period = month_start(expected.started_at);
        while period <= last_instant {
            periods.push(period);
            period = next_month(period);
        }
        let mut billed: BTreeMap<DateTime<Utc>, (usize, u64)> = BTreeMap::new();
        for invoice in &mine {
            let entry = billed.entry(month_start(invoice.subscription.charges_from_datetime)).or_default();
            entry.0 += 1;
            let units: rust_decimal::Decimal =
                invoice.fees.iter().filter(|f| f.fee_type == "charge").map(|f| f.units).sum();
            entry.1 += rust_decimal::prelude::ToPrimitive::to_u64(&units).unwrap_or(u64::MAX);
        }
        let billed_periods: Vec<_> = billed.keys().copied().collect();
        if billed_periods != periods || billed.values().any(|(count, _)| *count != 1) {
            return Err(format!("seed {seed}: {id}: periods {periods:?}, invoices {billed:?}"));
        }
        for (period, (_, units)) in &billed {
            let acknowledged = expected.events.get(period).copied().unwrap_or(0);
            if *units != acknowledged {
                return Err(format!(
                    "seed {seed}: {id}: period {period}: {units} units billed, {acknowledged} acknowledged"
                ));
            }
        }
    }
    Ok(())
}
