use super::state::{Measurement, Operation};
use crate::catalog::{AggregationType, BillableMetric};
use crate::expression::{EvaluationError, EventContext, Value};
use rust_decimal::Decimal;
use serde_json::{Map, Value as Json};
use std::str::FromStr;

/// A usage event as the domain sees it.
pub type EventInput<'a> = EventContext<'a>;

/// Why an event yields no value for a metric. Lago accepts such events (200) and reports them
/// later (`events.errors`: `missing_aggregation_property`); the caller decides what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    #[error("event has no property {0:?}")]
    MissingProperty(String),
    #[error("property {field:?} is not a number: {value}")]
    NotANumber { field: String, value: String },
    #[error("expression failed: {0}")]
    Expression(#[from] EvaluationError),
}

/// Reduces an event to what the metric aggregates: evaluates the metric's expression (its result
/// stands in for `properties[field_name]`), then reads the field.
pub fn measure(metric: &BillableMetric, event: &EventInput<'_>) -> Result<Measurement, MeasureError> {
    let mut measurement = measure_value(metric, event)?;
    measurement.precise_total_amount_cents = event.precise_total_amount_cents.unwrap_or(Decimal::ZERO);
    Ok(measurement)
}

fn measure_value(metric: &BillableMetric, event: &EventInput<'_>) -> Result<Measurement, MeasureError> {
    let at_ms = event.timestamp_ms;
    if metric.aggregation == AggregationType::CountAgg {
        return Ok(Measurement::value(at_ms, Decimal::ONE));
    }
    let field = metric.field_name.as_deref().unwrap_or_default();
    let raw = match &metric.expression {
        Some(expression) => match expression.evaluate(event)? {
            Value::Number(n) => Raw::Number(n),
            Value::Text(t) => Raw::Text(t),
        },
        None => match event.properties.get(field) {
            None | Some(Json::Null) => return Err(MeasureError::MissingProperty(field.to_owned())),
            Some(Json::Number(n)) => Raw::Number(crate::expression::json_number_exact(n)?),
            Some(Json::String(s)) => Raw::Text(s.clone()),
            Some(other) => Raw::Text(other.to_string()),
        },
    };
    if metric.aggregation == AggregationType::UniqueCountAgg {
        let key = match raw {
            Raw::Number(n) => n.normalize().to_string(),
            Raw::Text(t) => t,
        };
        return Ok(Measurement::unique(at_ms, &key, operation(event.properties)));
    }
    let value = match raw {
        Raw::Number(n) => n,
        Raw::Text(t) => Decimal::from_str(t.trim())
            .or_else(|_| Decimal::from_scientific(t.trim()))
            .map_err(|_| MeasureError::NotANumber { field: field.to_owned(), value: t })?,
    };
    Ok(Measurement::value(at_ms, value))
}

enum Raw {
    Number(Decimal),
    Text(String),
}

fn operation(properties: &Map<String, Json>) -> Operation {
    match properties.get("operation_type").and_then(Json::as_str) {
        Some("remove") => Operation::Remove,
        _ => Operation::Add,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expression::Expression;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn event(properties: Json) -> Map<String, Json> {
        properties.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn reads_numbers_exactly_from_json_numbers_and_strings() {
        let metric = BillableMetric::simple("api", AggregationType::SumAgg, Some("amount"));
        for (props, expected) in [
            (json!({"amount": 0.1}), dec!(0.1)),
            (json!({"amount": "12.345"}), dec!(12.345)),
            (json!({"amount": 7}), dec!(7)),
        ] {
            let p = event(props);
            let m = measure(
                &metric,
                &EventInput { code: "api", timestamp_ms: 0, properties: &p, precise_total_amount_cents: None },
            )
            .unwrap();
            assert_eq!(m.value, expected);
        }
        let p = event(json!({"other": 1}));
        assert_eq!(
            measure(
                &metric,
                &EventInput { code: "api", timestamp_ms: 0, properties: &p, precise_total_amount_cents: None }
            ),
            Err(MeasureError::MissingProperty("amount".into()))
        );
        let p = event(json!({"amount": "lots"}));
        assert!(matches!(
            measure(
                &metric,
                &EventInput { code: "api", timestamp_ms: 0, properties: &p, precise_total_amount_cents: None }
            ),
            Err(MeasureError::NotANumber { .. })
        ));
    }

    #[test]
    fn count_needs_no_property_and_unique_count_reads_the_operation() {
        let count = BillableMetric::simple("calls", AggregationType::CountAgg, None);
        let empty = Map::new();
        assert_eq!(
            measure(
                &count,
                &EventInput { code: "calls", timestamp_ms: 5, properties: &empty, precise_total_amount_cents: None }
            )
            .unwrap()
            .value,
            dec!(1)
        );

        let seats = BillableMetric::simple("seats", AggregationType::UniqueCountAgg, Some("user"));
        let p = event(json!({"user": "ann", "operation_type": "remove"}));
        let m = measure(
            &seats,
            &EventInput { code: "seats", timestamp_ms: 5, properties: &p, precise_total_amount_cents: None },
        )
        .unwrap();
        assert_eq!((m.unique_key.as_deref(), m.operation), (Some("ann"), Operation::Remove));
    }

    #[test]
    fn an_expression_result_replaces_the_field() {
        let mut metric = BillableMetric::simple("compute", AggregationType::SumAgg, Some("gb_hours"));
        metric.expression = Some(Expression::parse("event.properties.gb * event.properties.seconds / 3600").unwrap());
        let p = event(json!({"gb": 2, "seconds": 5400}));
        // 2 GB × 5400 s / 3600 = 3 GB-hours
        assert_eq!(
            measure(
                &metric,
                &EventInput { code: "compute", timestamp_ms: 0, properties: &p, precise_total_amount_cents: None }
            )
            .unwrap()
            .value,
            dec!(3)
        );
    }
}
