//! Plans with their charges and charge filters: create, update, read, list, delete.

use crate::records::{
    BillableMetricRecord, ChargeFilterRecord, ChargeRecord, CompiledPlan, PlanRecord, SubscriptionHistory, TaxRecord,
};
use crate::retry::Retry;
use crate::{keys, new_id, put, Org, ServiceError, ServiceResult, Tally};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tally_domain::catalog::{ChargeModel, Interval, ALL_FILTER_VALUES};
use tally_domain::money::Currency;
use tally_domain::validation::{charge_properties, charge_rules, ChargeFlags, ValidationErrors};
use tally_store::{Condition, StoreError, Write};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChargeFilterInput {
    pub invoice_display_name: Option<String>,
    pub properties: Option<Value>,
    pub values: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChargeInput {
    /// `lago_id` of an existing charge, when updating a plan.
    pub id: Option<String>,
    pub billable_metric_id: Option<String>,
    pub billable_metric_code: Option<String>,
    pub code: Option<String>,
    pub charge_model: Option<String>,
    pub pay_in_advance: Option<bool>,
    pub invoiceable: Option<bool>,
    pub regroup_paid_fees: Option<String>,
    pub prorated: Option<bool>,
    pub min_amount_cents: Option<i64>,
    pub invoice_display_name: Option<String>,
    pub properties: Option<Value>,
    pub filters: Option<Vec<ChargeFilterInput>>,
    pub tax_codes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlanInput {
    pub name: Option<String>,
    pub code: Option<String>,
    pub interval: Option<String>,
    pub description: Option<String>,
    pub invoice_display_name: Option<String>,
    pub amount_cents: Option<i64>,
    pub amount_currency: Option<String>,
    pub trial_period: Option<Value>,
    pub pay_in_advance: Option<bool>,
    pub bill_charges_monthly: Option<bool>,
    pub charges: Option<Vec<ChargeInput>>,
    pub tax_codes: Option<Vec<String>>,
    pub metadata: Option<Value>,
}

async fn metrics_by_code(tally: &Tally, org: &Org) -> ServiceResult<HashMap<String, BillableMetricRecord>> {
    let all = tally.load_all::<BillableMetricRecord>(keys::metrics(&org.id)).await?;
    Ok(all.into_iter().map(|(m, _)| (m.code.clone(), m)).collect())
}

async fn require_taxes(tally: &Tally, org: &Org, codes: &[String]) -> ServiceResult<()> {
    for code in codes {
        if tally.load::<TaxRecord>(&keys::tax(&org.id, code)).await?.is_none() {
            return Err(ServiceError::NotFound("tax"));
        }
    }
    Ok(())
}

/// Builds and validates a plan record from input, over `base` when updating.
async fn build(tally: &Tally, org: &Org, input: PlanInput, base: Option<PlanRecord>) -> ServiceResult<PlanRecord> {
    let now = tally.now();
    let mut errors = ValidationErrors::new();
    let creating = base.is_none();
    let mut plan = base.unwrap_or_else(|| PlanRecord {
        lago_id: new_id(),
        name: String::new(),
        code: String::new(),
        interval: String::new(),
        description: None,
        invoice_display_name: None,
        amount_cents: 0,
        amount_currency: String::new(),
        trial_period: Decimal::ZERO,
        pay_in_advance: false,
        bill_charges_monthly: false,
        charges: Vec::new(),
        tax_codes: Vec::new(),
        metadata: None,
        created_at: now,
    });
    if let Some(name) = input.name {
        plan.name = name;
    }
    if let Some(code) = input.code {
        plan.code = code;
    }
    if let Some(interval) = input.interval {
        plan.interval = interval;
    }
    if input.description.is_some() {
        plan.description = input.description;
    }
    if input.invoice_display_name.is_some() {
        plan.invoice_display_name = input.invoice_display_name;
    }
    if let Some(amount) = input.amount_cents {
        plan.amount_cents = amount;
    }
    if let Some(currency) = input.amount_currency {
        plan.amount_currency = currency;
    }
    if let Some(trial) = input.trial_period.as_ref().filter(|v| !v.is_null()) {
        match crate::taxes::decimal(trial).filter(|d| *d >= Decimal::ZERO) {
            Some(days) => plan.trial_period = days,
            None => errors.add("trial_period", "value_is_invalid"),
        }
    }
    if let Some(advance) = input.pay_in_advance {
        plan.pay_in_advance = advance;
    }
    if let Some(monthly) = input.bill_charges_monthly {
        plan.bill_charges_monthly = monthly;
    }
    if let Some(codes) = input.tax_codes {
        require_taxes(tally, org, &codes).await?;
        plan.tax_codes = codes;
    }
    if input.metadata.is_some() {
        plan.metadata = input.metadata;
    }
    if plan.name.trim().is_empty() {
        errors.add("name", "value_is_mandatory");
    }
    if plan.code.trim().is_empty() {
        errors.add("code", "value_is_mandatory");
    }
    if plan.interval.is_empty() {
        errors.add("interval", "value_is_mandatory");
    } else if Interval::parse(&plan.interval).is_none() {
        errors.add("interval", "value_is_invalid");
    }
    if plan.amount_cents < 0 {
        errors.add("amount_cents", "value_is_out_of_range");
    }
    if plan.amount_currency.is_empty() {
        errors.add("amount_currency", "value_is_mandatory");
    } else if plan.amount_currency.parse::<Currency>().is_err() {
        errors.add("amount_currency", "value_is_invalid");
    }
    if let Some(charges) = input.charges {
        let metrics = metrics_by_code(tally, org).await?;
        let previous = std::mem::take(&mut plan.charges);
        for charge in charges {
            let built = build_charge(tally, org, &metrics, &previous, charge, now, &mut errors).await?;
            if let Some(built) = built {
                if plan.charges.iter().any(|c| c.code == built.code) {
                    errors.add("charges", "value_already_exist");
                }
                plan.charges.push(built);
            }
        }
        keep_usage(&previous, &mut plan.charges);
    }
    if creating && plan.bill_charges_monthly && !matches!(plan.interval.as_str(), "yearly" | "semiannual") {
        plan.bill_charges_monthly = false;
    }
    Ok(errors.into_result(plan)?)
}

async fn build_charge(
    tally: &Tally,
    org: &Org,
    metrics: &HashMap<String, BillableMetricRecord>,
    previous: &[ChargeRecord],
    input: ChargeInput,
    now: chrono::DateTime<chrono::Utc>,
    errors: &mut ValidationErrors,
) -> ServiceResult<Option<ChargeRecord>> {
    let metric = match (&input.billable_metric_id, &input.billable_metric_code) {
        (Some(id), _) => metrics.values().find(|m| &m.lago_id == id),
        (None, Some(code)) => metrics.get(code),
        (None, None) => {
            errors.add("billable_metric_id", "value_is_mandatory");
            return Ok(None);
        }
    };
    let Some(metric) = metric else {
        return Err(ServiceError::NotFound("billable_metric"));
    };
    let existing =
        previous.iter().find(|c| Some(&c.lago_id) == input.id.as_ref() || Some(&c.code) == input.code.as_ref());
    let Some(model) = input.charge_model.as_deref().and_then(ChargeModel::parse) else {
        errors.add("charge_model", "value_is_invalid");
        return Ok(None);
    };
    let properties = input.properties.clone().unwrap_or_else(|| Value::Object(Default::default()));
    if let Err(e) = charge_properties(model, &properties) {
        errors.extend(e);
    }
    let flags = ChargeFlags {
        pay_in_advance: input.pay_in_advance.unwrap_or(false),
        invoiceable: input.invoiceable.unwrap_or(true),
        prorated: input.prorated.unwrap_or(false),
        min_amount_cents: input.min_amount_cents.unwrap_or(0),
        regroup_paid_fees: input.regroup_paid_fees.is_some(),
    };
    let domain_metric = metric.to_domain()?;
    errors.extend(charge_rules(&domain_metric, model, flags));
    let mut filters = Vec::new();
    for filter in input.filters.unwrap_or_default() {
        let values = filter.values.unwrap_or_default();
        let known = values.iter().all(|(key, accepted)| {
            metric.filters.iter().any(|f| {
                &f.key == key
                    && !accepted.is_empty()
                    && accepted.iter().all(|v| v == ALL_FILTER_VALUES || f.values.contains(v))
            })
        });
        if values.is_empty() || !known {
            errors.add("filters", "value_is_invalid");
        }
        let filter_properties = filter.properties.unwrap_or_else(|| properties.clone());
        if let Err(e) = charge_properties(model, &filter_properties) {
            errors.extend(e);
        }
        filters.push(ChargeFilterRecord {
            lago_id: new_id(),
            invoice_display_name: filter.invoice_display_name,
            properties: filter_properties,
            values,
            created_at: now,
        });
    }
    let tax_codes = input.tax_codes.unwrap_or_default();
    require_taxes(tally, org, &tax_codes).await?;
    Ok(Some(ChargeRecord {
        lago_id: existing.map_or_else(new_id, |c| c.lago_id.clone()),
        code: input.code.clone().or_else(|| existing.map(|c| c.code.clone())).unwrap_or_else(|| metric.code.clone()),
        billable_metric_id: metric.lago_id.clone(),
        billable_metric_code: metric.code.clone(),
        charge_model: model.as_str().to_owned(),
        pay_in_advance: flags.pay_in_advance,
        invoiceable: flags.invoiceable,
        regroup_paid_fees: input.regroup_paid_fees,
        prorated: flags.prorated,
        min_amount_cents: flags.min_amount_cents,
        invoice_display_name: input.invoice_display_name,
        properties,
        filters,
        tax_codes,
        created_at: existing.map_or(now, |c| c.created_at),
        usage_id: existing.and_then(|c| c.usage_id.clone()),
    }))
}

/// Charges of an update that are new (no `id` or `code` of an existing charge) take over the
/// usage of a charge the update drops for the same metric and model, and filters keep their ids when
/// their values are unchanged (as Lago matches filters by values). Lago computes usage from
/// the period's events, so replacing a charge by an equal one loses nothing there; here the
/// usage metered before the update stays billed, whatever events race the update.
fn keep_usage(previous: &[ChargeRecord], charges: &mut [ChargeRecord]) {
    let kept: Vec<String> = charges.iter().map(|c| c.lago_id.clone()).collect();
    let mut dropped: Vec<&ChargeRecord> = previous.iter().filter(|c| !kept.contains(&c.lago_id)).collect();
    for charge in charges.iter_mut() {
        let before = match previous.iter().find(|p| p.lago_id == charge.lago_id) {
            Some(same) => Some(same),
            None => {
                // Same metric and model: the stored states have what this charge's pricing reads
                // (a percentage charge's event series, say).
                let heir = dropped.iter().position(|p| {
                    p.billable_metric_id == charge.billable_metric_id && p.charge_model == charge.charge_model
                });
                heir.map(|i| dropped.remove(i)).inspect(|p| charge.usage_id = Some(p.usage_id().to_owned()))
            }
        };
        let Some(before) = before else { continue };
        for filter in &mut charge.filters {
            if let Some(same) = before.filters.iter().find(|f| f.values == filter.values) {
                filter.lago_id = same.lago_id.clone();
                filter.created_at = same.created_at;
            }
        }
    }
}

pub async fn create(tally: &Tally, org: &Org, input: PlanInput) -> ServiceResult<PlanRecord> {
    let plan = build(tally, org, input, None).await?;
    match tally.store.transact(vec![put(keys::plan(&org.id, &plan.code), &plan, Condition::Absent)?]).await {
        Ok(()) => Ok(plan),
        Err(StoreError::ConditionFailed { .. }) => Err(ServiceError::invalid("code", "value_already_exist")),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(tally: &Tally, org: &Org, code: &str) -> ServiceResult<PlanRecord> {
    Ok(tally.load::<PlanRecord>(&keys::plan(&org.id, code)).await?.ok_or(ServiceError::NotFound("plan"))?.0)
}

pub async fn list(tally: &Tally, org: &Org) -> ServiceResult<Vec<PlanRecord>> {
    Ok(tally.load_all::<PlanRecord>(keys::plans(&org.id)).await?.into_iter().map(|(p, _)| p).collect())
}

/// `GET /plans`: one page, read from the store page by page.
pub async fn list_page(
    tally: &Tally,
    org: &Org,
    request: crate::PageRequest,
) -> ServiceResult<crate::Paged<PlanRecord>> {
    tally.page_of(keys::plans(&org.id), false, request, None).await
}

/// Subscriptions (any status) on a plan.
pub(crate) async fn subscriptions_on(tally: &Tally, org: &Org, plan_code: &str) -> ServiceResult<Vec<String>> {
    let histories = tally.load_all::<SubscriptionHistory>(keys::subscriptions(&org.id)).await?;
    Ok(histories
        .into_iter()
        .filter(|(h, _)| h.versions.iter().any(|s| s.plan_code == plan_code))
        .filter_map(|(h, _)| h.latest().map(|s| s.external_id.clone()))
        .collect())
}

/// Updates a plan. Interval, currency and payment timing only change while no subscription
/// uses the plan (as in Lago). Charges given replace the plan's charges (matched by `id` or
/// `code`, keeping their ids). Events waiting for a charge of this plan are attributed after.
pub async fn update(tally: &Tally, org: &Org, code: &str, mut input: PlanInput) -> ServiceResult<PlanRecord> {
    let key = keys::plan(&org.id, code);
    let subscribed = subscriptions_on(tally, org, code).await?;
    if !subscribed.is_empty() {
        input.interval = None;
        input.amount_currency = None;
        input.pay_in_advance = None;
    }
    input.code = None;
    // Concurrent updates of one plan: each applies in turn over the one before it.
    let mut retry = Retry::new("plan");
    let plan = loop {
        let (current, version) = tally.load::<PlanRecord>(&key).await?.ok_or(ServiceError::NotFound("plan"))?;
        let (charges_monthly, trial) = (current.bill_charges_monthly, current.trial_period);
        let plan = build(tally, org, input.clone(), Some(current)).await?;
        if plan.bill_charges_monthly != charges_monthly || plan.trial_period != trial {
            // When its subscriptions are due moves: the close looks at each of them at its next
            // run, which puts them back at their new instants. Written before the change, so a
            // crash in between leaves only an early look.
            let now = tally.now();
            let entries = subscribed
                .iter()
                .map(|id| crate::due_index::put_entry(&crate::due_index::subscription_entry(&org.id, id, now)))
                .collect::<ServiceResult<Vec<_>>>()?;
            for chunk in entries.chunks(tally_store::MAX_TRANSACTION_WRITES) {
                tally.store.transact(chunk.to_vec()).await?;
            }
        }
        let writes = vec![put(key.clone(), &plan, Condition::Version(version))?, crate::bump_catalog_epoch(&org.id)];
        match tally.store.transact(writes).await {
            Ok(()) => break plan,
            Err(StoreError::ConditionFailed { .. }) => retry.lost_race().await?,
            Err(e) => return Err(e.into()),
        }
    };
    tally.cache.forget(&org.id);
    for external_id in subscribed {
        crate::events::attribute_pending(tally, org, &external_id).await?;
    }
    Ok(plan)
}

/// Deletes a plan that no active or pending subscription uses.
pub async fn delete(tally: &Tally, org: &Org, code: &str) -> ServiceResult<PlanRecord> {
    let key = keys::plan(&org.id, code);
    let (plan, version) = tally.load::<PlanRecord>(&key).await?.ok_or(ServiceError::NotFound("plan"))?;
    let histories = tally.load_all::<SubscriptionHistory>(keys::subscriptions(&org.id)).await?;
    if histories.iter().any(|(h, _)| h.current().is_some_and(|s| s.plan_code == code)) {
        return Err(ServiceError::NotAllowed("plan_has_active_subscriptions"));
    }
    tally
        .store
        .transact(vec![
            Write::Delete { key, condition: Condition::Version(version) },
            crate::bump_catalog_epoch(&org.id),
        ])
        .await?;
    tally.cache.forget(&org.id);
    Ok(plan)
}

/// The organization's catalog epoch, from the cache or the store.
pub(crate) async fn current_epoch(tally: &Tally, org: &Org) -> ServiceResult<crate::catalog_cache::Epoch> {
    if let Some(epoch) = tally.cache.epoch(&org.id) {
        return Ok(epoch);
    }
    let epoch = tally.store.get(&keys::catalog_epoch(&org.id)).await?.map(|item| item.version);
    tally.cache.set_epoch(&org.id, epoch);
    Ok(epoch)
}

/// The compiled plan, from the cache when it was read under the current catalog epoch.
pub(crate) async fn compiled(tally: &Tally, org: &Org, code: &str) -> ServiceResult<Option<Arc<CompiledPlan>>> {
    let epoch = current_epoch(tally, org).await?;
    compiled_at(tally, org, code, epoch).await
}

/// The compiled plan as of `epoch` (read after the epoch, so never older than it).
pub(crate) async fn compiled_at(
    tally: &Tally,
    org: &Org,
    code: &str,
    epoch: crate::catalog_cache::Epoch,
) -> ServiceResult<Option<Arc<CompiledPlan>>> {
    if let Some(hit) = tally.cache.plan(&org.id, code, epoch) {
        return Ok(Some(hit));
    }
    let Some((record, _)) = tally.load::<PlanRecord>(&keys::plan(&org.id, code)).await? else {
        return Ok(None);
    };
    let metrics = metrics_by_code(tally, org).await?;
    let compiled = Arc::new(record.compile(&metrics)?);
    tally.cache.put_plan(&org.id, code, compiled.clone(), epoch);
    Ok(Some(compiled))
}
