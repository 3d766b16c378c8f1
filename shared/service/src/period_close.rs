//! The period close: subscriptions start and end on time, every ended period is invoiced exactly
//! once, and drafts are finalized when their grace period is over.
//!
//! Idempotent by construction: an invoice commits together with a billing marker keyed by
//! subscription and billing boundary, written only if absent. A retry, a crash between steps, or
//! two closers running at once (the server's scheduler and `tally bill`) can only find the marker
//! and move on.

use crate::due_index::{self, Due, DueEntry};
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
use std::collections::{HashMap, HashSet};
use tally_domain::invoice::{compute_invoice, subscription_fee, Credits, FeeType, PeriodFee};
use tally_domain::periods::{billed_span, local_midnight, Period};
use tally_store::{Condition, Query, StoreError, Write};

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

impl CloseReport {
    fn add(&mut self, other: CloseReport) {
        self.subscriptions_activated += other.subscriptions_activated;
        self.subscriptions_terminated += other.subscriptions_terminated;
        self.invoices_issued += other.invoices_issued;
        self.invoices_finalized += other.invoices_finalized;
        self.failures.extend(other.failures);
    }
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

/// Entries of the due index read per page (and per invocation of the close Lambda).
pub const PAGE: usize = 100;

/// Runs the close as of `now` for one organization: due activations and terminations, every
/// ended and not yet invoiced period (catching up on missed ones), and drafts whose grace
/// period is over. Other organizations' entries are left to their own close.
pub async fn run(tally: &Tally, org: &Org, now: DateTime<Utc>) -> ServiceResult<CloseReport> {
    due_index::ensure_built(tally, org).await?;
    close_shards(tally, now, Some(org.id.clone())).await
}

/// The close of every organization of the installation, as of `now`. One subscription's (or
/// organization's) failure never stops the others: it is reported and tried again next run.
pub async fn run_all(tally: &Tally, now: DateTime<Utc>) -> ServiceResult<CloseReport> {
    prepare(tally).await?;
    close_shards(tally, now, None).await
}

/// Shards closed at once: each waits on its own writes, so several in flight let the store
/// commit them together.
const PARALLEL_SHARDS: usize = 16;

async fn close_shards(tally: &Tally, now: DateTime<Utc>, only: Option<String>) -> ServiceResult<CloseReport> {
    let mut report = CloseReport::default();
    let mut running = tokio::task::JoinSet::new();
    let mut shards = 0..due_index::SHARDS;
    loop {
        while running.len() < PARALLEL_SHARDS {
            let Some(shard) = shards.next() else { break };
            let (tally, only) = (tally.clone(), only.clone());
            running.spawn(async move {
                let mut report = CloseReport::default();
                close_shard(&tally, shard, now, only.as_deref(), &mut report).await.map(|()| report)
            });
        }
        match running.join_next().await {
            Some(Ok(Ok(shard))) => report.add(shard),
            // The shard's store could not be read: the others go on, the next run retries it.
            Some(Ok(Err(e))) => {
                tracing::error!("cannot close a shard: {e}");
                report.failures.push(CloseFailure { external_subscription_id: String::new(), reason: e.to_string() });
            }
            Some(Err(e)) => return Err(ServiceError::Unavailable(format!("close task failed: {e}"))),
            None => return Ok(report),
        }
    }
}

/// Makes sure every organization's due index exists (built once, for data from before it).
pub async fn prepare(tally: &Tally) -> ServiceResult<()> {
    for org in crate::organizations::list(tally).await? {
        due_index::ensure_built(tally, &org).await?;
    }
    Ok(())
}

async fn close_shard(
    tally: &Tally,
    shard: u32,
    now: DateTime<Utc>,
    only: Option<&str>,
    report: &mut CloseReport,
) -> ServiceResult<()> {
    let mut after = None;
    loop {
        let page = close_page(tally, shard, now, after, only).await?;
        report.add(page.report);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// What one page of a shard's close did, and where the next page starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardPage {
    pub report: CloseReport,
    /// Pass back as `after` for the next page; `None` when the shard has nothing more due.
    pub next: Option<String>,
}

/// Processes up to [`PAGE`] entries of one shard of the due index that are due by `now`
/// (after `after`, the previous page's `next`): the unit of work of the close, one Lambda
/// invocation on AWS. `only` restricts it to one organization's entries.
pub async fn close_page(
    tally: &Tally,
    shard: u32,
    now: DateTime<Utc>,
    after: Option<String>,
    only: Option<&str>,
) -> ServiceResult<ShardPage> {
    let bound = due_index::sort_key_bound(now);
    let query = Query { after, limit: PAGE, ..Query::partition(due_index::partition(shard)) };
    let page = tally.store.query(&query).await?;
    let mut result = ShardPage::default();
    let mut orgs: HashMap<String, Org> = HashMap::new();
    let mut last = None;
    for item in &page.items {
        if item.key.sk >= bound {
            return Ok(result);
        }
        last = Some(item.key.sk.clone());
        let entry: DueEntry = crate::records::decode(&item.value)?;
        if only.is_some_and(|org| org != entry.organization_id) {
            continue;
        }
        let org = match orgs.get(&entry.organization_id) {
            Some(org) => org.clone(),
            None => match crate::organizations::get(tally, &entry.organization_id).await {
                Ok(org) => {
                    orgs.insert(org.id.clone(), org.clone());
                    org
                }
                Err(e) => {
                    let reason = format!("organization {}: {e}", entry.organization_id);
                    result.report.failures.push(CloseFailure { external_subscription_id: String::new(), reason });
                    continue;
                }
            },
        };
        let mut report = CloseReport::default();
        match process_and_replace(tally, &org, &entry, &item.key, now, &mut report).await {
            Ok(()) => {}
            Err(e) => {
                let what = match &entry.due {
                    Due::Subscription { external_id } => external_id.clone(),
                    Due::Draft { invoice_id } => format!("invoice {invoice_id}"),
                };
                tracing::error!(organization = %org.id, subscription = %what, "cannot close: {e}");
                report.failures.push(CloseFailure { external_subscription_id: what, reason: e.to_string() });
            }
        }
        result.report.add(report);
    }
    result.next = page.next.and(last);
    Ok(result)
}

/// Processes an entry, then replaces it with the next one: both commit together, so no
/// instant is ever unindexed. Any failure leaves the entry for the next run.
async fn process_and_replace(
    tally: &Tally,
    org: &Org,
    entry: &DueEntry,
    key: &tally_store::Key,
    now: DateTime<Utc>,
    report: &mut CloseReport,
) -> ServiceResult<()> {
    let next = process(tally, org, entry, now, report).await?;
    if next.as_ref().is_none_or(|next| &next.key() != key) {
        let mut writes = vec![Write::Delete { key: key.clone(), condition: Condition::None }];
        if let Some(next) = &next {
            writes.push(due_index::put_entry(next)?);
        }
        tally.store.transact(writes).await?;
    }
    Ok(())
}

/// Does what an entry stands for as of `now`, and returns the entry to replace it with.
async fn process(
    tally: &Tally,
    org: &Org,
    entry: &DueEntry,
    now: DateTime<Utc>,
    report: &mut CloseReport,
) -> ServiceResult<Option<DueEntry>> {
    match &entry.due {
        Due::Subscription { external_id } => {
            start_and_end(tally, org, external_id, now, report).await?;
            let Some((history, _)) =
                tally.load::<SubscriptionHistory>(&keys::subscription(&org.id, external_id)).await?
            else {
                return Ok(None);
            };
            for subscription in history.versions.iter().filter(|s| s.started_at.is_some()) {
                let Some(plan) = crate::plans::compiled(tally, org, &subscription.plan_code).await? else {
                    tracing::warn!(subscription = %external_id, "plan {} is gone; not billing", subscription.plan_code);
                    continue;
                };
                for billing_key in due_keys(tally, org, subscription, &plan, now).await? {
                    if issue(tally, org, subscription, &plan, &billing_key).await?.is_some() {
                        report.invoices_issued += 1;
                    }
                }
            }
            // Never at or before `now`: what could not happen now is looked at next run.
            let next = due_index::next_due(tally, org, &history, now).await?;
            let floor = now + chrono::Duration::milliseconds(1);
            Ok(next.map(|at| due_index::subscription_entry(&org.id, external_id, at.max(floor))))
        }
        Due::Draft { invoice_id } => {
            let Some((invoice, _)) = tally.load::<InvoiceRecord>(&keys::invoice(&org.id, invoice_id)).await? else {
                return Ok(None);
            };
            match invoice.finalize_at.filter(|_| invoice.status == InvoiceStatus::Draft) {
                Some(at) if at <= now => {
                    crate::invoices::finalize(tally, org, invoice_id).await?;
                    report.invoices_finalized += 1;
                    Ok(None)
                }
                Some(at) => Ok(Some(due_index::draft_entry(&org.id, invoice_id, at))),
                None => Ok(None),
            }
        }
    }
}

/// Starts the pending versions of a subscription whose start has come and ends the active one
/// whose end has come.
async fn start_and_end(
    tally: &Tally,
    org: &Org,
    external_id: &str,
    now: DateTime<Utc>,
    report: &mut CloseReport,
) -> ServiceResult<()> {
    let Some((history, _)) = tally.load::<SubscriptionHistory>(&keys::subscription(&org.id, external_id)).await? else {
        return Ok(());
    };
    for s in &history.versions {
        if s.status == SubscriptionStatus::Pending && s.subscription_at <= now {
            crate::subscriptions::activate(tally, org, &s.external_id, &s.lago_id).await?;
            report.subscriptions_activated += 1;
        } else if s.status == SubscriptionStatus::Active && s.ending_at.is_some_and(|end| end <= now) {
            crate::subscriptions::terminate(tally, org, &s.external_id, None).await?;
            report.subscriptions_terminated += 1;
        }
    }
    Ok(())
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
    plan: &CompiledPlan,
    now: DateTime<Utc>,
) -> ServiceResult<Vec<String>> {
    let schedules = schedules(subscription, plan);
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
        match invoice.finalize_at {
            None => writes.push(put(customer_key, &customer, Condition::Version(customer_version))?),
            // The close finalizes the draft when its grace period is over.
            Some(at) => writes.push(due_index::put_entry(&due_index::draft_entry(&org.id, &invoice.lago_id, at))?),
        }
        // The fee index commits with the invoice when it fits in the transaction.
        let fee_index = fee_index_writes(org, &invoice)?;
        let indexed = writes.len() + fee_index.len() <= tally_store::MAX_TRANSACTION_WRITES;
        if indexed {
            writes.extend(fee_index);
        }
        match tally.store.transact(writes).await {
            Ok(()) => {
                if !indexed {
                    index_fees(tally, org, &invoice).await?;
                }
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
    let writes = fee_index_writes(org, invoice)?;
    for chunk in writes.chunks(tally_store::MAX_TRANSACTION_WRITES) {
        tally.store.transact(chunk.to_vec()).await?;
    }
    Ok(())
}

fn fee_index_writes(org: &Org, invoice: &InvoiceRecord) -> ServiceResult<Vec<Write>> {
    invoice.fees.iter().map(|f| put(keys::fee(&org.id, &f.lago_id), &invoice.lago_id, Condition::None)).collect()
}
