//! Catalog objects as the domain uses them: typed, already validated (see [`crate::validation`]).

mod charge;
mod metric;
mod plan;
mod tax;

pub use charge::{
    Charge, ChargeFilter, ChargeModel, GraduatedPercentageRange, GraduatedRange, PercentageProperties,
    PricingProperties, VolumeRange, ALL_FILTER_VALUES,
};
pub use metric::{AggregationType, BillableMetric, MetricFilter, RoundingFunction, UnitsRounding};
pub use plan::{Interval, Plan};
pub use tax::Tax;
