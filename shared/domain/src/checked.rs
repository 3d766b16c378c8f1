//! Checked decimal arithmetic for every amount and aggregation path.
//!
//! `rust_decimal`'s operators panic when a result leaves the 96-bit range (about 7.9 × 10²⁸).
//! A hostile or mistaken value (an event with `"gb": "79228162514264337593543950335"`) must be
//! refused, never crash the writer, so the domain adds, multiplies and divides through these
//! methods and reports [`Overflow`] instead.

use rust_decimal::Decimal;

/// A result that cannot be represented exactly (beyond `Decimal`'s range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value out of range")]
pub struct Overflow;

/// Checked `+ - × ÷` on decimals, chainable with `?`.
pub trait Checked: Sized {
    fn plus(self, other: Decimal) -> Result<Decimal, Overflow>;
    fn minus(self, other: Decimal) -> Result<Decimal, Overflow>;
    fn times(self, other: Decimal) -> Result<Decimal, Overflow>;
    /// Division; by zero is an error too (callers check for zero where it means something).
    fn divided_by(self, other: Decimal) -> Result<Decimal, Overflow>;
}

impl Checked for Decimal {
    #[inline]
    fn plus(self, other: Decimal) -> Result<Decimal, Overflow> {
        self.checked_add(other).ok_or(Overflow)
    }
    #[inline]
    fn minus(self, other: Decimal) -> Result<Decimal, Overflow> {
        self.checked_sub(other).ok_or(Overflow)
    }
    #[inline]
    fn times(self, other: Decimal) -> Result<Decimal, Overflow> {
        self.checked_mul(other).ok_or(Overflow)
    }
    #[inline]
    fn divided_by(self, other: Decimal) -> Result<Decimal, Overflow> {
        self.checked_div(other).ok_or(Overflow)
    }
}

/// The checked sum of decimals.
pub fn sum(values: impl IntoIterator<Item = Decimal>) -> Result<Decimal, Overflow> {
    values.into_iter().try_fold(Decimal::ZERO, Checked::plus)
}

/// The checked sum of event counts.
pub fn add_count(a: u64, b: u64) -> Result<u64, Overflow> {
    a.checked_add(b).ok_or(Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_does_not_fit() {
        assert_eq!(Decimal::MAX.plus(Decimal::ONE), Err(Overflow));
        assert_eq!(Decimal::MIN.minus(Decimal::ONE), Err(Overflow));
        assert_eq!(Decimal::MAX.times(Decimal::TWO), Err(Overflow));
        assert_eq!(Decimal::ONE.divided_by(Decimal::ZERO), Err(Overflow));
        assert_eq!(sum([Decimal::MAX, Decimal::MAX]), Err(Overflow));
        assert_eq!(sum([Decimal::ONE, Decimal::TWO]), Ok(Decimal::from(3)));
        assert_eq!(add_count(u64::MAX, 1), Err(Overflow));
    }
}
