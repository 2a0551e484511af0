//! Raw manifest values as `toml::Value` (what a configuration point sets), and
//! the two texts made from them: the `--set` text they are applied with and the
//! short text a label shows.

use llem_manifest::{RawItem, RawValue};

/// The value of a raw item; datetimes that toml cannot read back stay strings.
pub(crate) fn to_toml(item: &RawItem) -> toml::Value {
    match &item.value {
        RawValue::String(s) => toml::Value::String(s.clone()),
        RawValue::Integer(i) => toml::Value::Integer(*i),
        RawValue::Float(x) => toml::Value::Float(*x),
        RawValue::Boolean(b) => toml::Value::Boolean(*b),
        RawValue::Datetime(d) => d
            .parse()
            .map_or_else(|_| toml::Value::String(d.clone()), toml::Value::Datetime),
        RawValue::Array(items) => toml::Value::Array(items.iter().map(to_toml).collect()),
        RawValue::Table(t) => toml::Value::Table(
            t.entries
                .iter()
                .map(|e| (e.key.clone(), to_toml(&e.item)))
                .collect(),
        ),
    }
}

/// The value as TOML text, for `RawManifest::apply_set` to read back.
pub(crate) fn toml_text(value: &toml::Value) -> String {
    value.to_string()
}

/// The value as a label shows it: strings bare, everything else as TOML.
pub(crate) fn label_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => toml_text(other),
    }
}

/// Canonical JSON of a value: table keys sorted, integers and floats told apart
/// (`1` vs `1.0`), datetimes tagged. Independent of how the TOML was written.
pub(crate) fn canonical(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        // A float is kept as its shortest round-trip text: JSON has one number type.
        toml::Value::Float(x) => serde_json::json!({ "float": format!("{x:?}") }),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => serde_json::json!({ "datetime": d.to_string() }),
        toml::Value::Array(items) => J::Array(items.iter().map(canonical).collect()),
        toml::Value::Table(t) => {
            let sorted: std::collections::BTreeMap<&String, serde_json::Value> =
                t.iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::json!({ "table": sorted })
        }
    }
}

/// Canonical JSON text: serde_json writes a `BTreeMap` in key order, and every
/// object built here comes from one, so the text does not depend on whether
/// serde_json was built to preserve insertion order.
pub(crate) fn canonical_text(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: std::collections::BTreeMap<&String, &serde_json::Value> =
                    map.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_as_toml_and_labels() {
        let s = toml::Value::String("a b".into());
        assert_eq!(toml_text(&s), "\"a b\"");
        assert_eq!(label_text(&s), "a b");
        assert_eq!(toml_text(&toml::Value::Integer(8)), "8");
        assert_eq!(toml_text(&toml::Value::Float(0.5)), "0.5");
        let list = toml::Value::Array(vec![toml::Value::Integer(1), toml::Value::Integer(2)]);
        assert_eq!(label_text(&list), "[1, 2]");
    }

    #[test]
    fn canonical_text_sorts_keys_and_tells_numbers_apart() {
        let v = serde_json::json!({"b": 1, "a": [true, {"d": 2, "c": 3}]});
        assert_eq!(canonical_text(&v), r#"{"a":[true,{"c":3,"d":2}],"b":1}"#);
        assert_ne!(
            canonical(&toml::Value::Integer(1)),
            canonical(&toml::Value::Float(1.0))
        );
    }
}
