//! Validation of catalog input with Lago's error codes, so the API can answer them verbatim as
//! `{"code": "validation_errors", "error_details": {"<field>": ["<code>"]}}`.

use crate::catalog::{
    AggregationType, BillableMetric, ChargeModel, GraduatedPercentageRange, GraduatedRange, MetricFilter,
    PercentageProperties, PricingProperties, RoundingFunction, UnitsRounding, VolumeRange,
};
use crate::expression::Expression;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Field → error codes, as Lago's `error_details`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(transparent)]
pub struct ValidationErrors(BTreeMap<String, Vec<String>>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: &str, code: &str) -> Self {
        let mut errors = Self::new();
        errors.add(field, code);
        errors
    }

    /// Adds a code to a field (once).
    pub fn add(&mut self, field: &str, code: &str) {
        let codes = self.0.entry(field.to_owned()).or_default();
        if !codes.iter().any(|c| c == code) {
            codes.push(code.to_owned());
        }
    }

    pub fn extend(&mut self, other: ValidationErrors) {
        for (field, codes) in other.0 {
            for code in codes {
                self.add(&field, &code);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields(&self) -> &BTreeMap<String, Vec<String>> {
        &self.0
    }

    /// `Ok(value)` when there is no error.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// A billable metric as submitted.
#[derive(Debug, Clone, Default)]
pub struct MetricDraft {
    pub name: Option<String>,
    pub code: Option<String>,
    pub aggregation_type: Option<String>,
    pub field_name: Option<String>,
    pub recurring: bool,
    pub weighted_interval: Option<String>,
    pub rounding_function: Option<String>,
    pub rounding_precision: Option<i32>,
    pub expression: Option<String>,
    pub filters: Vec<MetricFilter>,
}

fn blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|s| s.trim().is_empty())
}

/// Validates a metric draft and builds the metric.
pub fn billable_metric(draft: &MetricDraft) -> Result<BillableMetric, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    if blank(&draft.name) {
        errors.add("name", "value_is_mandatory");
    }
    if blank(&draft.code) {
        errors.add("code", "value_is_mandatory");
    }
    let aggregation = match draft.aggregation_type.as_deref() {
        None => {
            errors.add("aggregation_type", "value_is_mandatory");
            None
        }
        Some(name) => {
            let parsed = AggregationType::parse(name);
            if parsed.is_none() {
                errors.add("aggregation_type", "value_is_invalid");
            }
            parsed
        }
    };
    if let Some(aggregation) = aggregation {
        if aggregation.needs_field_name() && blank(&draft.field_name) {
            errors.add("field_name", "value_is_mandatory");
        }
        if draft.recurring && !aggregation.allows_recurring() {
            errors.add("recurring", "not_compatible_with_aggregation_type");
        }
        if aggregation == AggregationType::WeightedSumAgg
            && draft.weighted_interval.as_deref().unwrap_or("seconds") != "seconds"
        {
            errors.add("weighted_interval", "value_is_invalid");
        }
    }
    let rounding = match draft.rounding_function.as_deref() {
        None => None,
        Some(name) => match RoundingFunction::parse(name) {
            Some(function) => Some(UnitsRounding { function, precision: draft.rounding_precision.unwrap_or(0) }),
            None => {
                errors.add("rounding_function", "value_is_invalid");
                None
            }
        },
    };
    let expression = match draft.expression.as_deref().filter(|e| !e.trim().is_empty()) {
        None => None,
        Some(source) => match Expression::parse(source) {
            Ok(expression) => Some(expression),
            Err(_) => {
                errors.add("expression", "invalid_expression");
                None
            }
        },
    };
    for filter in &draft.filters {
        if filter.key.trim().is_empty() {
            errors.add("filters", "value_is_mandatory");
        }
        if filter.values.is_empty() {
            errors.add("filters", "value_is_mandatory");
        }
    }
    let (Some(aggregation), true) = (aggregation, errors.is_empty()) else {
        return Err(errors);
    };
    Ok(BillableMetric {
        code: draft.code.clone().unwrap_or_default(),
        aggregation,
        field_name: if aggregation == AggregationType::CountAgg { None } else { draft.field_name.clone() },
        recurring: draft.recurring,
        rounding,
        expression,
        filters: draft.filters.clone(),
    })
}

