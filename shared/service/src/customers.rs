//! Customers: upsert by `external_id`, read, list, delete.

use crate::records::{CustomerRecord, OrganizationRecord, SubscriptionHistory, TaxRecord};
use crate::retry::Retry;
use crate::{keys, new_id, put, unchanged, Org, ServiceError, ServiceResult, Tally};
use chrono_tz::Tz;
use serde_json::{Map, Value};
use tally_domain::money::Currency;
use tally_domain::validation::ValidationErrors;
use tally_store::{Condition, StoreError, Write};

/// Fields tally uses itself; every other field of the input is kept as given and echoed back.
const OWN_FIELDS: &[&str] =
    &["external_id", "name", "email", "currency", "timezone", "tax_codes", "billing_configuration", "net_payment_term"];

fn text(input: &Map<String, Value>, field: &str) -> Option<String> {
    input.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// The customer's IANA timezone, else the organization's, else UTC (Lago's `applicable_timezone`).
pub fn applicable_timezone(customer: &CustomerRecord, org: &OrganizationRecord) -> Tz {
    customer
        .timezone
        .as_deref()
        .and_then(|tz| tz.parse().ok())
        .or_else(|| org.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

/// `POST /customers`: creates the customer, or updates the one with this `external_id`.
pub async fn upsert(tally: &Tally, org: &Org, input: Map<String, Value>) -> ServiceResult<CustomerRecord> {
    let Some(external_id) = text(&input, "external_id").filter(|id| !id.trim().is_empty()) else {
        return Err(ServiceError::invalid("external_id", "value_is_mandatory"));
    };
    let mut errors = ValidationErrors::new();
    let timezone = text(&input, "timezone");
    if timezone.as_deref().is_some_and(|tz| tz.parse::<Tz>().is_err()) {
        errors.add("timezone", "invalid_timezone");
    }
    let currency = text(&input, "currency");
    if currency.as_deref().is_some_and(|c| c.parse::<Currency>().is_err()) {
        errors.add("currency", "value_is_invalid");
    }
    let grace = input.get("billing_configuration").and_then(|b| b.get("invoice_grace_period")).filter(|v| !v.is_null());
    let grace = match grace {
        None => None,
        Some(v) => match v.as_u64().and_then(|g| u32::try_from(g).ok()) {
            Some(g) => Some(g),
            None => {
                errors.add("invoice_grace_period", "value_is_invalid");
                None
            }
        },
    };
    let net_payment_term = input.get("net_payment_term").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    let tax_codes: Option<Vec<String>> = input
        .get("tax_codes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect());
    errors.into_result(())?;
    if let Some(codes) = &tax_codes {
        for code in codes {
            if tally.load::<TaxRecord>(&keys::tax(&org.id, code)).await?.is_none() {
                return Err(ServiceError::NotFound("tax"));
            }
        }
    }
    let details: Map<String, Value> =
        input.iter().filter(|(k, _)| !OWN_FIELDS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();

    let mut retry = Retry::new("customer");
    loop {
        let key = keys::customer(&org.id, &external_id);
        let existing = tally.load::<CustomerRecord>(&key).await?;
        let now = tally.now();
        let result = match existing {
            Some((mut customer, version)) => {
                if let Some(name) = text(&input, "name") {
                    customer.name = Some(name);
                }
                if input.contains_key("email") {
                    customer.email = text(&input, "email");
                }
                if currency.is_some() {
                    customer.currency = currency.clone();
                }
                if timezone.is_some() {
                    customer.timezone = timezone.clone();
                }
                if grace.is_some() {
                    customer.invoice_grace_period = grace;
                }
                if net_payment_term.is_some() {
                    customer.net_payment_term = net_payment_term;
                }
                if let Some(codes) = &tax_codes {
                    customer.tax_codes = codes.clone();
                }
                customer.details.extend(details.clone());
                customer.updated_at = now;
                let writes = vec![put(key, &customer, Condition::Version(version))?];
                tally.store.transact(writes).await.map(|()| customer)
            }
            None => {
                // New customers of an organization take their numbers one at a time in this
                // process (other processes still race, and retry, on the counter's version).
                let _numbering = tally.serialize(&org.id, "customer_sequence").await;
                let (sequence, sequence_version) = match tally.load::<u64>(&keys::customer_sequence(&org.id)).await? {
                    Some((sequence, version)) => (sequence, Some(version)),
                    // Data from before the counter had its own item: it was on the organization.
                    None => {
                        let (organization, _) = tally
                            .load::<OrganizationRecord>(&keys::organization(&org.id))
                            .await?
                            .ok_or(ServiceError::NotFound("organization"))?;
                        (organization.customers_count, None)
                    }
                };
                let sequential_id = sequence + 1;
                let customer = CustomerRecord {
                    lago_id: new_id(),
                    external_id: external_id.clone(),
                    sequential_id,
                    name: text(&input, "name"),
                    email: text(&input, "email"),
                    currency: currency.clone(),
                    timezone: timezone.clone(),
                    invoice_grace_period: grace,
                    net_payment_term,
                    tax_codes: tax_codes.clone().unwrap_or_default(),
                    details: details.clone(),
                    invoices_count: 0,
                    created_at: now,
                    updated_at: now,
                };
                let writes = vec![
                    put(key, &customer, Condition::Absent)?,
                    put(keys::customer_sequence(&org.id), &sequential_id, unchanged(sequence_version))?,
                ];
                tally.store.transact(writes).await.map(|()| customer)
            }
        };
        match result {
            Ok(customer) => return Ok(customer),
            // Raced with another write of the same customer or organization: read again.
            Err(StoreError::ConditionFailed { .. }) => retry.lost_race().await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The customer, or a minimal new one for `external_id` (subscriptions create customers).
pub(crate) async fn find_or_create(tally: &Tally, org: &Org, external_id: &str) -> ServiceResult<CustomerRecord> {
    match tally.load::<CustomerRecord>(&keys::customer(&org.id, external_id)).await? {
        Some((customer, _)) => Ok(customer),
        None => {
            let mut input = Map::new();
            input.insert("external_id".into(), Value::String(external_id.to_owned()));
            upsert(tally, org, input).await
        }
    }
}

pub async fn get(tally: &Tally, org: &Org, external_id: &str) -> ServiceResult<CustomerRecord> {
    Ok(tally
        .load::<CustomerRecord>(&keys::customer(&org.id, external_id))
        .await?
        .ok_or(ServiceError::NotFound("customer"))?
        .0)
}

pub async fn list(tally: &Tally, org: &Org) -> ServiceResult<Vec<CustomerRecord>> {
    Ok(tally.load_all::<CustomerRecord>(keys::customers(&org.id)).await?.into_iter().map(|(c, _)| c).collect())
}

/// `GET /customers`: one page, read from the store page by page.
pub async fn list_page(
    tally: &Tally,
    org: &Org,
    request: crate::PageRequest,
) -> ServiceResult<crate::Paged<CustomerRecord>> {
    tally.page_of(keys::customers(&org.id), false, request, None).await
}

/// Deletes a customer; as Lago does, its active subscriptions are terminated first (with their
/// final invoices).
pub async fn delete(tally: &Tally, org: &Org, external_id: &str) -> ServiceResult<CustomerRecord> {
    let key = keys::customer(&org.id, external_id);
    let (customer, _) = tally.load::<CustomerRecord>(&key).await?.ok_or(ServiceError::NotFound("customer"))?;
    let histories = tally.load_all::<SubscriptionHistory>(keys::subscriptions(&org.id)).await?;
    for (history, _) in histories {
        if let Some(current) = history.current().filter(|s| s.external_customer_id == external_id) {
            crate::subscriptions::terminate(tally, org, &current.external_id, None).await?;
        }
    }
    let (_, version) = tally.load::<CustomerRecord>(&key).await?.ok_or(ServiceError::NotFound("customer"))?;
    tally.store.transact(vec![Write::Delete { key, condition: Condition::Version(version) }]).await?;
    Ok(customer)
}
