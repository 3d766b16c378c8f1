//! Which filter of a charge an event falls in, and which pricing group.

use crate::catalog::{ChargeFilter, ALL_FILTER_VALUES};
use serde_json::{Map, Value};

/// A property value as text, the way filters and groups compare it (`1` and `"1"` are equal).
fn property_text(properties: &Map<String, Value>, key: &str) -> Option<String> {
    match properties.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Index of the filter the event matches: every key of the filter must be present with an
/// accepted value (or any value for [`ALL_FILTER_VALUES`]); among matches, the one with the most
/// keys wins, the first declared on a tie. `None`: price with the charge's own properties.
pub fn matching_filter(filters: &[ChargeFilter], properties: &Map<String, Value>) -> Option<usize> {
    filters
        .iter()
        .enumerate()
        .filter(|(_, filter)| {
            filter.values.iter().all(|(key, accepted)| match property_text(properties, key) {
                None => false,
                Some(value) => accepted.iter().any(|a| a == ALL_FILTER_VALUES || *a == value),
            })
        })
        .max_by(|(ia, a), (ib, b)| a.values.len().cmp(&b.values.len()).then(ib.cmp(ia)))
        .map(|(index, _)| index)
}

/// The pricing group of an event: its values for the charge's `pricing_group_keys`, in key
/// order (`None` where the event lacks the key, as Lago groups those under null).
pub fn pricing_group(keys: &[String], properties: &Map<String, Value>) -> Vec<Option<String>> {
    keys.iter().map(|key| property_text(properties, key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PricingProperties;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn filter(values: &[(&str, &[&str])]) -> ChargeFilter {
        ChargeFilter {
            values: values.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            properties: PricingProperties::Standard { amount: Decimal::ONE },
            invoice_display_name: None,
        }
    }

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn most_specific_filter_wins_and_unmatched_events_fall_through() {
        let filters = [
            filter(&[("region", &["us"])]),
            filter(&[("region", &["us"]), ("tier", &["gold"])]),
            filter(&[("region", &[ALL_FILTER_VALUES])]),
        ];
        assert_eq!(matching_filter(&filters, &props(json!({"region": "us", "tier": "gold"}))), Some(1));
        assert_eq!(matching_filter(&filters, &props(json!({"region": "us", "tier": "silver"}))), Some(0));
        assert_eq!(matching_filter(&filters, &props(json!({"region": "eu"}))), Some(2)); // any value
        assert_eq!(matching_filter(&filters, &props(json!({"tier": "gold"}))), None);
        // no region
    }

    #[test]
    fn groups_by_property_values_with_null_for_missing_keys() {
        let keys = vec!["region".to_string(), "cloud".to_string()];
        assert_eq!(
            pricing_group(&keys, &props(json!({"region": "eu", "cloud": 1}))),
            vec![Some("eu".into()), Some("1".into())]
        );
        assert_eq!(pricing_group(&keys, &props(json!({"region": "eu"}))), vec![Some("eu".into()), None]);
    }
}