/// The flags of a charge as submitted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChargeFlags {
    pub pay_in_advance: bool,
    pub invoiceable: bool,
    pub prorated: bool,
    pub min_amount_cents: i64,
    pub regroup_paid_fees: bool,
}

/// Lago's rules tying a charge model and its flags to the metric's aggregation.
pub fn charge_rules(metric: &BillableMetric, model: ChargeModel, flags: ChargeFlags) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    let aggregation = metric.aggregation;
    let model_fits = match model {
        ChargeModel::Dynamic => aggregation == AggregationType::SumAgg,
        ChargeModel::Percentage | ChargeModel::GraduatedPercentage => aggregation != AggregationType::LatestAgg,
        _ => true,
    };
    if !model_fits {
        errors.add("charge_model", "invalid_aggregation_type_or_charge_model");
    }
    if flags.pay_in_advance && (model == ChargeModel::Volume || !aggregation.allows_pay_in_advance()) {
        errors.add("pay_in_advance", "invalid_aggregation_type_or_charge_model");
    }
    if !flags.pay_in_advance && !flags.invoiceable {
        errors.add("invoiceable", "must_be_true_unless_pay_in_advance");
    }
    let paid_out_of_band = flags.pay_in_advance && !flags.invoiceable;
    if flags.regroup_paid_fees && !paid_out_of_band {
        errors.add("regroup_paid_fees", "only_compatible_with_pay_in_advance_and_non_invoiceable");
    }
    if flags.min_amount_cents < 0 {
        errors.add("min_amount_cents", "value_is_out_of_range");
    } else if flags.pay_in_advance && flags.min_amount_cents > 0 {
        errors.add("min_amount_cents", "not_compatible_with_pay_in_advance");
    }
    if flags.prorated {
        let allowed = aggregation != AggregationType::WeightedSumAgg
            && metric.recurring
            && if flags.pay_in_advance {
                model == ChargeModel::Standard
            } else {
                matches!(model, ChargeModel::Standard | ChargeModel::Volume | ChargeModel::Graduated)
            };
        if !allowed {
            errors.add("prorated", "invalid_billable_metric_or_charge_model");
        }
    }
    errors
}

/// Parses and validates a charge's `properties` for its model. Errors land under `properties`,
/// as in Lago. Money values must be decimal strings (`"0.05"`), counts integers.
pub fn charge_properties(model: ChargeModel, properties: &Value) -> Result<PricingProperties, ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let mut fail = |code: &str| errors.add("properties", code);
    let parsed = match model {
        ChargeModel::Standard => {
            let amount = amount(properties, "amount");
            if amount.is_none() {
                fail("invalid_amount");
            }
            amount.map(|amount| PricingProperties::Standard { amount })
        }
        ChargeModel::Package => {
            let amount = amount(properties, "amount");
            let package_size = integer(properties, "package_size").filter(|size| *size > 0);
            let free_units = optional_integer(properties, "free_units");
            if amount.is_none() {
                fail("invalid_amount");
            }
            if package_size.is_none() {
                fail("invalid_package_size");
            }
            if free_units.is_none() {
                fail("invalid_free_units");
            }
            match (amount, package_size, free_units) {
                (Some(amount), Some(size), Some(free)) => Some(PricingProperties::Package {
                    amount,
                    package_size: Decimal::from(size),
                    free_units: Decimal::from(free.unwrap_or(0)),
                }),
                _ => None,
            }
        }
        ChargeModel::Percentage => percentage(properties, &mut fail).map(PricingProperties::Percentage),
        ChargeModel::Graduated => ranges(properties, "graduated_ranges", "graduated", &mut fail, |r, fail| {
            let per_unit_amount = amount(r, "per_unit_amount");
            let flat_amount = amount(r, "flat_amount");
            if per_unit_amount.is_none() || flat_amount.is_none() {
                fail("invalid_amount");
            }
            Some((per_unit_amount?, flat_amount?))
        })
        .map(|ranges| PricingProperties::Graduated {
            ranges: ranges
                .into_iter()
                .map(|(from_value, to_value, (per_unit_amount, flat_amount))| GraduatedRange {
                    from_value,
                    to_value,
                    per_unit_amount,
                    flat_amount,
                })
                .collect(),
        }),
        ChargeModel::GraduatedPercentage => {
            ranges(properties, "graduated_percentage_ranges", "graduated_percentage", &mut fail, |r, fail| {
                let rate = amount(r, "rate");
                let flat_amount = amount(r, "flat_amount");
                if rate.is_none() {
                    fail("invalid_rate");
                }
                if flat_amount.is_none() {
                    fail("invalid_fixed_amount");
                }
                Some((rate?, flat_amount?))
            })
            .map(|ranges| PricingProperties::GraduatedPercentage {
                ranges: ranges
                    .into_iter()
                    .map(|(from_value, to_value, (rate, flat_amount))| GraduatedPercentageRange {
                        from_value,
                        to_value,
                        rate,
                        flat_amount,
                    })
                    .collect(),
            })
        }
        ChargeModel::Volume => ranges(properties, "volume_ranges", "volume", &mut fail, |r, fail| {
            let per_unit_amount = amount(r, "per_unit_amount");
            let flat_amount = amount(r, "flat_amount");
            if per_unit_amount.is_none() || flat_amount.is_none() {
                fail("invalid_amount");
            }
            Some((per_unit_amount?, flat_amount?))
        })
        .map(|ranges| PricingProperties::Volume {
            ranges: ranges
                .into_iter()
                .map(|(from_value, to_value, (per_unit_amount, flat_amount))| VolumeRange {
                    from_value,
                    to_value,
                    per_unit_amount,
                    flat_amount,
                })
                .collect(),
        }),
        ChargeModel::Dynamic => Some(PricingProperties::Dynamic),
    };
    match parsed {
        Some(properties) if errors.is_empty() => Ok(properties),
        _ => Err(errors),
    }
}

