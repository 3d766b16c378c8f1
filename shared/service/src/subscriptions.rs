//! Subscriptions: create (creating the customer if needed, upgrading or downgrading an existing
//! one), update, terminate (with the final invoice), read and list.

use crate::due_index;
use crate::records::{SubscriptionHistory, SubscriptionRecord, SubscriptionStatus};
use crate::retry::Retry;
use crate::{keys, new_id, put, unchanged, Org, ServiceError, ServiceResult, Tally};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tally_domain::catalog::Interval;
use tally_domain::periods::BillingTime;
use tally_domain::validation::ValidationErrors;
use tally_store::StoreError;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubscriptionInput {
    pub external_customer_id: Option<String>,
    pub plan_code: Option<String>,
    pub external_id: Option<String>,
    pub name: Option<String>,
    pub billing_time: Option<String>,
    pub subscription_at: Option<String>,
    pub ending_at: Option<String>,
}

fn parse_time(field: &str, value: &Option<String>, errors: &mut ValidationErrors) -> Option<DateTime<Utc>> {
    let text = value.as_deref().filter(|s| !s.is_empty())?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.add(field, "invalid_date");
            None
        }
    }
}

/// Yearly price of a plan, to tell an upgrade from a downgrade (Lago's `yearly_amount_cents`).
fn yearly_amount_cents(interval: Interval, amount_cents: i64) -> i64 {
    let per_year = match interval {
        Interval::Weekly => 52,
        Interval::Monthly => 12,
        Interval::Quarterly => 4,
        Interval::Semiannual => 2,
        Interval::Yearly => 1,
    };
    amount_cents.saturating_mul(per_year)
}

/// What happened, so follow-up work (invoices, parked events) can run after the commit.
enum Change {
    Unchanged(SubscriptionRecord),
    Created(SubscriptionRecord),
    Upgraded { old: Box<SubscriptionRecord>, new: Box<SubscriptionRecord> },
    DowngradeScheduled(SubscriptionRecord),
}

