use super::{BinaryOp, Expression, Function, Instruction, Value};
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
    #[error("expression is longer than {MAX_EXPRESSION_LENGTH} bytes")]
    TooLong,
    #[error("expression nests deeper than {MAX_NESTING} levels")]
    TooDeep,
}

/// Longest expression accepted, in bytes. Real ones are a line or two; the bound keeps parsing
/// and evaluation cheap whatever is sent.
pub const MAX_EXPRESSION_LENGTH: usize = 2_000;

/// Deepest nesting of parentheses and calls, and longest run of unary minus signs, accepted.
/// The parser descends once per level, so this bounds its stack use.
pub const MAX_NESTING: usize = 32;

/// Refuses what would make the parser descend too deep, before it runs: parenthesis depth
/// (calls open one too) and runs of `-` (each a prefix level), outside `'text'` literals.
fn check_shape(source: &str) -> Result<(), ParseError> {
    if source.len() > MAX_EXPRESSION_LENGTH {
        return Err(ParseError::TooLong);
    }
    let (mut depth, mut minus_run, mut in_text) = (0usize, 0usize, false);
    for c in source.chars() {
        if in_text {
            in_text = c != '\'';
            continue;
        }
        match c {
            '\'' => in_text = true,
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        match c {
            '-' => minus_run += 1,
            c if c.is_whitespace() => {}
            _ => minus_run = 0,
        }
        if depth > MAX_NESTING || minus_run > MAX_NESTING {
            return Err(ParseError::TooDeep);
        }
    }
    Ok(())
}

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::subtract, Assoc::Left))
        .op(Op::infix(Rule::multiply, Assoc::Left) | Op::infix(Rule::divide, Assoc::Left))
        .op(Op::prefix(Rule::negate))
});

impl Expression {
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        check_shape(source)?;
        let mut pairs = Grammar::parse(Rule::expression, source)
            .map_err(|e| ParseError::Syntax(e.variant.message().into_owned()))?;
        let expr = pairs
            .next()
            .and_then(|expression| expression.into_inner().next())
            .ok_or_else(|| ParseError::Syntax("empty expression".into()))?;
        let program = build(expr.into_inner())?;
        Ok(Expression { source: source.to_owned(), program })
    }
}

impl FromStr for Expression {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expression::parse(s)
    }
}

/// Compiles to postfix: operands first, then their operator. A chain `a + b + c + …` extends
/// the left program in place, so compiling is linear in the expression's length.
fn build(pairs: Pairs<'_, Rule>) -> Result<Program, ParseError> {
    PRATT
        .map_primary(primary)
        .map_prefix(|_negate, operand| {
            let mut program = operand?;
            program.push(Instruction::Negate);
            Ok(program)
        })
        .map_infix(|left, op, right| {
            let op = match op.as_rule() {
                Rule::add => BinaryOp::Add,
                Rule::subtract => BinaryOp::Subtract,
                Rule::multiply => BinaryOp::Multiply,
                _ => BinaryOp::Divide,
            };
            let mut program = left?;
            program.extend(right?);
            program.push(Instruction::Binary(op));
            Ok(program)
        })
        .parse(pairs)
}

type Program = Vec<Instruction>;

fn primary(pair: Pair<'_, Rule>) -> Result<Program, ParseError> {
    Ok(vec![match pair.as_rule() {
        Rule::decimal => {
            let number = Decimal::from_str(pair.as_str()).map_err(|_| ParseError::Number(pair.as_str().into()))?;
            Instruction::Push(Value::Number(number))
        }
        Rule::text => {
            let inner = pair.into_inner().next().map(|p| p.as_str()).unwrap_or_default();
            Instruction::Push(Value::Text(inner.to_owned()))
        }
        Rule::event_code => Instruction::EventCode,
        Rule::event_timestamp => Instruction::EventTimestamp,
        Rule::event_property => {
            let name = pair.into_inner().next().map(|p| p.as_str()).unwrap_or_default();
            Instruction::Property(name.to_owned())
        }
        Rule::expr => return build(pair.into_inner()),
        Rule::call => return call(pair),
        other => return Err(ParseError::Syntax(format!("unexpected {other:?}"))),
    }])
}

fn call(pair: Pair<'_, Rule>) -> Result<Program, ParseError> {
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
    let arity = args.len();
    let mut program: Program = args.into_iter().flatten().collect();
    program.push(Instruction::Call(function, arity));
    Ok(program)
}
