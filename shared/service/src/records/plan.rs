use super::BillableMetricRecord;
use crate::error::ServiceError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use tally_domain::catalog::{BillableMetric, Charge, ChargeFilter, ChargeModel, Interval, Plan};
use tally_domain::money::Currency;
use tally_domain::validation::charge_properties;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeFilterRecord {
    pub lago_id: String,
    #[serde(default)]
    pub invoice_display_name: Option<String>,
    pub properties: Value,
    pub values: BTreeMap<String, Vec<String>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeRecord {
    pub lago_id: String,
    pub code: String,
    pub billable_metric_id: String,
    pub billable_metric_code: String,
    pub charge_model: String,
    #[serde(default)]
    pub pay_in_advance: bool,
    #[serde(default = "yes")]
    pub invoiceable: bool,
    #[serde(default)]
    pub regroup_paid_fees: Option<String>,
    #[serde(default)]
    pub prorated: bool,
    #[serde(default)]
    pub min_amount_cents: i64,
    #[serde(default)]
    pub invoice_display_name: Option<String>,
    pub properties: Value,
    #[serde(default)]
    pub filters: Vec<ChargeFilterRecord>,
    #[serde(default)]
    pub tax_codes: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// The id its usage is stored under, when it took over the usage of a charge a plan update
    /// replaced (same metric): Lago computes a new charge's usage from the period's events, and
    /// here the events already metered stay with it. `None`: its own `lago_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_id: Option<String>,
}

impl ChargeRecord {
    /// The id its usage states are keyed by.
    pub fn usage_id(&self) -> &str {
        self.usage_id.as_deref().unwrap_or(&self.lago_id)
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub lago_id: String,
    pub name: String,
    pub code: String,
    pub interval: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub invoice_display_name: Option<String>,
    pub amount_cents: i64,
    pub amount_currency: String,
    /// Days, as Lago (a float there; whole days here).
    #[serde(default)]
    pub trial_period: Decimal,
    #[serde(default)]
    pub pay_in_advance: bool,
    #[serde(default)]
    pub bill_charges_monthly: bool,
    #[serde(default)]
    pub charges: Vec<ChargeRecord>,
    #[serde(default)]
    pub tax_codes: Vec<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    pub created_at: DateTime<Utc>,
}

/// A charge ready to meter and price: its record, its domain form and its metric.
#[derive(Debug, Clone)]
pub struct CompiledCharge {
    pub record: ChargeRecord,
    pub charge: Charge,
    pub metric: BillableMetric,
    pub metric_record: BillableMetricRecord,
}

/// A plan ready to meter and price.
#[derive(Debug, Clone)]
pub struct CompiledPlan {
    pub record: PlanRecord,
    pub plan: Plan,
    pub charges: Vec<CompiledCharge>,
}

impl CompiledCharge {
    /// Index of the charge filter with this `lago_id` (`None`: events matching no filter).
    pub fn filter_index(&self, filter_id: Option<&str>) -> Option<usize> {
        filter_id.and_then(|id| self.record.filters.iter().position(|f| f.lago_id == id))
    }

    /// The pricing of a bucket: its filter's properties, or the charge's own.
    pub fn pricing(&self, filter_index: Option<usize>) -> &tally_domain::catalog::PricingProperties {
        tally_domain::invoice::bucket_properties(
            &self.charge,
            &tally_domain::invoice::UsageBucket { filter: filter_index, group: Vec::new() },
        )
    }
}

impl CompiledPlan {
    /// Charges that meter events of this code.
    pub fn charges_for_code<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a CompiledCharge> + 'a {
        self.charges.iter().filter(move |c| c.metric.code == code)
    }
}

impl PlanRecord {
    /// Builds the domain plan. `metrics` maps codes to the plan's metrics; records are validated
    /// before they are stored, so a failure here means a stored record went bad.
    pub fn compile(&self, metrics: &HashMap<String, BillableMetricRecord>) -> Result<CompiledPlan, ServiceError> {
        let bad = |what: String| ServiceError::Internal(format!("stored plan {}: {what}", self.code));
        let interval = Interval::parse(&self.interval).ok_or_else(|| bad(format!("interval {}", self.interval)))?;
        let currency: Currency = self.amount_currency.parse().map_err(|_| bad("currency".into()))?;
        let mut charges = Vec::with_capacity(self.charges.len());
        for record in &self.charges {
            let metric_record = metrics
                .get(&record.billable_metric_code)
                .ok_or_else(|| bad(format!("metric {}", record.billable_metric_code)))?;
            let metric = metric_record.to_domain()?;
            let model = ChargeModel::parse(&record.charge_model)
                .ok_or_else(|| bad(format!("model {}", record.charge_model)))?;
            let properties = charge_properties(model, &record.properties).map_err(|e| bad(format!("{e:?}")))?;
            let mut filters = Vec::with_capacity(record.filters.len());
            for f in &record.filters {
                filters.push(ChargeFilter {
                    values: f.values.clone(),
                    properties: charge_properties(model, &f.properties).map_err(|e| bad(format!("{e:?}")))?,
                    invoice_display_name: f.invoice_display_name.clone(),
                });
            }
            let charge = Charge {
                code: record.code.clone(),
                metric_code: metric.code.clone(),
                properties,
                pricing_group_keys: pricing_group_keys(&record.properties),
                filters,
                pay_in_advance: record.pay_in_advance,
                invoiceable: record.invoiceable,
                prorated: record.prorated,
                min_amount_cents: record.min_amount_cents,
                tax_codes: record.tax_codes.clone(),
            };
            charges.push(CompiledCharge {
                record: record.clone(),
                charge,
                metric,
                metric_record: metric_record.clone(),
            });
        }
        let trial_days = i64::try_from(self.trial_period.ceil()).ok().and_then(|d| u32::try_from(d).ok()).unwrap_or(0);
        Ok(CompiledPlan {
            record: self.clone(),
            plan: Plan {
                code: self.code.clone(),
                interval,
                amount_cents: self.amount_cents,
                currency,
                pay_in_advance: self.pay_in_advance,
                trial_period_days: trial_days,
                bill_charges_monthly: self.bill_charges_monthly,
                charges: charges.iter().map(|c| c.charge.clone()).collect(),
                tax_codes: self.tax_codes.clone(),
            },
            charges,
        })
    }
}

/// `pricing_group_keys` of a charge's properties (or the legacy `grouped_by`).
pub fn pricing_group_keys(properties: &Value) -> Vec<String> {
    let keys = properties
        .get("pricing_group_keys")
        .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        .or_else(|| properties.get("grouped_by"));
    keys.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}
