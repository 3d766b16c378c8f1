use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Finalized,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Finalized => "finalized",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeeRecord {
    pub lago_id: String,
    /// `subscription` or `charge`.
    pub fee_type: String,
    #[serde(default)]
    pub lago_charge_id: Option<String>,
    #[serde(default)]
    pub lago_charge_filter_id: Option<String>,
    #[serde(default)]
    pub charge_code: Option<String>,
    #[serde(default)]
    pub charge_model: Option<String>,
    #[serde(default)]
    pub billable_metric_code: Option<String>,
    #[serde(default)]
    pub billable_metric_name: Option<String>,
    #[serde(default)]
    pub invoice_display_name: Option<String>,
    #[serde(default)]
    pub filter_invoice_display_name: Option<String>,
    #[serde(default)]
    pub filter_values: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub grouped_by: BTreeMap<String, Option<String>>,
    #[serde(default)]
    pub true_up: bool,
    pub amount_cents: i64,
    pub precise_amount_cents: Decimal,
    pub precise_coupons_amount_cents: Decimal,
    pub taxes_amount_cents: i64,
    pub taxes_precise_amount_cents: Decimal,
    pub taxes_rate: Decimal,
    pub units: Decimal,
    pub events_count: u64,
    pub from_datetime: DateTime<Utc>,
    pub to_datetime: DateTime<Utc>,
    #[serde(default)]
    pub applied_taxes: Vec<AppliedTaxRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedTaxRecord {
    pub tax_code: String,
    pub tax_name: String,
    pub tax_rate: Decimal,
    pub amount_cents: i64,
    /// Invoice level: Σ of the fee bases the tax applied to.
    #[serde(default)]
    pub base_amount_cents: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceSubscriptionRecord {
    pub lago_id: String,
    pub external_id: String,
    pub plan_code: String,
    #[serde(default)]
    pub plan_id: String,
    pub from_datetime: DateTime<Utc>,
    pub to_datetime: DateTime<Utc>,
    pub charges_from_datetime: DateTime<Utc>,
    pub charges_to_datetime: DateTime<Utc>,
    /// Why this invoice: `subscription_starting`, `subscription_periodic` or `subscription_terminating`.
    pub invoicing_reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceRecord {
    pub lago_id: String,
    /// Idempotency key: one invoice per subscription and billing boundary.
    pub billing_key: String,
    pub sequential_id: u64,
    pub number: String,
    pub status: InvoiceStatus,
    pub issuing_date: NaiveDate,
    pub payment_due_date: NaiveDate,
    pub net_payment_term: u32,
    /// When a draft is finalized by itself (issuing date + grace period).
    #[serde(default)]
    pub finalize_at: Option<DateTime<Utc>>,
    pub currency: String,
    pub lago_customer_id: String,
    pub external_customer_id: String,
    pub subscription: InvoiceSubscriptionRecord,
    pub fees: Vec<FeeRecord>,
    pub applied_taxes: Vec<AppliedTaxRecord>,
    pub fees_amount_cents: i64,
    pub coupons_amount_cents: i64,
    pub credit_notes_amount_cents: i64,
    pub prepaid_credit_amount_cents: i64,
    pub progressive_billing_credit_amount_cents: i64,
    pub sub_total_excluding_taxes_amount_cents: i64,
    pub taxes_amount_cents: i64,
    pub sub_total_including_taxes_amount_cents: i64,
    pub total_amount_cents: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub finalized_at: Option<DateTime<Utc>>,
}
