//! The fees of one subscription period: the subscription fee and one usage fee per charge,
//! filter and pricing group, plus minimum-spend true-ups.

use super::{FeeInput, FeeType};
use crate::aggregation::AggregationState;
use crate::catalog::{BillableMetric, Charge, Plan, PricingProperties, Tax};
use crate::checked::Overflow;
use crate::periods::{prorated_subscription_fee, BilledSpan, BillingSchedule, SubscriptionLife};
use crate::pricing::{minimum_true_up, ChargeUsage};
use rust_decimal::Decimal;

/// Which bucket of a charge some usage belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct UsageBucket {
    /// Index into the charge's filters; `None` for events that match no filter.
    pub filter: Option<usize>,
    /// Values of the charge's pricing group keys (empty without groups).
    pub group: Vec<Option<String>>,
}

/// A period's usage of one bucket of a charge.
#[derive(Debug, Clone)]
pub struct BucketUsage<'a> {
    pub bucket: UsageBucket,
    pub usage: &'a ChargeUsage,
    /// Aggregations of the same bucket in earlier periods (recurring metrics only).
    pub history: Vec<&'a AggregationState>,
}

/// One fee of the period, before rounding (see [`super::compute_invoice`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodFee {
    pub fee_type: FeeType,
    /// The charge's code, for charge and true-up fees.
    pub charge_code: Option<String>,
    pub bucket: UsageBucket,
    pub units: Decimal,
    pub events_count: u64,
    /// Exact amount, major units.
    pub amount: Decimal,
    /// Whether this is a charge's minimum-spend true-up.
    pub true_up: bool,
    pub taxes: Vec<Tax>,
}

impl PeriodFee {
    pub fn to_input(&self) -> FeeInput {
        FeeInput { fee_type: self.fee_type, amount: self.amount, taxes: self.taxes.clone() }
    }
}

/// The subscription fee for `span`, prorated by days and free during a trial.
pub fn subscription_fee(
    plan: &Plan,
    schedule: &BillingSchedule,
    span: &BilledSpan,
    life: &SubscriptionLife,
    taxes: Vec<Tax>,
) -> PeriodFee {
    let amount = plan.currency.from_minor_units(plan.amount_cents);
    PeriodFee {
        fee_type: FeeType::Subscription,
        charge_code: None,
        bucket: UsageBucket::default(),
        units: Decimal::ONE,
        events_count: 0,
        amount: prorated_subscription_fee(amount, schedule, span, life),
        true_up: false,
        taxes,
    }
}

/// Usage fees of one charge over `span`: one per bucket with usage (or one zero fee for a charge
/// with no usage at all), then a true-up fee when the charge's total is under its prorated minimum.
pub fn charge_fees(
    plan: &Plan,
    charge: &Charge,
    metric: &BillableMetric,
    span: &BilledSpan,
    buckets: &[BucketUsage<'_>],
    taxes: Vec<Tax>,
) -> Result<Vec<PeriodFee>, Overflow> {
    let mut fees: Vec<PeriodFee> = buckets
        .iter()
        .map(|b| {
            let properties = bucket_properties(charge, &b.bucket);
            let priced = b.usage.price(metric, properties, &b.history, plan.currency)?;
            Ok(PeriodFee {
                fee_type: FeeType::Charge,
                charge_code: Some(charge.code.clone()),
                bucket: b.bucket.clone(),
                units: priced.units,
                events_count: priced.events_count,
                amount: priced.amount,
                true_up: false,
                taxes: taxes.clone(),
            })
        })
        .collect::<Result<_, Overflow>>()?;
    if fees.is_empty() {
        fees.push(PeriodFee {
            fee_type: FeeType::Charge,
            charge_code: Some(charge.code.clone()),
            bucket: UsageBucket::default(),
            units: Decimal::ZERO,
            events_count: 0,
            amount: Decimal::ZERO,
            true_up: false,
            taxes: taxes.clone(),
        });
    }
    if charge.min_amount_cents > 0 {
        let used = crate::checked::sum(fees.iter().map(|f| f.amount))?;
        let minimum = plan.currency.from_minor_units(charge.min_amount_cents);
        let true_up = minimum_true_up(minimum, span.days(), span.period.days(), used)?;
        if true_up > Decimal::ZERO {
            fees.push(PeriodFee {
                fee_type: FeeType::Charge,
                charge_code: Some(charge.code.clone()),
                bucket: UsageBucket::default(),
                units: Decimal::ONE,
                events_count: 0,
                amount: true_up,
                true_up: true,
                taxes,
            });
        }
    }
    Ok(fees)
}

/// The pricing properties of a bucket: its filter's, or the charge's own.
pub fn bucket_properties<'c>(charge: &'c Charge, bucket: &UsageBucket) -> &'c PricingProperties {
    bucket.filter.and_then(|i| charge.filters.get(i)).map_or(&charge.properties, |f| &f.properties)
}
