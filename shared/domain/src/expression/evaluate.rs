use super::{BinaryOp, Expression, Function, Node, Value};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value as Json};
use std::str::FromStr;

/// What an expression can read from an event.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    pub code: &'a str,
    /// Event time, Unix milliseconds.
    pub timestamp_ms: i64,
    pub properties: &'a Map<String, Json>,
    /// Price carried by the event itself, for `dynamic` charges.
    pub precise_total_amount_cents: Option<Decimal>,
}

/// Why an expression could not be evaluated on an event (an ingest answers 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    #[error("event property {0:?} is missing")]
    MissingProperty(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("arithmetic overflow")]
    Overflow,
}

impl Expression {
    pub fn evaluate(&self, event: &EventContext<'_>) -> Result<Value, EvaluationError> {
        eval(&self.tree, event)
    }
}

fn eval(node: &Node, event: &EventContext<'_>) -> Result<Value, EvaluationError> {
    Ok(match node {
        Node::Literal(value) => value.clone(),
        Node::EventCode => Value::Text(event.code.to_owned()),
        Node::EventTimestamp => Value::Number(Decimal::new(event.timestamp_ms, 3).normalize()),
        Node::Property(name) => match event.properties.get(name) {
            None | Some(Json::Null) => return Err(EvaluationError::MissingProperty(name.clone())),
            Some(Json::Number(n)) => Value::Number(json_number_exact(n)?),
            Some(Json::String(s)) => Value::Text(s.clone()),
            Some(Json::Bool(b)) => Value::Text(b.to_string()),
            Some(other) => Value::Text(other.to_string()),
        },
        Node::Negate(operand) => Value::Number(-number(eval(operand, event)?)?),
        Node::Binary(op, left, right) => {
            let (a, b) = (number(eval(left, event)?)?, number(eval(right, event)?)?);
            let result = match op {
                BinaryOp::Add => a.checked_add(b),
                BinaryOp::Subtract => a.checked_sub(b),
                BinaryOp::Multiply => a.checked_mul(b),
                BinaryOp::Divide if b.is_zero() => return Err(EvaluationError::DivisionByZero),
                BinaryOp::Divide => a.checked_div(b),
            };
            Value::Number(result.ok_or(EvaluationError::Overflow)?)
        }
        Node::Call(function, args) => call(*function, args, event)?,
    })
}

fn call(function: Function, args: &[Node], event: &EventContext<'_>) -> Result<Value, EvaluationError> {
    let values = args.iter().map(|a| eval(a, event)).collect::<Result<Vec<_>, _>>()?;
    let rounded = |strategy: RoundingStrategy| -> Result<Value, EvaluationError> {
        let mut values = values.iter().cloned();
        let x = number(values.next().unwrap_or(Value::Number(Decimal::ZERO)))?;
        let digits = match values.next() {
            Some(d) => number(d)?.trunc().try_into().map_err(|_| EvaluationError::Overflow)?,
            None => 0i64,
        };
        Ok(Value::Number(round_to(x, digits, strategy)))
    };
    match function {
        Function::Round => rounded(RoundingStrategy::MidpointAwayFromZero),
        Function::Ceil => rounded(RoundingStrategy::ToPositiveInfinity),
        Function::Floor => rounded(RoundingStrategy::ToNegativeInfinity),
        Function::Concat => Ok(Value::Text(values.iter().map(Value::to_string).collect())),
        Function::Least | Function::Greatest => {
            let numbers = values.into_iter().map(number).collect::<Result<Vec<_>, _>>()?;
            let pick = if function == Function::Least { numbers.into_iter().min() } else { numbers.into_iter().max() };
            Ok(Value::Number(pick.unwrap_or(Decimal::ZERO)))
        }
    }
}

fn round_to(x: Decimal, digits: i64, strategy: RoundingStrategy) -> Decimal {
    if digits >= 0 {
        return x.round_dp_with_strategy(digits.min(28) as u32, strategy);
    }
    let factor = Decimal::from(10i64.pow(digits.unsigned_abs().min(18) as u32));
    (x / factor).round_dp_with_strategy(0, strategy) * factor
}

fn number(value: Value) -> Result<Decimal, EvaluationError> {
    match value {
        Value::Number(n) => Ok(n),
        Value::Text(t) => Decimal::from_str(t.trim())
            .or_else(|_| Decimal::from_scientific(t.trim()))
            .map_err(|_| EvaluationError::NotANumber(t)),
    }
}

