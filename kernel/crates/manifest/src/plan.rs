//! The resolved manifest: typed, every default filled, every plugin found.
//!
//! This is what the kernel runs and what each run directory records as its
//! `resolved-manifest`, so it serializes both to JSON (serde) and back to TOML.

use std::path::PathBuf;

use llem_sdk::{PluginInfo, PluginKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Everything a run needs from its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The manifest it came from, as shown to users.
    pub source_name: String,
    pub experiment: Experiment,
    #[serde(default)]
    pub load: Load,
    /// Plugin instances in manifest order.
    pub plugins: Vec<PluginPlan>,
}

/// `[experiment]`, typed. Field names are the manifest keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Absolute, or relative to the working directory when the manifest's directory was.
    pub output_dir: PathBuf,
    pub duration_s: f64,
    pub sample_interval_ms: u32,
    pub seed: u64,
    pub cycles: u32,
}

/// `[load]`, typed. Field names are the manifest keys; see `keys::LOAD` for meanings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub api: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_prompts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    pub burstiness: f64,
    pub warmup_requests: u32,
    pub ignore_eos: bool,
    pub request_timeout_s: f64,
    /// Metric name (`ttft_ms`, `tpot_ms`, `itl_ms`, `e2el_ms`) → objective in ms.
    #[serde(default)]
    pub goodput: std::collections::BTreeMap<String, f64>,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            api: "completions".into(),
            endpoint: None,
            num_prompts: None,
            max_concurrency: None,
            request_rate: None,
            burstiness: 1.0,
            warmup_requests: 0,
            ignore_eos: false,
            request_timeout_s: 600.0,
            goodput: Default::default(),
        }
    }
}

/// One `[plugins.<instance>]` table, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginPlan {
    /// The table's key, e.g. `rapl` or `gpu0`.
    pub instance: String,
    /// e.g. `energy-rapl`.
    pub full_name: String,
    /// File the plugin is loaded from.
    pub location: PathBuf,
    pub kind: PluginKind,
    pub info: PluginInfo,
    /// Every option the plugin declares, defaults filled, as the plugin receives it.
    pub config: Map<String, Value>,
    pub sandbox: SandboxGrants,
    /// Energy sources: this source's own sampling interval, overriding
    /// `experiment.sample_interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_interval_ms: Option<u32>,
}

/// `[plugins.<instance>.sandbox]`: what a WASM plugin may touch. Native plugins
/// run in-process and cannot be confined, so the kernel ignores this for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxGrants {
    /// Read-only preopened directories.
    #[serde(rename = "read")]
    pub read_dirs: Vec<PathBuf>,
    /// The one writable directory.
    #[serde(rename = "write", default, skip_serializing_if = "Option::is_none")]
    pub write_dir: Option<PathBuf>,
    /// Environment variables passed through.
    pub env: Vec<String>,
    pub memory_mib: u32,
    pub call_timeout_ms: u32,
    /// Outgoing TCP connections allowed, as `host:port`.
    #[serde(default)]
    pub connect: Vec<String>,
    /// Backends: programs the engine plan may run besides the backend's defaults.
    #[serde(default)]
    pub programs: Vec<String>,
    /// Backends: environment variables the engine may receive besides the allow-list.
    #[serde(default)]
    pub engine_env: Vec<String>,
    /// Backends: extra paths the confined engine may read.
    #[serde(default)]
    pub engine_read: Vec<PathBuf>,
    /// Backends: extra directories the confined engine may write.
    #[serde(default)]
    pub engine_write: Vec<PathBuf>,
    /// Backends: `landlock` (default) or `none`.
    #[serde(default = "default_confinement")]
    pub confinement: String,
}

fn default_confinement() -> String {
    "landlock".into()
}

impl Plan {
    /// The resolved manifest as TOML: every default written out, plugins pinned to
    /// their full name and file. It parses and resolves back to the same plan.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        // toml's tables keep insertion order (feature `preserve_order`), so keys
        // come out in declaration order rather than serde_json's sorted order.
        let mut plugins = toml::Table::new();
        for p in &self.plugins {
            let mut table = toml::Table::new();
            table.insert("plugin".into(), p.full_name.clone().into());
            table.insert(
                "path".into(),
                p.location.to_string_lossy().into_owned().into(),
            );
            let declared = p.info.options.iter().map(|o| o.name.as_str());
            let undeclared = p
                .config
                .keys()
                .map(String::as_str)
                .filter(|k| !p.info.options.iter().any(|o| o.name == *k));
            for key in declared.chain(undeclared) {
                // TOML has no null: an option whose default is "unset" is left out and
                // comes back as the same default when the file is resolved again.
                if let Some(value) = p.config.get(key).and_then(strip_nulls) {
                    table.insert(key.to_owned(), toml::Value::try_from(value)?);
                }
            }
            if let Some(ms) = p.sample_interval_ms {
                table.insert("sample_interval_ms".into(), i64::from(ms).into());
            }
            table.insert("sandbox".into(), toml::Value::try_from(&p.sandbox)?);
            plugins.insert(p.instance.clone(), toml::Value::Table(table));
        }
        let mut doc = toml::Table::new();
        doc.insert(
            "experiment".into(),
            toml::Value::try_from(&self.experiment)?,
        );
        doc.insert("load".into(), toml::Value::try_from(&self.load)?);
        doc.insert("plugins".into(), toml::Value::Table(plugins));
        Ok(format!(
            "# Resolved by llem from {}; every default is written out.\n\n{}",
            self.source_name,
            toml::to_string(&doc)?
        ))
    }
}

fn strip_nulls(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(strip_nulls).collect())),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| strip_nulls(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}
