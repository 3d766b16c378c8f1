use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub lago_id: String,
    pub external_id: String,
    /// 1, 2, 3… in creation order within the organization (used in invoice numbers).
    pub sequential_id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// IANA zone; `None` falls back to the organization's.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub invoice_grace_period: Option<u32>,
    #[serde(default)]
    pub net_payment_term: Option<u32>,
    #[serde(default)]
    pub tax_codes: Vec<String>,
    /// Other descriptive fields Lago accepts (address, legal name, phone…), echoed back as given.
    #[serde(default)]
    pub details: Map<String, Value>,
    /// Invoices issued so far for this customer.
    #[serde(default)]
    pub invoices_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
