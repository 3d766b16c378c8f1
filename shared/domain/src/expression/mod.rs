//! Lago's expression language for computed properties (`expression` on a billable metric).
//!
//! An expression is parsed once into a small tree ([`Expression::parse`]) and evaluated per event
//! ([`Expression::evaluate`]) with exact decimal arithmetic. Supported: `event.code`,
//! `event.timestamp` (Unix seconds), `event.properties.<name>`, decimal and `'text'` literals,
//! `+ - * /`, unary minus, parentheses, and the functions `round(x[, digits])` (half-up),
//! `ceil(x[, digits])`, `floor(x[, digits])`, `concat(a, …)`, `least(a, …)`, `greatest(a, …)`.
//! Function names are case-insensitive.
//!
//! Hostile input cannot exhaust the stack: the source is bounded in length and nesting
//! ([`MAX_EXPRESSION_LENGTH`], [`MAX_NESTING`]) before the parser runs, and the expression is
//! compiled to a postfix program evaluated with an explicit stack (no recursion per term).

mod evaluate;
mod parse;

pub(crate) use evaluate::json_number_exact;
pub use evaluate::{EvaluationError, EventContext};
pub use parse::{ParseError, MAX_EXPRESSION_LENGTH, MAX_NESTING};

use rust_decimal::Decimal;
use std::fmt;

/// A parsed expression, ready to evaluate on many events.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    source: String,
    /// Postfix: each instruction pops its operands off the evaluation stack and pushes its result.
    program: Vec<Instruction>,
}

/// The value of an expression: a decimal or a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Number(Decimal),
    Text(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{}", n.normalize()),
            Value::Text(t) => f.write_str(t),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Round,
    Ceil,
    Floor,
    Concat,
    Least,
    Greatest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
}

#[derive(Debug, Clone, PartialEq)]
enum Instruction {
    Push(Value),
    EventCode,
    EventTimestamp,
    Property(String),
    Negate,
    Binary(BinaryOp),
    /// A function of this many arguments (the top of the stack, first argument deepest).
    Call(Function, usize),
}

impl Expression {
    pub fn source(&self) -> &str {
        &self.source
    }
}
