//! A length distribution, as a manifest table:
//! `{ dist = "fixed", value = N }`, `{ dist = "uniform", min = A, max = B }` or
//! `{ dist = "normal", mean = M, std = S, min = A, max = B }` (`min`/`max` optional).

use crate::{Rng, check_keys};
use llem_sdk::PluginError;
use serde_json::{Map, Value, json};

/// A distribution of token counts (integers ≥ 1).
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    Fixed(u32),
    /// Uniform over the integers `min..=max`.
    Uniform {
        min: u32,
        max: u32,
    },
    /// Normal, rounded to the nearest integer and truncated to `min..=max`
    /// (`min` defaults to 1, `max` to unbounded): values outside are redrawn,
    /// so the bounds hold exactly; after 1000 draws outside, clamped.
    Normal {
        mean: f64,
        std: f64,
        min: u32,
        max: u32,
    },
}

impl Dist {
    /// The manifest value of a fixed distribution, for defaults.
    pub fn fixed_json(value: u32) -> Value {
        json!({ "dist": "fixed", "value": value })
    }

    /// Parse option `option` from its table; errors name `option.key`.
    pub fn parse(option: &str, value: &Value) -> Result<Self, PluginError> {
        let Value::Object(table) = value else {
            return Err(PluginError::invalid_config(
                option,
                format!(
                    "expected a table such as {{ dist = \"fixed\", value = 128 }}, got {value}"
                ),
            ));
        };
        let kind = match table.get("dist") {
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => {
                return Err(PluginError::invalid_config(
                    &format!("{option}.dist"),
                    format!("expected \"fixed\", \"uniform\" or \"normal\", got {other}"),
                ));
            }
            None => {
                return Err(PluginError::invalid_config(
                    &format!("{option}.dist"),
                    "missing; expected \"fixed\", \"uniform\" or \"normal\"",
                ));
            }
        };
        let dist = match kind {
            "fixed" => {
                check_keys(option, table, &["dist", "value"])?;
                Dist::Fixed(count(option, table, "value")?)
            }
            "uniform" => {
                check_keys(option, table, &["dist", "min", "max"])?;
                let min = count(option, table, "min")?;
                let max = count(option, table, "max")?;
                if min > max {
                    return Err(PluginError::invalid_config(
                        &format!("{option}.max"),
                        format!("{max} is less than min = {min}"),
                    ));
                }
                Dist::Uniform { min, max }
            }
            "normal" => {
                check_keys(option, table, &["dist", "mean", "std", "min", "max"])?;
                let mean = float(option, table, "mean")?;
                let std = float(option, table, "std")?;
                if std < 0.0 {
                    return Err(PluginError::invalid_config(
                        &format!("{option}.std"),
                        format!("must be ≥ 0, got {std}"),
                    ));
                }
                let min = match table.get("min") {
                    None | Some(Value::Null) => 1,
                    Some(_) => count(option, table, "min")?,
                };
                let max = match table.get("max") {
                    None | Some(Value::Null) => u32::MAX,
                    Some(_) => count(option, table, "max")?,
                };
                if min > max {
                    return Err(PluginError::invalid_config(
                        &format!("{option}.max"),
                        format!("{max} is less than min = {min}"),
                    ));
                }
                if mean + 4.0 * std < f64::from(min) || mean - 4.0 * std > f64::from(max) {
                    return Err(PluginError::invalid_config(
                        &format!("{option}.mean"),
                        format!("mean {mean} with std {std} lies outside min = {min}, max = {max}"),
                    ));
                }
                Dist::Normal {
                    mean,
                    std,
                    min,
                    max,
                }
            }
            other => {
                return Err(PluginError::invalid_config(
                    &format!("{option}.dist"),
                    format!(
                        "unknown distribution \"{other}\"; expected \"fixed\", \"uniform\" or \"normal\""
                    ),
                ));
            }
        };
        Ok(dist)
    }

    pub fn sample(&self, rng: &mut Rng) -> u32 {
        match *self {
            Dist::Fixed(value) => value,
            Dist::Uniform { min, max } => {
                rng.range_inclusive(u64::from(min), u64::from(max)) as u32
            }
            Dist::Normal {
                mean,
                std,
                min,
                max,
            } => {
                let (lo, hi) = (f64::from(min), f64::from(max));
                let mut x = mean;
                for _ in 0..1000 {
                    x = (mean + std * rng.standard_normal()).round();
                    if (lo..=hi).contains(&x) {
                        break;
                    }
                }
                x.clamp(lo, hi) as u32
            }
        }
    }
}

/// A token count ≥ 1 at `option.key`.
fn count(option: &str, table: &Map<String, Value>, key: &str) -> Result<u32, PluginError> {
    let path = format!("{option}.{key}");
    match table.get(key) {
        None => Err(PluginError::invalid_config(&path, "missing")),
        Some(value) => match value.as_u64().and_then(|v| u32::try_from(v).ok()) {
            Some(v) if v >= 1 => Ok(v),
            _ => Err(PluginError::invalid_config(
                &path,
                format!("expected a whole number of tokens ≥ 1, got {value}"),
            )),
        },
    }
}

fn float(option: &str, table: &Map<String, Value>, key: &str) -> Result<f64, PluginError> {
    let path = format!("{option}.{key}");
    match table.get(key) {
        None => Err(PluginError::invalid_config(&path, "missing")),
        Some(value) => value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
            PluginError::invalid_config(&path, format!("expected a number, got {value}"))
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_and_samples() {
        let mut rng = Rng::new(3);
        let d = Dist::parse("x", &json!({"dist": "uniform", "min": 5, "max": 9})).unwrap();
        assert!((0..1000).all(|_| (5..=9).contains(&d.sample(&mut rng))));
        let d = Dist::parse(
            "x",
            &json!({"dist": "normal", "mean": 100, "std": 30, "min": 90}),
        )
        .unwrap();
        assert!((0..1000).all(|_| d.sample(&mut rng) >= 90));
        assert_eq!(
            Dist::parse("x", &Dist::fixed_json(7)).unwrap(),
            Dist::Fixed(7)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let key = |v: Value| Dist::parse("input_tokens", &v).unwrap_err().key.unwrap();
        assert_eq!(
            key(json!({"dist": "normal", "mean": 5})),
            "input_tokens.std"
        );
        assert_eq!(
            key(json!({"dist": "fixed", "value": 5, "std": 1})),
            "input_tokens.std"
        );
        assert_eq!(key(json!({"dist": "poisson"})), "input_tokens.dist");
        assert_eq!(key(json!({"value": 3})), "input_tokens.dist");
        assert_eq!(
            key(json!({"dist": "fixed", "value": 0})),
            "input_tokens.value"
        );
        assert_eq!(
            key(json!({"dist": "uniform", "min": 9, "max": 2})),
            "input_tokens.max"
        );
        assert_eq!(
            key(json!({"dist": "normal", "mean": 5, "std": -1})),
            "input_tokens.std"
        );
    }
}
