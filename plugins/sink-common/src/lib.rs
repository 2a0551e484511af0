//! What the first-party sinks share: the run's headline figures as named
//! columns of result.json ([`HEADLINE`]), the result document parsed, and the
//! one directory a file sink may write ([`target_dir`]).
//!
//! `sink-csv` writes the figures as `result.csv`, `sink-parquet` as its
//! `results` table and `sink-prometheus-push` as gauges: one list keeps the
//! three in step.

use llem_sdk::{Config, PluginError, ResultDocument};
use serde_json::Value;
use std::path::PathBuf;

/// The headline figures: (column, JSON pointer into result.json). Units are
/// result.json's (the column names carry them: `_j`, `_s`, `_ms`, `_w`).
pub const HEADLINE: &[(&str, &str)] = &[
    ("run_id", "/run_id"),
    ("status", "/status"),
    ("experiment", "/experiment/name"),
    ("model", "/experiment/model"),
    ("cycle", "/experiment/cycle"),
    ("started_at", "/started_at"),
    ("duration_s", "/duration_s"),
    ("energy_total_j", "/energy/total_j"),
    ("energy_baseline_j", "/energy/baseline_j"),
    ("energy_net_j", "/energy/net_j"),
    ("includes_estimates", "/energy/includes_estimates"),
    ("requests_sent", "/inference/requests_sent"),
    ("requests_succeeded", "/inference/requests_succeeded"),
    ("requests_failed", "/inference/requests_failed"),
    ("window_energy_j", "/inference/window_energy_j"),
    (
        "energy_per_output_token_j",
        "/inference/energy_per_output_token_j",
    ),
    (
        "energy_per_output_token_net_j",
        "/inference/energy_per_output_token_net_j",
    ),
    ("energy_per_request_j", "/inference/energy_per_request_j"),
    ("average_power_w", "/inference/average_power_w"),
    ("headline", "/inference/headline"),
    (
        "headline_energy_per_output_token_j",
        "/inference/headline_energy_per_output_token_j",
    ),
    (
        "total_input_tokens",
        "/inference/latency/total_input_tokens",
    ),
    (
        "total_output_tokens",
        "/inference/latency/total_output_tokens",
    ),
    (
        "request_throughput",
        "/inference/latency/request_throughput",
    ),
    (
        "output_token_throughput",
        "/inference/latency/output_token_throughput",
    ),
    ("ttft_mean_ms", "/inference/latency/ttft/mean"),
    ("ttft_median_ms", "/inference/latency/ttft/median"),
    ("ttft_p99_ms", "/inference/latency/ttft/p99"),
    ("tpot_mean_ms", "/inference/latency/tpot/mean"),
    ("itl_mean_ms", "/inference/latency/itl/mean"),
    ("itl_p99_ms", "/inference/latency/itl/p99"),
    ("e2e_mean_ms", "/inference/latency/e2e/mean"),
    ("e2e_p99_ms", "/inference/latency/e2e/p99"),
    ("quality", "/quality/level"),
];

/// What a headline figure is, for a typed writer (Parquet, Prometheus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Boolean,
    /// A count (cycle, requests, tokens).
    Integer,
    /// A measured quantity in the unit its name ends with.
    Float,
}

/// The kind of the [`HEADLINE`] column `name`.
pub fn kind(name: &str) -> Kind {
    match name {
        "run_id" | "status" | "experiment" | "model" | "started_at" | "headline" | "quality" => {
            Kind::Text
        }
        "includes_estimates" => Kind::Boolean,
        "cycle"
        | "requests_sent"
        | "requests_succeeded"
        | "requests_failed"
        | "total_input_tokens"
        | "total_output_tokens" => Kind::Integer,
        _ => Kind::Float,
    }
}

/// The result document as JSON, or an error saying it is not.
pub fn parse_result(document: &ResultDocument) -> Result<Value, PluginError> {
    serde_json::from_str(&document.json)
        .map_err(|e| PluginError::other(format!("result document is not JSON: {e}")))
}

/// Each headline figure of `result`, `None` where the run does not have it
/// (absent or null: never read as zero).
pub fn headline(result: &Value) -> impl Iterator<Item = (&'static str, Option<&Value>)> {
    HEADLINE
        .iter()
        .map(|(name, pointer)| (*name, result.pointer(pointer).filter(|v| !v.is_null())))
}

/// `dir` when set, else the directory the kernel granted (the run
/// directory, the one writable preopen of a sandboxed sink).
pub fn target_dir(config: &Config) -> Result<PathBuf, PluginError> {
    let dir: String = config.optional("dir")?.unwrap_or_default();
    if !dir.is_empty() {
        return Ok(PathBuf::from(dir));
    }
    llem_sdk::host::write_dir().ok_or_else(|| {
        PluginError::invalid_config(
            "dir",
            "no directory to write: set `dir` (a native build is never granted one)",
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn missing_and_null_figures_are_none() {
        let result = serde_json::json!({
            "run_id": "r1",
            "energy": {"total_j": 12.5, "net_j": null},
        });
        let figures: Vec<_> = headline(&result).collect();
        assert_eq!(figures.len(), HEADLINE.len());
        let get = |c: &str| figures.iter().find(|(n, _)| *n == c).unwrap().1;
        assert_eq!(get("run_id"), Some(&Value::from("r1")));
        assert_eq!(get("energy_total_j"), Some(&Value::from(12.5)));
        assert_eq!(get("energy_net_j"), None);
        assert_eq!(get("model"), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind("quality"), Kind::Text);
        assert_eq!(kind("includes_estimates"), Kind::Boolean);
        assert_eq!(kind("total_output_tokens"), Kind::Integer);
        assert_eq!(kind("ttft_p99_ms"), Kind::Float);
        let text = HEADLINE
            .iter()
            .filter(|(n, _)| kind(n) == Kind::Text)
            .count();
        assert_eq!(text, 7);
    }

    #[test]
    fn no_dir_in_a_native_build_is_a_config_error() {
        let config = Config::from_json(r#"{"dir": ""}"#).unwrap();
        let err = target_dir(&config).unwrap_err();
        assert!(err.to_string().contains("dir"), "{err}");
    }
}
