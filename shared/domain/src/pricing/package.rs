use crate::checked::{Checked, Overflow};
use rust_decimal::Decimal;

/// Whole packages of `package_size` units after `free_units`: `ceil((units − free) / size) × amount`.
pub fn package(
    units: Decimal,
    amount: Decimal,
    package_size: Decimal,
    free_units: Decimal,
) -> Result<Decimal, Overflow> {
    let paid_units = units.minus(free_units)?;
    if paid_units <= Decimal::ZERO || package_size <= Decimal::ZERO {
        return Ok(Decimal::ZERO);
    }
    paid_units.divided_by(package_size)?.ceil().times(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn whole_packages_after_free_units() {
        // 10 per 1000 units, first 100 free
        assert_eq!(package(dec!(100), dec!(10), dec!(1000), dec!(100)).unwrap(), dec!(0)); // all free
        assert_eq!(package(dec!(101), dec!(10), dec!(1000), dec!(100)).unwrap(), dec!(10)); // 1 unit → 1 package
        assert_eq!(package(dec!(1100), dec!(10), dec!(1000), dec!(100)).unwrap(), dec!(10)); // 1000 → 1 package
        assert_eq!(package(dec!(1101), dec!(10), dec!(1000), dec!(100)).unwrap(), dec!(20)); // 1001 → 2 packages
        assert_eq!(package(dec!(0), dec!(10), dec!(1000), dec!(0)).unwrap(), dec!(0));
    }
}
