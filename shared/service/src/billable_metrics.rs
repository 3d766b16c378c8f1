//! Billable metrics: create, update, read, list, delete, and trying an expression on an event.

use crate::records::{BillableMetricRecord, PlanRecord};
use crate::{keys, new_id, put, unchanged, Org, ServiceError, ServiceResult, Tally};
use serde::Deserialize;
use serde_json::{Map, Value};
use tally_domain::catalog::MetricFilter;
use tally_domain::expression::{EventContext, Expression};
use tally_domain::validation::{billable_metric, ValidationErrors};
use tally_store::{Condition, StoreError};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetricInput {
    pub name: Option<String>,
    pub code: Option<String>,
    pub description: Option<String>,
    pub aggregation_type: Option<String>,
    pub field_name: Option<String>,
    pub recurring: Option<bool>,
    pub weighted_interval: Option<String>,
    pub rounding_function: Option<String>,
    pub rounding_precision: Option<i32>,
    pub expression: Option<String>,
    pub filters: Option<Vec<MetricFilter>>,
}

pub async fn create(tally: &Tally, org: &Org, input: MetricInput) -> ServiceResult<BillableMetricRecord> {
    let record = BillableMetricRecord {
        lago_id: new_id(),
        name: input.name.unwrap_or_default(),
        code: input.code.unwrap_or_default(),
        description: input.description,
        aggregation_type: input.aggregation_type.unwrap_or_default(),
        field_name: input.field_name,
        recurring: input.recurring.unwrap_or(false),
        weighted_interval: input.weighted_interval,
        rounding_function: input.rounding_function,
        rounding_precision: input.rounding_precision,
        expression: input.expression,
        filters: input.filters.unwrap_or_default(),
        created_at: tally.now(),
    };
    let record = validated(record)?;
    let key = keys::metric(&org.id, &record.code);
    match tally.store.transact(vec![put(key, &record, Condition::Absent)?]).await {
        Ok(()) => Ok(record),
        Err(StoreError::ConditionFailed { .. }) => Err(ServiceError::invalid("code", "value_already_exist")),
        Err(e) => Err(e.into()),
    }
}

/// Validates with the domain's rules; `count_agg` metrics keep no field name, as in Lago.
fn validated(mut record: BillableMetricRecord) -> ServiceResult<BillableMetricRecord> {
    let metric = billable_metric(&record.draft())?;
    record.field_name = metric.field_name;
    if record.aggregation_type == "weighted_sum_agg" && record.weighted_interval.is_none() {
        record.weighted_interval = Some("seconds".into());
    }
    Ok(record)
}

pub async fn get(tally: &Tally, org: &Org, code: &str) -> ServiceResult<BillableMetricRecord> {
    Ok(tally
        .load::<BillableMetricRecord>(&keys::metric(&org.id, code))
        .await?
        .ok_or(ServiceError::NotFound("billable_metric"))?
        .0)
}

pub async fn list(tally: &Tally, org: &Org) -> ServiceResult<Vec<BillableMetricRecord>> {
    Ok(tally.load_all::<BillableMetricRecord>(keys::metrics(&org.id)).await?.into_iter().map(|(m, _)| m).collect())
}

/// Plans with a charge on this metric.
async fn plans_using(tally: &Tally, org: &Org, code: &str) -> ServiceResult<Vec<(PlanRecord, u64)>> {
    let plans = tally.load_all::<PlanRecord>(keys::plans(&org.id)).await?;
    Ok(plans.into_iter().filter(|(p, _)| p.charges.iter().any(|c| c.billable_metric_code == code)).collect())
}

