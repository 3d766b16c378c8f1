//! Percentage charges: a rate on the units, a fixed amount per event, free events and free units,
//! and per-transaction minimum and maximum amounts.
//!
//! Free events and free units depend on *which* events came first, and per-transaction bounds
//! price events one by one. [`PercentageSeries`] keeps that small: the shortest prefix of the
//! period's events (by time) that exhausts the free allowance, plus the running total of
//! everything after it, each event priced on its own. Late events that arrive out of order push
//! the last prefix event out, and it is priced then.

use crate::aggregation::Stamped;
use crate::catalog::PercentageProperties;
use crate::checked::{sum, Checked, Overflow};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PercentageSeries {
    /// Earliest events of the period, sorted by (time, value).
    prefix: Vec<Stamped>,
    /// Σ per-event amounts (rate + fixed amount, bounded) of the events after the prefix.
    beyond_amount: Decimal,
}

impl PercentageSeries {
    pub fn fold(&mut self, properties: &PercentageProperties, event: Stamped) -> Result<(), Overflow> {
        let at = self.prefix.partition_point(|e| *e <= event);
        self.prefix.insert(at, event);
        self.trim(properties)
    }

    pub fn merge(&mut self, properties: &PercentageProperties, other: &PercentageSeries) -> Result<(), Overflow> {
        self.beyond_amount = self.beyond_amount.plus(other.beyond_amount)?;
        for event in &other.prefix {
            self.fold(properties, *event)?;
        }
        Ok(())
    }

    /// Moves events past the shortest prefix that covers the free allowance into `beyond_amount`.
    fn trim(&mut self, properties: &PercentageProperties) -> Result<(), Overflow> {
        while let Some(last) = self.prefix.last().copied() {
            if !covers_allowance(&self.prefix[..self.prefix.len() - 1], properties)? {
                break;
            }
            self.beyond_amount = self.beyond_amount.plus(transaction_amount(properties, last.value)?)?;
            self.prefix.pop();
        }
        Ok(())
    }

    /// Amount with per-transaction bounds: the free allowance is used up by the first events, in
    /// time order; then each event pays `value × rate + fixed_amount`, bounded by min and max.
    pub(crate) fn bounded_amount(&self, properties: &PercentageProperties) -> Result<Decimal, Overflow> {
        let mut free_events = properties.free_events();
        let mut free_units = properties.free_units();
        let mut amount = Decimal::ZERO;
        for event in &self.prefix {
            let mut value = event.value;
            if free_events > 0 || free_units > Decimal::ZERO {
                free_events = free_events.saturating_sub(1);
                if free_units <= Decimal::ZERO {
                    continue; // a free event
                }
                if free_units > value {
                    free_units = free_units.minus(value)?;
                    continue; // fully covered by free units
                }
                value = value.minus(free_units)?;
                free_units = Decimal::ZERO;
                free_events = 0;
            }
            amount = amount.plus(transaction_amount(properties, value)?)?;
        }
        amount.plus(self.beyond_amount)
    }

    /// Cumulative totals of the first events: Lago's `running_total`, capped at the free events.
    fn running_total(&self, properties: &PercentageProperties) -> Result<Vec<Decimal>, Overflow> {
        let limit = match properties.free_events() {
            0 => self.prefix.len(),
            n => n.min(self.prefix.len()),
        };
        let totals: Vec<Decimal> = self.prefix[..limit]
            .iter()
            .scan(Decimal::ZERO, |sum, e| {
                *sum = sum.checked_add(e.value)?;
                Some(*sum)
            })
            .collect();
        // `scan` stops at the first sum out of range: the totals must all be there.
        if totals.len() == limit {
            Ok(totals)
        } else {
            Err(Overflow)
        }
    }

    /// Units given away: the first free events' units, capped by the free units per period.
    pub(crate) fn free_units_value(&self, properties: &PercentageProperties) -> Result<Decimal, Overflow> {
        let running = self.running_total(properties)?;
        let last = running.last().copied().unwrap_or(Decimal::ZERO);
        let cap = properties.free_units();
        Ok(if cap.is_zero() || last <= cap { last } else { cap })
    }

    /// Events that pay no fixed amount.
    pub(crate) fn free_events_count(&self, properties: &PercentageProperties) -> Result<u64, Overflow> {
        let cap = properties.free_units();
        let under_cap = self.running_total(properties)?.iter().filter(|&&total| total < cap).count();
        Ok([properties.free_events(), under_cap].into_iter().filter(|&n| n > 0).min().unwrap_or(0) as u64)
    }
}

/// Whether `prefix` already holds every event the free allowance can touch.
fn covers_allowance(prefix: &[Stamped], properties: &PercentageProperties) -> Result<bool, Overflow> {
    let free_events = properties.free_events();
    let free_units = properties.free_units();
    let enough_events = free_events == 0 || prefix.len() >= free_events;
    let enough_units = free_units.is_zero() || sum(prefix.iter().map(|e| e.value))? >= free_units;
    Ok(enough_events && enough_units)
}

fn transaction_amount(properties: &PercentageProperties, value: Decimal) -> Result<Decimal, Overflow> {
    let amount = value
        .times(properties.rate)?
        .divided_by(Decimal::ONE_HUNDRED)?
        .plus(properties.fixed_amount.unwrap_or(Decimal::ZERO))?;
    Ok(match (properties.per_transaction_min_amount, properties.per_transaction_max_amount) {
        (Some(min), _) if amount < min => min,
        (_, Some(max)) if amount > max => max,
        _ => amount,
    })
}

