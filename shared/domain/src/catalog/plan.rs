use super::Charge;
use crate::money::Currency;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Weekly,
    Monthly,
    Quarterly,
    Semiannual,
    Yearly,
}

impl Interval {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "weekly" => Self::Weekly,
            "monthly" => Self::Monthly,
            "quarterly" => Self::Quarterly,
            "semiannual" => Self::Semiannual,
            "yearly" => Self::Yearly,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Quarterly => "quarterly",
            Self::Semiannual => "semiannual",
            Self::Yearly => "yearly",
        }
    }

    /// Length in months; `None` for weekly.
    pub fn months(self) -> Option<u32> {
        match self {
            Self::Weekly => None,
            Self::Monthly => Some(1),
            Self::Quarterly => Some(3),
            Self::Semiannual => Some(6),
            Self::Yearly => Some(12),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub code: String,
    pub interval: Interval,
    /// Subscription fee per interval, in minor units.
    pub amount_cents: i64,
    pub currency: Currency,
    /// Subscription fee billed at the start of the period (else at its end).
    pub pay_in_advance: bool,
    /// Trial length in days; the subscription fee is free during it.
    pub trial_period_days: u32,
    /// For yearly and semiannual plans: bill usage charges every month.
    pub bill_charges_monthly: bool,
    pub charges: Vec<Charge>,
    pub tax_codes: Vec<String>,
}
