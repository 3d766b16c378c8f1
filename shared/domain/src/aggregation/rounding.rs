use crate::catalog::{RoundingFunction, UnitsRounding};
use crate::checked::{Checked, Overflow};
use rust_decimal::{Decimal, RoundingStrategy};

/// Lago's `rounding_function`/`rounding_precision`, applied to a period's aggregated units.
/// `round` is half-up (ties away from zero); a negative precision rounds to tens, hundreds…
pub fn round_units(units: Decimal, rounding: UnitsRounding) -> Result<Decimal, Overflow> {
    let strategy = match rounding.function {
        RoundingFunction::Round => RoundingStrategy::MidpointAwayFromZero,
        RoundingFunction::Ceil => RoundingStrategy::ToPositiveInfinity,
        RoundingFunction::Floor => RoundingStrategy::ToNegativeInfinity,
    };
    if rounding.precision >= 0 {
        let places = u32::try_from(rounding.precision).unwrap_or(0).min(28);
        return Ok(units.round_dp_with_strategy(places, strategy));
    }
    // Negative precision: scale down, round to an integer, scale back up.
    let factor = Decimal::from(10i64.pow(rounding.precision.unsigned_abs().min(18)));
    units.divided_by(factor)?.round_dp_with_strategy(0, strategy).times(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn r(function: RoundingFunction, precision: i32, units: Decimal) -> Decimal {
        round_units(units, UnitsRounding { function, precision }).unwrap()
    }

    #[test]
    fn rounding_functions_on_period_units() {
        use RoundingFunction::*;
        assert_eq!(r(Round, 0, dec!(2.5)), dec!(3));
        assert_eq!(r(Round, 0, dec!(2.4999)), dec!(2));
        assert_eq!(r(Ceil, 0, dec!(2.0001)), dec!(3));
        assert_eq!(r(Floor, 0, dec!(2.9999)), dec!(2));
        assert_eq!(r(Round, 2, dec!(1.235)), dec!(1.24));
        assert_eq!(r(Ceil, 1, dec!(1.21)), dec!(1.3));
        assert_eq!(r(Floor, -2, dec!(1299)), dec!(1200)); // to hundreds
        assert_eq!(r(Round, -1, dec!(15)), dec!(20));
    }
}
