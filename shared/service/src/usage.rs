//! Usage of a subscription period: the fees its charges ask for, from the stored usage states
//! (O(charges × buckets), never O(events)). Used live (`current_usage`) and by the period close.

use crate::metering::{decode_usage, schedules, usage_window, StoredUsage};
use crate::records::{
    BillableMetricRecord, ChargeFilterRecord, ChargeRecord, CompiledCharge, CompiledPlan, CustomerRecord,
    SubscriptionHistory, SubscriptionRecord, TaxRecord,
};
use crate::{keys, Org, ServiceError, ServiceResult, Tally};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use tally_domain::aggregation::AggregationState;
use tally_domain::catalog::Tax;
use tally_domain::invoice::{charge_fees, compute_invoice, BucketUsage, Credits, PeriodFee, UsageBucket};
use tally_domain::periods::{billed_span, BilledSpan, Period};
use tally_domain::pricing::ChargeUsage;
use tally_store::Query;

/// Taxes that apply to fees, Lago's precedence: the charge's, else the plan's, else the
/// customer's, else the organization's default taxes.
pub(crate) struct TaxBook {
    by_code: HashMap<String, TaxRecord>,
    plan: Vec<String>,
    customer: Vec<String>,
    organization: Vec<String>,
}

impl TaxBook {
    pub(crate) async fn load(
        tally: &Tally,
        org: &Org,
        plan: &CompiledPlan,
        customer: &CustomerRecord,
    ) -> ServiceResult<Self> {
        let all = tally.load_all::<TaxRecord>(keys::taxes(&org.id)).await?;
        let organization = all.iter().filter(|(t, _)| t.applied_to_organization).map(|(t, _)| t.code.clone()).collect();
        Ok(Self {
            by_code: all.into_iter().map(|(t, _)| (t.code.clone(), t)).collect(),
            plan: plan.plan.tax_codes.clone(),
            customer: customer.tax_codes.clone(),
            organization,
        })
    }

    pub(crate) fn for_fee(&self, charge_tax_codes: &[String]) -> Vec<Tax> {
        let codes = [charge_tax_codes, &self.plan, &self.customer, &self.organization]
            .into_iter()
            .find(|codes| !codes.is_empty())
            .unwrap_or_default();
        codes.iter().filter_map(|c| self.by_code.get(c)).map(TaxRecord::to_domain).collect()
    }
}

/// The fees of one charge over a period, with what the API shows about each.
#[derive(Debug, Clone)]
pub struct PricedCharge {
    pub charge: ChargeRecord,
    pub metric: BillableMetricRecord,
    pub fees: Vec<PricedFee>,
}

#[derive(Debug, Clone)]
pub struct PricedFee {
    pub fee: PeriodFee,
    pub filter: Option<ChargeFilterRecord>,
    /// Pricing group, key → value.
    pub grouped_by: BTreeMap<String, Option<String>>,
}

