//! What tally's fuzz targets run, in a library so the same bodies run two ways: under
//! libFuzzer (`fuzz/`, `cargo +nightly fuzz run <target>`, millions of inputs) and as a bounded
//! run on stable Rust in CI (`tests/bounded.rs`). Each target takes arbitrary bytes and must
//! neither panic nor overflow the stack, whatever they are: a panic is a found bug.
//!
//! | target | what it feeds |
//! |---|---|
//! | [`expression`] | a billable metric's expression: parse, then evaluate on an event |
//! | [`event_batch`] | a `POST /events/batch` body: JSON, input rules, validation, metering into usage, pricing |
//! | [`catalog`] | a charge's `properties` and a metric's fields: validation, then pricing the result |
//! | [`Api::read`] | a request line (`GET` path and query string) through the whole Router on a real store |

use axum::body::Body;
use axum::http::Request;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tally_domain::aggregation::{measure, AggregationState, EventInput, Window};
use tally_domain::catalog::{AggregationType, BillableMetric, ChargeModel};
use tally_domain::expression::{EventContext, Expression};
use tally_domain::money::Currency;
use tally_domain::pricing::ChargeUsage;
use tally_domain::validation::{billable_metric, charge_properties, MetricDraft};
use tower::ServiceExt;

/// Properties of the event expressions are evaluated on.
fn sample_properties() -> Map<String, Value> {
    let sample = json!({"a": 1, "b": "2.5", "gb": "79228162514264337593543950335", "s": "text", "n": null});
    sample.as_object().cloned().unwrap_or_default()
}

/// An expression from text: refused, or evaluated to a value or an error.
pub fn expression(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = Expression::parse(source) {
        let properties = sample_properties();
        let event = EventContext {
            code: "m",
            timestamp_ms: 1_700_000_000_000,
            properties: &properties,
            precise_total_amount_cents: None,
        };
        let _ = parsed.evaluate(&event);
    }
}

const WINDOW: Window = Window { start_ms: 1_700_000_000_000, end_ms: 1_702_592_000_000 };

/// Metrics every event of a batch is metered with: each aggregation, one with an expression.
fn metrics() -> Vec<BillableMetric> {
    let mut all: Vec<BillableMetric> = AggregationType::ALL
        .into_iter()
        .map(|aggregation| BillableMetric::simple("m", aggregation, Some("gb")))
        .collect();
    let mut computed = BillableMetric::simple("m", AggregationType::SumAgg, Some("gb"));
    computed.expression = Expression::parse("round(event.properties.gb * event.properties.a / 3600, 2)").ok();
    all.push(computed);
    all
}

/// A batch body: parsed and checked as the API does, each valid event metered into every
/// metric's usage (as ingestion folds it), then priced on a standard and a graduated charge.
pub fn event_batch(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    if tally_domain::input_rules::check_body(&body).is_err() {
        return;
    }
    let Some(events) = body.get("events").and_then(Value::as_array) else { return };
    let now = chrono::DateTime::from_timestamp_millis(WINDOW.start_ms).unwrap_or_default();
    let metrics = metrics();
    let standard = json!({"amount": "0.10"});
    let graduated = json!({"graduated_ranges": [
        {"from_value": 0, "to_value": 10, "per_unit_amount": "0", "flat_amount": "1"},
        {"from_value": 11, "to_value": null, "per_unit_amount": "0.5", "flat_amount": "0"}]});
    let pricings: Vec<_> = [(ChargeModel::Standard, standard), (ChargeModel::Graduated, graduated)]
        .into_iter()
        .filter_map(|(model, properties)| charge_properties(model, &properties).ok())
        .collect();
    let mut usages: Vec<(usize, ChargeUsage)> = Vec::new();
    for (m, metric) in metrics.iter().enumerate() {
        for pricing in &pricings {
            usages.push((m, ChargeUsage::new(metric, pricing, WINDOW)));
        }
    }
    for event in events.iter().take(100) {
        let Ok(input) = serde_json::from_value::<tally_service::events::EventInput>(event.clone()) else { continue };
        let Ok(record) = tally_service::events::validate(input, now) else { continue };
        let context = EventInput {
            code: &record.code,
            timestamp_ms: record.timestamp.timestamp_millis(),
            properties: &record.properties,
            precise_total_amount_cents: record.precise_total_amount_cents,
        };
        for (i, (m, usage)) in usages.iter_mut().enumerate() {
            if let Ok(measurement) = measure(&metrics[*m], &context) {
                let _ = usage.fold(&pricings[i % pricings.len()], &measurement);
            }
        }
    }
    for (i, (m, usage)) in usages.iter().enumerate() {
        let _ = usage.price(&metrics[*m], &pricings[i % pricings.len()], &[], Currency::USD);
        let history: [&AggregationState; 1] = [&usage.aggregation];
        let _ = usage.aggregation.units(&history);
    }
}

