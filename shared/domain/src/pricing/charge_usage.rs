//! The usage of one charge (or one of its filters or groups) over one period.

use super::percentage::PercentageSeries;
use crate::aggregation::{AggregationState, Measurement, Stamped, StateError, Window};
use crate::catalog::{BillableMetric, PricingProperties};
use crate::checked::{Checked, Overflow};
use crate::money::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Mergeable usage of a charge: the metric's aggregation, plus what some charge models need
/// beyond it (the event series of a percentage charge, the event prices of a dynamic one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeUsage {
    pub aggregation: AggregationState,
    /// Serialized always (no `skip_serializing_if`): states are also stored in binary formats
    /// that need every field.
    #[serde(default)]
    pub series: Option<PercentageSeries>,
    #[serde(default)]
    pub dynamic_amount_cents: Decimal,
}

/// A period's usage priced: exact amount in major units, before rounding to the currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedUsage {
    pub units: Decimal,
    pub events_count: u64,
    pub amount: Decimal,
}

impl ChargeUsage {
    pub fn new(metric: &BillableMetric, properties: &PricingProperties, window: Window) -> Self {
        let series = match properties {
            PricingProperties::Percentage(p) if p.needs_event_series() => Some(PercentageSeries::default()),
            _ => None,
        };
        Self {
            aggregation: AggregationState::new(metric.aggregation, window),
            series,
            dynamic_amount_cents: Decimal::ZERO,
        }
    }

    /// Folds one event in. On an error (a total out of range) the usage may be partly
    /// updated: callers drop it (a refused batch writes nothing).
    #[inline]
    pub fn fold(&mut self, properties: &PricingProperties, m: &Measurement) -> Result<(), StateError> {
        let dynamic = self.dynamic_amount_cents.plus(m.precise_total_amount_cents)?;
        self.aggregation.fold(m)?;
        self.dynamic_amount_cents = dynamic;
        if let (Some(series), PricingProperties::Percentage(p)) = (&mut self.series, properties) {
            series.fold(p, Stamped { at_ms: m.at_ms, value: m.value })?;
        }
        Ok(())
    }

    /// Merges another usage of the same charge in. Same caveat on errors as [`Self::fold`].
    pub fn merge(&mut self, properties: &PricingProperties, other: &ChargeUsage) -> Result<(), StateError> {
        let dynamic = self.dynamic_amount_cents.plus(other.dynamic_amount_cents)?;
        self.aggregation.merge(&other.aggregation)?;
        self.dynamic_amount_cents = dynamic;
        if let (Some(series), Some(theirs), PricingProperties::Percentage(p)) =
            (&mut self.series, &other.series, properties)
        {
            series.merge(p, theirs)?;
        }
        Ok(())
    }

    /// Units (after the metric's rounding) and amount for the period. `history`: states of
    /// earlier periods when the metric is recurring, else empty.
    pub fn price(
        &self,
        metric: &BillableMetric,
        properties: &PricingProperties,
        history: &[&AggregationState],
        currency: Currency,
    ) -> Result<PricedUsage, Overflow> {
        let units = metric.round_units(self.aggregation.units(history)?)?;
        let events_count = self.aggregation.events_count();
        let amount =
            super::amount(properties, units, events_count, self.series.as_ref(), self.dynamic_amount_cents, currency)?;
        Ok(PricedUsage { units, events_count, amount })
    }
}