/// A JSON number as an exact decimal (from its text, never through a float).
pub(crate) fn json_number_exact(n: &serde_json::Number) -> Result<Decimal, EvaluationError> {
    let text = n.to_string();
    Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)).map_err(|_| EvaluationError::NotANumber(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expression::ParseError;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn eval_on(source: &str, properties: Json) -> Result<Value, EvaluationError> {
        let expression = Expression::parse(source).expect("parses");
        let map = properties.as_object().cloned().unwrap_or_default();
        expression.evaluate(&EventContext {
            code: "storage",
            timestamp_ms: 1_700_000_000_500,
            properties: &map,
            precise_total_amount_cents: None,
        })
    }

    #[test]
    fn arithmetic_with_precedence_and_exact_decimals() {
        assert_eq!(eval_on("1 + 2 * 3", json!({})), Ok(Value::Number(dec!(7))));
        assert_eq!(eval_on("(1 + 2) * 3", json!({})), Ok(Value::Number(dec!(9))));
        assert_eq!(eval_on("0.1 + 0.2", json!({})), Ok(Value::Number(dec!(0.3)))); // no float drift
        assert_eq!(eval_on("10 - 4 - 3", json!({})), Ok(Value::Number(dec!(3)))); // left associative
        assert_eq!(eval_on("-2 * -3", json!({})), Ok(Value::Number(dec!(6))));
        assert_eq!(eval_on("1 / 0", json!({})), Err(EvaluationError::DivisionByZero));
    }

    #[test]
    fn reads_event_properties_code_and_timestamp() {
        // GB-hours: 7200 s × 3 GB / 3600 = 6
        let v = eval_on("event.properties.seconds * event.properties.gb / 3600", json!({"seconds": 7200, "gb": "3"}));
        assert_eq!(v, Ok(Value::Number(dec!(6))));
        assert_eq!(eval_on("event.code", json!({})), Ok(Value::Text("storage".into())));
        assert_eq!(eval_on("event.timestamp", json!({})), Ok(Value::Number(dec!(1700000000.5))));
        assert_eq!(
            eval_on("event.properties.nope + 1", json!({})),
            Err(EvaluationError::MissingProperty("nope".into()))
        );
        assert_eq!(
            eval_on("event.properties.s + 1", json!({"s": "abc"})),
            Err(EvaluationError::NotANumber("abc".into()))
        );
    }

    #[test]
    fn functions_round_ceil_floor_concat_least_greatest() {
        assert_eq!(eval_on("round(2.5)", json!({})), Ok(Value::Number(dec!(3))));
        assert_eq!(eval_on("ROUND(1.2345, 2)", json!({})), Ok(Value::Number(dec!(1.23))));
        assert_eq!(eval_on("Round(1.235, 2)", json!({})), Ok(Value::Number(dec!(1.24)))); // half-up
        assert_eq!(eval_on("ceil(1.01)", json!({})), Ok(Value::Number(dec!(2))));
        assert_eq!(eval_on("floor(-1.5)", json!({})), Ok(Value::Number(dec!(-2))));
        assert_eq!(eval_on("round(1234, -2)", json!({})), Ok(Value::Number(dec!(1200))));
        assert_eq!(eval_on("concat(event.properties.a, '-', 2)", json!({"a": "eu"})), Ok(Value::Text("eu-2".into())));
        assert_eq!(eval_on("least(3, 1, 2)", json!({})), Ok(Value::Number(dec!(1))));
        assert_eq!(eval_on("greatest(3, 1, 2)", json!({})), Ok(Value::Number(dec!(3))));
    }

    #[test]
    fn refuses_bad_expressions() {
        assert!(matches!(Expression::parse("1 +"), Err(ParseError::Syntax(_))));
        assert!(matches!(Expression::parse("sqrt(4)"), Err(ParseError::UnknownFunction(_))));
        assert!(matches!(Expression::parse("round(1, 2, 3)"), Err(ParseError::Arity { .. })));
        assert!(matches!(Expression::parse("event.foo"), Err(ParseError::Syntax(_))));
        assert!(matches!(Expression::parse(""), Err(ParseError::Syntax(_))));
    }
}
