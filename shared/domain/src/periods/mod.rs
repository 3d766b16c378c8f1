//! Billing periods and proration.

mod proration;
mod schedule;

pub use proration::{billed_span, prorated_subscription_fee, BilledSpan, SubscriptionLife};
pub use schedule::{days_inclusive, local_midnight, BillingSchedule, BillingTime, Period};
