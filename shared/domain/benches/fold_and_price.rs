//! Folding 10M events into aggregation states and pricing them.
//!
//! `cargo bench -p tally-domain --bench fold_and_price` prints time per iteration and
//! throughput (events/s, single thread) for each aggregation, then for pricing.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rust_decimal::Decimal;
use std::hint::black_box;
use tally_domain::aggregation::{AggregationState, Measurement, Operation, Window};
use tally_domain::catalog::{AggregationType, BillableMetric, GraduatedRange, PricingProperties};
use tally_domain::money::Currency;
use tally_domain::pricing::ChargeUsage;

const EVENTS: usize = 10_000_000;
const WINDOW: Window = Window { start_ms: 0, end_ms: 2_592_000_000 };

fn events(n: usize) -> Vec<Measurement> {
    (0..n)
        .map(|i| Measurement::value((i as i64 * 7919) % WINDOW.end_ms, Decimal::new((i % 10_000) as i64 + 1, 2)))
        .collect()
}

fn fold(c: &mut Criterion) {
    let input = events(EVENTS);
    let mut group = c.benchmark_group("fold_10M");
    group.sample_size(10).throughput(Throughput::Elements(EVENTS as u64));
    for aggregation in [
        AggregationType::CountAgg,
        AggregationType::SumAgg,
        AggregationType::MaxAgg,
        AggregationType::LatestAgg,
        AggregationType::WeightedSumAgg,
    ] {
        group.bench_function(aggregation.as_str(), |b| {
            b.iter(|| {
                let mut state = AggregationState::new(aggregation, WINDOW);
                for m in &input {
                    state.fold(black_box(m)).expect("in range");
                }
                black_box(state.units(&[]))
            })
        });
    }
    group.finish();

    // unique_count keeps one entry per distinct value: 1M events over 10k values.
    let unique: Vec<Measurement> = (0..1_000_000)
        .map(|i| Measurement::unique(i as i64, &format!("user-{}", i % 10_000), Operation::Add))
        .collect();
    let mut group = c.benchmark_group("fold_1M");
    group.sample_size(10).throughput(Throughput::Elements(unique.len() as u64));
    group.bench_function("unique_count_agg", |b| {
        b.iter(|| {
            let mut state = AggregationState::new(AggregationType::UniqueCountAgg, WINDOW);
            for m in &unique {
                state.fold(black_box(m)).expect("in range");
            }
            black_box(state.units(&[]))
        })
    });
    group.finish();
}

fn fold_and_price(c: &mut Criterion) {
    // 10M sum events spread over 10,000 customers' states, then every state priced on a
    // three-tier graduated charge: the work of a period close for 10k subscriptions.
    let input = events(EVENTS);
    let metric = BillableMetric::simple("gb", AggregationType::SumAgg, Some("gb"));
    let tier = |from: i64, to: Option<i64>, per_unit: i64| GraduatedRange {
        from_value: from.into(),
        to_value: to.map(Decimal::from),
        per_unit_amount: Decimal::new(per_unit, 3),
        flat_amount: Decimal::ZERO,
    };
    let properties = PricingProperties::Graduated {
        ranges: vec![tier(0, Some(1000), 50), tier(1001, Some(100_000), 20), tier(100_001, None, 5)],
    };
    let mut group = c.benchmark_group("fold_and_price_10M");
    group.sample_size(10).throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("sum_10k_states_graduated", |b| {
        b.iter_batched(
            || vec![ChargeUsage::new(&metric, &properties, WINDOW); 10_000],
            |mut states| {
                for (i, m) in input.iter().enumerate() {
                    states[i % 10_000].fold(&properties, m).expect("in range");
                }
                let total: Decimal = states
                    .iter()
                    .map(|s| s.price(&metric, &properties, &[], Currency::USD).expect("in range").amount)
                    .sum();
                black_box(total)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, fold, fold_and_price);
criterion_main!(benches);
