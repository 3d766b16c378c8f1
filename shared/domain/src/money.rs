//! Currencies and the one place where amounts are rounded to minor units.
//!
//! Inside tally every amount is an exact `Decimal` in major units (`12.345` USD). It becomes an
//! integer count of minor units (`1235` cents) only when a fee is materialised, through
//! [`Currency::to_minor_units`], rounding half-up (ties away from zero), as Lago's money-rails does.

use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;
use std::str::FromStr;

/// An ISO 4217 currency from the list Lago's API accepts, with its minor-unit exponent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    exponent: u32,
}

/// Every currency in Lago's `Currency` enum (OpenAPI v1.51.0), with its ISO 4217 exponent.
/// Withdrawn codes Lago still lists (HRK, MRO, SLL, STD) keep their last ISO exponent.
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HRK", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KRW", 0),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRO", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLL", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("STD", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown currency code {0:?}")]
pub struct UnknownCurrency(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount {0} does not fit in 64-bit minor units")]
pub struct AmountOutOfRange(pub Decimal);

impl Currency {
    pub const USD: Currency = Currency { code: "USD", exponent: 2 };
    pub const EUR: Currency = Currency { code: "EUR", exponent: 2 };
    pub const JPY: Currency = Currency { code: "JPY", exponent: 0 };

    /// All currencies Lago accepts, in code order.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|&(code, exponent)| Currency { code, exponent })
    }

    pub fn code(self) -> &'static str {
        self.code
    }

    /// Number of decimal places of the minor unit (2 for USD, 0 for JPY, 4 for CLF).
    pub fn exponent(self) -> u32 {
        self.exponent
    }

    /// Minor units per major unit (100 for USD).
    pub fn subunit_to_unit(self) -> Decimal {
        Decimal::from(10i64.pow(self.exponent))
    }

    /// Rounds an exact major-unit amount to this currency's precision, half-up (ties away
    /// from zero). This is the only rounding of money in tally.
    pub fn round(self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.exponent, RoundingStrategy::MidpointAwayFromZero)
    }

    /// Materialises an exact major-unit amount as integer minor units (`12.345` USD → `1235`).
    pub fn to_minor_units(self, amount: Decimal) -> Result<i64, AmountOutOfRange> {
        let minor = self.round(amount).checked_mul(self.subunit_to_unit()).ok_or(AmountOutOfRange(amount))?;
        i64::try_from(minor).map_err(|_| AmountOutOfRange(amount))
    }

    /// The exact major-unit value of integer minor units (`1235` → `12.35` USD).
    pub fn from_minor_units(self, minor_units: i64) -> Decimal {
        Decimal::new(minor_units, self.exponent)
    }

    /// Major units expressed exactly in (possibly fractional) minor units, without rounding:
    /// Lago's `precise_amount_cents`.
    pub fn to_precise_minor_units(self, amount: Decimal) -> Result<Decimal, AmountOutOfRange> {
        amount.checked_mul(self.subunit_to_unit()).ok_or(AmountOutOfRange(amount))
    }
}

impl FromStr for Currency {
    type Err = UnknownCurrency;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        CURRENCIES
            .binary_search_by(|(known, _)| known.cmp(&code))
            .map(|index| {
                let (code, exponent) = CURRENCIES[index];
                Currency { code, exponent }
            })
            .map_err(|_| UnknownCurrency(code.to_owned()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn table_is_sorted_so_lookup_by_binary_search_works() {
        assert!(CURRENCIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn every_currency_in_lagos_spec_is_known() {
        // The `Currency` enum of ../shared/lago-openapi/openapi.yaml lists 138 codes.
        assert_eq!(CURRENCIES.len(), 138);
        for code in ["USD", "EUR", "JPY", "CLF", "HRK", "MRO", "XPF", "ZMW"] {
            assert!(code.parse::<Currency>().is_ok(), "{code}");
        }
        assert_eq!("XXX".parse::<Currency>(), Err(UnknownCurrency("XXX".into())));
        assert!("usd".parse::<Currency>().is_err(), "codes are upper case, as in Lago");
    }

    #[test]
    fn rounds_half_up_to_the_currency_exponent() {
        let usd = Currency::USD;
        assert_eq!(usd.to_minor_units(dec!(12.345)), Ok(1235)); // tie → up
        assert_eq!(usd.to_minor_units(dec!(12.3449)), Ok(1234));
        assert_eq!(usd.to_minor_units(dec!(-12.345)), Ok(-1235)); // tie → away from zero
        assert_eq!(usd.to_minor_units(dec!(0.005)), Ok(1));
        assert_eq!(usd.to_minor_units(dec!(0.0049999)), Ok(0));
        let jpy = Currency::JPY;
        assert_eq!(jpy.to_minor_units(dec!(100.5)), Ok(101)); // 0-decimal currency
        let clf: Currency = "CLF".parse().unwrap();
        assert_eq!(clf.to_minor_units(dec!(1.23456)), Ok(12346)); // 4 decimals
    }

    #[test]
    fn minor_units_round_trip() {
        assert_eq!(Currency::USD.from_minor_units(1235), dec!(12.35));
        assert_eq!(Currency::JPY.from_minor_units(1235), dec!(1235));
        assert_eq!(Currency::USD.to_precise_minor_units(dec!(0.123456)).unwrap(), dec!(12.3456));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert!(Currency::USD.to_minor_units(Decimal::MAX).is_err());
    }
}
