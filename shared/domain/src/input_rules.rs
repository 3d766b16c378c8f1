//! Limits every identifier and text of the API obeys, whatever the resource.
//!
//! | what | fields | rule | error code |
//! |---|---|---|---|
//! | identifiers and codes | [`IDENTIFIER_FIELDS`] (`external_id`, `code`, `transaction_id`, `plan_code`, …) | at most [`MAX_IDENTIFIER_LENGTH`] bytes, no control character (U+0000–U+001F, U+007F) | `value_is_too_long`, `value_is_invalid` |
//! | any other text | every other string in a request body | at most [`MAX_TEXT_LENGTH`] bytes, no NUL | `value_is_too_long`, `value_is_invalid` |
//!
//! Lago itself stores what PostgreSQL takes (no NUL); tally bounds sizes too, so that one request
//! cannot make every later read of a list or an invoice heavy.

use crate::validation::ValidationErrors;
use serde_json::Value;

/// Longest identifier or code, in bytes.
pub const MAX_IDENTIFIER_LENGTH: usize = 255;
/// Longest other text (names, descriptions, property values), in bytes.
pub const MAX_TEXT_LENGTH: usize = 65_536;

/// Fields holding identifiers or codes, wherever they appear in a request body.
pub const IDENTIFIER_FIELDS: &[&str] = &[
    "external_id",
    "external_customer_id",
    "external_subscription_id",
    "transaction_id",
    "code",
    "plan_code",
    "billable_metric_code",
    "billable_metric_id",
    "field_name",
    "key",
    "tax_code",
    "amount_currency",
    "currency",
    "timezone",
    "id",
];

/// Checks one identifier; `Err(code)` with Lago's error code.
pub fn identifier(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_IDENTIFIER_LENGTH {
        return Err("value_is_too_long");
    }
    if value.chars().any(|c| c.is_control()) {
        return Err("value_is_invalid");
    }
    Ok(())
}

fn text(value: &str) -> Result<(), &'static str> {
    if value.len() > MAX_TEXT_LENGTH {
        return Err("value_is_too_long");
    }
    if value.contains('\0') {
        return Err("value_is_invalid");
    }
    Ok(())
}

/// Checks every string of a request body against the rules above (identifier fields by their
/// key, at any depth; arrays of codes such as `tax_codes` as identifiers too). Errors are keyed
/// by the field's name.
pub fn check_body(body: &Value) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    // Explicit stack: bodies may nest deeply (serde_json already bounds nesting at 128).
    let mut pending: Vec<(&str, bool, &Value)> = vec![("body", false, body)];
    while let Some((field, is_identifier, value)) = pending.pop() {
        match value {
            Value::String(s) => {
                let checked = if is_identifier { identifier(s) } else { text(s) };
                if let Err(code) = checked {
                    errors.add(field, code);
                }
            }
            Value::Array(items) => {
                let codes = is_identifier || field.ends_with("_codes") || field.ends_with("_ids");
                pending.extend(items.iter().map(|item| (field, codes, item)));
            }
            Value::Object(map) => {
                for (key, item) in map {
                    if let Err(code) = text(key) {
                        errors.add("body", code);
                    }
                    pending.push((key.as_str(), IDENTIFIER_FIELDS.contains(&key.as_str()), item));
                }
            }
            _ => {}
        }
    }
    errors.into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_bounded_and_printable() {
        assert_eq!(identifier("acme-42_ü"), Ok(()));
        assert_eq!(identifier(&"x".repeat(255)), Ok(()));
        assert_eq!(identifier(&"x".repeat(256)), Err("value_is_too_long"));
        assert_eq!(identifier("a\0b"), Err("value_is_invalid"));
        assert_eq!(identifier("a\nb"), Err("value_is_invalid"));
    }

    #[test]
    fn bodies_are_checked_at_any_depth() {
        let ok = json!({"customer": {"external_id": "c-1", "name": "Ça va\nbien", "tax_codes": ["vat"]}});
        assert_eq!(check_body(&ok), Ok(()));
        let long = json!({"customer": {"external_id": "x".repeat(100_000)}});
        assert_eq!(check_body(&long).unwrap_err().fields()["external_id"], vec!["value_is_too_long"]);
        let nul = json!({"plan": {"charges": [{"billable_metric_code": "a\u{0}"}], "name": "p\u{0}"}});
        let errors = check_body(&nul).unwrap_err();
        assert_eq!(errors.fields()["billable_metric_code"], vec!["value_is_invalid"]);
        assert_eq!(errors.fields()["name"], vec!["value_is_invalid"]);
        let codes = json!({"plan": {"tax_codes": ["ok", "x".repeat(300)]}});
        assert_eq!(check_body(&codes).unwrap_err().fields()["tax_codes"], vec!["value_is_too_long"]);
    }
}
