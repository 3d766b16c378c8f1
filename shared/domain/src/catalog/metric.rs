//! Billable metrics: what is measured from each event, and how a period's events add up.

use crate::expression::Expression;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How a metric's events add up over a period (Lago's `aggregation_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationType {
    CountAgg,
    SumAgg,
    MaxAgg,
    UniqueCountAgg,
    LatestAgg,
    WeightedSumAgg,
}

impl AggregationType {
    /// Every aggregation, for code that must cover them all (tests, fuzzing).
    pub const ALL: [AggregationType; 6] =
        [Self::CountAgg, Self::SumAgg, Self::MaxAgg, Self::UniqueCountAgg, Self::LatestAgg, Self::WeightedSumAgg];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CountAgg => "count_agg",
            Self::SumAgg => "sum_agg",
            Self::MaxAgg => "max_agg",
            Self::UniqueCountAgg => "unique_count_agg",
            Self::LatestAgg => "latest_agg",
            Self::WeightedSumAgg => "weighted_sum_agg",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "count_agg" => Self::CountAgg,
            "sum_agg" => Self::SumAgg,
            "max_agg" => Self::MaxAgg,
            "unique_count_agg" => Self::UniqueCountAgg,
            "latest_agg" => Self::LatestAgg,
            "weighted_sum_agg" => Self::WeightedSumAgg,
            _ => return None,
        })
    }

    /// Whether usage may carry over from period to period (`recurring: true`).
    pub fn allows_recurring(self) -> bool {
        matches!(self, Self::SumAgg | Self::UniqueCountAgg | Self::WeightedSumAgg)
    }

    /// Whether a charge on this metric may be billed per event, in advance.
    pub fn allows_pay_in_advance(self) -> bool {
        matches!(self, Self::CountAgg | Self::SumAgg | Self::UniqueCountAgg)
    }

    pub fn needs_field_name(self) -> bool {
        !matches!(self, Self::CountAgg)
    }
}

/// Rounding applied to a period's aggregated units (never to single events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingFunction {
    Round,
    Ceil,
    Floor,
}

impl RoundingFunction {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "round" => Self::Round,
            "ceil" => Self::Ceil,
            "floor" => Self::Floor,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Round => "round",
            Self::Ceil => "ceil",
            Self::Floor => "floor",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitsRounding {
    pub function: RoundingFunction,
    /// Decimal places kept; negative rounds to tens, hundreds… as Lago allows.
    pub precision: i32,
}

/// A dimension a metric declares (`{key: "region", values: ["us", "eu"]}`); charges price subsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricFilter {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BillableMetric {
    pub code: String,
    pub aggregation: AggregationType,
    /// Event property that carries the value; `None` for `count_agg`.
    pub field_name: Option<String>,
    pub recurring: bool,
    pub rounding: Option<UnitsRounding>,
    /// Computed property: evaluated on each event, its result replaces `properties[field_name]`.
    pub expression: Option<Expression>,
    pub filters: Vec<MetricFilter>,
}

impl BillableMetric {
    /// A metric with no rounding, expression or filters (handy for tests and benchmarks).
    pub fn simple(code: &str, aggregation: AggregationType, field_name: Option<&str>) -> Self {
        Self {
            code: code.to_owned(),
            aggregation,
            field_name: field_name.map(str::to_owned),
            recurring: false,
            rounding: None,
            expression: None,
            filters: Vec::new(),
        }
    }

    /// Applies the metric's rounding to a period's aggregated units.
    pub fn round_units(&self, units: Decimal) -> Result<Decimal, crate::checked::Overflow> {
        match self.rounding {
            None => Ok(units),
            Some(rounding) => crate::aggregation::round_units(units, rounding),
        }
    }
}
