//! Properties that must hold for any input (proptest).

use proptest::prelude::*;
use rust_decimal::Decimal;
use tally_domain::aggregation::{AggregationState, Measurement, Operation, Stamped, Window};
use tally_domain::catalog::{AggregationType, GraduatedRange, PercentageProperties, Tax, VolumeRange};
use tally_domain::invoice::{compute_invoice, Credits, FeeInput, FeeType};
use tally_domain::money::Currency;
use tally_domain::pricing::{graduated, percentage, volume, PercentageSeries};

const WINDOW: Window = Window { start_ms: 0, end_ms: 2_592_000_000 }; // 30 days

fn aggregation() -> impl Strategy<Value = AggregationType> {
    prop_oneof![
        Just(AggregationType::CountAgg),
        Just(AggregationType::SumAgg),
        Just(AggregationType::MaxAgg),
        Just(AggregationType::LatestAgg),
        Just(AggregationType::UniqueCountAgg),
        Just(AggregationType::WeightedSumAgg),
    ]
}

/// Decimal with up to 4 places, −10⁶..10⁶.
fn amount() -> impl Strategy<Value = Decimal> {
    (-10_000_000_000i64..10_000_000_000).prop_map(|n| Decimal::new(n, 4))
}

fn positive_amount() -> impl Strategy<Value = Decimal> {
    (0i64..10_000_000_000).prop_map(|n| Decimal::new(n, 4))
}

fn measurement() -> impl Strategy<Value = Measurement> {
    (0i64..WINDOW.end_ms, amount(), 0u8..6, any::<bool>()).prop_map(|(at_ms, value, key, remove)| Measurement {
        unique_key: Some(format!("k{key}").into()),
        operation: if remove { Operation::Remove } else { Operation::Add },
        ..Measurement::value(at_ms, value)
    })
}

fn fold(aggregation: AggregationType, events: &[Measurement]) -> AggregationState {
    let mut state = AggregationState::new(aggregation, WINDOW);
    events.iter().for_each(|m| state.fold(m).expect("in range"));
    state
}

