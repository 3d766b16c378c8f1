use crate::error::ServiceError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tally_domain::catalog::{BillableMetric, MetricFilter};
use tally_domain::validation::{billable_metric, MetricDraft};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillableMetricRecord {
    pub lago_id: String,
    pub name: String,
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    pub aggregation_type: String,
    #[serde(default)]
    pub field_name: Option<String>,
    #[serde(default)]
    pub recurring: bool,
    #[serde(default)]
    pub weighted_interval: Option<String>,
    #[serde(default)]
    pub rounding_function: Option<String>,
    #[serde(default)]
    pub rounding_precision: Option<i32>,
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub filters: Vec<MetricFilter>,
    pub created_at: DateTime<Utc>,
}

impl BillableMetricRecord {
    pub fn draft(&self) -> MetricDraft {
        MetricDraft {
            name: Some(self.name.clone()),
            code: Some(self.code.clone()),
            aggregation_type: Some(self.aggregation_type.clone()),
            field_name: self.field_name.clone(),
            recurring: self.recurring,
            weighted_interval: self.weighted_interval.clone(),
            rounding_function: self.rounding_function.clone(),
            rounding_precision: self.rounding_precision,
            expression: self.expression.clone(),
            filters: self.filters.clone(),
        }
    }

    /// The domain metric (records are validated before they are stored).
    pub fn to_domain(&self) -> Result<BillableMetric, ServiceError> {
        billable_metric(&self.draft())
            .map_err(|e| ServiceError::Internal(format!("stored metric {} is invalid: {e:?}", self.code)))
    }
}
