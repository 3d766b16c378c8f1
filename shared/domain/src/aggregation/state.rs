use crate::catalog::AggregationType;
use crate::checked::{add_count, sum, Checked, Overflow};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `operation_type` of a `unique_count_agg` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Add,
    /// Orders after `Add`, so when both land on the same millisecond the removal wins.
    Remove,
}

/// One event reduced to what aggregation needs (see [`super::measure`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Event time, Unix milliseconds (UTC).
    pub at_ms: i64,
    /// The metric's field value (after any expression); 1 for `count_agg`.
    pub value: Decimal,
    /// `unique_count_agg`: the field value as a key, and whether it is added or removed.
    pub unique_key: Option<Box<str>>,
    pub operation: Operation,
    /// `dynamic` charges: the event's own price (`precise_total_amount_cents`), else zero.
    pub precise_total_amount_cents: Decimal,
}

impl Measurement {
    pub fn value(at_ms: i64, value: Decimal) -> Self {
        Self { at_ms, value, unique_key: None, operation: Operation::Add, precise_total_amount_cents: Decimal::ZERO }
    }

    pub fn unique(at_ms: i64, key: &str, operation: Operation) -> Self {
        Self {
            at_ms,
            value: Decimal::ONE,
            unique_key: Some(key.into()),
            operation,
            precise_total_amount_cents: Decimal::ZERO,
        }
    }
}

/// A value with the time it was seen; ordered by time, then value, so merges are deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamped {
    pub at_ms: i64,
    pub value: Decimal,
}

/// Latest operation seen for one `unique_count_agg` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberOp {
    pub at_ms: i64,
    pub operation: Operation,
}

/// The half-open time span `[start_ms, end_ms)` a weighted sum is averaged over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    fn clamp(self, at_ms: i64) -> i64 {
        // Not `i64::clamp`, which panics on an inverted window.
        at_ms.max(self.start_ms).min(self.end_ms)
    }

    fn seconds(self) -> Decimal {
        Decimal::new(self.end_ms.saturating_sub(self.start_ms).max(0), 3)
    }
}

/// Aggregated usage of one metric over one period (for one charge, filter or group).
///
/// Folding one event is O(1) (O(log n) in distinct values for unique counts) and two states
/// of the same kind and window merge into the state of all their events: batches can be
/// pre-aggregated, counters sharded and late events added in any order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregationState {
    Count {
        events: u64,
    },
    Sum {
        total: Decimal,
        events: u64,
    },
    Max {
        max: Option<Decimal>,
        events: u64,
    },
    Latest {
        latest: Option<Stamped>,
        events: u64,
    },
    UniqueCount {
        members: BTreeMap<Box<str>, MemberOp>,
        events: u64,
    },
    /// Event values are deltas of a level. Each delta `d` at time `t` contributes
    /// `d × (end − t)` level-seconds until the window ends, so the state is linear in its
    /// events: a counter of `deltas` (the level change) and `weighted` (level-seconds).
    WeightedSum {
        window: Window,
        deltas: Decimal,
        weighted: Decimal,
        events: u64,
    },
}

impl AggregationState {
    /// An empty state. `window` is only used by `weighted_sum_agg` (the billing period).
    pub fn new(aggregation: AggregationType, window: Window) -> Self {
        match aggregation {
            AggregationType::CountAgg => Self::Count { events: 0 },
            AggregationType::SumAgg => Self::Sum { total: Decimal::ZERO, events: 0 },
            AggregationType::MaxAgg => Self::Max { max: None, events: 0 },
            AggregationType::LatestAgg => Self::Latest { latest: None, events: 0 },
            AggregationType::UniqueCountAgg => Self::UniqueCount { members: BTreeMap::new(), events: 0 },
            AggregationType::WeightedSumAgg => {
                Self::WeightedSum { window, deltas: Decimal::ZERO, weighted: Decimal::ZERO, events: 0 }
            }
        }
    }

