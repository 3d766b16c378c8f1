use super::{BinaryOp, Expression, Function, Node, Value};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "expression/grammar.pest"]
struct Grammar;

/// Why an expression was refused (Lago answers `invalid_expression`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unknown function {0:?}")]
    UnknownFunction(String),
    #[error("function {name} takes {expected} arguments, got {got}")]
    Arity { name: &'static str, expected: &'static str, got: usize },
    #[error("number {0:?} is out of range")]
    Number(String),
}

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::subtract, Assoc::Left))
        .op(Op::infix(Rule::multiply, Assoc::Left) | Op::infix(Rule::divide, Assoc::Left))
        .op(Op::prefix(Rule::negate))
});

impl Expression {
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        let mut pairs = Grammar::parse(Rule::expression, source)
            .map_err(|e| ParseError::Syntax(e.variant.message().into_owned()))?;
        let expr = pairs
            .next()
            .and_then(|expression| expression.into_inner().next())
            .ok_or_else(|| ParseError::Syntax("empty expression".into()))?;
        let tree = build(expr.into_inner())?;
        Ok(Expression { source: source.to_owned(), tree })
    }
}

impl FromStr for Expression {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expression::parse(s)
    }
}

fn build(pairs: Pairs<'_, Rule>) -> Result<Node, ParseError> {
    PRATT
        .map_primary(primary)
        .map_prefix(|_negate, operand| Ok(Node::Negate(Box::new(operand?))))
        .map_infix(|left, op, right| {
            let op = match op.as_rule() {
                Rule::add => BinaryOp::Add,
                Rule::subtract => BinaryOp::Subtract,
                Rule::multiply => BinaryOp::Multiply,
                _ => BinaryOp::Divide,
            };
            Ok(Node::Binary(op, Box::new(left?), Box::new(right?)))
        })
        .parse(pairs)
}

fn primary(pair: Pair<'_, Rule>) -> Result<Node, ParseError> {
    Ok(match pair.as_rule() {
        Rule::decimal => {
            let number = Decimal::from_str(pair.as_str()).map_err(|_| ParseError::Number(pair.as_str().into()))?;
            Node::Literal(Value::Number(number))
        }
        Rule::text => {
            let inner = pair.into_inner().next().map(|p| p.as_str()).unwrap_or_default();
            Node::Literal(Value::Text(inner.to_owned()))
        }
        Rule::event_code => Node::EventCode,
        Rule::event_timestamp => Node::EventTimestamp,
        Rule::event_property => {
            let name = pair.into_inner().next().map(|p| p.as_str()).unwrap_or_default();
            Node::Property(name.to_owned())
        }
        Rule::expr => build(pair.into_inner())?,
        Rule::call => call(pair)?,
        other => return Err(ParseError::Syntax(format!("unexpected {other:?}"))),
    })
}

fn call(pair: Pair<'_, Rule>) -> Result<Node, ParseError> {
    let mut inner = pair.into_inner();
    let name = inner.next().map(|p| p.as_str()).unwrap_or_default();
    let function = match name.to_ascii_lowercase().as_str() {
        "round" => Function::Round,
        "ceil" => Function::Ceil,
        "floor" => Function::Floor,
        "concat" => Function::Concat,
        "least" => Function::Least,
        "greatest" => Function::Greatest,
        _ => return Err(ParseError::UnknownFunction(name.to_owned())),
    };
    let args = inner.map(|arg| build(arg.into_inner())).collect::<Result<Vec<_>, _>>()?;
    let (label, ok) = match function {
        Function::Round => ("round", (1..=2).contains(&args.len())),
        Function::Ceil => ("ceil", (1..=2).contains(&args.len())),
        Function::Floor => ("floor", (1..=2).contains(&args.len())),
        Function::Concat => ("concat", !args.is_empty()),
        Function::Least => ("least", !args.is_empty()),
        Function::Greatest => ("greatest", !args.is_empty()),
    };
    if !ok {
        let expected =
            if matches!(function, Function::Round | Function::Ceil | Function::Floor) { "1 or 2" } else { "1 or more" };
        return Err(ParseError::Arity { name: label, expected, got: args.len() });
    }
    Ok(Node::Call(function, args))
}
