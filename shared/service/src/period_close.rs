//! The period close: subscriptions start and end on time, every ended period is invoiced exactly
//! once, and drafts are finalized when their grace period is over.
//!
//! Idempotent by construction: an invoice commits together with a billing marker keyed by
//! subscription and billing boundary, written only if absent. A retry, a crash between steps, or
//! two closers running at once (the server's scheduler and `tally bill`) can only find the marker
//! and move on.

use crate::metering::schedules;
use crate::records::{
    AppliedTaxRecord, CompiledPlan, CustomerRecord, FeeRecord, InvoiceRecord, InvoiceStatus, InvoiceSubscriptionRecord,
    SubscriptionHistory, SubscriptionRecord, SubscriptionStatus,
};
use crate::retry::Retry;
use crate::usage::{price_period, TaxBook};
use crate::{keys, new_id, put, Org, ServiceError, ServiceResult, Tally};
use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use std::collections::HashSet;
use tally_domain::invoice::{compute_invoice, subscription_fee, Credits, FeeType, PeriodFee};
use tally_domain::periods::{billed_span, local_midnight, Period};
use tally_store::{Condition, Query, StoreError};

/// What one run of the close did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    pub subscriptions_activated: usize,
    pub subscriptions_terminated: usize,
    pub invoices_issued: usize,
    pub invoices_finalized: usize,
    /// Subscriptions the close could not bill (or start, or end), with why. One failing
    /// subscription never stops the others; the next run tries it again.
    pub failures: Vec<CloseFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFailure {
    pub external_subscription_id: String,
    pub reason: String,
}

/// Billing key of the invoice issued when an in-advance subscription starts.
const START: &str = "start";

/// Billing key of the invoice closing a charge period.
fn period_key(period: &Period) -> String {
    format!("p{:015}", period.start.timestamp_millis())
}