/// The percentage charge amount for a period.
pub fn percentage(
    properties: &PercentageProperties,
    units: Decimal,
    events_count: u64,
    series: Option<&PercentageSeries>,
) -> Result<Decimal, Overflow> {
    let empty = PercentageSeries::default();
    let series = series.unwrap_or(&empty);
    if properties.has_transaction_bounds() {
        return series.bounded_amount(properties);
    }
    if units.is_zero() {
        return Ok(Decimal::ZERO);
    }
    let free_units = series.free_units_value(properties)?;
    let rate_amount = if free_units > units {
        Decimal::ZERO
    } else {
        units.minus(free_units)?.times(properties.rate)?.divided_by(Decimal::ONE_HUNDRED)?
    };
    let free_events = series.free_events_count(properties)?;
    let fixed_amount = match properties.fixed_amount {
        Some(fixed) if free_events < events_count => Decimal::from(events_count - free_events).times(fixed)?,
        _ => Decimal::ZERO,
    };
    rate_amount.plus(fixed_amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn series_of(properties: &PercentageProperties, values: &[Decimal]) -> PercentageSeries {
        let mut series = PercentageSeries::default();
        for (i, v) in values.iter().enumerate() {
            series.fold(properties, Stamped { at_ms: i as i64, value: *v }).unwrap();
        }
        series
    }

    #[test]
    fn rate_and_fixed_amount() {
        // 1.5 % of 800 + 4 events × 0.3 = 12 + 1.2 = 13.2
        let p = PercentageProperties { rate: dec!(1.5), fixed_amount: Some(dec!(0.3)), ..Default::default() };
        assert_eq!(percentage(&p, dec!(800), 4, None).unwrap(), dec!(13.2));
        assert_eq!(percentage(&p, dec!(0), 0, None).unwrap(), dec!(0));
    }

    #[test]
    fn lagos_free_units_example() {
        // Lago's spec case: events 50, 100, 250, 400 (sum 800), rate 1 %, fixed 2,
        // 3 free events, 250 free units. Running total of the first 3 events: 50, 150, 400.
        // Free units = min(400, 250) = 250 → (800 − 250) × 1 % = 5.5.
        // Free events = min(3, #{50, 150 < 250} = 2) = 2 → (4 − 2) × 2 = 4. Total 9.5.
        let p = PercentageProperties {
            rate: dec!(1),
            fixed_amount: Some(dec!(2)),
            free_units_per_events: Some(3),
            free_units_per_total_aggregation: Some(dec!(250)),
            ..Default::default()
        };
        let series = series_of(&p, &[dec!(50), dec!(100), dec!(250), dec!(400)]);
        assert_eq!(percentage(&p, dec!(800), 4, Some(&series)).unwrap(), dec!(9.5));
    }

    #[test]
    fn free_events_only() {
        // 2 free events: units of the first two (10 + 20) are free: (100 − 30) × 10 % = 7; fixed (4 − 2) × 1 = 2
        let p = PercentageProperties {
            rate: dec!(10),
            fixed_amount: Some(dec!(1)),
            free_units_per_events: Some(2),
            ..Default::default()
        };
        let series = series_of(&p, &[dec!(10), dec!(20), dec!(30), dec!(40)]);
        assert_eq!(percentage(&p, dec!(100), 4, Some(&series)).unwrap(), dec!(9));
    }

    #[test]
    fn per_transaction_bounds_price_each_event() {
        // rate 10 %, fixed 0.5, min 1, max 3; events 2, 10, 40, 100:
        // 0.2 + 0.5 = 0.7 → 1 (min); 1 + 0.5 = 1.5; 4 + 0.5 = 4.5 → 3 (max); 10.5 → 3 → total 8.5
        let p = PercentageProperties {
            rate: dec!(10),
            fixed_amount: Some(dec!(0.5)),
            per_transaction_min_amount: Some(dec!(1)),
            per_transaction_max_amount: Some(dec!(3)),
            ..Default::default()
        };
        let series = series_of(&p, &[dec!(2), dec!(10), dec!(40), dec!(100)]);
        assert_eq!(percentage(&p, dec!(152), 4, Some(&series)).unwrap(), dec!(8.5));
    }

    #[test]
    fn per_transaction_bounds_after_free_units() {
        // 15 free units, rate 10 %, min 1: events 10 (free), 20 (5 free, 15 paid → 1.5), 5 (0.5 → min 1) = 2.5
        let p = PercentageProperties {
            rate: dec!(10),
            free_units_per_total_aggregation: Some(dec!(15)),
            per_transaction_min_amount: Some(dec!(1)),
            ..Default::default()
        };
        let series = series_of(&p, &[dec!(10), dec!(20), dec!(5)]);
        assert_eq!(percentage(&p, dec!(35), 3, Some(&series)).unwrap(), dec!(2.5));
    }

    #[test]
    fn late_events_reorder_the_free_prefix() {
        // 1 free event. Arrival order 50 (t=2), then 10 (t=1): the t=1 event is the free one.
        let p = PercentageProperties {
            rate: dec!(10),
            free_units_per_events: Some(1),
            per_transaction_min_amount: Some(dec!(0)),
            ..Default::default()
        };
        let mut series = PercentageSeries::default();
        series.fold(&p, Stamped { at_ms: 2, value: dec!(50) }).unwrap();
        series.fold(&p, Stamped { at_ms: 1, value: dec!(10) }).unwrap();
        // 50 × 10 % = 5 (the 10 is free)
        assert_eq!(percentage(&p, dec!(60), 2, Some(&series)).unwrap(), dec!(5));
    }
}
