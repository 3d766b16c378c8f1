//! Invoices and fees: list, read, refresh a draft, finalize (by hand or when the grace period
//! ends).

use crate::records::{CustomerRecord, FeeRecord, InvoiceRecord, InvoiceStatus, SubscriptionHistory};
use crate::retry::Retry;
use crate::{keys, put, Org, PageRequest, Paged, Pager, ServiceError, ServiceResult, Tally};
use chrono::NaiveDate;
use tally_store::{Condition, StoreError};

#[derive(Debug, Clone, Default)]
pub struct InvoiceFilter {
    pub external_customer_id: Option<String>,
    pub status: Option<String>,
    pub issuing_date_from: Option<NaiveDate>,
    pub issuing_date_to: Option<NaiveDate>,
}

impl InvoiceFilter {
    fn matches(&self, i: &InvoiceRecord) -> bool {
        self.external_customer_id.as_ref().is_none_or(|c| c == &i.external_customer_id)
            && self.status.as_ref().is_none_or(|s| s == i.status.as_str())
            && self.issuing_date_from.is_none_or(|d| i.issuing_date >= d)
            && self.issuing_date_to.is_none_or(|d| i.issuing_date <= d)
    }

    fn is_empty(&self) -> bool {
        self.external_customer_id.is_none()
            && self.status.is_none()
            && self.issuing_date_from.is_none()
            && self.issuing_date_to.is_none()
    }
}

/// Invoices, newest first (every one: for internal use and tests; the API pages).
pub async fn list(tally: &Tally, org: &Org, filter: &InvoiceFilter) -> ServiceResult<Vec<InvoiceRecord>> {
    let mut invoices = Vec::new();
    tally
        .scan(keys::invoices(&org.id), true, |item| {
            let invoice: InvoiceRecord = crate::records::decode(&item.value)?;
            if filter.matches(&invoice) {
                invoices.push(invoice);
            }
            Ok(())
        })
        .await?;
    Ok(invoices)
}

/// `GET /invoices`: one page, newest first, read from the store page by page.
pub async fn list_page(
    tally: &Tally,
    org: &Org,
    filter: &InvoiceFilter,
    request: PageRequest,
) -> ServiceResult<Paged<InvoiceRecord>> {
    let keep = |i: &InvoiceRecord| filter.matches(i);
    let keep: Option<&(dyn Fn(&InvoiceRecord) -> bool + Send + Sync)> =
        if filter.is_empty() { None } else { Some(&keep) };
    tally.page_of(keys::invoices(&org.id), true, request, keep).await
}

pub async fn get(tally: &Tally, org: &Org, lago_id: &str) -> ServiceResult<InvoiceRecord> {
    Ok(tally.load::<InvoiceRecord>(&keys::invoice(&org.id, lago_id)).await?.ok_or(ServiceError::NotFound("invoice"))?.0)
}

