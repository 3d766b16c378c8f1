//! Invoice maths for one subscription period, in Lago's order:
//! fees → progressive-billing credits → coupons → taxes → credit notes → prepaid credits (wallets).
//!
//! Fees arrive as exact amounts; each is rounded once, here, to the currency's minor units.
//! Coupons and progressive credits are spread over the fees pro rata so each fee knows its taxable
//! base; taxes are computed per tax on the exact bases and rounded once per tax and once for the
//! invoice, as Lago does (so the invoice tax may differ by one minor unit from Σ applied taxes).

mod period_fees;

pub use period_fees::{bucket_properties, charge_fees, subscription_fee, BucketUsage, PeriodFee, UsageBucket};

use crate::catalog::Tax;
use crate::checked::{sum as sum_decimals, Checked, Overflow};
use crate::money::{AmountOutOfRange, Currency};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeType {
    Subscription,
    Charge,
    Commitment,
    AddOn,
}

/// A fee to invoice: an exact amount in major units and the taxes that apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeeInput {
    pub fee_type: FeeType,
    pub amount: Decimal,
    pub taxes: Vec<Tax>,
}

/// Credits to apply, in minor units, each capped at what is left to pay. Coupon amounts come
/// already computed (percentage or fixed) by the coupon logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credits {
    /// Usage already invoiced this period by progressive billing (before tax).
    pub progressive_billing_cents: i64,
    /// Coupons (before tax).
    pub coupons_cents: i64,
    /// Available credit notes (after tax).
    pub credit_notes_cents: i64,
    /// Prepaid credits from wallets (after tax).
    pub prepaid_credits_cents: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvoicedFee {
    pub fee_type: FeeType,
    pub amount_cents: i64,
    /// Unrounded amount in minor units (`precise_amount_cents`).
    pub precise_amount_cents: Decimal,
    /// This fee's share of coupons and progressive credits, unrounded.
    pub precise_coupons_amount_cents: Decimal,
    pub taxes_precise_amount_cents: Decimal,
    pub taxes_amount_cents: i64,
    /// Σ of the applicable tax rates, percent.
    pub taxes_rate: Decimal,
}

/// One tax summed over the invoice.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedTax {
    pub tax_code: String,
    pub tax_name: String,
    pub tax_rate: Decimal,
    /// Σ of the taxable bases of the fees it applies to, in minor units (unrounded).
    pub base_amount_cents: Decimal,
    pub amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceTotals {
    pub currency: Currency,
    pub fees: Vec<InvoicedFee>,
    pub applied_taxes: Vec<AppliedTax>,
    pub fees_amount_cents: i64,
    pub progressive_billing_credit_amount_cents: i64,
    pub coupons_amount_cents: i64,
    pub sub_total_excluding_taxes_amount_cents: i64,
    pub taxes_amount_cents: i64,
    pub sub_total_including_taxes_amount_cents: i64,
    pub credit_notes_amount_cents: i64,
    pub prepaid_credit_amount_cents: i64,
    pub total_amount_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error(transparent)]
    OutOfRange(#[from] AmountOutOfRange),
    #[error("invoice amounts overflow")]
    Overflow,
}

impl From<Overflow> for InvoiceError {
    fn from(_: Overflow) -> Self {
        InvoiceError::Overflow
    }
}

/// Rounds a minor-unit decimal to a whole minor unit, half-up (taxes).
fn round_cents(precise: Decimal) -> Result<i64, InvoiceError> {
    i64::try_from(precise.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero))
        .map_err(|_| InvoiceError::Overflow)
}

fn sum(mut values: impl Iterator<Item = i64>) -> Result<i64, InvoiceError> {
    values.try_fold(0i64, |acc, v| acc.checked_add(v)).ok_or(InvoiceError::Overflow)
}

