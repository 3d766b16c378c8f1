//! A whole subscription period billed through the public API of the domain crate, every
//! expected amount worked out by hand in the comments.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tally_domain::aggregation::{measure, EventInput, Window};
use tally_domain::catalog::{
    AggregationType, BillableMetric, Charge, ChargeFilter, Interval, Plan, PricingProperties, Tax,
};
use tally_domain::invoice::{charge_fees, compute_invoice, subscription_fee, BucketUsage, Credits, UsageBucket};
use tally_domain::money::Currency;
use tally_domain::periods::{billed_span, BillingSchedule, BillingTime, SubscriptionLife};
use tally_domain::pricing::{matching_filter, pricing_group, ChargeUsage};
use tally_domain::validation::charge_properties;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("valid timestamp")
}

fn to_buckets(map: &BTreeMap<UsageBucket, ChargeUsage>) -> Vec<BucketUsage<'_>> {
    map.iter().map(|(bucket, usage)| BucketUsage { bucket: bucket.clone(), usage, history: vec![] }).collect()
}

fn props(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Folds events into per-bucket usage of one charge, routing each to its filter and group.
fn fold_charge(
    metric: &BillableMetric,
    charge: &Charge,
    window: Window,
    events: &[(&str, Value)],
) -> BTreeMap<UsageBucket, ChargeUsage> {
    let mut buckets: BTreeMap<UsageBucket, ChargeUsage> = BTreeMap::new();
    for (at, properties) in events {
        let properties = props(properties.clone());
        let bucket = UsageBucket {
            filter: matching_filter(&charge.filters, &properties),
            group: pricing_group(&charge.pricing_group_keys, &properties),
        };
        let pricing = tally_domain::invoice::bucket_properties(charge, &bucket).clone();
        let event = EventInput {
            code: &metric.code,
            timestamp_ms: utc(at).timestamp_millis(),
            properties: &properties,
            precise_total_amount_cents: None,
        };
        let m = measure(metric, &event).expect("event has the field");
        buckets
            .entry(bucket)
            .or_insert_with(|| ChargeUsage::new(metric, &pricing, window))
            .fold(&pricing, &m)
            .expect("in range");
    }
    buckets
}

#[test]
fn a_prorated_first_month_with_filters_groups_tiers_and_taxes() {
    // Customer in Paris subscribes on 2024-04-11 (local) to a monthly calendar plan of 30.00 EUR
    // in arrears: April has 30 days, 20 are billed (11..30) → 30 × 20/30 = 20.00.
    let started = utc("2024-04-10T22:30:00Z"); // 00:30 on April 11 in Paris (UTC+2)
    let tz = chrono_tz::Europe::Paris;
    let vat = Tax { code: "fr_vat".into(), name: "TVA".into(), rate: dec!(20) };

    let api_calls = BillableMetric::simple("api_calls", AggregationType::CountAgg, None);
    let storage = BillableMetric {
        filters: vec![tally_domain::catalog::MetricFilter {
            key: "region".into(),
            values: vec!["eu".into(), "us".into()],
        }],
        ..BillableMetric::simple("storage_gb", AggregationType::SumAgg, Some("gb"))
    };

    // api_calls: graduated, first 1000 free, then 0.002 per call.
    let graduated = charge_properties(
        tally_domain::catalog::ChargeModel::Graduated,
        &json!({"graduated_ranges": [
            {"from_value": 0, "to_value": 1000, "per_unit_amount": "0", "flat_amount": "0"},
            {"from_value": 1001, "to_value": null, "per_unit_amount": "0.002", "flat_amount": "0"}
        ]}),
    )
    .expect("valid ranges");
    let calls_charge = Charge::new("calls", "api_calls", graduated);

    // storage: 0.10/GB by default, 0.25/GB in the US, grouped by cloud.
    let mut storage_charge = Charge::new("storage", "storage_gb", PricingProperties::Standard { amount: dec!(0.10) });
    storage_charge.filters = vec![ChargeFilter {
        values: BTreeMap::from([("region".to_string(), vec!["us".to_string()])]),
        properties: PricingProperties::Standard { amount: dec!(0.25) },
        invoice_display_name: Some("US".into()),
    }];
    storage_charge.pricing_group_keys = vec!["cloud".into()];
    storage_charge.min_amount_cents = 0;

    let plan = Plan {
        code: "startup".into(),
        interval: Interval::Monthly,
        amount_cents: 3000,
        currency: Currency::EUR,
        pay_in_advance: false,
        trial_period_days: 0,
        bill_charges_monthly: false,
        charges: vec![calls_charge.clone(), storage_charge.clone()],
        tax_codes: vec!["fr_vat".into()],
    };

    let schedule = BillingSchedule::new(plan.interval, BillingTime::Calendar, tz, started);
    let life = SubscriptionLife::new(started, 0);
    let period = schedule.period_at(started);
    let span = billed_span(&schedule, period, &life).expect("alive in April");
    // From the start instant (Lago's charges_from_datetime), to the end of April in Paris.
    assert_eq!((span.from, span.to), (started, utc("2024-04-30T22:00:00Z")));
    let window = Window { start_ms: span.from.timestamp_millis(), end_ms: span.to.timestamp_millis() };

    // 1500 API calls → 500 paid × 0.002 = 1.00
    let calls: Vec<(&str, Value)> = (0..1500).map(|_| ("2024-04-15T12:00:00Z", json!({}))).collect();
    let call_buckets = fold_charge(&api_calls, &calls_charge, window, &calls);

    // storage: eu/aws 100 GB + 23.45 GB = 123.45 × 0.10 = 12.345; us/aws 10 GB × 0.25 = 2.50;
    // us/gcp 4.1 GB × 0.25 = 1.025
    let storage_events = [
        ("2024-04-12T08:00:00Z", json!({"gb": "100", "region": "eu", "cloud": "aws"})),
        ("2024-04-20T08:00:00Z", json!({"gb": 23.45, "region": "eu", "cloud": "aws"})),
        ("2024-04-21T08:00:00Z", json!({"gb": 10, "region": "us", "cloud": "aws"})),
        ("2024-04-22T08:00:00Z", json!({"gb": "4.1", "region": "us", "cloud": "gcp"})),
    ];
    let storage_buckets = fold_charge(&storage, &storage_charge, window, &storage_events);
    assert_eq!(storage_buckets.len(), 3);

    let call_usage = to_buckets(&call_buckets);
    let storage_usage = to_buckets(&storage_buckets);
    let mut fees = vec![subscription_fee(&plan, &schedule, &span, &life, vec![vat.clone()])];
    fees.extend(charge_fees(&plan, &calls_charge, &api_calls, &span, &call_usage, vec![vat.clone()]).unwrap());
    fees.extend(charge_fees(&plan, &storage_charge, &storage, &span, &storage_usage, vec![vat.clone()]).unwrap());

    let amounts: Vec<Decimal> = fees.iter().map(|f| f.amount).collect();
    assert_eq!(amounts, vec![dec!(20), dec!(1.000), dec!(12.345), dec!(2.50), dec!(1.025)]);

    let inputs: Vec<_> = fees.iter().map(|f| f.to_input()).collect();
    let invoice = compute_invoice(plan.currency, &inputs, Credits::default()).expect("fits");
    // Rounded fees: 2000 + 100 + 1235 (12.345 ↑) + 250 + 103 (1.025 ↑) = 3688 cents
    assert_eq!(invoice.fees.iter().map(|f| f.amount_cents).collect::<Vec<_>>(), vec![2000, 100, 1235, 250, 103]);
    assert_eq!(invoice.fees_amount_cents, 3688);
    // TVA 20 %: 3688 × 0.2 = 737.6 → 738
    assert_eq!(invoice.taxes_amount_cents, 738);
    assert_eq!(invoice.total_amount_cents, 4426); // 3688 + 738
}

#[test]
fn a_charge_minimum_is_topped_up_for_the_days_billed() {
    // 10.00 minimum on a standard 0.01/event charge; 15 of 30 days billed in June; 200 events:
    // used 2.00, prorated minimum 10 × 15/30 = 5.00 → true-up 3.00
    let started = utc("2024-06-16T00:00:00Z");
    let metric = BillableMetric::simple("events", AggregationType::CountAgg, None);
    let mut charge = Charge::new("events", "events", PricingProperties::Standard { amount: dec!(0.01) });
    charge.min_amount_cents = 1000;
    let plan = Plan {
        code: "p".into(),
        interval: Interval::Monthly,
        amount_cents: 0,
        currency: Currency::USD,
        pay_in_advance: false,
        trial_period_days: 0,
        bill_charges_monthly: false,
        charges: vec![charge.clone()],
        tax_codes: vec![],
    };
    let schedule = BillingSchedule::new(plan.interval, BillingTime::Calendar, chrono_tz::UTC, started);
    let life = SubscriptionLife::new(started, 0);
    let span = billed_span(&schedule, schedule.period_at(started), &life).expect("alive");
    let window = Window { start_ms: span.from.timestamp_millis(), end_ms: span.to.timestamp_millis() };
    let events: Vec<(&str, Value)> = (0..200).map(|_| ("2024-06-20T00:00:00Z", json!({}))).collect();
    let buckets = fold_charge(&metric, &charge, window, &events);
    let usage = to_buckets(&buckets);
    let fees = charge_fees(&plan, &charge, &metric, &span, &usage, vec![]).unwrap();
    assert_eq!(fees.iter().map(|f| (f.amount, f.true_up)).collect::<Vec<_>>(), vec![(dec!(2), false), (dec!(3), true)]);
}
