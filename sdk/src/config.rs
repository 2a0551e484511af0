//! A plugin's manifest sub-table, as the kernel resolved it.

use crate::types::PluginError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The plugin's manifest sub-table, with defaults filled and unknown keys
/// already rejected by the kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    table: Map<String, Value>,
}

impl Config {
    pub fn from_json(text: &str) -> Result<Self, PluginError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| PluginError::other(format!("configuration is not valid JSON: {e}")))?;
        match value {
            Value::Object(table) => Ok(Config { table }),
            Value::Null => Ok(Config::default()),
            other => Err(PluginError::other(format!(
                "configuration must be a table, got {other}"
            ))),
        }
    }

    pub fn table(&self) -> &Map<String, Value> {
        &self.table
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.table.get(key)
    }

    /// Deserialize the whole table into a typed struct, naming the key on error.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        serde_json::from_value(Value::Object(self.table.clone()))
            .map_err(|e| PluginError::new(crate::ErrorCode::InvalidConfig, e.to_string()))
    }

    /// One key, typed. Missing keys are an error naming the key.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, PluginError> {
        let value = self
            .table
            .get(key)
            .ok_or_else(|| PluginError::invalid_config(key, "missing"))?;
        serde_json::from_value(value.clone())
            .map_err(|e| PluginError::invalid_config(key, e.to_string()))
    }

    /// One key, typed, or `None` when absent or null.
    pub fn optional<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, PluginError> {
        match self.table.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value(value.clone())
                .map(Some)
                .map_err(|e| PluginError::invalid_config(key, e.to_string())),
        }
    }

    /// One string key that must be one of `choices`, or `None` when absent
    /// or null. A value outside `choices` is refused, naming the key:
    /// `"x" is not one of a, b`.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<Option<String>, PluginError> {
        let value: Option<String> = self.optional(key)?;
        if let Some(v) = &value {
            check_choice(key, v, choices)?;
        }
        Ok(value)
    }

    /// One string key that must be one of `choices`, `default` when absent or
    /// null. The default is checked like a given value.
    pub fn choice_or(
        &self,
        key: &str,
        default: &str,
        choices: &[&str],
    ) -> Result<String, PluginError> {
        let value: String = self.optional(key)?.unwrap_or_else(|| default.to_owned());
        check_choice(key, &value, choices)?;
        Ok(value)
    }

    /// A program to run (a path or a name looked up on `PATH`), `default`
    /// when absent or null. Empty or blank text is refused: `must name a program`.
    pub fn program_or(&self, key: &str, default: &str) -> Result<String, PluginError> {
        let value: String = self.optional(key)?.unwrap_or_else(|| default.to_owned());
        if value.trim().is_empty() {
            return Err(PluginError::invalid_config(key, "must name a program"));
        }
        Ok(value)
    }

    /// A whole number of seconds, at least 1 and at most `u32::MAX`, `default`
    /// when absent or null. Anything else is refused:
    /// `must be a positive number of seconds, found N`.
    pub fn positive_seconds_or(&self, key: &str, default: i64) -> Result<u32, PluginError> {
        let seconds: i64 = self.optional(key)?.unwrap_or(default);
        u32::try_from(seconds)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| {
                PluginError::invalid_config(
                    key,
                    format!("must be a positive number of seconds, found {seconds}"),
                )
            })
    }

    /// An environment table (absent or null: empty), as `(name, value)` pairs.
    /// Names must be ones a process environment can hold (not
    /// empty, no `=`, no NUL); values are strings, or numbers and booleans
    /// written as TOML would show them, without NUL bytes. Errors name the
    /// entry, `KEY.NAME` (e.g. `env.CUDA_VISIBLE_DEVICES`).
    pub fn env_table(&self, key: &str) -> Result<Vec<(String, String)>, PluginError> {
        let table: Map<String, Value> = self.optional(key)?.unwrap_or_default();
        let mut env = Vec::with_capacity(table.len());
        for (name, value) in table {
            let entry = format!("{key}.{name}");
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(PluginError::invalid_config(
                    &entry,
                    "is not a valid environment variable name",
                ));
            }
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(PluginError::invalid_config(
                        &entry,
                        format!("must be a string, number or boolean, found {other}"),
                    ));
                }
            };
            if text.contains('\0') {
                return Err(PluginError::invalid_config(&entry, "contains a NUL byte"));
            }
            env.push((name, text));
        }
        Ok(env)
    }
}

