use rust_decimal::Decimal;

/// Whole packages of `package_size` units after `free_units`: `ceil((units − free) / size) × amount`.
pub fn package(units: Decimal, amount: Decimal, package_size: Decimal, free_units: Decimal) -> Decimal {
    let paid_units = units - free_units;
    if paid_units <= Decimal::ZERO || package_size <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (paid_units / package_size).ceil() * amount
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn whole_packages_after_free_units() {
        // 10 per 1000 units, first 100 free
        assert_eq!(package(dec!(100), dec!(10), dec!(1000), dec!(100)), dec!(0)); // all free
        assert_eq!(package(dec!(101), dec!(10), dec!(1000), dec!(100)), dec!(10)); // 1 unit → 1 package
        assert_eq!(package(dec!(1100), dec!(10), dec!(1000), dec!(100)), dec!(10)); // 1000 → 1 package
        assert_eq!(package(dec!(1101), dec!(10), dec!(1000), dec!(100)), dec!(20)); // 1001 → 2 packages
        assert_eq!(package(dec!(0), dec!(10), dec!(1000), dec!(0)), dec!(0));
    }
}
