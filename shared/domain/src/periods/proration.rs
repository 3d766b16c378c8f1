//! Which part of a period a subscription is billed for, and its prorated subscription fee.

use super::schedule::{days_inclusive, BillingSchedule, Period};
use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;

/// A subscription's life, as far as billing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionLife {
    pub started_at: DateTime<Utc>,
    pub terminated_at: Option<DateTime<Utc>>,
    /// End of the free trial, if the plan has one (`started_at + trial_period` days).
    pub trial_ends_at: Option<DateTime<Utc>>,
}

impl SubscriptionLife {
    pub fn new(started_at: DateTime<Utc>, trial_period_days: u32) -> Self {
        let trial_ends_at = (trial_period_days > 0).then(|| started_at + Days::new(u64::from(trial_period_days)));
        Self { started_at, terminated_at: None, trial_ends_at }
    }
}

/// The part of a period a subscription was alive in: whole local days, and the usage window
/// `[from, to)` its events are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BilledSpan {
    pub period: Period,
    pub from_date: NaiveDate,
    /// Last billed day, inclusive (the termination day, if terminated in the period).
    pub to_date: NaiveDate,
    /// Start of the usage window: the period start, or the start of the subscription's first day.
    pub from: DateTime<Utc>,
    /// End of the usage window (exclusive): the period end, or the termination instant.
    pub to: DateTime<Utc>,
}

impl BilledSpan {
    pub fn days(&self) -> u32 {
        days_inclusive(self.from_date, self.to_date)
    }

    pub fn is_full_period(&self) -> bool {
        self.from_date == self.period.start_date && self.to_date == self.period.end_date
    }
}

/// The part of `period` the subscription is alive in, or `None` if it is not alive in it.
pub fn billed_span(schedule: &BillingSchedule, period: Period, life: &SubscriptionLife) -> Option<BilledSpan> {
    let started_on = schedule.local_date(life.started_at);
    let from_date = period.start_date.max(started_on);
    // The first period starts at the subscription's start instant, not at its local midnight
    // (Lago's Subscriptions::DatesService#charges_from_datetime).
    let from = period.start.max(life.started_at);
    let (to_date, to) = match life.terminated_at {
        Some(t) if t < period.end => (schedule.local_date(t).min(period.end_date), t),
        _ => (period.end_date, period.end),
    };
    (from_date <= to_date && from < to).then_some(BilledSpan { period, from_date, to_date, from, to })
}

/// The subscription fee for a billed span: the plan amount prorated by days,
/// `amount × billed days / days in period`, with trial days free. Exact (major units).
pub fn prorated_subscription_fee(
    plan_amount: Decimal,
    schedule: &BillingSchedule,
    span: &BilledSpan,
    life: &SubscriptionLife,
) -> Decimal {
    let mut first_paid_day = span.from_date;
    if let Some(trial_end) = life.trial_ends_at {
        if trial_end >= span.period.end {
            return Decimal::ZERO;
        }
        first_paid_day = first_paid_day.max(schedule.local_date(trial_end));
    }
    let paid_days = days_inclusive(first_paid_day, span.to_date);
    if paid_days == span.period.days() {
        return plan_amount;
    }
    plan_amount * Decimal::from(paid_days) / Decimal::from(span.period.days())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Interval;
    use crate::periods::BillingTime;
    use chrono_tz::{Asia, UTC};
    use rust_decimal_macros::dec;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn first_calendar_month_is_prorated_by_days() {
        // Started 2024-04-21 on a 30-day April: 10 days billed (21..30) → 30 × 10/30 = 10
        let started = utc("2024-04-21T15:00:00Z");
        let schedule = BillingSchedule::new(Interval::Monthly, BillingTime::Calendar, UTC, started);
        let life = SubscriptionLife::new(started, 0);
        let span = billed_span(&schedule, schedule.period_at(started), &life).unwrap();
        // The span starts at the start instant (Lago's charges_from_datetime); days count whole.
        assert_eq!((span.days(), span.from), (10, started));
        assert_eq!(prorated_subscription_fee(dec!(30), &schedule, &span, &life), dec!(10));
        // The next period is whole.
        let next = billed_span(&schedule, schedule.next(&span.period), &life).unwrap();
        assert!(next.is_full_period());
        assert_eq!(prorated_subscription_fee(dec!(30), &schedule, &next, &life), dec!(30));
    }

    #[test]
    fn termination_bills_through_the_termination_day() {
        // Monthly 31.00, terminated 2024-05-10 12:00 (May has 31 days): 10 days → 31 × 10/31 = 10
        let started = utc("2024-01-01T00:00:00Z");
        let schedule = BillingSchedule::new(Interval::Monthly, BillingTime::Calendar, UTC, started);
        let mut life = SubscriptionLife::new(started, 0);
        life.terminated_at = Some(utc("2024-05-10T12:00:00Z"));
        let span = billed_span(&schedule, schedule.period_at(utc("2024-05-02T00:00:00Z")), &life).unwrap();
        assert_eq!((span.days(), span.to), (10, utc("2024-05-10T12:00:00Z")));
        assert_eq!(prorated_subscription_fee(dec!(31), &schedule, &span, &life), dec!(10));
        // Not alive in June at all.
        assert!(billed_span(&schedule, schedule.period_at(utc("2024-06-02T00:00:00Z")), &life).is_none());
    }

    #[test]
    fn trial_days_are_free() {
        // Started 2024-06-01, 14-day trial → paid from June 15: 16 of 30 days → 60 × 16/30 = 32
        let started = utc("2024-06-01T00:00:00Z");
        let schedule = BillingSchedule::new(Interval::Monthly, BillingTime::Calendar, UTC, started);
        let life = SubscriptionLife::new(started, 14);
        let span = billed_span(&schedule, schedule.period_at(started), &life).unwrap();
        assert_eq!(prorated_subscription_fee(dec!(60), &schedule, &span, &life), dec!(32));
        // a trial longer than the period makes it free
        let long = SubscriptionLife::new(started, 45);
        assert_eq!(prorated_subscription_fee(dec!(60), &schedule, &span, &long), dec!(0));
    }

    #[test]
    fn proration_counts_days_in_the_customer_timezone() {
        // 2024-02-09T20:00Z is already Feb 10 in Kolkata (UTC+5:30): 20 of 29 days (leap Feb).
        // 29.00 × 20/29 = 20
        let started = utc("2024-02-09T20:00:00Z");
        let schedule = BillingSchedule::new(Interval::Monthly, BillingTime::Calendar, Asia::Kolkata, started);
        let life = SubscriptionLife::new(started, 0);
        let span = billed_span(&schedule, schedule.period_at(started), &life).unwrap();
        assert_eq!(span.from, started); // the start instant, on local Feb 10
        assert_eq!(prorated_subscription_fee(dec!(29), &schedule, &span, &life), dec!(20));
    }
}