fn check_choice(key: &str, value: &str, choices: &[&str]) -> Result<(), PluginError> {
    if choices.contains(&value) {
        return Ok(());
    }
    Err(PluginError::invalid_config(
        key,
        format!("{value:?} is not one of {}", choices.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    fn config(value: Value) -> Config {
        Config::from_json(&value.to_string()).unwrap()
    }

    /// The error's key and message, after checking it is an invalid-config error.
    fn refusal(err: PluginError) -> (String, String) {
        assert_eq!(err.code, ErrorCode::InvalidConfig, "{err:?}");
        (err.key.expect("error names a key"), err.message)
    }

    const FRUITS: &[&str] = &["apple", "pear"];

    #[test]
    fn choice_accepts_listed_values_and_absence() {
        let c = config(json!({"fruit": "pear", "none": null}));
        assert_eq!(c.choice("fruit", FRUITS).unwrap().as_deref(), Some("pear"));
        assert_eq!(c.choice("none", FRUITS).unwrap(), None);
        assert_eq!(c.choice("missing", FRUITS).unwrap(), None);
    }

    #[test]
    fn choice_refuses_unlisted_and_mistyped_values() {
        let c = config(json!({"fruit": "plum", "number": 3}));
        let (key, message) = refusal(c.choice("fruit", FRUITS).unwrap_err());
        assert_eq!(key, "fruit");
        assert_eq!(message, r#""plum" is not one of apple, pear"#);
        let (key, _) = refusal(c.choice("number", FRUITS).unwrap_err());
        assert_eq!(key, "number");
    }

    #[test]
    fn choice_or_uses_and_checks_the_default() {
        let c = config(json!({"fruit": "apple", "none": null, "bad": "fig"}));
        assert_eq!(c.choice_or("fruit", "pear", FRUITS).unwrap(), "apple");
        assert_eq!(c.choice_or("none", "pear", FRUITS).unwrap(), "pear");
        assert_eq!(c.choice_or("missing", "pear", FRUITS).unwrap(), "pear");
        let (key, message) = refusal(c.choice_or("bad", "pear", FRUITS).unwrap_err());
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("bad", r#""fig" is not one of apple, pear"#)
        );
        let (key, message) = refusal(c.choice_or("missing", "kiwi", FRUITS).unwrap_err());
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("missing", r#""kiwi" is not one of apple, pear"#)
        );
    }

    #[test]
    fn program_or_accepts_names_and_paths_and_falls_back_to_the_default() {
        let c = config(json!({"python": "/opt/venv/bin/python", "none": null}));
        assert_eq!(
            c.program_or("python", "python3").unwrap(),
            "/opt/venv/bin/python"
        );
        assert_eq!(c.program_or("none", "python3").unwrap(), "python3");
        assert_eq!(c.program_or("missing", "vllm").unwrap(), "vllm");
    }

    #[test]
    fn program_or_refuses_blank_text_and_non_strings() {
        let c = config(json!({"empty": "", "blank": "  \t", "number": 7}));
        for key in ["empty", "blank"] {
            let (k, message) = refusal(c.program_or(key, "python3").unwrap_err());
            assert_eq!((k.as_str(), message.as_str()), (key, "must name a program"));
        }
        let (k, message) = refusal(c.program_or("missing", " ").unwrap_err());
        assert_eq!(
            (k.as_str(), message.as_str()),
            ("missing", "must name a program")
        );
        let (k, _) = refusal(c.program_or("number", "python3").unwrap_err());
        assert_eq!(k, "number");
    }

    #[test]
    fn positive_seconds_or_accepts_one_to_u32_max() {
        let c = config(json!({"one": 1, "max": u32::MAX, "none": null}));
        assert_eq!(c.positive_seconds_or("one", 600).unwrap(), 1);
        assert_eq!(c.positive_seconds_or("max", 600).unwrap(), u32::MAX);
        assert_eq!(c.positive_seconds_or("none", 600).unwrap(), 600);
        assert_eq!(c.positive_seconds_or("missing", 1800).unwrap(), 1800);
    }

    #[test]
    fn positive_seconds_or_refuses_zero_negative_too_large_and_non_integers() {
        let too_large = i64::from(u32::MAX) + 1;
        let c = config(json!({"zero": 0, "negative": -5, "large": too_large, "float": 1.5}));
        for (key, found) in [
            ("zero", "0".to_owned()),
            ("negative", "-5".to_owned()),
            ("large", too_large.to_string()),
        ] {
            let (k, message) = refusal(c.positive_seconds_or(key, 600).unwrap_err());
            assert_eq!(k, key);
            assert_eq!(
                message,
                format!("must be a positive number of seconds, found {found}")
            );
        }
        let (k, message) = refusal(c.positive_seconds_or("missing", 0).unwrap_err());
        assert_eq!(k, "missing");
        assert_eq!(message, "must be a positive number of seconds, found 0");
        let (k, _) = refusal(c.positive_seconds_or("float", 600).unwrap_err());
        assert_eq!(k, "float");
    }

    #[test]
    fn env_table_writes_strings_numbers_and_booleans() {
        let c = config(json!({
            "env": {"CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": 4, "RATIO": 0.5, "DEBUG": true},
            "none": null,
        }));
        let mut env = c.env_table("env").unwrap();
        env.sort();
        let expected = [
            ("CUDA_VISIBLE_DEVICES", "0,1"),
            ("DEBUG", "true"),
            ("OMP_NUM_THREADS", "4"),
            ("RATIO", "0.5"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(env, expected);
        assert!(c.env_table("none").unwrap().is_empty());
        assert!(c.env_table("missing").unwrap().is_empty());
    }

    #[test]
    fn env_table_refuses_bad_names_and_values_naming_the_entry() {
        let cases = [
            (
                json!({"": "x"}),
                "env.",
                "is not a valid environment variable name",
            ),
            (
                json!({"A=B": "x"}),
                "env.A=B",
                "is not a valid environment variable name",
            ),
            (
                json!({"A\0B": "x"}),
                "env.A\0B",
                "is not a valid environment variable name",
            ),
            (json!({"A": "x\0y"}), "env.A", "contains a NUL byte"),
            (
                json!({"A": null}),
                "env.A",
                "must be a string, number or boolean, found null",
            ),
            (
                json!({"A": [1]}),
                "env.A",
                "must be a string, number or boolean, found [1]",
            ),
            (
                json!({"A": {"b": 1}}),
                "env.A",
                r#"must be a string, number or boolean, found {"b":1}"#,
            ),
        ];
        for (table, want_key, want_message) in cases {
            let c = config(json!({ "env": table }));
            let (key, message) = refusal(c.env_table("env").unwrap_err());
            assert_eq!(
                (key.as_str(), message.as_str()),
                (want_key, want_message),
                "{table}"
            );
        }
        let (key, _) = refusal(config(json!({"env": "A=1"})).env_table("env").unwrap_err());
        assert_eq!(key, "env");
        let (key, _) = refusal(
            config(json!({"vars": {"=": 1}}))
                .env_table("vars")
                .unwrap_err(),
        );
        assert_eq!(key, "vars.=");
    }
}
