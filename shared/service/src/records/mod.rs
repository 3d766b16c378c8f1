//! What tally stores, one record type per file. Records are JSON values of store items; fields
//! added later carry `#[serde(default)]` so old items keep loading.

mod billable_metric;
mod customer;
mod invoice;
mod organization;
mod plan;
mod subscription;
mod tax;

pub use billable_metric::BillableMetricRecord;
pub use customer::CustomerRecord;
pub use invoice::{AppliedTaxRecord, FeeRecord, InvoiceRecord, InvoiceStatus, InvoiceSubscriptionRecord};
pub use organization::{ApiKeyEntry, ApiKeyRecord, OrganizationRecord};
pub use plan::{ChargeFilterRecord, ChargeRecord, CompiledCharge, CompiledPlan, PlanRecord};
pub use subscription::{SubscriptionHistory, SubscriptionRecord, SubscriptionStatus};
pub use tax::TaxRecord;

use crate::error::ServiceError;
use serde::{de::DeserializeOwned, Serialize};

pub(crate) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(record).map_err(|e| ServiceError::Internal(format!("encode: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes).map_err(|e| ServiceError::Internal(format!("decode: {e}")))
}