    /// Folds one event in. Never dedupes (see the module docs for who does). A value whose
    /// sum cannot be represented is refused and leaves the state unchanged.
    #[inline]
    pub fn fold(&mut self, m: &Measurement) -> Result<(), StateError> {
        match self {
            Self::Count { events } => *events = add_count(*events, 1)?,
            Self::Sum { total, events } => {
                let (new_total, new_events) = (total.plus(m.value)?, add_count(*events, 1)?);
                (*total, *events) = (new_total, new_events);
            }
            Self::Max { max, events } => {
                *events = add_count(*events, 1)?;
                *max = Some(max.map_or(m.value, |current| current.max(m.value)));
            }
            Self::Latest { latest, events } => {
                *events = add_count(*events, 1)?;
                let seen = Stamped { at_ms: m.at_ms, value: m.value };
                *latest = Some(latest.map_or(seen, |current| current.max(seen)));
            }
            Self::UniqueCount { members, events } => {
                *events = add_count(*events, 1)?;
                if let Some(key) = &m.unique_key {
                    let op = MemberOp { at_ms: m.at_ms, operation: m.operation };
                    // Look up before inserting: most events repeat a known value, and
                    // `entry` would allocate a copy of the key for each of them.
                    match members.get_mut(key) {
                        Some(current) => *current = (*current).max(op),
                        None => {
                            members.insert(key.clone(), op);
                        }
                    }
                }
            }
            Self::WeightedSum { window, deltas, weighted, events } => {
                let remaining_ms = window.end_ms.saturating_sub(window.clamp(m.at_ms));
                let new_deltas = deltas.plus(m.value)?;
                let new_weighted = weighted.plus(m.value.times(Decimal::new(remaining_ms, 3))?)?;
                (*deltas, *weighted, *events) = (new_deltas, new_weighted, add_count(*events, 1)?);
            }
        }
        Ok(())
    }

    /// Merges another state of the same kind (and window) into this one. On an error (other
    /// kind, or a sum out of range) this state is unchanged.
    pub fn merge(&mut self, other: &Self) -> Result<(), StateError> {
        match (self, other) {
            (Self::Count { events }, Self::Count { events: e }) => *events = add_count(*events, *e)?,
            (Self::Sum { total, events }, Self::Sum { total: t, events: e }) => {
                let (new_total, new_events) = (total.plus(*t)?, add_count(*events, *e)?);
                (*total, *events) = (new_total, new_events);
            }
            (Self::Max { max, events }, Self::Max { max: m, events: e }) => {
                *events = add_count(*events, *e)?;
                *max = match (*max, *m) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            (Self::Latest { latest, events }, Self::Latest { latest: l, events: e }) => {
                *events = add_count(*events, *e)?;
                *latest = (*latest).max(*l);
            }
            (Self::UniqueCount { members, events }, Self::UniqueCount { members: m, events: e }) => {
                *events = add_count(*events, *e)?;
                for (key, op) in m {
                    members.entry(key.clone()).and_modify(|current| *current = (*current).max(*op)).or_insert(*op);
                }
            }
            (
                Self::WeightedSum { window, deltas, weighted, events },
                Self::WeightedSum { window: w, deltas: d, weighted: ws, events: e },
            ) if window == w => {
                let (new_deltas, new_weighted) = (deltas.plus(*d)?, weighted.plus(*ws)?);
                (*deltas, *weighted, *events) = (new_deltas, new_weighted, add_count(*events, *e)?);
            }
            _ => return Err(StateError::Mismatch),
        }
        Ok(())
    }

    /// Number of events folded in.
    pub fn events_count(&self) -> u64 {
        match self {
            Self::Count { events }
            | Self::Sum { events, .. }
            | Self::Max { events, .. }
            | Self::Latest { events, .. }
            | Self::UniqueCount { events, .. }
            | Self::WeightedSum { events, .. } => *events,
        }
    }

    /// The period's units, before the metric's rounding.
    ///
    /// `history` holds the states of earlier periods of the same subscription for a recurring
    /// metric (usage that carries over); pass `&[]` otherwise.
    pub fn units(&self, history: &[&AggregationState]) -> Result<Decimal, Overflow> {
        Ok(match self {
            Self::Count { events } => Decimal::from(*events),
            Self::Sum { total, .. } => {
                let carried = sum(history.iter().filter_map(|s| match s {
                    Self::Sum { total, .. } => Some(*total),
                    _ => None,
                }))?;
                carried.plus(*total)?
            }
            Self::Max { max, .. } => max.unwrap_or(Decimal::ZERO),
            // Lago bills a negative latest value as 0.
            Self::Latest { latest, .. } => latest.map_or(Decimal::ZERO, |l| l.value.max(Decimal::ZERO)),
            Self::UniqueCount { members, .. } => {
                if history.is_empty() {
                    return Ok(Decimal::from(members.values().filter(|op| op.operation == Operation::Add).count()));
                }
                let mut all = self.clone();
                for earlier in history {
                    match all.merge(earlier) {
                        // Mismatched kinds can only come from a caller bug; they add nothing.
                        Ok(()) | Err(StateError::Mismatch) => {}
                        Err(StateError::Overflow) => return Err(Overflow),
                    }
                }
                all.units(&[])?
            }
            Self::WeightedSum { window, deltas: _, weighted, .. } => {
                let opening = sum(history.iter().filter_map(|s| match s {
                    Self::WeightedSum { deltas, .. } => Some(*deltas),
                    _ => None,
                }))?;
                let seconds = window.seconds();
                if seconds.is_zero() {
                    return Ok(Decimal::ZERO);
                }
                // Lago ceils the weighted sum at 20 decimal places.
                opening
                    .times(seconds)?
                    .plus(*weighted)?
                    .divided_by(seconds)?
                    .round_dp_with_strategy(20, RoundingStrategy::ToPositiveInfinity)
                    .normalize()
            }
        })
    }
}

/// Why a state could not take an event or another state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("cannot merge aggregation states of different kinds or windows")]
    Mismatch,
    #[error("usage out of range: the total cannot be represented exactly")]
    Overflow,
}