/// Computes an invoice from its fees and credits.
pub fn compute_invoice(currency: Currency, fees: &[FeeInput], credits: Credits) -> Result<InvoiceTotals, InvoiceError> {
    // 1–2. Fees, each rounded once.
    let mut invoiced = fees
        .iter()
        .map(|fee| {
            Ok(InvoicedFee {
                fee_type: fee.fee_type,
                amount_cents: currency.to_minor_units(fee.amount)?,
                precise_amount_cents: currency.to_precise_minor_units(fee.amount)?,
                precise_coupons_amount_cents: Decimal::ZERO,
                taxes_precise_amount_cents: Decimal::ZERO,
                taxes_amount_cents: 0,
                taxes_rate: sum_decimals(fee.taxes.iter().map(|t| t.rate))?,
            })
        })
        .collect::<Result<Vec<_>, InvoiceError>>()?;
    let fees_amount_cents = sum(invoiced.iter().map(|f| f.amount_cents))?;

    // 3–4. Pre-tax credits, each capped at what is left, spread over fees pro rata.
    let progressive = credits.progressive_billing_cents.clamp(0, fees_amount_cents.max(0));
    let coupons = credits.coupons_cents.clamp(0, (fees_amount_cents - progressive).max(0));
    let pre_tax_credit = progressive + coupons;
    if pre_tax_credit > 0 && fees_amount_cents > 0 {
        let total = Decimal::from(fees_amount_cents);
        for fee in &mut invoiced {
            fee.precise_coupons_amount_cents =
                Decimal::from(pre_tax_credit).times(Decimal::from(fee.amount_cents))?.divided_by(total)?;
        }
    }
    let sub_total_excluding_taxes = fees_amount_cents - pre_tax_credit;

    // 6. Taxes on each fee's base, summed per tax, rounded per tax and for the invoice.
    let mut applied: Vec<AppliedTax> = Vec::new();
    let mut taxes_precise_total = Decimal::ZERO;
    for (fee, input) in invoiced.iter_mut().zip(fees) {
        let base = Decimal::from(fee.amount_cents).minus(fee.precise_coupons_amount_cents)?;
        for tax in &input.taxes {
            let tax_amount = base.times(tax.rate)?.divided_by(Decimal::ONE_HUNDRED)?;
            fee.taxes_precise_amount_cents = fee.taxes_precise_amount_cents.plus(tax_amount)?;
            taxes_precise_total = taxes_precise_total.plus(tax_amount)?;
            match applied.iter_mut().find(|a| a.tax_code == tax.code) {
                Some(a) => a.base_amount_cents = a.base_amount_cents.plus(base)?,
                None => applied.push(AppliedTax {
                    tax_code: tax.code.clone(),
                    tax_name: tax.name.clone(),
                    tax_rate: tax.rate,
                    base_amount_cents: base,
                    amount_cents: 0,
                }),
            }
        }
        fee.taxes_amount_cents = round_cents(fee.taxes_precise_amount_cents)?;
    }
    for a in &mut applied {
        a.amount_cents = round_cents(a.base_amount_cents.times(a.tax_rate)?.divided_by(Decimal::ONE_HUNDRED)?)?;
    }
    let taxes_amount_cents = round_cents(taxes_precise_total)?;
    let sub_total_including_taxes =
        sub_total_excluding_taxes.checked_add(taxes_amount_cents).ok_or(InvoiceError::Overflow)?;

    // 8–10. After-tax credits.
    let credit_notes = credits.credit_notes_cents.clamp(0, sub_total_including_taxes.max(0));
    let prepaid = credits.prepaid_credits_cents.clamp(0, (sub_total_including_taxes - credit_notes).max(0));

    Ok(InvoiceTotals {
        currency,
        fees: invoiced,
        applied_taxes: applied,
        fees_amount_cents,
        progressive_billing_credit_amount_cents: progressive,
        coupons_amount_cents: coupons,
        sub_total_excluding_taxes_amount_cents: sub_total_excluding_taxes,
        taxes_amount_cents,
        sub_total_including_taxes_amount_cents: sub_total_including_taxes,
        credit_notes_amount_cents: credit_notes,
        prepaid_credit_amount_cents: prepaid,
        total_amount_cents: sub_total_including_taxes - credit_notes - prepaid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn tax(code: &str, rate: Decimal) -> Tax {
        Tax { code: code.into(), name: code.to_uppercase(), rate }
    }

    #[test]
    fn fees_and_taxes_add_up() {
        // subscription 49.00 + usage 12.345 (→ 12.35), VAT 20 % on both:
        // fees = 4900 + 1235 = 6135; tax = 6135 × 20 % = 1227; total = 7362
        let vat = tax("vat", dec!(20));
        let fees = [
            FeeInput { fee_type: FeeType::Subscription, amount: dec!(49), taxes: vec![vat.clone()] },
            FeeInput { fee_type: FeeType::Charge, amount: dec!(12.345), taxes: vec![vat] },
        ];
        let inv = compute_invoice(Currency::USD, &fees, Credits::default()).unwrap();
        assert_eq!(inv.fees[1].amount_cents, 1235);
        assert_eq!(inv.fees[1].precise_amount_cents, dec!(1234.5));
        assert_eq!(inv.fees_amount_cents, 6135);
        assert_eq!(inv.taxes_amount_cents, 1227);
        assert_eq!(inv.sub_total_excluding_taxes_amount_cents, 6135);
        assert_eq!(inv.total_amount_cents, 7362);
    }

    #[test]
    fn several_taxes_per_fee_round_per_tax_and_per_invoice() {
        // fee 10.05 with taxes 8.5 % and 1.25 %:
        // 1005 × 8.5 % = 85.425 → 85; 1005 × 1.25 % = 12.5625 → 13; invoice round(97.9875) = 98
        let fees = [FeeInput {
            fee_type: FeeType::Charge,
            amount: dec!(10.05),
            taxes: vec![tax("state", dec!(8.5)), tax("city", dec!(1.25))],
        }];
        let inv = compute_invoice(Currency::USD, &fees, Credits::default()).unwrap();
        assert_eq!(inv.applied_taxes.iter().map(|t| t.amount_cents).collect::<Vec<_>>(), vec![85, 13]);
        assert_eq!(inv.taxes_amount_cents, 98);
        assert_eq!(inv.fees[0].taxes_rate, dec!(9.75));
        assert_eq!(inv.total_amount_cents, 1103); // 1005 + 98
    }

    #[test]
    fn invoice_tax_can_differ_from_the_sum_of_rounded_taxes() {
        // Two taxes 5 % on 0.09: 0.45 → 0 each; invoice round(0.9) = 1 (Σ applied = 0).
        let fees = [FeeInput {
            fee_type: FeeType::Charge,
            amount: dec!(0.09),
            taxes: vec![tax("a", dec!(5)), tax("b", dec!(5))],
        }];
        let inv = compute_invoice(Currency::USD, &fees, Credits::default()).unwrap();
        assert_eq!(inv.applied_taxes.iter().map(|t| t.amount_cents).sum::<i64>(), 0);
        assert_eq!(inv.taxes_amount_cents, 1);
    }

    #[test]
    fn credits_apply_in_lagos_order() {
        // fees 100.00 + 50.00 = 15000; coupon 3000 before tax (spread 2000/1000);
        // tax 10 % on 12000 = 1200; sub-total incl. taxes 13200;
        // credit note 200, wallet 20000 capped at 13000 → total 0
        let ten = tax("vat", dec!(10));
        let fees = [
            FeeInput { fee_type: FeeType::Subscription, amount: dec!(100), taxes: vec![ten.clone()] },
            FeeInput { fee_type: FeeType::Charge, amount: dec!(50), taxes: vec![ten] },
        ];
        let credits = Credits {
            coupons_cents: 3000,
            credit_notes_cents: 200,
            prepaid_credits_cents: 20000,
            ..Default::default()
        };
        let inv = compute_invoice(Currency::USD, &fees, credits).unwrap();
        assert_eq!(inv.fees[0].precise_coupons_amount_cents, dec!(2000));
        assert_eq!(inv.fees[1].precise_coupons_amount_cents, dec!(1000));
        assert_eq!(inv.sub_total_excluding_taxes_amount_cents, 12000);
        assert_eq!(inv.taxes_amount_cents, 1200);
        assert_eq!(inv.sub_total_including_taxes_amount_cents, 13200);
        assert_eq!(inv.credit_notes_amount_cents, 200);
        assert_eq!(inv.prepaid_credit_amount_cents, 13000);
        assert_eq!(inv.total_amount_cents, 0);
    }

    #[test]
    fn coupon_never_exceeds_the_fees() {
        let fees = [FeeInput { fee_type: FeeType::Charge, amount: dec!(5), taxes: vec![] }];
        let inv =
            compute_invoice(Currency::USD, &fees, Credits { coupons_cents: 10_000, ..Default::default() }).unwrap();
        assert_eq!((inv.coupons_amount_cents, inv.total_amount_cents), (500, 0));
    }

    #[test]
    fn zero_decimal_currency() {
        // JPY: 1000.5 → 1001 yen; 10 % → 100.1 → 100
        let fees = [FeeInput { fee_type: FeeType::Charge, amount: dec!(1000.5), taxes: vec![tax("ct", dec!(10))] }];
        let inv = compute_invoice(Currency::JPY, &fees, Credits::default()).unwrap();
        assert_eq!((inv.fees_amount_cents, inv.taxes_amount_cents, inv.total_amount_cents), (1001, 100, 1101));
    }
}
