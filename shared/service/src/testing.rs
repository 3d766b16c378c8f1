//! Seed data for tests and demos: the smallest catalog that bills usage, through the same use
//! cases the API calls (so it is validated like any catalog).

use crate::billable_metrics::{self, MetricInput};
use crate::plans::{self, ChargeInput, PlanInput};
use crate::records::SubscriptionRecord;
use crate::subscriptions::{self, SubscriptionInput};
use crate::{Org, ServiceResult, Tally};

/// A `count_agg` metric `metric` and a monthly USD plan `plan` with a subscription fee of
/// `amount_cents` and a standard charge of `per_event` (decimal string) per event.
pub async fn counting_plan(
    tally: &Tally,
    org: &Org,
    metric: &str,
    plan: &str,
    amount_cents: i64,
    per_event: &str,
) -> ServiceResult<()> {
    billable_metrics::create(
        tally,
        org,
        MetricInput {
            name: Some(metric.to_owned()),
            code: Some(metric.to_owned()),
            aggregation_type: Some("count_agg".into()),
            ..Default::default()
        },
    )
    .await?;
    plans::create(
        tally,
        org,
        PlanInput {
            name: Some(plan.to_owned()),
            code: Some(plan.to_owned()),
            interval: Some("monthly".into()),
            amount_cents: Some(amount_cents),
            amount_currency: Some("USD".into()),
            charges: Some(vec![ChargeInput {
                billable_metric_code: Some(metric.to_owned()),
                charge_model: Some("standard".into()),
                properties: Some(serde_json::json!({"amount": per_event})),
                ..Default::default()
            }]),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Subscribes customer `customer` to `plan` as `external_id`, from `subscription_at` (RFC 3339)
/// or now.
pub async fn subscribe(
    tally: &Tally,
    org: &Org,
    customer: &str,
    plan: &str,
    external_id: &str,
    subscription_at: Option<&str>,
) -> ServiceResult<SubscriptionRecord> {
    subscriptions::create(
        tally,
        org,
        SubscriptionInput {
            external_customer_id: Some(customer.to_owned()),
            plan_code: Some(plan.to_owned()),
            external_id: Some(external_id.to_owned()),
            subscription_at: subscription_at.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
}