impl From<Overflow> for StateError {
    fn from(_: Overflow) -> Self {
        StateError::Overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const DAY_MS: i64 = 86_400_000;
    const MONTH: Window = Window { start_ms: 0, end_ms: 30 * DAY_MS };

    fn fold_all(aggregation: AggregationType, events: &[Measurement]) -> AggregationState {
        let mut state = AggregationState::new(aggregation, MONTH);
        events.iter().for_each(|m| state.fold(m).unwrap());
        state
    }

    #[test]
    fn count_sum_max_latest() {
        let events =
            [Measurement::value(3, dec!(2.5)), Measurement::value(1, dec!(10)), Measurement::value(2, dec!(-1))];
        assert_eq!(fold_all(AggregationType::CountAgg, &events).units(&[]).unwrap(), dec!(3));
        assert_eq!(fold_all(AggregationType::SumAgg, &events).units(&[]).unwrap(), dec!(11.5)); // 2.5 + 10 − 1
        assert_eq!(fold_all(AggregationType::MaxAgg, &events).units(&[]).unwrap(), dec!(10));
        // latest by time is the event at t=3, whatever the arrival order
        assert_eq!(fold_all(AggregationType::LatestAgg, &events).units(&[]).unwrap(), dec!(2.5));
        // a negative latest value bills as 0
        let negative = [Measurement::value(5, dec!(-4))];
        assert_eq!(fold_all(AggregationType::LatestAgg, &negative).units(&[]).unwrap(), dec!(0));
        assert_eq!(fold_all(AggregationType::MaxAgg, &[]).units(&[]).unwrap(), dec!(0));
    }

    #[test]
    fn unique_count_follows_the_latest_operation_per_value() {
        let events = [
            Measurement::unique(1, "a", Operation::Add),
            Measurement::unique(2, "b", Operation::Add),
            Measurement::unique(3, "a", Operation::Add), // same value again: still one
            Measurement::unique(4, "b", Operation::Remove),
            Measurement::unique(5, "c", Operation::Remove), // removing an absent value: nothing
        ];
        // a present; b added then removed; c never added → 1
        assert_eq!(fold_all(AggregationType::UniqueCountAgg, &events).units(&[]).unwrap(), dec!(1));
        // a removal at the same millisecond as an add wins
        let tie = [Measurement::unique(7, "x", Operation::Remove), Measurement::unique(7, "x", Operation::Add)];
        assert_eq!(fold_all(AggregationType::UniqueCountAgg, &tie).units(&[]).unwrap(), dec!(0));
    }

    #[test]
    fn weighted_sum_matches_lagos_documented_example() {
        // +10 at day 0 and +5 at day 15 of a 30-day period:
        // 10 × 15/30 + 15 × 15/30 = 5 + 7.5 = 12.5
        let events = [Measurement::value(0, dec!(10)), Measurement::value(15 * DAY_MS, dec!(5))];
        assert_eq!(fold_all(AggregationType::WeightedSumAgg, &events).units(&[]).unwrap(), dec!(12.5));
    }

    #[test]
    fn weighted_sum_carries_the_level_of_earlier_periods_when_recurring() {
        // Earlier period ended at level 15 (10 + 5). This period: −15 at day 10 of 30.
        // 15 × 10/30 + 0 × 20/30 = 5
        let earlier = fold_all(
            AggregationType::WeightedSumAgg,
            &[Measurement::value(0, dec!(10)), Measurement::value(DAY_MS, dec!(5))],
        );
        let now = fold_all(AggregationType::WeightedSumAgg, &[Measurement::value(10 * DAY_MS, dec!(-15))]);
        assert_eq!(now.units(&[&earlier]).unwrap(), dec!(5));
        // with no event at all this period, the carried level bills for the whole period
        let quiet = AggregationState::new(AggregationType::WeightedSumAgg, MONTH);
        assert_eq!(quiet.units(&[&earlier]).unwrap(), dec!(15));
    }

    #[test]
    fn recurring_sum_and_unique_count_add_earlier_periods() {
        let earlier_sum = fold_all(AggregationType::SumAgg, &[Measurement::value(0, dec!(7))]);
        let now_sum = fold_all(AggregationType::SumAgg, &[Measurement::value(0, dec!(3))]);
        assert_eq!(now_sum.units(&[&earlier_sum]).unwrap(), dec!(10)); // 7 + 3

        let earlier = fold_all(
            AggregationType::UniqueCountAgg,
            &[Measurement::unique(1, "seat-1", Operation::Add), Measurement::unique(2, "seat-2", Operation::Add)],
        );
        let now =
            fold_all(AggregationType::UniqueCountAgg, &[Measurement::unique(DAY_MS, "seat-1", Operation::Remove)]);
        assert_eq!(now.units(&[&earlier]).unwrap(), dec!(1)); // seat-2 still active
    }

    #[test]
    fn sums_out_of_range_are_refused_and_leave_the_state_as_it_was() {
        // Issue 8, defect 2: two events of 79228162514264337593543950335 GB panicked the writer.
        let max = Measurement::value(1, Decimal::MAX);
        let mut state = AggregationState::new(AggregationType::SumAgg, MONTH);
        state.fold(&max).unwrap();
        let before = state.clone();
        assert_eq!(state.fold(&max), Err(StateError::Overflow));
        assert_eq!(state, before);
        assert_eq!(state.clone().merge(&before), Err(StateError::Overflow));
        // A weighted sum multiplies by the seconds left in the period: MAX × 2.6M s is refused.
        let mut weighted = AggregationState::new(AggregationType::WeightedSumAgg, MONTH);
        let empty = weighted.clone();
        assert_eq!(weighted.fold(&max), Err(StateError::Overflow));
        assert_eq!(weighted, empty);
        // A recurring sum whose history and period add up out of range cannot be read either.
        let full = fold_all(AggregationType::SumAgg, std::slice::from_ref(&max));
        assert!(full.units(&[&full]).is_err());
        // Max, latest and counts never add values: they take any value.
        let mut latest = AggregationState::new(AggregationType::LatestAgg, MONTH);
        latest.fold(&max).unwrap();
        latest.fold(&max).unwrap();
        assert_eq!(latest.units(&[]).unwrap(), Decimal::MAX);
    }

    #[test]
    fn merging_different_kinds_is_refused() {
        let mut count = AggregationState::new(AggregationType::CountAgg, MONTH);
        let sum = AggregationState::new(AggregationType::SumAgg, MONTH);
        assert_eq!(count.merge(&sum), Err(StateError::Mismatch));
        let mut w1 = AggregationState::new(AggregationType::WeightedSumAgg, MONTH);
        let w2 = AggregationState::new(AggregationType::WeightedSumAgg, Window { start_ms: 0, end_ms: 1 });
        assert_eq!(w1.merge(&w2), Err(StateError::Mismatch));
    }

    #[test]
    fn state_survives_a_json_round_trip() {
        let state = fold_all(AggregationType::UniqueCountAgg, &[Measurement::unique(1, "a", Operation::Add)]);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<AggregationState>(&json).unwrap(), state);
    }
}
