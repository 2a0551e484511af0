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
    #[serde(default)]
    pub measurement: Measurement,
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
    /// 0: greedy. Sent with every request (`keys::LOAD`).
    #[serde(default)]
    pub temperature: f64,
    #[serde(default = "one")]
    pub top_p: f64,
    /// Sampling seed sent with every request; `None`: not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Output-token limit of a prompt whose dataset sets none.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    pub request_timeout_s: f64,
    /// Metric name (`ttft_ms`, `tpot_ms`, `itl_ms`, `e2el_ms`) → objective in ms.
    #[serde(default)]
    pub goodput: std::collections::BTreeMap<String, f64>,
}

/// `[measurement]`, typed. Field names are the manifest keys; see `keys::MEASUREMENT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub baseline: String,
    pub baseline_s: f64,
    pub baseline_spot_check_s: f64,
    pub baseline_ttl_h: f64,
    pub baseline_drift: f64,
    pub warmup: String,
    pub warmup_cv: f64,
    pub warmup_window: u32,
    pub warmup_max_requests: u32,
    pub thermal_settle_max_s: f64,
    pub thermal_settle_drift: f64,
    pub cooldown_s: f64,
    pub max_failed_fraction: f64,
    pub min_coverage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_gco2_per_kwh: Option<f64>,
    pub pue: f64,
}

impl Default for Measurement {
    fn default() -> Self {
        Measurement {
            baseline: "validated".into(),
            baseline_s: 15.0,
            baseline_spot_check_s: 3.0,
            baseline_ttl_h: 24.0,
            baseline_drift: 0.10,
            warmup: "requests".into(),
            warmup_cv: 0.10,
            warmup_window: 8,
            warmup_max_requests: 64,
            thermal_settle_max_s: 0.0,
            thermal_settle_drift: 0.02,
            cooldown_s: 0.0,
            max_failed_fraction: 0.05,
            min_coverage: 0.95,
            grid_gco2_per_kwh: None,
            pue: 1.0,
        }
    }
}

/// `[load].max_tokens` when the manifest does not set it (keep equal to `keys::LOAD`).
pub const DEFAULT_MAX_TOKENS: u32 = 256;

fn one() -> f64 {
    1.0
}

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
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
            temperature: 0.0,
            top_p: 1.0,
            seed: None,
            max_tokens: DEFAULT_MAX_TOKENS,
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
    /// Whether the plugin runs sandboxed (WASM). Native plugins run in-process,
    /// trusted: they have no sandbox table and no grants.
    #[serde(default = "yes")]
    pub sandboxed: bool,
    /// Every file, directory and variable the sandbox opens, and whose words
    /// opened it; printed at the start of a run and recorded in `result.json`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    /// Energy sources: this source's own sampling interval, overriding
    /// `experiment.sample_interval_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_interval_ms: Option<u32>,
}

/// `[plugins.<instance>.sandbox]`: what a WASM plugin may touch. Native plugins
/// run in-process and cannot be confined: a sandbox table on one is an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxGrants {
    /// Read-only grants: a directory grants its tree, a file that file alone
    /// (the kernel shows it in a private directory; see `docs/architecture.md`).
    #[serde(rename = "read")]
    pub read_dirs: Vec<PathBuf>,
    /// The one writable grant: a directory, or a file alone (sinks).
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
    /// Grant what the table's `path` options name, when the user wrote them.
    /// The resolved manifest sets it to false and lists every grant above, so
    /// re-running it grants exactly the same things.
    #[serde(default = "yes")]
    pub grant_paths: bool,
}

fn yes() -> bool {
    true
}

/// One thing a sandboxed plugin instance may touch, and the words that granted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The plugin instance (`[plugins.<instance>]`).
    pub instance: String,
    pub access: GrantAccess,
    /// Absolute path, or the environment variable's name.
    pub target: String,
    /// The manifest key whose value granted it, e.g. `plugins.data.file`.
    pub key: String,
    pub by: GrantedBy,
}

/// What a [`Grant`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantAccess {
    /// Read one file, nothing beside it.
    ReadFile,
    /// Read a directory tree.
    ReadDir,
    /// Create or replace one file, nothing beside it.
    WriteFile,
    /// Read and write a directory tree.
    WriteDir,
    /// See one environment variable (when it is set).
    Env,
}

/// Whose words made a [`Grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantedBy {
    /// The user: the manifest, `--set`, or a CLI flag.
    User,
    /// The default of a plugin shipped with llem (in the plugin directory next
    /// to the binary): part of llem's release, trusted like the kernel.
    ShippedDefault,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.access {
            GrantAccess::ReadFile => "may read the file",
            GrantAccess::ReadDir => "may read the directory",
            GrantAccess::WriteFile => "may write the file",
            GrantAccess::WriteDir => "may read and write the directory",
            GrantAccess::Env => "may see the environment variable",
        };
        write!(f, "{} {what} {} (", self.instance, self.target)?;
        match self.by {
            GrantedBy::User => write!(f, "{})", self.key),
            GrantedBy::ShippedDefault => {
                write!(f, "default of {}, a plugin shipped with llem)", self.key)
            }
        }
    }
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
            // Native plugins have no sandbox. For the others every grant is
            // listed and `grant_paths = false`: the options written out above
            // include defaults, which must not turn into grants on a re-run.
            if p.sandboxed {
                let sandbox = SandboxGrants {
                    grant_paths: false,
                    ..p.sandbox.clone()
                };
                table.insert("sandbox".into(), toml::Value::try_from(&sandbox)?);
            }
            plugins.insert(p.instance.clone(), toml::Value::Table(table));
        }
        let mut doc = toml::Table::new();
        doc.insert(
            "experiment".into(),
            toml::Value::try_from(&self.experiment)?,
        );
        doc.insert("load".into(), toml::Value::try_from(&self.load)?);
        doc.insert(
            "measurement".into(),
            toml::Value::try_from(&self.measurement)?,
        );
        doc.insert("plugins".into(), toml::Value::Table(plugins));
        let mut grants = String::new();
        for grant in self.plugins.iter().flat_map(|p| &p.grants) {
            // Escaped: a path with a newline must not end the comment.
            grants.push_str(&format!("#   {}\n", grant.to_string().escape_debug()));
        }
        if grants.is_empty() {
            grants.push_str("#   none\n");
        }
        Ok(format!(
            "# Resolved by llem from {}; every default is written out.\n\
             # Granted to sandboxed plugins:\n{grants}\n{}",
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
