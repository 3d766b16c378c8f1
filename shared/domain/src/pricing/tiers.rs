//! Tiered models: graduated (each tier prices its own units), graduated percentage, and volume
//! (the tier holding the total prices every unit).

use crate::catalog::{GraduatedPercentageRange, GraduatedRange, VolumeRange};
use crate::checked::{Checked, Overflow};
use rust_decimal::Decimal;

/// Units of `total` that fall in a tier whose units start above `lower` (the previous tier's
/// `to_value`, or 0) and end at `to`. Works for Lago's two writings of bounds, `0-100, 101-200`
/// and `0-100, 100-200`: both mean "units 101 to 200 are in the second tier".
fn units_in_tier(total: Decimal, lower: Decimal, to: Option<Decimal>) -> Result<Decimal, Overflow> {
    let upper = to.map_or(total, |to| total.min(to));
    Ok(upper.minus(lower)?.max(Decimal::ZERO))
}

/// Generic tier walk: `price(units_in_tier, index)`; a tier's flat amount is due once usage enters it.
fn walk<F>(total: Decimal, bounds: &[(Option<Decimal>, Decimal)], mut price: F) -> Result<Decimal, Overflow>
where
    F: FnMut(usize, Decimal) -> Result<Decimal, Overflow>,
{
    if total <= Decimal::ZERO {
        return Ok(Decimal::ZERO);
    }
    let mut amount = Decimal::ZERO;
    let mut lower = Decimal::ZERO;
    for (index, &(to, flat_amount)) in bounds.iter().enumerate() {
        if index > 0 && total <= lower {
            break;
        }
        amount = amount.plus(flat_amount.plus(price(index, units_in_tier(total, lower, to)?)?)?)?;
        match to {
            Some(to) => lower = to,
            None => break,
        }
    }
    Ok(amount)
}

pub fn graduated(units: Decimal, ranges: &[GraduatedRange]) -> Result<Decimal, Overflow> {
    let bounds: Vec<_> = ranges.iter().map(|r| (r.to_value, r.flat_amount)).collect();
    walk(units, &bounds, |i, tier_units| tier_units.times(ranges[i].per_unit_amount))
}

pub fn graduated_percentage(units: Decimal, ranges: &[GraduatedPercentageRange]) -> Result<Decimal, Overflow> {
    let bounds: Vec<_> = ranges.iter().map(|r| (r.to_value, r.flat_amount)).collect();
    walk(units, &bounds, |i, tier_units| tier_units.times(ranges[i].rate)?.divided_by(Decimal::ONE_HUNDRED))
}

