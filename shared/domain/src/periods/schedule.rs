//! Billing periods: calendar or anniversary, in the customer's timezone.
//!
//! Periods are computed on local dates (the customer's calendar), then turned into UTC instants
//! at local midnight. A period is the half-open span `[start, end)`; Lago shows its end as the
//! last second of the last day (`end − 1 s`, see [`Period::to_datetime`]).

use crate::catalog::Interval;
use chrono::{DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BillingTime {
    /// Periods follow the calendar: weeks from Monday, months from the 1st, quarters, halves
    /// and years from January.
    #[default]
    Calendar,
    /// Periods start on the subscription's own day (clamped to short months: Jan 31 → Feb 28/29).
    Anniversary,
}

impl BillingTime {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "calendar" => Some(Self::Calendar),
            "anniversary" => Some(Self::Anniversary),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calendar => "calendar",
            Self::Anniversary => "anniversary",
        }
    }
}

/// How a subscription's time is cut into periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillingSchedule {
    pub interval: Interval,
    pub billing_time: BillingTime,
    pub timezone: Tz,
    /// Local date the subscription started; anchors anniversary periods.
    pub anchor: NaiveDate,
}

/// One billing period, as local dates and as UTC instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    pub start_date: NaiveDate,
    /// Last day of the period, inclusive.
    pub end_date: NaiveDate,
    /// Local midnight opening `start_date`, in UTC.
    pub start: DateTime<Utc>,
    /// Local midnight after `end_date`, in UTC (exclusive).
    pub end: DateTime<Utc>,
}

impl Period {
    /// Number of days in the period (its calendar length, whatever part of it is billed).
    pub fn days(&self) -> u32 {
        days_inclusive(self.start_date, self.end_date)
    }

    /// Lago's `to_datetime`: the last second of the period.
    pub fn to_datetime(&self) -> DateTime<Utc> {
        self.end - Duration::seconds(1)
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// Days from `from` to `to`, both included (0 if `to` is before `from`).
pub fn days_inclusive(from: NaiveDate, to: NaiveDate) -> u32 {
    u32::try_from((to - from).num_days() + 1).unwrap_or(0)
}

impl BillingSchedule {
    pub fn new(interval: Interval, billing_time: BillingTime, timezone: Tz, started_at: DateTime<Utc>) -> Self {
        Self { interval, billing_time, timezone, anchor: started_at.with_timezone(&timezone).date_naive() }
    }

    /// The schedule usage charges follow: monthly for yearly and semiannual plans that bill
    /// charges monthly, else the plan's own.
    pub fn for_charges(self, bill_charges_monthly: bool) -> Self {
        let splits = matches!(self.interval, Interval::Yearly | Interval::Semiannual);
        if bill_charges_monthly && splits {
            Self { interval: Interval::Monthly, ..self }
        } else {
            self
        }
    }

    /// The local date of an instant in the customer's timezone.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.timezone).date_naive()
    }

    /// The period holding the instant `at`.
    pub fn period_at(&self, at: DateTime<Utc>) -> Period {
        self.period_on(self.local_date(at))
    }

    /// The period holding the local date `date`.
    pub fn period_on(&self, date: NaiveDate) -> Period {
        let (start_date, end_date) = self.bounds_on(date);
        Period {
            start_date,
            end_date,
            start: local_midnight(self.timezone, start_date),
            end: local_midnight(self.timezone, end_date + Days::new(1)),
        }
    }

    /// The period right after `period`.
    pub fn next(&self, period: &Period) -> Period {
        self.period_on(period.end_date + Days::new(1))
    }

    fn bounds_on(&self, date: NaiveDate) -> (NaiveDate, NaiveDate) {
        match (self.interval.months(), self.billing_time) {
            (None, BillingTime::Calendar) => {
                let start = date - Days::new(u64::from(date.weekday().num_days_from_monday()));
                (start, start + Days::new(6))
            }
            (None, BillingTime::Anniversary) => {
                let offset =
                    (7 + date.weekday().num_days_from_monday() - self.anchor.weekday().num_days_from_monday()) % 7;
                let start = date - Days::new(u64::from(offset));
                (start, start + Days::new(6))
            }
            (Some(months), BillingTime::Calendar) => {
                let month0 = date.month0() / months * months;
                let start = NaiveDate::from_ymd_opt(date.year(), month0 + 1, 1).unwrap_or(date);
                (start, add_months(start, months) - Days::new(1))
            }
            (Some(months), BillingTime::Anniversary) => {
                let anchor_day = self.anchor.day();
                let elapsed = month_index(date) - month_index(self.anchor);
                let mut n = elapsed.div_euclid(i64::from(months));
                let mut start = anniversary(self.anchor, anchor_day, n * i64::from(months));
                if start > date {
                    n -= 1;
                    start = anniversary(self.anchor, anchor_day, n * i64::from(months));
                }
                let next = anniversary(self.anchor, anchor_day, (n + 1) * i64::from(months));
                (start, next - Days::new(1))
            }
        }
    }
}

fn month_index(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 12 + i64::from(date.month0())
}

fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months)).unwrap_or(date)
}