/// A non-negative decimal given as a JSON string, as Lago requires for money in properties.
fn amount(object: &Value, key: &str) -> Option<Decimal> {
    let text = object.get(key)?.as_str()?;
    Decimal::from_str(text.trim()).ok().filter(|d| !d.is_sign_negative())
}

fn optional_amount(object: &Value, key: &str) -> Option<Option<Decimal>> {
    match object.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(_) => amount(object, key).map(Some),
    }
}

fn integer(object: &Value, key: &str) -> Option<u64> {
    object.get(key)?.as_u64()
}

fn optional_integer(object: &Value, key: &str) -> Option<Option<u64>> {
    match object.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(v) => v.as_u64().map(Some),
    }
}

fn percentage(properties: &Value, fail: &mut impl FnMut(&str)) -> Option<PercentageProperties> {
    let rate = amount(properties, "rate");
    let fixed_amount = optional_amount(properties, "fixed_amount");
    let free_units_per_events = match properties.get("free_units_per_events") {
        None | Some(Value::Null) => Some(None),
        Some(v) => v.as_u64().filter(|n| *n > 0).map(Some),
    };
    let free_units_per_total_aggregation = optional_amount(properties, "free_units_per_total_aggregation");
    let min = optional_amount(properties, "per_transaction_min_amount");
    let max = optional_amount(properties, "per_transaction_max_amount");
    if rate.is_none() {
        fail("invalid_rate");
    }
    if fixed_amount.is_none() {
        fail("invalid_fixed_amount");
    }
    if free_units_per_events.is_none() {
        fail("invalid_free_units_per_events");
    }
    if free_units_per_total_aggregation.is_none() {
        fail("invalid_free_units_per_total_aggregation");
    }
    if min.is_none() {
        fail("invalid_per_transaction_min_amount");
    }
    if max.is_none() {
        fail("invalid_per_transaction_max_amount");
    }
    if let (Some(Some(min)), Some(Some(max))) = (min, max) {
        if min > max {
            fail("per_transaction_max_amount_must_be_greater_than_min");
            return None;
        }
    }
    Some(PercentageProperties {
        rate: rate?,
        fixed_amount: fixed_amount?,
        free_units_per_events: free_units_per_events?,
        free_units_per_total_aggregation: free_units_per_total_aggregation?,
        per_transaction_min_amount: min?,
        per_transaction_max_amount: max?,
    })
}

type Bounds = (Decimal, Option<Decimal>);

