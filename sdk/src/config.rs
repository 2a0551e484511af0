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
}