/// Loads the usage states of one subscription period and prices every charge of the plan.
pub(crate) async fn price_period(
    tally: &Tally,
    org: &Org,
    subscription: &SubscriptionRecord,
    plan: &CompiledPlan,
    period: Period,
    taxes: &TaxBook,
) -> ServiceResult<(Option<BilledSpan>, Vec<PricedCharge>)> {
    let schedules = schedules(subscription, plan);
    let Some(span) = billed_span(&schedules.charges, period, &schedules.life) else {
        return Ok((None, Vec::new()));
    };
    let period_start_ms = period.start.timestamp_millis();
    let prefix = keys::usage_period_prefix(period_start_ms);
    let partition = keys::usage_partition(&org.id, &subscription.lago_id);
    let recurring = plan.charges.iter().any(|c| c.metric.recurring);

    // States of this period (and, for recurring metrics, of earlier ones), by charge and bucket.
    let mut current: HashMap<(String, String), StoredUsage> = HashMap::new();
    let mut history: HashMap<(String, String), Vec<StoredUsage>> = HashMap::new();
    let mut query =
        if recurring { Query::partition(partition) } else { Query::partition(partition).prefix(prefix.clone()) };
    loop {
        let page = tally.store.query(&query).await?;
        for item in &page.items {
            let mut parts = item.key.sk.splitn(4, '#');
            let (Some(start), Some(charge_id), Some(_shard), Some(bucket)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let key = (charge_id.to_owned(), bucket.to_owned());
            match start.cmp(&prefix[..prefix.len() - 1]) {
                std::cmp::Ordering::Equal => {
                    let state = decode_usage(&item.value)?;
                    match current.get_mut(&key) {
                        // Another shard of the same bucket: states merge.
                        Some(existing) => {
                            let properties = plan
                                .charges
                                .iter()
                                .find(|c| c.record.usage_id() == charge_id)
                                .map(|c| c.pricing(c.filter_index(existing.filter_id.as_deref())))
                                .ok_or_else(|| {
                                    ServiceError::Internal(format!("usage of unknown charge {charge_id}"))
                                })?;
                            existing
                                .usage
                                .merge(properties, &state.usage)
                                .map_err(|e| ServiceError::Internal(format!("usage shards: {e}")))?;
                        }
                        None => {
                            current.insert(key, state);
                        }
                    }
                }
                std::cmp::Ordering::Less => history.entry(key).or_default().push(decode_usage(&item.value)?),
                std::cmp::Ordering::Greater => {}
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }

    let window = usage_window(&schedules, period);
    let mut priced = Vec::with_capacity(plan.charges.len());
    for charge in &plan.charges {
        let id = charge.record.usage_id();
        // Buckets of this charge: those with usage this period, plus (recurring) those with
        // usage before, which keep billing without new events.
        let mut bucket_keys: Vec<&String> = current.keys().filter(|(c, _)| c == id).map(|(_, b)| b).collect();
        if charge.metric.recurring {
            for (c, b) in history.keys() {
                if c == id && !bucket_keys.contains(&b) {
                    bucket_keys.push(b);
                }
            }
        }
        bucket_keys.sort();
        let mut states: Vec<(StoredUsage, Vec<AggregationState>)> = Vec::new();
        for bucket in bucket_keys {
            let key = (id.to_owned(), bucket.clone());
            let earlier: Vec<AggregationState> = if charge.metric.recurring {
                history.get(&key).map(|v| v.iter().map(|s| s.usage.aggregation.clone()).collect()).unwrap_or_default()
            } else {
                Vec::new()
            };
            let state = match current.get(&key) {
                Some(state) => state.clone(),
                None => empty_like(charge, history.get(&key).and_then(|v| v.first()), window),
            };
            states.push((state, earlier));
        }
        priced.push(price_charge(plan, charge, &span, &states, taxes)?);
    }
    Ok((Some(span), priced))
}

/// An empty state for a bucket seen in an earlier period (recurring metrics).
fn empty_like(
    charge: &CompiledCharge,
    seen: Option<&StoredUsage>,
    window: tally_domain::aggregation::Window,
) -> StoredUsage {
    let properties = charge.pricing(charge.filter_index(seen.and_then(|s| s.filter_id.as_deref())));
    StoredUsage {
        filter_id: seen.and_then(|s| s.filter_id.clone()),
        group: seen.map(|s| s.group.clone()).unwrap_or_default(),
        usage: ChargeUsage::new(&charge.metric, properties, window),
    }
}

fn price_charge(
    plan: &CompiledPlan,
    charge: &CompiledCharge,
    span: &BilledSpan,
    states: &[(StoredUsage, Vec<AggregationState>)],
    taxes: &TaxBook,
) -> ServiceResult<PricedCharge> {
    let buckets: Vec<BucketUsage<'_>> = states
        .iter()
        .map(|(stored, earlier)| BucketUsage {
            bucket: UsageBucket {
                filter: stored
                    .filter_id
                    .as_ref()
                    .and_then(|id| charge.record.filters.iter().position(|f| &f.lago_id == id)),
                group: stored.group.clone(),
            },
            usage: &stored.usage,
            history: earlier.iter().collect(),
        })
        .collect();
    let fees = charge_fees(
        &plan.plan,
        &charge.charge,
        &charge.metric,
        span,
        &buckets,
        taxes.for_fee(&charge.record.tax_codes),
    )
    .map_err(|_| ServiceError::out_of_range("usage"))?;
    let group_keys = &charge.charge.pricing_group_keys;
    Ok(PricedCharge {
        charge: charge.record.clone(),
        metric: charge.metric_record.clone(),
        fees: fees
            .into_iter()
            .map(|fee| PricedFee {
                filter: fee.bucket.filter.and_then(|i| charge.record.filters.get(i)).cloned(),
                grouped_by: group_keys.iter().cloned().zip(fee.bucket.group.iter().cloned()).collect(),
                fee,
            })
            .collect(),
    })
}

/// Usage of one charge in `current_usage`.
#[derive(Debug, Clone)]
pub struct ChargeUsageView {
    pub charge: ChargeRecord,
    pub metric: BillableMetricRecord,
    pub units: Decimal,
    pub events_count: u64,
    pub amount_cents: i64,
    pub fees: Vec<(PricedFee, i64)>,
}

#[derive(Debug, Clone)]
pub struct CustomerUsage {
    pub from_datetime: DateTime<Utc>,
    pub to_datetime: DateTime<Utc>,
    pub issuing_date: NaiveDate,
    pub currency: String,
    pub amount_cents: i64,
    pub taxes_amount_cents: i64,
    pub total_amount_cents: i64,
    pub charges: Vec<ChargeUsageView>,
    /// Elapsed fraction of the period (for projections).
    pub period_ratio: Decimal,
}

/// Finds a customer's subscription by its external id (404s in Lago's words).
pub(crate) async fn customer_subscription(
    tally: &Tally,
    org: &Org,
    external_customer_id: &str,
    external_subscription_id: &str,
) -> ServiceResult<(CustomerRecord, SubscriptionRecord)> {
    let (customer, _) = tally
        .load::<CustomerRecord>(&keys::customer(&org.id, external_customer_id))
        .await?
        .ok_or(ServiceError::NotFound("customer"))?;
    let (history, _) = tally
        .load::<SubscriptionHistory>(&keys::subscription(&org.id, external_subscription_id))
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?;
    let subscription = history
        .versions
        .iter()
        .rev()
        .find(|s| s.external_customer_id == external_customer_id && s.started_at.is_some())
        .cloned()
        .ok_or(ServiceError::NotFound("subscription"))?;
    Ok((customer, subscription))
}

/// Live usage of the current charge period (nothing stored), with taxes when `apply_taxes`.
pub async fn current_usage(
    tally: &Tally,
    org: &Org,
    external_customer_id: &str,
    external_subscription_id: &str,
    apply_taxes: bool,
) -> ServiceResult<CustomerUsage> {
    let (customer, subscription) =
        customer_subscription(tally, org, external_customer_id, external_subscription_id).await?;
    let plan =
        crate::plans::compiled(tally, org, &subscription.plan_code).await?.ok_or(ServiceError::NotFound("plan"))?;
    let now = tally.now();
    let at = subscription.terminated_at.map_or(now, |t| t.min(now));
    let schedules = schedules(&subscription, &plan);
    let period = schedules.charges.period_at(at);
    let taxes = TaxBook::load(tally, org, &plan, &customer).await?;
    let (span, priced) = price_period(tally, org, &subscription, &plan, period, &taxes).await?;
    let span = span.ok_or(ServiceError::NotFound("subscription"))?;

    let fees: Vec<PeriodFee> = priced.iter().flat_map(|c| c.fees.iter().map(|f| f.fee.clone())).collect();
    let mut inputs: Vec<_> = fees.iter().map(PeriodFee::to_input).collect();
    if !apply_taxes {
        inputs.iter_mut().for_each(|i| i.taxes.clear());
    }
    let invoice = compute_invoice(plan.plan.currency, &inputs, Credits::default())
        .map_err(|_| ServiceError::out_of_range("usage"))?;
    let mut rounded = invoice.fees.iter().map(|f| f.amount_cents);
    let charges = priced
        .into_iter()
        .map(|c| {
            let fees: Vec<(PricedFee, i64)> = c.fees.into_iter().map(|f| (f, rounded.next().unwrap_or(0))).collect();
            let usage_fees = fees.iter().filter(|(f, _)| !f.fee.true_up);
            let out_of_range = || ServiceError::out_of_range("usage");
            Ok(ChargeUsageView {
                units: tally_domain::checked::sum(usage_fees.clone().map(|(f, _)| f.fee.units))
                    .map_err(|_| out_of_range())?,
                events_count: usage_fees
                    .map(|(f, _)| f.fee.events_count)
                    .try_fold(0u64, u64::checked_add)
                    .ok_or_else(out_of_range)?,
                amount_cents: fees
                    .iter()
                    .map(|(_, cents)| *cents)
                    .try_fold(0i64, i64::checked_add)
                    .ok_or_else(out_of_range)?,
                charge: c.charge,
                metric: c.metric,
                fees,
            })
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    let elapsed = (at - span.from).num_seconds().max(0);
    let length = (span.to - span.from).num_seconds().max(1);
    Ok(CustomerUsage {
        from_datetime: span.from,
        to_datetime: period.to_datetime(),
        issuing_date: period.end_date.succ_opt().unwrap_or(period.end_date),
        currency: plan.plan.currency.code().to_owned(),
        amount_cents: invoice.fees_amount_cents,
        taxes_amount_cents: invoice.taxes_amount_cents,
        total_amount_cents: invoice.total_amount_cents,
        charges,
        period_ratio: (Decimal::from(elapsed) / Decimal::from(length)).min(Decimal::ONE),
    })
}
