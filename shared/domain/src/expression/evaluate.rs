use super::{BinaryOp, Expression, Function, Instruction, Value};
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
    /// A program the parser cannot produce (operands missing); never expected.
    #[error("malformed expression")]
    Malformed,
}

impl Expression {
    pub fn evaluate(&self, event: &EventContext<'_>) -> Result<Value, EvaluationError> {
        let mut stack: Vec<Value> = Vec::with_capacity(8);
        for instruction in &self.program {
            let value = match instruction {
                Instruction::Push(value) => value.clone(),
                Instruction::EventCode => Value::Text(event.code.to_owned()),
                Instruction::EventTimestamp => Value::Number(Decimal::new(event.timestamp_ms, 3).normalize()),
                Instruction::Property(name) => property(event, name)?,
                Instruction::Negate => Value::Number(-number(pop(&mut stack)?)?),
                Instruction::Binary(op) => {
                    let b = number(pop(&mut stack)?)?;
                    let a = number(pop(&mut stack)?)?;
                    binary(*op, a, b)?
                }
                Instruction::Call(function, arity) => {
                    let at = stack.len().checked_sub(*arity).ok_or(EvaluationError::Malformed)?;
                    let args = stack.split_off(at);
                    call(*function, args)?
                }
            };
            stack.push(value);
        }
        match (stack.pop(), stack.is_empty()) {
            (Some(value), true) => Ok(value),
            _ => Err(EvaluationError::Malformed),
        }
    }
}

fn pop(stack: &mut Vec<Value>) -> Result<Value, EvaluationError> {
    stack.pop().ok_or(EvaluationError::Malformed)
}

fn property(event: &EventContext<'_>, name: &str) -> Result<Value, EvaluationError> {
    Ok(match event.properties.get(name) {
        None | Some(Json::Null) => return Err(EvaluationError::MissingProperty(name.to_owned())),
        Some(Json::Number(n)) => Value::Number(json_number_exact(n)?),
        Some(Json::String(s)) => Value::Text(s.clone()),
        Some(Json::Bool(b)) => Value::Text(b.to_string()),
        Some(other) => Value::Text(other.to_string()),
    })
}

fn binary(op: BinaryOp, a: Decimal, b: Decimal) -> Result<Value, EvaluationError> {
    let result = match op {
        BinaryOp::Add => a.checked_add(b),
        BinaryOp::Subtract => a.checked_sub(b),
        BinaryOp::Multiply => a.checked_mul(b),
        BinaryOp::Divide if b.is_zero() => return Err(EvaluationError::DivisionByZero),
        BinaryOp::Divide => a.checked_div(b),
    };
    Ok(Value::Number(result.ok_or(EvaluationError::Overflow)?))
}

fn call(function: Function, values: Vec<Value>) -> Result<Value, EvaluationError> {
    let rounded = |strategy: RoundingStrategy| -> Result<Value, EvaluationError> {
        let mut values = values.iter().cloned();
        let x = number(values.next().unwrap_or(Value::Number(Decimal::ZERO)))?;
        let digits = match values.next() {
            Some(d) => number(d)?.trunc().try_into().map_err(|_| EvaluationError::Overflow)?,
            None => 0i64,
        };
        round_to(x, digits, strategy).map(Value::Number)
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

fn round_to(x: Decimal, digits: i64, strategy: RoundingStrategy) -> Result<Decimal, EvaluationError> {
    if digits >= 0 {
        return Ok(x.round_dp_with_strategy(digits.min(28) as u32, strategy));
    }
    let factor = Decimal::from(10i64.pow(digits.unsigned_abs().min(18) as u32));
    let scaled = x.checked_div(factor).ok_or(EvaluationError::Overflow)?;
    scaled.round_dp_with_strategy(0, strategy).checked_mul(factor).ok_or(EvaluationError::Overflow)
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
    fn hostile_shapes_are_refused_or_evaluated_without_recursion() {
        // Each of these overflowed the stack before the bounds (issue 8, defect 1).
        for deep in ["(".repeat(2000) + "1" + &")".repeat(2000), "round(".repeat(3000) + "1" + &")".repeat(3000)] {
            assert_eq!(Expression::parse(&deep), Err(ParseError::TooLong));
        }
        let nested = "(".repeat(33) + "1" + &")".repeat(33);
        assert_eq!(Expression::parse(&nested), Err(ParseError::TooDeep));
        assert_eq!(Expression::parse(&("-".repeat(40) + "1")), Err(ParseError::TooDeep));
        assert_eq!(Expression::parse(&"-".repeat(10_000)), Err(ParseError::TooLong));
        let sum_100k = vec!["1"; 100_000].join("+");
        assert_eq!(Expression::parse(&sum_100k), Err(ParseError::TooLong));
        // At the bounds: 32 levels of parentheses and a 999-term sum parse and evaluate.
        let at_depth = "(".repeat(32) + "2" + &")".repeat(32);
        assert_eq!(eval_on(&at_depth, json!({})), Ok(Value::Number(dec!(2))));
        let long_sum = vec!["1"; 999].join("+"); // 1997 bytes
        assert_eq!(eval_on(&long_sum, json!({})), Ok(Value::Number(dec!(999))));
        // Parentheses inside text literals do not count as nesting.
        let text = format!("concat('{}', 'x')", "(".repeat(100));
        assert_eq!(eval_on(&text, json!({})), Ok(Value::Text("(".repeat(100) + "x")));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let max = "79228162514264337593543950335";
        assert_eq!(eval_on(&format!("{max} + {max}"), json!({})), Err(EvaluationError::Overflow));
        assert_eq!(eval_on(&format!("{max} * 10"), json!({})), Err(EvaluationError::Overflow));
        assert_eq!(eval_on(&format!("round({max}, -1)"), json!({})), Err(EvaluationError::Overflow));
        assert_eq!(eval_on("event.properties.gb * 2", json!({"gb": max})), Err(EvaluationError::Overflow));
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