pub async fn create(tally: &Tally, org: &Org, input: SubscriptionInput) -> ServiceResult<SubscriptionRecord> {
    let mut errors = ValidationErrors::new();
    let customer_id = input.external_customer_id.clone().filter(|s| !s.trim().is_empty());
    let plan_code = input.plan_code.clone().filter(|s| !s.trim().is_empty());
    let external_id = input.external_id.clone().filter(|s| !s.trim().is_empty());
    if customer_id.is_none() {
        errors.add("external_customer_id", "value_is_mandatory");
    }
    if plan_code.is_none() {
        errors.add("plan_code", "value_is_mandatory");
    }
    if external_id.is_none() {
        errors.add("external_id", "value_is_mandatory");
    }
    let billing_time = input.billing_time.clone().unwrap_or_else(|| "calendar".into());
    if BillingTime::parse(&billing_time).is_none() {
        errors.add("billing_time", "value_is_invalid");
    }
    let now = tally.now();
    let subscription_at = parse_time("subscription_at", &input.subscription_at, &mut errors).unwrap_or(now);
    let ending_at = parse_time("ending_at", &input.ending_at, &mut errors);
    if ending_at.is_some_and(|end| end <= now || end <= subscription_at) {
        errors.add("ending_at", "invalid_date");
    }
    let (Some(customer_id), Some(plan_code), Some(external_id)) = (customer_id, plan_code, external_id) else {
        return Err(errors.into());
    };
    errors.into_result(())?;
    let plan = crate::plans::compiled(tally, org, &plan_code).await?.ok_or(ServiceError::NotFound("plan"))?;
    let customer = crate::customers::find_or_create(tally, org, &customer_id).await?;
    let timezone = crate::customers::applicable_timezone(&customer, org);

    let mut retry = Retry::new("subscription");
    loop {
        let key = keys::subscription(&org.id, &external_id);
        let loaded = tally.load::<SubscriptionHistory>(&key).await?;
        let version = loaded.as_ref().map(|(_, v)| *v);
        let mut history = loaded.map(|(h, _)| h).unwrap_or_default();
        let starts_later =
            subscription_at.with_timezone(&timezone).date_naive() > now.with_timezone(&timezone).date_naive();
        let fresh = |status: SubscriptionStatus, at: DateTime<Utc>, previous: Option<String>| SubscriptionRecord {
            lago_id: new_id(),
            external_id: external_id.clone(),
            external_customer_id: customer.external_id.clone(),
            lago_customer_id: customer.lago_id.clone(),
            plan_code: plan_code.clone(),
            plan_id: plan.record.lago_id.clone(),
            name: input.name.clone(),
            status,
            billing_time: billing_time.clone(),
            timezone: timezone.name().to_owned(),
            subscription_at: at,
            started_at: (status == SubscriptionStatus::Active).then_some(at),
            ending_at,
            terminated_at: None,
            canceled_at: None,
            created_at: now,
            previous_plan_code: previous,
        };
        let change = match history.current().cloned() {
            Some(current) if current.external_customer_id != customer.external_id => {
                return Err(ServiceError::invalid("external_id", "value_already_exist"));
            }
            Some(current) if current.plan_code == plan_code => Change::Unchanged(current),
            Some(current) if current.status == SubscriptionStatus::Pending => {
                // A pending subscription simply takes the new plan.
                let mut updated = current.clone();
                updated.plan_code = plan_code.clone();
                updated.plan_id = plan.record.lago_id.clone();
                replace(&mut history, updated.clone());
                Change::Created(updated)
            }
            Some(current) => {
                let old_plan = crate::plans::compiled(tally, org, &current.plan_code)
                    .await?
                    .ok_or(ServiceError::NotFound("plan"))?;
                let old_yearly = yearly_amount_cents(old_plan.plan.interval, old_plan.plan.amount_cents);
                let new_yearly = yearly_amount_cents(plan.plan.interval, plan.plan.amount_cents);
                if new_yearly >= old_yearly {
                    let mut old = current.clone();
                    old.status = SubscriptionStatus::Terminated;
                    old.terminated_at = Some(now);
                    replace(&mut history, old.clone());
                    let new = fresh(SubscriptionStatus::Active, now, Some(current.plan_code.clone()));
                    history.versions.push(new.clone());
                    Change::Upgraded { old: Box::new(old), new: Box::new(new) }
                } else {
                    // Downgrade at the end of the current period.
                    let schedules = crate::metering::schedules(&current, &old_plan);
                    let period_end = schedules.plan.period_at(now).end;
                    let next = fresh(SubscriptionStatus::Pending, period_end, Some(current.plan_code.clone()));
                    history.versions.push(next.clone());
                    Change::DowngradeScheduled(next)
                }
            }
            None if starts_later => {
                let pending = fresh(SubscriptionStatus::Pending, subscription_at, None);
                history.versions.push(pending.clone());
                Change::Created(pending)
            }
            None => {
                let active = fresh(SubscriptionStatus::Active, subscription_at, None);
                history.versions.push(active.clone());
                Change::Created(active)
            }
        };
        if let Change::Unchanged(current) = change {
            return Ok(current);
        }
        let ended_at = match &change {
            Change::Upgraded { old, .. } => old.terminated_at,
            _ => None,
        };
        let mut writes = vec![put(key, &history, unchanged(version))?];
        writes.extend(due_index::history_writes(tally, org, &history, &external_id, ended_at).await?);
        match tally.store.transact(writes).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => {
                retry.lost_race().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        tally.cache.forget(&org.id);
        return after_change(tally, org, change).await;
    }
}

fn replace(history: &mut SubscriptionHistory, record: SubscriptionRecord) {
    if let Some(slot) = history.versions.iter_mut().find(|s| s.lago_id == record.lago_id) {
        *slot = record;
    }
}

/// Follow-ups of a committed change: meter parked events, issue start and final invoices.
async fn after_change(tally: &Tally, org: &Org, change: Change) -> ServiceResult<SubscriptionRecord> {
    match change {
        Change::Unchanged(s) | Change::DowngradeScheduled(s) => Ok(s),
        Change::Created(s) => {
            crate::events::attribute_pending(tally, org, &s.external_id).await?;
            if s.status == SubscriptionStatus::Active {
                crate::period_close::bill_start(tally, org, &s).await?;
            }
            Ok(s)
        }
        Change::Upgraded { old, new } => {
            crate::period_close::bill_termination(tally, org, &old).await?;
            crate::events::attribute_pending(tally, org, &new.external_id).await?;
            crate::period_close::bill_start(tally, org, &new).await?;
            Ok(*new)
        }
    }
}

/// Activates a pending subscription whose start has come (ending the one it replaces).
pub(crate) async fn activate(tally: &Tally, org: &Org, external_id: &str, lago_id: &str) -> ServiceResult<()> {
    let key = keys::subscription(&org.id, external_id);
    let Some((mut history, version)) = tally.load::<SubscriptionHistory>(&key).await? else { return Ok(()) };
    let Some(pending) =
        history.versions.iter().find(|s| s.lago_id == lago_id && s.status == SubscriptionStatus::Pending).cloned()
    else {
        return Ok(());
    };
    let start = pending.subscription_at;
    let mut ended = None;
    for s in history.versions.iter_mut() {
        if s.status == SubscriptionStatus::Active && s.lago_id != lago_id {
            s.status = SubscriptionStatus::Terminated;
            s.terminated_at = Some(start);
            ended = Some(s.clone());
        }
        if s.lago_id == lago_id {
            s.status = SubscriptionStatus::Active;
            s.started_at = Some(start);
        }
    }
    let active = history.versions.iter().find(|s| s.lago_id == lago_id).cloned();
    let ended_at = ended.as_ref().and_then(|s| s.terminated_at);
    let mut writes = vec![put(key, &history, unchanged(Some(version)))?];
    writes.extend(due_index::history_writes(tally, org, &history, external_id, ended_at).await?);
    match tally.store.transact(writes).await {
        Ok(()) => {}
        // Changed meanwhile (another closer activated it): the next run looks again.
        Err(StoreError::ConditionFailed { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    tally.cache.forget(&org.id);
    if let Some(old) = ended {
        crate::period_close::bill_termination(tally, org, &old).await?;
    }
    if let Some(active) = active {
        crate::events::attribute_pending(tally, org, external_id).await?;
        crate::period_close::bill_start(tally, org, &active).await?;
    }
    Ok(())
}

/// Terminates the active subscription (or cancels a pending one) and issues its final invoice.
pub async fn terminate(
    tally: &Tally,
    org: &Org,
    external_id: &str,
    status: Option<&str>,
) -> ServiceResult<SubscriptionRecord> {
    let mut retry = Retry::new("subscription");
    loop {
        let key = keys::subscription(&org.id, external_id);
        let (mut history, version) =
            tally.load::<SubscriptionHistory>(&key).await?.ok_or(ServiceError::NotFound("subscription"))?;
        let wanted = match status {
            Some("pending") => SubscriptionStatus::Pending,
            _ => SubscriptionStatus::Active,
        };
        let Some(current) = history.versions.iter().rev().find(|s| s.status == wanted).cloned() else {
            return Err(ServiceError::NotFound("subscription"));
        };
        let now = tally.now();
        let mut ended = current.clone();
        if current.status == SubscriptionStatus::Pending {
            ended.status = SubscriptionStatus::Canceled;
            ended.canceled_at = Some(now);
        } else {
            ended.status = SubscriptionStatus::Terminated;
            ended.terminated_at = Some(now);
        }
        replace(&mut history, ended.clone());
        let mut writes = vec![put(key, &history, unchanged(Some(version)))?];
        writes.extend(due_index::history_writes(tally, org, &history, external_id, ended.terminated_at).await?);
        match tally.store.transact(writes).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => {
                retry.lost_race().await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        tally.cache.forget(&org.id);
        if ended.status == SubscriptionStatus::Terminated {
            crate::period_close::bill_termination(tally, org, &ended).await?;
        }
        return Ok(ended);
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SubscriptionUpdate {
    pub name: Option<String>,
    pub ending_at: Option<String>,
    pub subscription_at: Option<String>,
}

/// Updates the name, end date, or (while pending) start date of the current subscription.
pub async fn update(
    tally: &Tally,
    org: &Org,
    external_id: &str,
    input: SubscriptionUpdate,
) -> ServiceResult<SubscriptionRecord> {
    let key = keys::subscription(&org.id, external_id);
    let (mut history, version) =
        tally.load::<SubscriptionHistory>(&key).await?.ok_or(ServiceError::NotFound("subscription"))?;
    let mut current = history.current().cloned().ok_or(ServiceError::NotFound("subscription"))?;
    let mut errors = ValidationErrors::new();
    if input.name.is_some() {
        current.name = input.name;
    }
    if let Some(end) = parse_time("ending_at", &input.ending_at, &mut errors) {
        if end <= tally.now() {
            errors.add("ending_at", "invalid_date");
        }
        current.ending_at = Some(end);
    }
    if let Some(start) = parse_time("subscription_at", &input.subscription_at, &mut errors) {
        if current.status == SubscriptionStatus::Pending {
            current.subscription_at = start;
        }
    }
    errors.into_result(())?;
    replace(&mut history, current.clone());
    let mut writes = vec![put(key, &history, unchanged(Some(version)))?];
    writes.extend(due_index::history_writes(tally, org, &history, external_id, None).await?);
    tally.store.transact(writes).await?;
    tally.cache.forget(&org.id);
    Ok(current)
}

/// `GET /subscriptions/{external_id}`: the active one (or pending with `status=pending`), else the latest.
pub async fn get(
    tally: &Tally,
    org: &Org,
    external_id: &str,
    status: Option<&str>,
) -> ServiceResult<SubscriptionRecord> {
    let (history, _) = tally
        .load::<SubscriptionHistory>(&keys::subscription(&org.id, external_id))
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?;
    let found = match status {
        Some(wanted) => history.versions.iter().rev().find(|s| s.status.as_str() == wanted),
        None => history.current().or_else(|| history.latest()),
    };
    found.cloned().ok_or(ServiceError::NotFound("subscription"))
}

#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub external_customer_id: Option<String>,
    pub plan_code: Option<String>,
    /// Statuses to list; Lago lists active ones when none is given.
    pub statuses: Vec<String>,
}

/// `GET /subscriptions`: one page, newest first. Histories are read from the store page by
/// page; only the newest `page × per_page` matches are held while reading.
pub async fn list(
    tally: &Tally,
    org: &Org,
    filter: &SubscriptionFilter,
    request: crate::PageRequest,
) -> ServiceResult<crate::Paged<SubscriptionRecord>> {
    let statuses = if filter.statuses.is_empty() { vec!["active".to_owned()] } else { filter.statuses.clone() };
    let per_page = request.per_page.max(1);
    let needed = request.page.max(1).saturating_mul(per_page);
    let newest_first = |all: &mut Vec<SubscriptionRecord>| all.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let (mut newest, mut total) = (Vec::new(), 0usize);
    tally
        .scan(keys::subscriptions(&org.id), false, |item| {
            let history: SubscriptionHistory = crate::records::decode(&item.value)?;
            for s in history.versions.into_iter().filter(|s| {
                statuses.iter().any(|st| st == s.status.as_str())
                    && filter.external_customer_id.as_ref().is_none_or(|c| c == &s.external_customer_id)
                    && filter.plan_code.as_ref().is_none_or(|p| p == &s.plan_code)
            }) {
                total += 1;
                newest.push(s);
            }
            if newest.len() > needed.saturating_mul(2).max(1024) {
                newest_first(&mut newest);
                newest.truncate(needed);
            }
            Ok(())
        })
        .await?;
    newest_first(&mut newest);
    let items = newest.into_iter().skip(needed - per_page).take(per_page).collect();
    Ok(crate::Paged {
        items,
        current_page: request.page.max(1),
        total_pages: total.div_ceil(per_page),
        total_count: total,
    })
}