/// Reads tiered ranges and checks they are contiguous: the first starts at 0 or 1, each next one
/// at the previous `to_value` or one above, only the last is open, and each `to > from`.
fn ranges<T>(
    properties: &Value,
    key: &str,
    name: &str,
    fail: &mut impl FnMut(&str),
    mut prices: impl FnMut(&Value, &mut dyn FnMut(&str)) -> Option<T>,
) -> Option<Vec<(Decimal, Option<Decimal>, T)>> {
    let Some(list) = properties.get(key).and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        fail(&format!("missing_{name}_ranges"));
        return None;
    };
    let mut parsed = Vec::with_capacity(list.len());
    let mut previous: Option<Bounds> = None;
    let mut contiguous = true;
    for (index, range) in list.iter().enumerate() {
        let from = range.get("from_value").and_then(Value::as_u64).map(Decimal::from);
        let to = match range.get("to_value") {
            None | Some(Value::Null) => Some(None),
            Some(v) => v.as_u64().map(|n| Some(Decimal::from(n))),
        };
        let price = prices(range, &mut *fail);
        let (Some(from), Some(to)) = (from, to) else {
            contiguous = false;
            continue;
        };
        let last = index + 1 == list.len();
        let starts_right = match previous {
            None => from <= Decimal::ONE,
            Some((_, None)) => false,
            Some((_, Some(prev_to))) => from == prev_to || from == prev_to + Decimal::ONE,
        };
        let ends_right = match to {
            None => last,
            Some(to) => to > from,
        };
        contiguous &= starts_right && ends_right;
        previous = Some((from, to));
        if let Some(price) = price {
            parsed.push((from, to, price));
        }
    }
    if !contiguous {
        fail(&format!("invalid_{name}_ranges"));
        return None;
    }
    (parsed.len() == list.len()).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::json;

    fn codes(errors: &ValidationErrors, field: &str) -> Vec<String> {
        errors.fields().get(field).cloned().unwrap_or_default()
    }

    #[test]
    fn money_in_properties_must_be_a_decimal_string() {
        // Lago's documented example: a numeric amount is refused.
        let err = charge_properties(ChargeModel::Standard, &json!({"amount": 5})).unwrap_err();
        assert_eq!(serde_json::to_value(&err).unwrap(), json!({"properties": ["invalid_amount"]}));
        assert!(charge_properties(ChargeModel::Standard, &json!({"amount": "-1"})).is_err());
        assert_eq!(
            charge_properties(ChargeModel::Standard, &json!({"amount": "0.05"})),
            Ok(PricingProperties::Standard { amount: dec!(0.05) })
        );
    }

    #[test]
    fn graduated_ranges_must_be_contiguous() {
        let ok = json!({"graduated_ranges": [
            {"from_value": 0, "to_value": 100, "per_unit_amount": "1", "flat_amount": "0"},
            {"from_value": 101, "to_value": null, "per_unit_amount": "0.5", "flat_amount": "2"}
        ]});
        assert!(charge_properties(ChargeModel::Graduated, &ok).is_ok());
        for bad in [
            json!({"graduated_ranges": [
                {"from_value": 0, "to_value": 100, "per_unit_amount": "1", "flat_amount": "0"},
                {"from_value": 150, "to_value": null, "per_unit_amount": "0.5", "flat_amount": "0"}]}), // gap
            json!({"graduated_ranges": [
                {"from_value": 0, "to_value": null, "per_unit_amount": "1", "flat_amount": "0"},
                {"from_value": 1, "to_value": 5, "per_unit_amount": "0.5", "flat_amount": "0"}]}), // open before last
            json!({"graduated_ranges": [{"from_value": 2, "to_value": null, "per_unit_amount": "1", "flat_amount": "0"}]}),
        ] {
            let err = charge_properties(ChargeModel::Graduated, &bad).unwrap_err();
            assert_eq!(codes(&err, "properties"), vec!["invalid_graduated_ranges"], "{bad}");
        }
        let err = charge_properties(ChargeModel::Volume, &json!({})).unwrap_err();
        assert_eq!(codes(&err, "properties"), vec!["missing_volume_ranges"]);
    }

    #[test]
    fn package_and_percentage_properties() {
        let err = charge_properties(ChargeModel::Package, &json!({"amount": "1", "package_size": 0})).unwrap_err();
        assert_eq!(codes(&err, "properties"), vec!["invalid_package_size"]);
        let err = charge_properties(ChargeModel::Percentage, &json!({"rate": "1", "fixed_amount": 2})).unwrap_err();
        assert_eq!(codes(&err, "properties"), vec!["invalid_fixed_amount"]);
        let err = charge_properties(
            ChargeModel::Percentage,
            &json!({"rate": "1", "per_transaction_min_amount": "5", "per_transaction_max_amount": "1"}),
        )
        .unwrap_err();
        assert_eq!(codes(&err, "properties"), vec!["per_transaction_max_amount_must_be_greater_than_min"]);
        assert!(charge_properties(ChargeModel::Percentage, &json!({"rate": "1.5", "free_units_per_events": 3})).is_ok());
    }

    #[test]
    fn aggregation_and_charge_model_matrix() {
        let latest = BillableMetric::simple("l", AggregationType::LatestAgg, Some("v"));
        let max = BillableMetric::simple("m", AggregationType::MaxAgg, Some("v"));
        let sum = BillableMetric::simple("s", AggregationType::SumAgg, Some("v"));
        let arrears = ChargeFlags { invoiceable: true, ..Default::default() };
        let advance = ChargeFlags { pay_in_advance: true, invoiceable: true, ..Default::default() };
        let code = "invalid_aggregation_type_or_charge_model";
        assert_eq!(codes(&charge_rules(&latest, ChargeModel::Percentage, arrears), "charge_model"), vec![code]);
        assert_eq!(codes(&charge_rules(&max, ChargeModel::Dynamic, arrears), "charge_model"), vec![code]);
        assert!(charge_rules(&sum, ChargeModel::Dynamic, arrears).is_empty());
        assert_eq!(codes(&charge_rules(&max, ChargeModel::Standard, advance), "pay_in_advance"), vec![code]);
        assert_eq!(codes(&charge_rules(&sum, ChargeModel::Volume, advance), "pay_in_advance"), vec![code]);
        let not_invoiceable = ChargeFlags::default();
        assert_eq!(
            codes(&charge_rules(&sum, ChargeModel::Standard, not_invoiceable), "invoiceable"),
            vec!["must_be_true_unless_pay_in_advance"]
        );
        let min_in_advance = ChargeFlags { min_amount_cents: 100, ..advance };
        assert_eq!(
            codes(&charge_rules(&sum, ChargeModel::Standard, min_in_advance), "min_amount_cents"),
            vec!["not_compatible_with_pay_in_advance"]
        );
        // prorated needs a recurring metric
        let prorated = ChargeFlags { prorated: true, ..arrears };
        assert_eq!(
            codes(&charge_rules(&sum, ChargeModel::Standard, prorated), "prorated"),
            vec!["invalid_billable_metric_or_charge_model"]
        );
        let recurring = BillableMetric { recurring: true, ..sum };
        assert!(charge_rules(&recurring, ChargeModel::Graduated, prorated).is_empty());
    }

    #[test]
    fn metric_rules() {
        let draft = MetricDraft {
            name: Some("Seats".into()),
            code: Some("seats".into()),
            aggregation_type: Some("max_agg".into()),
            field_name: None,
            recurring: true,
            ..Default::default()
        };
        let err = billable_metric(&draft).unwrap_err();
        assert_eq!(codes(&err, "field_name"), vec!["value_is_mandatory"]);
        assert_eq!(codes(&err, "recurring"), vec!["not_compatible_with_aggregation_type"]);

        let bad_expression = MetricDraft {
            aggregation_type: Some("sum_agg".into()),
            field_name: Some("x".into()),
            expression: Some("round(".into()),
            ..draft.clone()
        };
        let err = billable_metric(&bad_expression).unwrap_err();
        assert_eq!(codes(&err, "expression"), vec!["invalid_expression"]);

        let unknown = MetricDraft { aggregation_type: Some("median_agg".into()), ..draft.clone() };
        assert_eq!(codes(&billable_metric(&unknown).unwrap_err(), "aggregation_type"), vec!["value_is_invalid"]);

        let count = MetricDraft {
            aggregation_type: Some("count_agg".into()),
            field_name: Some("ignored".into()),
            recurring: false,
            ..draft
        };
        let metric = billable_metric(&count).unwrap();
        assert_eq!((metric.aggregation, metric.field_name), (AggregationType::CountAgg, None));
    }
}