/// Catalog input: `{"charge_model", "properties", "metric": {...}, "units", "events"}`. The
/// properties are validated for the model; if valid, they price `units` (with and without the
/// metric's rounding) on a usage of `events` events.
pub fn catalog(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let properties = body.get("properties").cloned().unwrap_or(Value::Null);
    let text = |key: &str| body.get("metric").and_then(|m| m.get(key)).and_then(Value::as_str).map(str::to_owned);
    let draft = MetricDraft {
        name: text("name").or(Some("m".into())),
        code: text("code").or(Some("m".into())),
        aggregation_type: text("aggregation_type").or(Some("sum_agg".into())),
        field_name: text("field_name").or(Some("v".into())),
        recurring: body.get("metric").and_then(|m| m.get("recurring")).and_then(Value::as_bool).unwrap_or(false),
        weighted_interval: text("weighted_interval"),
        rounding_function: text("rounding_function"),
        rounding_precision: body
            .get("metric")
            .and_then(|m| m.get("rounding_precision"))
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok()),
        expression: text("expression"),
        filters: Vec::new(),
    };
    let metric = billable_metric(&draft).ok();
    let units = body
        .get("units")
        .and_then(|u| u.as_str().map(str::to_owned).or_else(|| u.as_number().map(|n| n.to_string())))
        .and_then(|u| u.parse::<Decimal>().ok())
        .unwrap_or(Decimal::TEN);
    let events = body.get("events").and_then(Value::as_u64).unwrap_or(3);
    for model in [
        ChargeModel::Standard,
        ChargeModel::Graduated,
        ChargeModel::GraduatedPercentage,
        ChargeModel::Package,
        ChargeModel::Percentage,
        ChargeModel::Volume,
        ChargeModel::Dynamic,
    ] {
        let Ok(pricing) = charge_properties(model, &properties) else { continue };
        let _ = tally_domain::pricing::amount(&pricing, units, events, None, units, Currency::JPY);
        if let Some(metric) = &metric {
            let _ = metric.round_units(units);
            let usage = ChargeUsage::new(metric, &pricing, WINDOW);
            let _ = usage.price(metric, &pricing, &[], Currency::USD);
        }
    }
}

/// A tally on a temporary embedded store with a small catalog, for [`Api::read`].
pub struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Api {
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let router = runtime.block_on(async {
            let store = Arc::new(tally_store::SqliteStore::open(dir.path()).expect("store"));
            let clock = Arc::new(tally_service::FixedClock::new(
                chrono::DateTime::from_timestamp_millis(WINDOW.start_ms).unwrap_or_default(),
            ));
            let tally = tally_service::Tally::new(store, clock);
            let org = tally_service::organizations::bootstrap(&tally, "Fuzz", Some(KEY.into()))
                .await
                .expect("organization")
                .organization;
            tally_service::testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
            tally_service::testing::subscribe(&tally, &org, "c", "p", "s", None).await.expect("subscription");
            tally_api::router(tally)
        });
        Self { runtime, router, _dir: dir }
    }

    /// `data` is the request target (path and query string) of a `GET` with the API key: the
    /// answer must be JSON, whatever the target (404, 400, 200...).
    pub fn read(&self, data: &[u8]) {
        let Ok(target) = std::str::from_utf8(data) else { return };
        let uri = format!("/api/v1/{}", target.trim_start_matches('/'));
        let Ok(request) =
            Request::get(uri.as_str()).header("authorization", format!("Bearer {KEY}")).body(Body::empty())
        else {
            return; // not a URI at all: hyper would refuse it before the Router
        };
        let response = self.runtime.block_on(self.router.clone().oneshot(request)).expect("infallible");
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/json"));
        assert!(is_json, "GET {uri} answered {} without a JSON body", response.status());
    }
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

const KEY: &str = "fuzz-key";
