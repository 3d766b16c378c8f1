use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrganizationRecord {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default = "default_currency")]
    pub default_currency: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// Days a periodic invoice stays a draft before it is finalized.
    #[serde(default)]
    pub invoice_grace_period: u32,
    #[serde(default)]
    pub net_payment_term: u32,
    /// Prefix of invoice numbers, e.g. `TAL-4F2A`.
    pub document_number_prefix: String,
    /// Customers created so far: the next customer's `sequential_id` is this + 1.
    #[serde(default)]
    pub customers_count: u64,
}

fn default_currency() -> String {
    "USD".into()
}

fn utc() -> String {
    "UTC".into()
}

/// The global index from an API key's SHA-256 to its organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub organization_id: String,
    pub created_at: DateTime<Utc>,
    /// The key's id in its organization's list (`None` for keys stored before keys had ids).
    #[serde(default)]
    pub id: Option<String>,
}

/// An API key in its organization's list: never the key itself, only its first characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyEntry {
    pub id: String,
    /// SHA-256 of the key, hex: the global index item to delete on revocation.
    pub hash: String,
    /// The key's first 8 characters, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    /// Set by `TALLY_API_KEY` or generated at first start: replaced when another one is given.
    #[serde(default)]
    pub bootstrap: bool,
}