/// Updates a metric. As in Lago, what changes how events aggregate (aggregation type, field,
/// recurring, weighted interval) only changes while no plan charges the metric; name,
/// description, rounding, expression and filters always do.
pub async fn update(tally: &Tally, org: &Org, code: &str, input: MetricInput) -> ServiceResult<BillableMetricRecord> {
    let (mut record, version) = tally
        .load::<BillableMetricRecord>(&keys::metric(&org.id, code))
        .await?
        .ok_or(ServiceError::NotFound("billable_metric"))?;
    let attached = !plans_using(tally, org, code).await?.is_empty();
    if let Some(name) = input.name {
        record.name = name;
    }
    if input.description.is_some() {
        record.description = input.description;
    }
    if !attached {
        if let Some(aggregation_type) = input.aggregation_type {
            record.aggregation_type = aggregation_type;
        }
        if input.field_name.is_some() {
            record.field_name = input.field_name;
        }
        if let Some(recurring) = input.recurring {
            record.recurring = recurring;
        }
        if input.weighted_interval.is_some() {
            record.weighted_interval = input.weighted_interval;
        }
    }
    if input.rounding_function.is_some() {
        record.rounding_function = input.rounding_function;
        record.rounding_precision = input.rounding_precision;
    }
    if input.expression.is_some() {
        record.expression = input.expression;
    }
    if let Some(filters) = input.filters {
        record.filters = filters;
    }
    if let Some(new_code) = input.code.filter(|c| c != code) {
        if attached {
            return Err(ServiceError::NotAllowed("billable_metric_attached_to_plan"));
        }
        record.code = new_code;
    }
    let record = validated(record)?;
    let mut writes = vec![crate::bump_catalog_epoch(&org.id)];
    if record.code != code {
        writes.push(tally_store::Write::Delete {
            key: keys::metric(&org.id, code),
            condition: Condition::Version(version),
        });
        writes.push(put(keys::metric(&org.id, &record.code), &record, Condition::Absent)?);
    } else {
        writes.push(put(keys::metric(&org.id, code), &record, unchanged(Some(version)))?);
    }
    match tally.store.transact(writes).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { index: 2 }) => {
            return Err(ServiceError::invalid("code", "value_already_exist"))
        }
        Err(e) => return Err(e.into()),
    }
    // Plans compile the metric in: the epoch bump makes ingestion read them again.
    tally.cache.forget(&org.id);
    Ok(record)
}

/// Deletes a metric and, as Lago does, the charges that price it.
pub async fn delete(tally: &Tally, org: &Org, code: &str) -> ServiceResult<BillableMetricRecord> {
    let key = keys::metric(&org.id, code);
    let (record, version) =
        tally.load::<BillableMetricRecord>(&key).await?.ok_or(ServiceError::NotFound("billable_metric"))?;
    let mut writes = vec![tally_store::Write::Delete { key, condition: Condition::Version(version) }];
    let plans = plans_using(tally, org, code).await?;
    if !plans.is_empty() {
        writes.push(crate::bump_catalog_epoch(&org.id));
    }
    for (mut plan, plan_version) in plans.clone() {
        plan.charges.retain(|c| c.billable_metric_code != code);
        writes.push(put(keys::plan(&org.id, &plan.code), &plan, Condition::Version(plan_version))?);
    }
    for chunk in writes.chunks(tally_store::MAX_TRANSACTION_WRITES) {
        tally.store.transact(chunk.to_vec()).await?;
    }
    tally.cache.forget(&org.id);
    Ok(record)
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExpressionEvent {
    pub code: Option<String>,
    pub timestamp: Option<Value>,
    pub properties: Option<Map<String, Value>>,
}

/// `POST /billable_metrics/evaluate_expression`: the expression's value on a sample event.
pub fn evaluate_expression(expression: &str, event: &ExpressionEvent, now_ms: i64) -> ServiceResult<String> {
    let parsed =
        Expression::parse(expression).map_err(|_| ServiceError::invalid("expression", "invalid_expression"))?;
    let timestamp_ms = match &event.timestamp {
        None | Some(Value::Null) => now_ms,
        Some(t) => crate::events::timestamp_ms(t).ok_or_else(|| ServiceError::invalid("event", "invalid_timestamp"))?,
    };
    let properties = event.properties.clone().unwrap_or_default();
    let context = EventContext {
        code: event.code.as_deref().unwrap_or_default(),
        timestamp_ms,
        properties: &properties,
        precise_total_amount_cents: None,
    };
    let mut errors = ValidationErrors::new();
    match parsed.evaluate(&context) {
        Ok(value) => Ok(value.to_string()),
        Err(_) => {
            errors.add("expression", "invalid_expression");
            Err(errors.into())
        }
    }
}
