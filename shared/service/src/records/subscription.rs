use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Pending,
    Active,
    Terminated,
    Canceled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Terminated => "terminated",
            Self::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub lago_id: String,
    pub external_id: String,
    pub external_customer_id: String,
    pub lago_customer_id: String,
    pub plan_code: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: SubscriptionStatus,
    pub billing_time: String,
    /// The customer's applicable timezone, copied here because every event's period needs it.
    #[serde(default = "utc")]
    pub timezone: String,
    pub plan_id: String,
    pub subscription_at: DateTime<Utc>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ending_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub terminated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub canceled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub previous_plan_code: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

impl SubscriptionRecord {
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Whether an event at `at` belongs to this subscription: from the start of its first day
    /// (in its timezone) until its termination.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        // From the start instant: an event earlier the same day is not in the subscription
        // (Lago bills usage from `started_at`).
        let Some(started_at) = self.started_at else { return false };
        started_at <= at && self.terminated_at.is_none_or(|t| at < t)
    }

    pub fn billing_time(&self) -> tally_domain::periods::BillingTime {
        tally_domain::periods::BillingTime::parse(&self.billing_time).unwrap_or_default()
    }
}

/// Every subscription ever created under one `external_id`, oldest first. At most one is
/// active or pending. Ingestion reads this one item to attribute an event, and guards its
/// writes with its version, so a subscription created meanwhile is never missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SubscriptionHistory {
    pub versions: Vec<SubscriptionRecord>,
}

impl SubscriptionHistory {
    /// The active or pending subscription, if any.
    pub fn current(&self) -> Option<&SubscriptionRecord> {
        self.versions
            .iter()
            .rev()
            .find(|s| matches!(s.status, SubscriptionStatus::Active | SubscriptionStatus::Pending))
    }

    /// The subscription an event at `at` belongs to.
    pub fn covering(&self, at: DateTime<Utc>) -> Option<&SubscriptionRecord> {
        self.versions.iter().rev().find(|s| s.covers(at))
    }

    /// The newest subscription, whatever its status.
    pub fn latest(&self) -> Option<&SubscriptionRecord> {
        self.versions.last()
    }
}
