//! Charge models: from a period's units to an exact amount in major units.

mod charge_usage;
mod filters;
mod package;
mod percentage;
mod tiers;

pub use charge_usage::{ChargeUsage, PricedUsage};
pub use filters::{matching_filter, pricing_group};
pub use package::package;
pub use percentage::{percentage, PercentageSeries};
pub use tiers::{graduated, graduated_percentage, volume};

use crate::catalog::PricingProperties;
use crate::checked::{Checked, Overflow};
use crate::money::Currency;
use rust_decimal::Decimal;

/// The exact amount (major units, unrounded) a charge model asks for the period's usage.
pub fn amount(
    properties: &PricingProperties,
    units: Decimal,
    events_count: u64,
    series: Option<&PercentageSeries>,
    dynamic_amount_cents: Decimal,
    currency: Currency,
) -> Result<Decimal, Overflow> {
    match properties {
        PricingProperties::Standard { amount } => units.times(*amount),
        PricingProperties::Graduated { ranges } => graduated(units, ranges),
        PricingProperties::GraduatedPercentage { ranges } => graduated_percentage(units, ranges),
        PricingProperties::Package { amount, package_size, free_units } => {
            package(units, *amount, *package_size, *free_units)
        }
        PricingProperties::Percentage(p) => percentage(p, units, events_count, series),
        PricingProperties::Volume { ranges } => volume(units, ranges),
        PricingProperties::Dynamic => dynamic_amount_cents.divided_by(currency.subunit_to_unit()),
    }
}

/// Fee of one pay-in-advance event: the period's amount with the event minus without it.
/// A drop (an event that lowers the amount, e.g. a unique-count removal) charges nothing.
pub fn pay_in_advance_fee(amount_without_event: Decimal, amount_with_event: Decimal) -> Result<Decimal, Overflow> {
    Ok(amount_with_event.minus(amount_without_event)?.max(Decimal::ZERO))
}

/// True-up of a charge's minimum: `min_amount × billed_days / period_days − used`, when positive.
/// The minimum is prorated for a partial period. Amounts in major units.
pub fn minimum_true_up(
    min_amount: Decimal,
    billed_days: u32,
    period_days: u32,
    used: Decimal,
) -> Result<Decimal, Overflow> {
    if period_days == 0 || min_amount <= Decimal::ZERO {
        return Ok(Decimal::ZERO);
    }
    let prorated_min = min_amount.times(Decimal::from(billed_days))?.divided_by(Decimal::from(period_days))?;
    Ok(prorated_min.minus(used)?.max(Decimal::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn standard_and_dynamic() {
        let standard = PricingProperties::Standard { amount: dec!(0.05) };
        assert_eq!(amount(&standard, dec!(1234), 10, None, dec!(0), Currency::USD).unwrap(), dec!(61.70)); // 1234 × 0.05
                                                                                                           // dynamic: Σ precise_total_amount_cents = 1234.5 cents → 12.345 USD
        assert_eq!(
            amount(&PricingProperties::Dynamic, dec!(3), 3, None, dec!(1234.5), Currency::USD).unwrap(),
            dec!(12.345)
        );
        assert_eq!(
            amount(&PricingProperties::Dynamic, dec!(3), 3, None, dec!(1234), Currency::JPY).unwrap(),
            dec!(1234)
        );
    }

    #[test]
    fn pay_in_advance_fee_is_the_difference_of_totals() {
        // graduated: 0–10 free, 11+ at 1. With 10 events: 0; the 11th event costs 1.
        let ranges = vec![
            crate::catalog::GraduatedRange {
                from_value: dec!(0),
                to_value: Some(dec!(10)),
                per_unit_amount: dec!(0),
                flat_amount: dec!(0),
            },
            crate::catalog::GraduatedRange {
                from_value: dec!(11),
                to_value: None,
                per_unit_amount: dec!(1),
                flat_amount: dec!(0),
            },
        ];
        let p = PricingProperties::Graduated { ranges };
        let before = amount(&p, dec!(10), 10, None, dec!(0), Currency::USD).unwrap();
        let after = amount(&p, dec!(11), 11, None, dec!(0), Currency::USD).unwrap();
        assert_eq!(pay_in_advance_fee(before, after).unwrap(), dec!(1));
        assert_eq!(pay_in_advance_fee(after, before).unwrap(), dec!(0));
    }

    #[test]
    fn minimum_true_up_is_prorated() {
        // min 100 over a 30-day period, billed 15 days, used 20: 100 × 15/30 − 20 = 30
        assert_eq!(minimum_true_up(dec!(100), 15, 30, dec!(20)).unwrap(), dec!(30));
        assert_eq!(minimum_true_up(dec!(100), 30, 30, dec!(120)).unwrap(), dec!(0));
        // above the minimum
    }
}