/// Runs the close as of `now` for one organization: due activations and terminations, every
/// ended and not yet invoiced period (catching up on missed ones), then due drafts.
pub async fn run(tally: &Tally, org: &Org, now: DateTime<Utc>) -> ServiceResult<CloseReport> {
    let mut report = CloseReport::default();
    lifecycle_into(tally, org, now, &mut report).await?;
    let mut after = None;
    loop {
        let page = due(tally, org, now, after, 100).await?;
        for period in &page.items {
            match bill_one(tally, org, period).await {
                Ok(Some(_)) => report.invoices_issued += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(subscription = %period.external_subscription_id, "cannot bill: {e}");
                    report.failures.push(CloseFailure {
                        external_subscription_id: period.external_subscription_id.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    report.invoices_finalized = crate::invoices::finalize_due(tally, org, now).await?;
    Ok(report)
}

/// The close of every organization of the installation, as of `now`: one organization's
/// failures never stop another's close. Their reports are added up.
pub async fn run_all(tally: &Tally, now: DateTime<Utc>) -> ServiceResult<CloseReport> {
    let mut total = CloseReport::default();
    for org in crate::organizations::list(tally).await? {
        let report = match run(tally, &org, now).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(organization = %org.id, "period close failed: {e}");
                let failure = CloseFailure { external_subscription_id: String::new(), reason: e.to_string() };
                CloseReport { failures: vec![failure], ..Default::default() }
            }
        };
        total.subscriptions_activated += report.subscriptions_activated;
        total.subscriptions_terminated += report.subscriptions_terminated;
        total.invoices_issued += report.invoices_issued;
        total.invoices_finalized += report.invoices_finalized;
        total.failures.extend(report.failures.into_iter().map(|f| CloseFailure {
            external_subscription_id: f.external_subscription_id,
            reason: format!("organization {}: {}", org.id, f.reason),
        }));
    }
    Ok(total)
}

/// Starts the pending subscriptions whose start has come and ends those whose end has come.
/// Returns how many of each.
pub async fn lifecycle(tally: &Tally, org: &Org, now: DateTime<Utc>) -> ServiceResult<(usize, usize)> {
    let mut report = CloseReport::default();
    lifecycle_into(tally, org, now, &mut report).await?;
    match report.failures.first() {
        Some(failure) => Err(ServiceError::Unavailable(format!(
            "subscription {}: {}",
            failure.external_subscription_id, failure.reason
        ))),
        None => Ok((report.subscriptions_activated, report.subscriptions_terminated)),
    }
}

/// [`lifecycle`], counting into `report`; a subscription that fails is reported, not fatal.
async fn lifecycle_into(tally: &Tally, org: &Org, now: DateTime<Utc>, report: &mut CloseReport) -> ServiceResult<()> {
    let histories = tally.load_all::<SubscriptionHistory>(keys::subscriptions(&org.id)).await?;
    for (history, _) in &histories {
        for s in &history.versions {
            let outcome = if s.status == SubscriptionStatus::Pending && s.subscription_at <= now {
                crate::subscriptions::activate(tally, org, &s.external_id, &s.lago_id)
                    .await
                    .map(|_| report.subscriptions_activated += 1)
            } else if s.status == SubscriptionStatus::Active && s.ending_at.is_some_and(|end| end <= now) {
                crate::subscriptions::terminate(tally, org, &s.external_id, None)
                    .await
                    .map(|_| report.subscriptions_terminated += 1)
            } else {
                Ok(())
            };
            if let Err(e) = outcome {
                tracing::error!(subscription = %s.external_id, "cannot start or end: {e}");
                report
                    .failures
                    .push(CloseFailure { external_subscription_id: s.external_id.clone(), reason: e.to_string() });
            }
        }
    }
    Ok(())
}

/// A subscription period due for its invoice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DuePeriod {
    pub external_subscription_id: String,
    pub subscription_id: String,
    pub billing_key: String,
}

/// One page of due periods.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DuePage {
    pub items: Vec<DuePeriod>,
    /// Pass back as `after` for the next page.
    pub next: Option<String>,
}

/// The periods due by `now` and not invoiced yet, for up to `limit` external subscription ids
/// after `after` (in id order): a page of the work of a close, for a step function to fan out.
pub async fn due(
    tally: &Tally,
    org: &Org,
    now: DateTime<Utc>,
    after: Option<String>,
    limit: usize,
) -> ServiceResult<DuePage> {
    let query = Query { after, limit: limit.max(1), ..Query::partition(keys::subscriptions(&org.id)) };
    let page = tally.store.query(&query).await?;
    let mut items = Vec::new();
    for item in &page.items {
        let history: SubscriptionHistory = crate::records::decode(&item.value)?;
        for subscription in history.versions.iter().filter(|s| s.started_at.is_some()) {
            for billing_key in due_keys(tally, org, subscription, now).await? {
                items.push(DuePeriod {
                    external_subscription_id: subscription.external_id.clone(),
                    subscription_id: subscription.lago_id.clone(),
                    billing_key,
                });
            }
        }
    }
    Ok(DuePage { items, next: page.next })
}

/// Issues the invoice of one due period (nothing if it exists already). Idempotent.
pub async fn bill_one(tally: &Tally, org: &Org, period: &DuePeriod) -> ServiceResult<Option<InvoiceRecord>> {
    let (history, _) = tally
        .load::<SubscriptionHistory>(&keys::subscription(&org.id, &period.external_subscription_id))
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?;
    let subscription = history
        .versions
        .iter()
        .find(|s| s.lago_id == period.subscription_id)
        .ok_or(ServiceError::NotFound("subscription"))?;
    let plan =
        crate::plans::compiled(tally, org, &subscription.plan_code).await?.ok_or(ServiceError::NotFound("plan"))?;
    issue(tally, org, subscription, &plan, &period.billing_key).await
}

async fn billed_keys(tally: &Tally, org: &Org, subscription: &SubscriptionRecord) -> ServiceResult<HashSet<String>> {
    let mut query = Query::partition(keys::billed_partition(&org.id, &subscription.lago_id));
    let mut keys = HashSet::new();
    loop {
        let page = tally.store.query(&query).await?;
        keys.extend(page.items.into_iter().map(|i| i.key.sk));
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Billing keys of the charge periods of the subscription that ended by `now` (or by its
/// termination) and have no invoice yet.
async fn due_keys(
    tally: &Tally,
    org: &Org,
    subscription: &SubscriptionRecord,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<String>> {
    let Some(plan) = crate::plans::compiled(tally, org, &subscription.plan_code).await? else {
        tracing::warn!(subscription = %subscription.external_id, "plan {} is gone; not billing", subscription.plan_code);
        return Ok(Vec::new());
    };
    let schedules = schedules(subscription, &plan);
    let billed = billed_keys(tally, org, subscription).await?;
    let Some(started_at) = subscription.started_at else { return Ok(Vec::new()) };
    let mut period = schedules.charges.period_at(started_at);
    let mut keys = Vec::new();
    loop {
        let ends_life = subscription.terminated_at.is_some_and(|t| t <= period.end);
        let due = period.end <= now || (ends_life && subscription.terminated_at.is_some_and(|t| t <= now));
        if !due {
            return Ok(keys);
        }
        if !billed.contains(&period_key(&period)) {
            keys.push(period_key(&period));
        }
        if ends_life {
            return Ok(keys);
        }
        period = schedules.charges.next(&period);
    }
}

/// The invoice of an in-advance plan's first period, issued when the subscription starts.
pub(crate) async fn bill_start(tally: &Tally, org: &Org, subscription: &SubscriptionRecord) -> ServiceResult<()> {
    let Some(plan) = crate::plans::compiled(tally, org, &subscription.plan_code).await? else { return Ok(()) };
    if plan.plan.pay_in_advance {
        issue(tally, org, subscription, &plan, START).await?;
    }
    Ok(())
}

/// The final invoice of a terminated subscription: the period it ended in.
pub(crate) async fn bill_termination(tally: &Tally, org: &Org, subscription: &SubscriptionRecord) -> ServiceResult<()> {
    let (Some(terminated_at), Some(plan)) =
        (subscription.terminated_at, crate::plans::compiled(tally, org, &subscription.plan_code).await?)
    else {
        return Ok(());
    };
    let schedules = schedules(subscription, &plan);
    // The period holding the last instant of the subscription's life.
    let last = schedules.charges.period_at(terminated_at - chrono::Duration::milliseconds(1));
    let billed = billed_keys(tally, org, subscription).await?;
    if !billed.contains(&period_key(&last)) {
        issue(tally, org, subscription, &plan, &period_key(&last)).await?;
    }
    Ok(())
}

/// The fees and dates of the invoice behind a billing key.
pub(crate) struct InvoiceDraft {
    pub fees: Vec<FeeRecord>,
    pub applied_taxes: Vec<AppliedTaxRecord>,
    pub totals: tally_domain::invoice::InvoiceTotals,
    pub subscription: InvoiceSubscriptionRecord,
    pub issuing_date: NaiveDate,
}

/// Computes the invoice for a billing key from the current usage states.
pub(crate) async fn compute(
    tally: &Tally,
    org: &Org,
    subscription: &SubscriptionRecord,
    plan: &CompiledPlan,
    customer: &CustomerRecord,
    billing_key: &str,
) -> ServiceResult<InvoiceDraft> {
    let schedules = schedules(subscription, plan);
    let started_at = subscription.started_at.ok_or(ServiceError::NotFound("subscription"))?;
    let taxes = TaxBook::load(tally, org, plan, customer).await?;
    let subscription_taxes = taxes.for_fee(&[]);
    let mut fees: Vec<(PeriodFee, Option<crate::usage::PricedCharge>, Option<crate::usage::PricedFee>)> = Vec::new();
    let (sub_span, charges_span, reason, issuing_date);

    if billing_key == START {
        let plan_period = schedules.plan.period_at(started_at);
        let span =
            billed_span(&schedules.plan, plan_period, &schedules.life).ok_or(ServiceError::NotFound("subscription"))?;
        fees.push((
            subscription_fee(&plan.plan, &schedules.plan, &span, &schedules.life, subscription_taxes),
            None,
            None,
        ));
        sub_span = Some(span);
        charges_span = (span.from, span.from);
        reason = "subscription_starting";
        issuing_date = schedules.plan.local_date(started_at);
    } else {
        let start_ms: i64 =
            billing_key.trim_start_matches('p').parse().map_err(|_| ServiceError::NotFound("invoice"))?;
        let start = DateTime::<Utc>::from_timestamp_millis(start_ms).ok_or(ServiceError::NotFound("invoice"))?;
        let period = schedules.charges.period_at(start);
        let (span, priced) = price_period(tally, org, subscription, plan, period, &taxes).await?;
        let span = span.ok_or(ServiceError::NotFound("subscription"))?;
        for charge in priced {
            for fee in &charge.fees {
                fees.push((fee.fee.clone(), Some(charge.clone()), Some(fee.clone())));
            }
        }
        // The subscription fee: in arrears for the plan period ending here (or cut short by a
        // termination); in advance for the plan period starting here.
        let plan_period = schedules.plan.period_at(period.start);
        let terminated_here = subscription.terminated_at.is_some_and(|t| t <= period.end);
        let plan_boundary = plan_period.end == period.end;
        let fee_span = match (plan.plan.pay_in_advance, terminated_here, plan_boundary) {
            (false, true, _) | (false, false, true) => billed_span(&schedules.plan, plan_period, &schedules.life),
            (true, false, true) => billed_span(&schedules.plan, schedules.plan.next(&plan_period), &schedules.life),
            _ => None,
        };
        if let Some(fee_span) = fee_span {
            fees.insert(
                0,
                (
                    subscription_fee(&plan.plan, &schedules.plan, &fee_span, &schedules.life, subscription_taxes),
                    None,
                    None,
                ),
            );
        }
        sub_span = fee_span;
        charges_span = (span.from, span.to);
        reason = if terminated_here { "subscription_terminating" } else { "subscription_periodic" };
        issuing_date = match subscription.terminated_at.filter(|_| terminated_here) {
            Some(t) => schedules.charges.local_date(t),
            None => period.end_date + Days::new(1),
        };
    }

    let inputs: Vec<_> = fees.iter().map(|(f, _, _)| f.to_input()).collect();
    let totals = compute_invoice(plan.plan.currency, &inputs, Credits::default())
        .map_err(|_| ServiceError::out_of_range("amount_cents"))?;
    let (sub_from, sub_to) = sub_span.map_or(charges_span, |s| (s.from, s.to));
    let fee_records = fees
        .into_iter()
        .zip(&totals.fees)
        .map(|((fee, charge, priced), invoiced)| {
            let (from, to) = if fee.fee_type == FeeType::Subscription { (sub_from, sub_to) } else { charges_span };
            FeeRecord {
                lago_id: new_id(),
                fee_type: if fee.fee_type == FeeType::Subscription { "subscription" } else { "charge" }.into(),
                lago_charge_id: charge.as_ref().map(|c| c.charge.lago_id.clone()),
                lago_charge_filter_id: priced.as_ref().and_then(|p| p.filter.as_ref().map(|f| f.lago_id.clone())),
                charge_code: charge.as_ref().map(|c| c.charge.code.clone()),
                charge_model: charge.as_ref().map(|c| c.charge.charge_model.clone()),
                billable_metric_code: charge.as_ref().map(|c| c.metric.code.clone()),
                billable_metric_name: charge.as_ref().map(|c| c.metric.name.clone()),
                invoice_display_name: charge.as_ref().and_then(|c| c.charge.invoice_display_name.clone()),
                filter_invoice_display_name: priced
                    .as_ref()
                    .and_then(|p| p.filter.as_ref()?.invoice_display_name.clone()),
                filter_values: priced.as_ref().and_then(|p| p.filter.as_ref().map(|f| f.values.clone())),
                grouped_by: priced.as_ref().map(|p| p.grouped_by.clone()).unwrap_or_default(),
                true_up: fee.true_up,
                amount_cents: invoiced.amount_cents,
                precise_amount_cents: invoiced.precise_amount_cents,
                precise_coupons_amount_cents: invoiced.precise_coupons_amount_cents,
                taxes_amount_cents: invoiced.taxes_amount_cents,
                taxes_precise_amount_cents: invoiced.taxes_precise_amount_cents,
                taxes_rate: invoiced.taxes_rate,
                units: fee.units,
                events_count: fee.events_count,
                from_datetime: from,
                to_datetime: to - chrono::Duration::seconds(1),
                applied_taxes: fee
                    .taxes
                    .iter()
                    .map(|t| AppliedTaxRecord {
                        tax_code: t.code.clone(),
                        tax_name: t.name.clone(),
                        tax_rate: t.rate,
                        amount_cents: 0,
                        base_amount_cents: Decimal::from(invoiced.amount_cents) - invoiced.precise_coupons_amount_cents,
                    })
                    .collect(),
            }
        })
        .collect();
    let applied_taxes = totals
        .applied_taxes
        .iter()
        .map(|t| AppliedTaxRecord {
            tax_code: t.tax_code.clone(),
            tax_name: t.tax_name.clone(),
            tax_rate: t.tax_rate,
            amount_cents: t.amount_cents,
            base_amount_cents: t.base_amount_cents,
        })
        .collect();
    Ok(InvoiceDraft {
        fees: fee_records,
        applied_taxes,
        subscription: InvoiceSubscriptionRecord {
            lago_id: subscription.lago_id.clone(),
            external_id: subscription.external_id.clone(),
            plan_code: subscription.plan_code.clone(),
            plan_id: subscription.plan_id.clone(),
            from_datetime: sub_from,
            to_datetime: sub_to - chrono::Duration::seconds(1),
            charges_from_datetime: charges_span.0,
            charges_to_datetime: charges_span.1 - chrono::Duration::seconds(1),
            invoicing_reason: reason.into(),
        },
        totals,
        issuing_date,
    })
}

/// Issues the invoice behind a billing key unless it exists. `None` when it already existed.
async fn issue(
    tally: &Tally,
    org: &Org,
    subscription: &SubscriptionRecord,
    plan: &CompiledPlan,
    billing_key: &str,
) -> ServiceResult<Option<InvoiceRecord>> {
    let mut retry = Retry::new("customer");
    loop {
        let customer_key = keys::customer(&org.id, &subscription.external_customer_id);
        let (mut customer, customer_version) =
            tally.load::<CustomerRecord>(&customer_key).await?.ok_or(ServiceError::NotFound("customer"))?;
        let draft = compute(tally, org, subscription, plan, &customer, billing_key).await?;
        let now = tally.now();
        let grace_days = customer.invoice_grace_period.unwrap_or(org.invoice_grace_period);
        let net_payment_term = customer.net_payment_term.unwrap_or(org.net_payment_term);
        let finalized = grace_days == 0;
        let issuing_instant = local_midnight(subscription.tz(), draft.issuing_date);
        let (sequential_id, number) = if finalized {
            customer.invoices_count += 1;
            (customer.invoices_count, invoice_number(org, &customer, customer.invoices_count))
        } else {
            (0, format!("{}-DRAFT", org.document_number_prefix))
        };
        let invoice = InvoiceRecord {
            lago_id: new_id(),
            billing_key: format!("{}#{billing_key}", subscription.lago_id),
            sequential_id,
            number,
            status: if finalized { InvoiceStatus::Finalized } else { InvoiceStatus::Draft },
            issuing_date: draft.issuing_date,
            payment_due_date: draft.issuing_date + Days::new(u64::from(net_payment_term)),
            net_payment_term,
            finalize_at: (!finalized).then(|| issuing_instant + Days::new(u64::from(grace_days))),
            currency: plan.plan.currency.code().to_owned(),
            lago_customer_id: customer.lago_id.clone(),
            external_customer_id: customer.external_id.clone(),
            subscription: draft.subscription,
            fees: draft.fees,
            applied_taxes: draft.applied_taxes,
            fees_amount_cents: draft.totals.fees_amount_cents,
            coupons_amount_cents: draft.totals.coupons_amount_cents,
            credit_notes_amount_cents: draft.totals.credit_notes_amount_cents,
            prepaid_credit_amount_cents: draft.totals.prepaid_credit_amount_cents,
            progressive_billing_credit_amount_cents: draft.totals.progressive_billing_credit_amount_cents,
            sub_total_excluding_taxes_amount_cents: draft.totals.sub_total_excluding_taxes_amount_cents,
            taxes_amount_cents: draft.totals.taxes_amount_cents,
            sub_total_including_taxes_amount_cents: draft.totals.sub_total_including_taxes_amount_cents,
            total_amount_cents: draft.totals.total_amount_cents,
            created_at: now,
            updated_at: now,
            finalized_at: finalized.then_some(now),
        };
        let mut writes = vec![
            put(keys::billed(&org.id, &subscription.lago_id, billing_key), &invoice.lago_id, Condition::Absent)?,
            put(keys::invoice(&org.id, &invoice.lago_id), &invoice, Condition::Absent)?,
        ];
        if finalized {
            writes.push(put(customer_key, &customer, Condition::Version(customer_version))?);
        }
        match tally.store.transact(writes).await {
            Ok(()) => {
                index_fees(tally, org, &invoice).await?;
                tracing::info!(invoice = %invoice.number, subscription = %subscription.external_id, key = billing_key,
                    total_amount_cents = invoice.total_amount_cents, "invoice issued");
                return Ok(Some(invoice));
            }
            // Already billed by another run: nothing to do.
            Err(StoreError::ConditionFailed { index: 0 }) => return Ok(None),
            // The customer changed (another invoice numbered meanwhile): compute again.
            Err(StoreError::ConditionFailed { .. }) => retry.lost_race().await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Lago's per-customer numbering: `{prefix}-{customer sequence:03}-{invoice sequence:03}`.
pub(crate) fn invoice_number(org: &Org, customer: &CustomerRecord, sequence: u64) -> String {
    format!("{}-{:03}-{:03}", org.document_number_prefix, customer.sequential_id, sequence)
}

/// Index items so `GET /fees/{id}` finds a fee's invoice (derived data: rewriting is harmless).
pub(crate) async fn index_fees(tally: &Tally, org: &Org, invoice: &InvoiceRecord) -> ServiceResult<()> {
    let writes = invoice
        .fees
        .iter()
        .map(|f| put(keys::fee(&org.id, &f.lago_id), &invoice.lago_id, Condition::None))
        .collect::<ServiceResult<Vec<_>>>()?;
    for chunk in writes.chunks(tally_store::MAX_TRANSACTION_WRITES) {
        tally.store.transact(chunk.to_vec()).await?;
    }
    Ok(())
}