proptest! {
    /// Splitting the events anywhere, folding each part and merging gives the state of all of them,
    /// in either merge order: batches, shards and late events all add up the same.
    #[test]
    fn merge_equals_folding_everything(
        aggregation in aggregation(),
        events in prop::collection::vec(measurement(), 0..60),
        split in any::<prop::sample::Index>(),
    ) {
        let at = if events.is_empty() { 0 } else { split.index(events.len() + 1) };
        let (left, right) = events.split_at(at);
        let whole = fold(aggregation, &events);

        let mut merged = fold(aggregation, left);
        merged.merge(&fold(aggregation, right)).unwrap();
        prop_assert_eq!(merged.units(&[]), whole.units(&[]));
        prop_assert_eq!(merged.events_count(), whole.events_count());

        let mut reversed = fold(aggregation, right);
        reversed.merge(&fold(aggregation, left)).unwrap();
        prop_assert_eq!(reversed.units(&[]), whole.units(&[]));
    }

    /// A state does not dedupe: re-folding an event is visible in its event count (and usually its
    /// units). Exactly-once is the store's job: the dedupe marker of (organization,
    /// external_subscription_id, transaction_id) commits with the state update, so a duplicate
    /// never reaches `fold`.
    #[test]
    fn refolding_a_duplicate_is_detectable(aggregation in aggregation(), events in prop::collection::vec(measurement(), 1..20)) {
        let once = fold(aggregation, &events);
        let mut twice = once.clone();
        twice.fold(&events[0]).unwrap();
        prop_assert_eq!(twice.events_count(), once.events_count() + 1);
        prop_assert_ne!(twice, once);
    }

    /// Graduated and volume amounts are never negative, and graduated never decreases with usage.
    #[test]
    fn tiered_amounts_are_non_negative_and_graduated_is_monotone(
        bounds in prop::collection::vec(1u64..1000, 1..5),
        prices in prop::collection::vec((positive_amount(), positive_amount()), 5),
        units in positive_amount(),
        more in positive_amount(),
    ) {
        let mut to = 0u64;
        let mut graduated_ranges = Vec::new();
        let mut volume_ranges = Vec::new();
        for (i, width) in bounds.iter().enumerate() {
            let from = if i == 0 { 0 } else { to + 1 };
            let last = i + 1 == bounds.len();
            let next_to = (!last).then(|| from + width);
            let (per_unit, flat) = prices[i];
            graduated_ranges.push(GraduatedRange {
                from_value: from.into(), to_value: next_to.map(Decimal::from), per_unit_amount: per_unit, flat_amount: flat,
            });
            volume_ranges.push(VolumeRange {
                from_value: from.into(), to_value: next_to.map(Decimal::from), per_unit_amount: per_unit, flat_amount: flat,
            });
            to = next_to.unwrap_or(to);
        }
        prop_assert!(graduated(units, &graduated_ranges).unwrap() >= Decimal::ZERO);
        prop_assert!(volume(units, &volume_ranges).unwrap() >= Decimal::ZERO);
        prop_assert!(graduated(units + more, &graduated_ranges).unwrap() >= graduated(units, &graduated_ranges).unwrap());
    }

    /// The percentage event series gives the same amount whatever the order events arrive in.
    #[test]
    fn percentage_series_is_order_independent(
        values in prop::collection::vec((0i64..1000, 0i64..100_000), 1..30),
        free_events in 0u64..4,
        free_units in 0i64..5000,
        bounded in any::<bool>(),
    ) {
        let properties = PercentageProperties {
            rate: Decimal::new(15, 1),
            fixed_amount: Some(Decimal::new(3, 1)),
            free_units_per_events: (free_events > 0).then_some(free_events),
            free_units_per_total_aggregation: (free_units > 0).then(|| Decimal::new(free_units, 2)),
            per_transaction_min_amount: bounded.then(|| Decimal::new(50, 2)),
            per_transaction_max_amount: bounded.then(|| Decimal::new(500, 2)),
        };
        let events: Vec<Stamped> = values.iter().map(|&(t, v)| Stamped { at_ms: t, value: Decimal::new(v, 2) }).collect();
        let units: Decimal = events.iter().map(|e| e.value).sum();
        let count = events.len() as u64;

        let mut forward = PercentageSeries::default();
        events.iter().for_each(|e| forward.fold(&properties, *e).unwrap());
        let mut backward = PercentageSeries::default();
        events.iter().rev().for_each(|e| backward.fold(&properties, *e).unwrap());
        let (left, right) = events.split_at(events.len() / 2);
        let mut merged = PercentageSeries::default();
        left.iter().for_each(|e| merged.fold(&properties, *e).unwrap());
        let mut other = PercentageSeries::default();
        right.iter().for_each(|e| other.fold(&properties, *e).unwrap());
        merged.merge(&properties, &other).unwrap();

        let expected = percentage(&properties, units, count, Some(&forward));
        prop_assert_eq!(percentage(&properties, units, count, Some(&backward)), expected);
        prop_assert_eq!(percentage(&properties, units, count, Some(&merged)), expected);
        prop_assert!(expected.unwrap() >= Decimal::ZERO);
    }

    /// Invoice totals: total = fees − pre-tax credits + taxes − after-tax credits, never negative,
    /// and each fee rounds to within half a minor unit of its exact amount.
    #[test]
    fn invoice_total_is_fees_minus_credits_plus_taxes(
        fees in prop::collection::vec((positive_amount(), prop::collection::vec(0i64..3000, 0..3)), 1..8),
        coupons in 0i64..1_000_000,
        credit_notes in 0i64..1_000_000,
        wallet in 0i64..1_000_000,
    ) {
        let inputs: Vec<FeeInput> = fees.iter().map(|(amount, rates)| FeeInput {
            fee_type: FeeType::Charge,
            amount: *amount,
            taxes: rates.iter().enumerate().map(|(i, r)| Tax { code: format!("t{i}"), name: format!("T{i}"), rate: Decimal::new(*r, 2) }).collect(),
        }).collect();
        let credits = Credits { coupons_cents: coupons, credit_notes_cents: credit_notes, prepaid_credits_cents: wallet, ..Default::default() };
        let inv = compute_invoice(Currency::USD, &inputs, credits).unwrap();
        prop_assert_eq!(inv.fees_amount_cents, inv.fees.iter().map(|f| f.amount_cents).sum::<i64>());
        prop_assert_eq!(
            inv.total_amount_cents,
            inv.fees_amount_cents - inv.progressive_billing_credit_amount_cents - inv.coupons_amount_cents
                + inv.taxes_amount_cents - inv.credit_notes_amount_cents - inv.prepaid_credit_amount_cents
        );
        prop_assert!(inv.total_amount_cents >= 0);
        for (fee, input) in inv.fees.iter().zip(&inputs) {
            let exact = input.amount * Decimal::ONE_HUNDRED;
            prop_assert!((Decimal::from(fee.amount_cents) - exact).abs() <= Decimal::new(5, 1));
        }
    }
}
