//! Aggregation: events folded into small, mergeable states, and a period's units read from them.
//!
//! A state never dedupes: folding the same event twice counts it twice. Exactly-once is the
//! caller's job, and in tally it is the store's: the dedupe marker of
//! `(organization, external_subscription_id, transaction_id)` commits in the same transaction
//! as the state update, so a redelivered event is refused before it reaches [`AggregationState::fold`].

mod measure;
mod rounding;
mod state;

pub use measure::{measure, EventInput, MeasureError};
pub use rounding::round_units;
pub use state::{AggregationState, Measurement, MemberOp, Operation, Stamped, StateError, Window};
