use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaxRecord {
    pub lago_id: String,
    pub code: String,
    pub name: String,
    /// Percent.
    pub rate: Decimal,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub applied_to_organization: bool,
    pub created_at: DateTime<Utc>,
}

impl TaxRecord {
    pub fn to_domain(&self) -> tally_domain::catalog::Tax {
        tally_domain::catalog::Tax { code: self.code.clone(), name: self.name.clone(), rate: self.rate }
    }
}