/// Every unit at the price of the one tier that holds the total (`from ≤ ceil(units) ≤ …`,
/// `units ≤ to`), plus that tier's flat amount. No usage, no fee.
pub fn volume(units: Decimal, ranges: &[VolumeRange]) -> Result<Decimal, Overflow> {
    if units <= Decimal::ZERO {
        return Ok(Decimal::ZERO);
    }
    let ceiled = units.ceil();
    match ranges.iter().find(|r| r.from_value <= ceiled && r.to_value.is_none_or(|to| units <= to)).or(ranges.last()) {
        Some(r) => units.times(r.per_unit_amount)?.plus(r.flat_amount),
        None => Ok(Decimal::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn g(from: Decimal, to: Option<Decimal>, per_unit: Decimal, flat: Decimal) -> GraduatedRange {
        GraduatedRange { from_value: from, to_value: to, per_unit_amount: per_unit, flat_amount: flat }
    }

    fn v(from: Decimal, to: Option<Decimal>, per_unit: Decimal, flat: Decimal) -> VolumeRange {
        VolumeRange { from_value: from, to_value: to, per_unit_amount: per_unit, flat_amount: flat }
    }

    #[test]
    fn graduated_prices_each_tier_and_adds_flat_fees_of_tiers_reached() {
        // 0–100 at 0.10 + flat 0; 101–200 at 0.05 + flat 5; 201+ at 0.01 + flat 10
        let ranges = [
            g(dec!(0), Some(dec!(100)), dec!(0.10), dec!(0)),
            g(dec!(101), Some(dec!(200)), dec!(0.05), dec!(5)),
            g(dec!(201), None, dec!(0.01), dec!(10)),
        ];
        assert_eq!(graduated(dec!(0), &ranges).unwrap(), dec!(0)); // no usage, no flat fee
        assert_eq!(graduated(dec!(50), &ranges).unwrap(), dec!(5)); // 50 × 0.10
        assert_eq!(graduated(dec!(100), &ranges).unwrap(), dec!(10)); // 100 × 0.10, second tier not entered
        assert_eq!(graduated(dec!(150), &ranges).unwrap(), dec!(17.5)); // 10 + (5 + 50 × 0.05 = 7.5)
        assert_eq!(graduated(dec!(250), &ranges).unwrap(), dec!(30.5)); // 10 + (5 + 100 × 0.05) + (10 + 50 × 0.01)
        assert_eq!(graduated(dec!(100.5), &ranges).unwrap(), dec!(15.025)); // 10 + 5 + 0.5 × 0.05
    }

    #[test]
    fn graduated_accepts_adjacent_bounds() {
        // 0–100, 100–∞ means the same as 0–100, 101–∞
        let adjacent = [g(dec!(0), Some(dec!(100)), dec!(1), dec!(0)), g(dec!(100), None, dec!(2), dec!(0))];
        assert_eq!(graduated(dec!(150), &adjacent).unwrap(), dec!(200)); // 100 × 1 + 50 × 2
    }

    #[test]
    fn graduated_first_tier_flat_fee_is_due_as_soon_as_there_is_usage() {
        let ranges = [g(dec!(0), Some(dec!(10)), dec!(0), dec!(20)), g(dec!(11), None, dec!(1), dec!(0))];
        assert_eq!(graduated(dec!(0), &ranges).unwrap(), dec!(0));
        assert_eq!(graduated(dec!(1), &ranges).unwrap(), dec!(20));
        assert_eq!(graduated(dec!(12), &ranges).unwrap(), dec!(22)); // 20 + 2 × 1
    }

    #[test]
    fn graduated_percentage_lagos_example() {
        // 0–1000 at 1 % + flat 0.5; 1001+ at 0.5 % + flat 1. Units 1500:
        // 1000 × 1 % + 0.5 = 10.5; 500 × 0.5 % + 1 = 3.5 → 14
        let ranges = [
            GraduatedPercentageRange {
                from_value: dec!(0),
                to_value: Some(dec!(1000)),
                rate: dec!(1),
                flat_amount: dec!(0.5),
            },
            GraduatedPercentageRange { from_value: dec!(1001), to_value: None, rate: dec!(0.5), flat_amount: dec!(1) },
        ];
        assert_eq!(graduated_percentage(dec!(1500), &ranges).unwrap(), dec!(14));
        assert_eq!(graduated_percentage(dec!(0), &ranges).unwrap(), dec!(0));
    }

    #[test]
    fn volume_prices_all_units_at_the_tier_of_the_total() {
        // 0–100 at 2 + flat 1; 101–200 at 1.5 + flat 2; 201+ at 1 + flat 3
        let ranges = [
            v(dec!(0), Some(dec!(100)), dec!(2), dec!(1)),
            v(dec!(101), Some(dec!(200)), dec!(1.5), dec!(2)),
            v(dec!(201), None, dec!(1), dec!(3)),
        ];
        assert_eq!(volume(dec!(0), &ranges).unwrap(), dec!(0));
        assert_eq!(volume(dec!(100), &ranges).unwrap(), dec!(201)); // 100 × 2 + 1
        assert_eq!(volume(dec!(150), &ranges).unwrap(), dec!(227)); // 150 × 1.5 + 2
        assert_eq!(volume(dec!(100.5), &ranges).unwrap(), dec!(152.75)); // ceil 101 → tier 2: 100.5 × 1.5 + 2
        assert_eq!(volume(dec!(1000), &ranges).unwrap(), dec!(1003)); // 1000 × 1 + 3
    }
}
