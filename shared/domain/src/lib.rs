//! tally's billing domain: exact metering, pricing, billing periods and invoice maths.
//!
//! Pure: no I/O, no clock, no async. Everything that stores, schedules or serves calls into it.
//! Amounts are exact `Decimal`s in major units inside; they become integer minor units only
//! where a fee is materialised ([`money::Currency::to_minor_units`]).

pub mod aggregation;
pub mod catalog;
pub mod checked;
pub mod expression;
pub mod input_rules;
pub mod invoice;
pub mod money;
pub mod periods;
pub mod pricing;
pub mod validation;
