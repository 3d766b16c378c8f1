//! Taxes: create, update, read, list, delete.

use crate::records::TaxRecord;
use crate::{keys, new_id, put, unchanged, Org, ServiceError, ServiceResult, Tally};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use std::str::FromStr;
use tally_domain::validation::ValidationErrors;
use tally_store::{Condition, StoreError, Write};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaxInput {
    pub name: Option<String>,
    pub code: Option<String>,
    /// Percent; a JSON number or a decimal string.
    pub rate: Option<Value>,
    pub description: Option<String>,
    pub applied_to_organization: Option<bool>,
}

/// A decimal from a JSON number (read from its text, never through a float) or string.
pub(crate) fn decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => {
            Decimal::from_str(&n.to_string()).or_else(|_| Decimal::from_scientific(&n.to_string())).ok()
        }
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        _ => None,
    }
}

fn rate(input: &TaxInput, errors: &mut ValidationErrors) -> Option<Decimal> {
    match input.rate.as_ref().map(decimal) {
        None => {
            errors.add("rate", "value_is_mandatory");
            None
        }
        Some(Some(rate)) if rate >= Decimal::ZERO && rate <= Decimal::ONE_HUNDRED => Some(rate),
        Some(_) => {
            errors.add("rate", "value_is_invalid");
            None
        }
    }
}

pub async fn create(tally: &Tally, org: &Org, input: TaxInput) -> ServiceResult<TaxRecord> {
    let mut errors = ValidationErrors::new();
    let name = input.name.clone().filter(|n| !n.trim().is_empty());
    let code = input.code.clone().filter(|c| !c.trim().is_empty());
    if name.is_none() {
        errors.add("name", "value_is_mandatory");
    }
    if code.is_none() {
        errors.add("code", "value_is_mandatory");
    }
    let rate = rate(&input, &mut errors);
    let (Some(name), Some(code), Some(rate)) = (name, code, rate) else {
        return Err(errors.into());
    };
    let record = TaxRecord {
        lago_id: new_id(),
        code: code.clone(),
        name,
        rate,
        description: input.description,
        applied_to_organization: input.applied_to_organization.unwrap_or(false),
        created_at: tally.now(),
    };
    match tally.store.transact(vec![put(keys::tax(&org.id, &code), &record, Condition::Absent)?]).await {
        Ok(()) => Ok(record),
        Err(StoreError::ConditionFailed { .. }) => Err(ServiceError::invalid("code", "value_already_exist")),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(tally: &Tally, org: &Org, code: &str) -> ServiceResult<TaxRecord> {
    Ok(tally.load::<TaxRecord>(&keys::tax(&org.id, code)).await?.ok_or(ServiceError::NotFound("tax"))?.0)
}

pub async fn list(tally: &Tally, org: &Org) -> ServiceResult<Vec<TaxRecord>> {
    Ok(tally.load_all::<TaxRecord>(keys::taxes(&org.id)).await?.into_iter().map(|(t, _)| t).collect())
}

pub async fn update(tally: &Tally, org: &Org, code: &str, input: TaxInput) -> ServiceResult<TaxRecord> {
    let (mut record, version) =
        tally.load::<TaxRecord>(&keys::tax(&org.id, code)).await?.ok_or(ServiceError::NotFound("tax"))?;
    let mut errors = ValidationErrors::new();
    if input.rate.is_some() {
        if let Some(rate) = rate(&input, &mut errors) {
            record.rate = rate;
        }
    }
    if let Some(name) = input.name.filter(|n| !n.trim().is_empty()) {
        record.name = name;
    }
    if input.description.is_some() {
        record.description = input.description;
    }
    if let Some(applied) = input.applied_to_organization {
        record.applied_to_organization = applied;
    }
    let new_code = input.code.filter(|c| !c.trim().is_empty() && c != code);
    errors.into_result(())?;
    let mut writes = Vec::new();
    if let Some(new_code) = &new_code {
        record.code = new_code.clone();
        writes.push(Write::Delete { key: keys::tax(&org.id, code), condition: Condition::Version(version) });
        writes.push(put(keys::tax(&org.id, new_code), &record, Condition::Absent)?);
    } else {
        writes.push(put(keys::tax(&org.id, code), &record, unchanged(Some(version)))?);
    }
    match tally.store.transact(writes).await {
        Ok(()) => Ok(record),
        Err(StoreError::ConditionFailed { index: 1 }) => Err(ServiceError::invalid("code", "value_already_exist")),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(tally: &Tally, org: &Org, code: &str) -> ServiceResult<TaxRecord> {
    let (record, version) =
        tally.load::<TaxRecord>(&keys::tax(&org.id, code)).await?.ok_or(ServiceError::NotFound("tax"))?;
    tally
        .store
        .transact(vec![Write::Delete { key: keys::tax(&org.id, code), condition: Condition::Version(version) }])
        .await?;
    Ok(record)
}