/// The anchor day `months` months after the anchor's month, clamped to that month's length.
fn anniversary(anchor: NaiveDate, day: u32, months: i64) -> NaiveDate {
    let index = month_index(anchor) + months;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let year = i32::try_from(year).unwrap_or(anchor.year());
    let month = u32::try_from(month0).unwrap_or(0) + 1;
    (0..4).find_map(|back| NaiveDate::from_ymd_opt(year, month, day.saturating_sub(back))).unwrap_or(anchor)
}

/// Local midnight of `date` in `tz`, in UTC. Where a DST change skips midnight, the first
/// instant of the day; where it repeats, the earlier one.
pub fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut local = date.and_time(NaiveTime::MIN);
    for _ in 0..16 {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => local += Duration::minutes(15),
        }
    }
    // No real zone skips four hours; fall back to UTC midnight.
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Asia, Europe, Pacific, UTC};

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn schedule(interval: Interval, billing_time: BillingTime, tz: Tz, anchor: NaiveDate) -> BillingSchedule {
        BillingSchedule { interval, billing_time, timezone: tz, anchor }
    }

    #[test]
    fn calendar_periods_for_every_interval() {
        let on = d(2024, 5, 15); // a Wednesday
        let cal = |i| schedule(i, BillingTime::Calendar, UTC, d(2024, 1, 1)).period_on(on);
        let p = cal(Interval::Weekly);
        assert_eq!((p.start_date, p.end_date), (d(2024, 5, 13), d(2024, 5, 19))); // Monday → Sunday
        let p = cal(Interval::Monthly);
        assert_eq!((p.start_date, p.end_date), (d(2024, 5, 1), d(2024, 5, 31)));
        let p = cal(Interval::Quarterly);
        assert_eq!((p.start_date, p.end_date), (d(2024, 4, 1), d(2024, 6, 30)));
        let p = cal(Interval::Semiannual);
        assert_eq!((p.start_date, p.end_date), (d(2024, 1, 1), d(2024, 6, 30)));
        let p = cal(Interval::Yearly);
        assert_eq!((p.start_date, p.end_date, p.days()), (d(2024, 1, 1), d(2024, 12, 31), 366));
        // leap year
    }

    #[test]
    fn anniversary_month_end_clamps_to_short_months() {
        let s = schedule(Interval::Monthly, BillingTime::Anniversary, UTC, d(2024, 1, 31));
        let p = s.period_on(d(2024, 2, 10));
        assert_eq!((p.start_date, p.end_date), (d(2024, 1, 31), d(2024, 2, 28))); // Feb 29 starts the next
        let p = s.next(&p);
        assert_eq!((p.start_date, p.end_date), (d(2024, 2, 29), d(2024, 3, 30))); // leap-year February
        let p = s.next(&p);
        assert_eq!((p.start_date, p.end_date), (d(2024, 3, 31), d(2024, 4, 29)));
        // 2023 is not a leap year: Jan 31 → Feb 28
        let s = schedule(Interval::Monthly, BillingTime::Anniversary, UTC, d(2023, 1, 31));
        assert_eq!(s.period_on(d(2023, 2, 28)).start_date, d(2023, 2, 28));
        assert_eq!(s.period_on(d(2023, 2, 27)).end_date, d(2023, 2, 27));
    }

    #[test]
    fn anniversary_quarterly_yearly_and_weekly() {
        let s = schedule(Interval::Quarterly, BillingTime::Anniversary, UTC, d(2024, 11, 30));
        let p = s.period_on(d(2025, 2, 27));
        assert_eq!((p.start_date, p.end_date), (d(2024, 11, 30), d(2025, 2, 27))); // Feb 30 → Feb 28
        let p = s.next(&p);
        assert_eq!((p.start_date, p.end_date), (d(2025, 2, 28), d(2025, 5, 29)));
        // yearly from Feb 29: Feb 28 in non-leap years
        let s = schedule(Interval::Yearly, BillingTime::Anniversary, UTC, d(2024, 2, 29));
        let p = s.period_on(d(2024, 6, 1));
        assert_eq!((p.start_date, p.end_date), (d(2024, 2, 29), d(2025, 2, 27)));
        // weekly from a Thursday
        let s = schedule(Interval::Weekly, BillingTime::Anniversary, UTC, d(2024, 5, 2));
        let p = s.period_on(d(2024, 5, 13));
        assert_eq!((p.start_date, p.end_date), (d(2024, 5, 9), d(2024, 5, 15)));
    }

    #[test]
    fn periods_tile_time_without_gaps_or_overlaps() {
        for interval in
            [Interval::Weekly, Interval::Monthly, Interval::Quarterly, Interval::Semiannual, Interval::Yearly]
        {
            for billing_time in [BillingTime::Calendar, BillingTime::Anniversary] {
                let s = schedule(interval, billing_time, Europe::Paris, d(2024, 1, 31));
                let mut p = s.period_on(d(2024, 1, 31));
                for _ in 0..40 {
                    let next = s.next(&p);
                    assert_eq!(next.start_date, p.end_date + Days::new(1), "{interval:?} {billing_time:?}");
                    assert_eq!(next.start, p.end);
                    assert_eq!(s.period_on(next.start_date), next);
                    assert_eq!(s.period_on(next.end_date), next);
                    p = next;
                }
            }
        }
    }

    #[test]
    fn period_instants_follow_the_customer_timezone() {
        // UTC−10 (Honolulu): the May 2024 period starts at 10:00 UTC on May 1.
        let s = schedule(Interval::Monthly, BillingTime::Calendar, Pacific::Honolulu, d(2024, 1, 1));
        let p = s.period_at(utc("2024-05-01T09:59:59Z")); // still April 30 in Honolulu
        assert_eq!(p.start_date, d(2024, 4, 1));
        let p = s.period_at(utc("2024-05-01T10:00:00Z"));
        assert_eq!((p.start, p.end), (utc("2024-05-01T10:00:00Z"), utc("2024-06-01T10:00:00Z")));
        assert_eq!(p.to_datetime(), utc("2024-06-01T09:59:59Z"));
        // UTC+5:30 (Kolkata): June starts at 18:30 UTC on May 31.
        let s = schedule(Interval::Monthly, BillingTime::Calendar, Asia::Kolkata, d(2024, 1, 1));
        assert_eq!(s.period_at(utc("2024-05-31T18:30:00Z")).start, utc("2024-05-31T18:30:00Z"));
        assert_eq!(s.period_at(utc("2024-05-31T18:29:59Z")).start_date, d(2024, 5, 1));
    }

    #[test]
    fn periods_across_dst_changes() {
        // New York, March 2024: EST (UTC−5) at the start, EDT (UTC−4) at the end; the period is
        // 31 local days but one hour short in UTC.
        let s = schedule(Interval::Monthly, BillingTime::Calendar, America::New_York, d(2024, 1, 1));
        let p = s.period_on(d(2024, 3, 15));
        assert_eq!((p.start, p.end), (utc("2024-03-01T05:00:00Z"), utc("2024-04-01T04:00:00Z")));
        assert_eq!(p.days(), 31);
        // Santiago skips midnight when DST starts (2024-09-08 00:00 → 01:00): the day starts at 01:00.
        assert_eq!(local_midnight(America::Santiago, d(2024, 9, 8)), utc("2024-09-08T04:00:00Z"));
    }

    #[test]
    fn charges_follow_monthly_periods_when_billed_monthly() {
        let s = schedule(Interval::Yearly, BillingTime::Calendar, UTC, d(2024, 1, 1));
        let charges = s.for_charges(true);
        assert_eq!(charges.period_on(d(2024, 5, 15)).start_date, d(2024, 5, 1));
        assert_eq!(s.for_charges(false).period_on(d(2024, 5, 15)).start_date, d(2024, 1, 1));
        let monthly = schedule(Interval::Monthly, BillingTime::Calendar, UTC, d(2024, 1, 1));
        assert_eq!(monthly.for_charges(true), monthly);
    }
}