/// Recomputes a draft from the current usage (late events inside the grace period count) and,
/// when `finalize`, finalizes it with its number.
async fn recompute(tally: &Tally, org: &Org, lago_id: &str, finalize: bool) -> ServiceResult<InvoiceRecord> {
    let mut retry = Retry::new("invoice");
    loop {
        let key = keys::invoice(&org.id, lago_id);
        let (mut invoice, version) =
            tally.load::<InvoiceRecord>(&key).await?.ok_or(ServiceError::NotFound("invoice"))?;
        if invoice.status != InvoiceStatus::Draft {
            return if finalize { Ok(invoice) } else { Err(ServiceError::NotAllowed("invoice_not_draft")) };
        }
        let (history, _) = tally
            .load::<SubscriptionHistory>(&keys::subscription(&org.id, &invoice.subscription.external_id))
            .await?
            .ok_or(ServiceError::NotFound("subscription"))?;
        let subscription = history
            .versions
            .iter()
            .find(|s| s.lago_id == invoice.subscription.lago_id)
            .cloned()
            .ok_or(ServiceError::NotFound("subscription"))?;
        let plan =
            crate::plans::compiled(tally, org, &subscription.plan_code).await?.ok_or(ServiceError::NotFound("plan"))?;
        let customer_key = keys::customer(&org.id, &invoice.external_customer_id);
        let (mut customer, customer_version) =
            tally.load::<CustomerRecord>(&customer_key).await?.ok_or(ServiceError::NotFound("customer"))?;
        let billing_key = invoice.billing_key.split_once('#').map(|(_, k)| k.to_owned()).unwrap_or_default();
        let draft = crate::period_close::compute(tally, org, &subscription, &plan, &customer, &billing_key).await?;
        let now = tally.now();
        invoice.fees = draft.fees;
        invoice.applied_taxes = draft.applied_taxes;
        invoice.fees_amount_cents = draft.totals.fees_amount_cents;
        invoice.coupons_amount_cents = draft.totals.coupons_amount_cents;
        invoice.credit_notes_amount_cents = draft.totals.credit_notes_amount_cents;
        invoice.prepaid_credit_amount_cents = draft.totals.prepaid_credit_amount_cents;
        invoice.progressive_billing_credit_amount_cents = draft.totals.progressive_billing_credit_amount_cents;
        invoice.sub_total_excluding_taxes_amount_cents = draft.totals.sub_total_excluding_taxes_amount_cents;
        invoice.taxes_amount_cents = draft.totals.taxes_amount_cents;
        invoice.sub_total_including_taxes_amount_cents = draft.totals.sub_total_including_taxes_amount_cents;
        invoice.total_amount_cents = draft.totals.total_amount_cents;
        invoice.updated_at = now;
        let mut writes = Vec::new();
        if finalize {
            customer.invoices_count += 1;
            invoice.sequential_id = customer.invoices_count;
            invoice.number = crate::period_close::invoice_number(org, &customer, customer.invoices_count);
            invoice.status = InvoiceStatus::Finalized;
            invoice.finalized_at = Some(now);
            invoice.finalize_at = None;
            writes.push(put(customer_key, &customer, Condition::Version(customer_version))?);
        }
        writes.push(put(key, &invoice, Condition::Version(version))?);
        match tally.store.transact(writes).await {
            Ok(()) => {
                crate::period_close::index_fees(tally, org, &invoice).await?;
                return Ok(invoice);
            }
            Err(StoreError::ConditionFailed { .. }) => retry.lost_race().await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `PUT /invoices/{id}/refresh`: recompute a draft.
pub async fn refresh(tally: &Tally, org: &Org, lago_id: &str) -> ServiceResult<InvoiceRecord> {
    recompute(tally, org, lago_id, false).await
}

/// `PUT /invoices/{id}/finalize`: recompute a draft, then finalize it (a finalized invoice is
/// returned as it is).
pub async fn finalize(tally: &Tally, org: &Org, lago_id: &str) -> ServiceResult<InvoiceRecord> {
    recompute(tally, org, lago_id, true).await
}

/// A fee with the invoice it belongs to.
#[derive(Debug, Clone)]
pub struct InvoicedFee {
    pub fee: FeeRecord,
    pub invoice: InvoiceRecord,
}

pub async fn get_fee(tally: &Tally, org: &Org, lago_id: &str) -> ServiceResult<InvoicedFee> {
    let (invoice_id, _) =
        tally.load::<String>(&keys::fee(&org.id, lago_id)).await?.ok_or(ServiceError::NotFound("fee"))?;
    let invoice = get(tally, org, &invoice_id).await?;
    let fee = invoice.fees.iter().find(|f| f.lago_id == lago_id).cloned().ok_or(ServiceError::NotFound("fee"))?;
    Ok(InvoicedFee { fee, invoice })
}

#[derive(Debug, Clone, Default)]
pub struct FeeFilter {
    pub external_customer_id: Option<String>,
    pub external_subscription_id: Option<String>,
    pub fee_type: Option<String>,
}

/// `GET /fees`: one page of fees, newest invoice first, read from the store page by page.
pub async fn list_fees(
    tally: &Tally,
    org: &Org,
    filter: &FeeFilter,
    request: PageRequest,
) -> ServiceResult<Paged<InvoicedFee>> {
    let mut pager = Pager::new(request);
    tally
        .scan(keys::invoices(&org.id), true, |item| {
            let invoice: InvoiceRecord = crate::records::decode(&item.value)?;
            if filter.external_customer_id.as_ref().is_some_and(|c| c != &invoice.external_customer_id)
                || filter.external_subscription_id.as_ref().is_some_and(|s| s != &invoice.subscription.external_id)
            {
                return Ok(());
            }
            for fee in invoice.fees.iter().filter(|f| filter.fee_type.as_ref().is_none_or(|t| t == &f.fee_type)) {
                if pager.wants() {
                    pager.offer(InvoicedFee { fee: fee.clone(), invoice: invoice.clone() });
                } else {
                    pager.skip();
                }
            }
            Ok(())
        })
        .await?;
    Ok(pager.finish())
}
