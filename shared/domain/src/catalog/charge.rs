//! Charges: how a plan prices one metric's usage.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Filter value that matches any value of its key (Lago's `__ALL_FILTER_VALUES__`).
pub const ALL_FILTER_VALUES: &str = "__ALL_FILTER_VALUES__";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeModel {
    Standard,
    Graduated,
    GraduatedPercentage,
    Package,
    Percentage,
    Volume,
    Dynamic,
}

impl ChargeModel {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "standard" => Self::Standard,
            "graduated" => Self::Graduated,
            "graduated_percentage" => Self::GraduatedPercentage,
            "package" => Self::Package,
            "percentage" => Self::Percentage,
            "volume" => Self::Volume,
            "dynamic" => Self::Dynamic,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Graduated => "graduated",
            Self::GraduatedPercentage => "graduated_percentage",
            Self::Package => "package",
            Self::Percentage => "percentage",
            Self::Volume => "volume",
            Self::Dynamic => "dynamic",
        }
    }
}

/// A tier of a graduated charge. Bounds are whole units; `to_value: None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraduatedRange {
    pub from_value: Decimal,
    pub to_value: Option<Decimal>,
    pub per_unit_amount: Decimal,
    pub flat_amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraduatedPercentageRange {
    pub from_value: Decimal,
    pub to_value: Option<Decimal>,
    /// Percent of the units in the tier (`"1.5"` = 1.5 %).
    pub rate: Decimal,
    pub flat_amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRange {
    pub from_value: Decimal,
    pub to_value: Option<Decimal>,
    pub per_unit_amount: Decimal,
    pub flat_amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PercentageProperties {
    /// Percent of the units (`"1.5"` = 1.5 %).
    pub rate: Decimal,
    /// Added per paying event.
    pub fixed_amount: Option<Decimal>,
    /// The first N events of the period are free (their units, and their fixed amount).
    pub free_units_per_events: Option<u64>,
    /// Units free per period.
    pub free_units_per_total_aggregation: Option<Decimal>,
    pub per_transaction_min_amount: Option<Decimal>,
    pub per_transaction_max_amount: Option<Decimal>,
}

impl PercentageProperties {
    pub fn has_transaction_bounds(&self) -> bool {
        self.per_transaction_min_amount.is_some() || self.per_transaction_max_amount.is_some()
    }

    pub(crate) fn free_events(&self) -> usize {
        self.free_units_per_events.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn free_units(&self) -> Decimal {
        self.free_units_per_total_aggregation.unwrap_or(Decimal::ZERO)
    }

    /// Whether pricing needs the events one by one (free events, free units, or bounds).
    pub fn needs_event_series(&self) -> bool {
        self.free_events() > 0 || !self.free_units().is_zero() || self.has_transaction_bounds()
    }
}

/// Money values in major units of the plan's currency, exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingProperties {
    Standard {
        amount: Decimal,
    },
    Graduated {
        ranges: Vec<GraduatedRange>,
    },
    GraduatedPercentage {
        ranges: Vec<GraduatedPercentageRange>,
    },
    Package {
        amount: Decimal,
        package_size: Decimal,
        free_units: Decimal,
    },
    Percentage(PercentageProperties),
    Volume {
        ranges: Vec<VolumeRange>,
    },
    /// The price comes with each event (`precise_total_amount_cents`).
    Dynamic,
}

impl PricingProperties {
    pub fn model(&self) -> ChargeModel {
        match self {
            Self::Standard { .. } => ChargeModel::Standard,
            Self::Graduated { .. } => ChargeModel::Graduated,
            Self::GraduatedPercentage { .. } => ChargeModel::GraduatedPercentage,
            Self::Package { .. } => ChargeModel::Package,
            Self::Percentage(_) => ChargeModel::Percentage,
            Self::Volume { .. } => ChargeModel::Volume,
            Self::Dynamic => ChargeModel::Dynamic,
        }
    }
}

/// A filter of a charge: events whose properties match `values` are priced with `properties`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeFilter {
    /// Metric filter key → accepted values (or [`ALL_FILTER_VALUES`]).
    pub values: BTreeMap<String, Vec<String>>,
    pub properties: PricingProperties,
    pub invoice_display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub code: String,
    pub metric_code: String,
    pub properties: PricingProperties,
    /// Event properties whose distinct value combinations are priced separately.
    pub pricing_group_keys: Vec<String>,
    pub filters: Vec<ChargeFilter>,
    pub pay_in_advance: bool,
    pub invoiceable: bool,
    pub prorated: bool,
    /// Minimum per period, in minor units; a true-up fee tops usage up to it.
    pub min_amount_cents: i64,
    pub tax_codes: Vec<String>,
}

impl Charge {
    /// A plain in-arrears charge with no filters, groups or minimum.
    pub fn new(code: &str, metric_code: &str, properties: PricingProperties) -> Self {
        Self {
            code: code.to_owned(),
            metric_code: metric_code.to_owned(),
            properties,
            pricing_group_keys: Vec::new(),
            filters: Vec::new(),
            pay_in_advance: false,
            invoiceable: true,
            prorated: false,
            min_amount_cents: 0,
            tax_codes: Vec::new(),
        }
    }

    pub fn model(&self) -> ChargeModel {
        self.properties.model()
    }
}
