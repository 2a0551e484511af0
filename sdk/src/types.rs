//! Plain Rust mirrors of the WIT types in `wit/llem-plugin-0.1.0`.
//!
//! The kernel and plugins both speak these types. The WASM glue converts them
//! to and from the generated WIT bindings; the native glue carries them as JSON
//! (except energy readings, which cross the C ABI as a packed struct because
//! they sit on the sampler's hot path).

use serde::{Deserialize, Serialize};

/// The four kinds of plugin the kernel composes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Energy,
    Backend,
    Dataset,
    Sink,
}

impl PluginKind {
    pub const ALL: [PluginKind; 4] = [
        PluginKind::Energy,
        PluginKind::Backend,
        PluginKind::Dataset,
        PluginKind::Sink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Energy => "energy",
            PluginKind::Backend => "backend",
            PluginKind::Dataset => "dataset",
            PluginKind::Sink => "sink",
        }
    }

    /// Numeric tag used in the native ABI (`LLEM_KIND_*` in `llem_plugin.h`).
    pub fn abi_tag(self) -> u32 {
        match self {
            PluginKind::Energy => 1,
            PluginKind::Backend => 2,
            PluginKind::Dataset => 3,
            PluginKind::Sink => 4,
        }
    }

    pub fn from_abi_tag(tag: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.abi_tag() == tag)
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Value type of one configuration option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptionType {
    String,
    /// A file or directory path: resolved against the manifest's directory,
    /// and granted read-only to a sandboxed plugin automatically.
    Path,
    Integer,
    Float,
    Boolean,
    StringList,
    IntegerList,
    Table,
    Any,
}

impl OptionType {
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::String => "string",
            OptionType::Path => "path",
            OptionType::Integer => "integer",
            OptionType::Float => "float",
            OptionType::Boolean => "boolean",
            OptionType::StringList => "string-list",
            OptionType::IntegerList => "integer-list",
            OptionType::Table => "table",
            OptionType::Any => "any",
        }
    }
}

/// One key a plugin accepts in its manifest sub-table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: OptionType,
    /// Default value; `None` means the option is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    pub doc: String,
    /// For string options: the accepted values (empty = any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

impl OptionSpec {
    /// A required option.
    pub fn required(name: &str, ty: OptionType, doc: &str) -> Self {
        OptionSpec {
            name: name.to_owned(),
            ty,
            default: None,
            doc: doc.to_owned(),
            choices: Vec::new(),
        }
    }

    /// An option with a default value.
    pub fn with_default(
        name: &str,
        ty: OptionType,
        default: impl Into<serde_json::Value>,
        doc: &str,
    ) -> Self {
        OptionSpec {
            default: Some(default.into()),
            ..Self::required(name, ty, doc)
        }
    }

    /// Restrict a string option to these values.
    pub fn choices(mut self, choices: &[&str]) -> Self {
        self.choices = choices.iter().map(|c| (*c).to_owned()).collect();
        self
    }
}

/// What a plugin tells the kernel about itself before it is opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    pub description: String,
    #[serde(default)]
    pub options: Vec<OptionSpec>,
}

/// Why a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    InvalidConfig,
    Unavailable,
    PermissionDenied,
    Io,
    Other,
}

impl ErrorCode {
    /// Status code used in the native ABI (`LLEM_ERR_*`).
    pub fn abi_status(self) -> i32 {
        match self {
            ErrorCode::InvalidConfig => 1,
            ErrorCode::Unavailable => 2,
            ErrorCode::PermissionDenied => 3,
            ErrorCode::Io => 4,
            ErrorCode::Other => 5,
        }
    }

    pub fn from_abi_status(status: i32) -> Self {
        match status {
            1 => ErrorCode::InvalidConfig,
            2 => ErrorCode::Unavailable,
            3 => ErrorCode::PermissionDenied,
            4 => ErrorCode::Io,
            _ => ErrorCode::Other,
        }
    }
}

/// An error a plugin returns; the kernel adds the plugin's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginError {
    pub code: ErrorCode,
    pub message: String,
    /// Manifest key the error is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How to fix it, if the plugin knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl PluginError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        PluginError {
            code,
            message: message.into(),
            key: None,
            hint: None,
        }
    }

    pub fn invalid_config(key: &str, message: impl Into<String>) -> Self {
        PluginError {
            key: Some(key.to_owned()),
            ..Self::new(ErrorCode::InvalidConfig, message)
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Other, message)
    }

    /// Map an I/O error, keeping "permission denied" distinct because its fix differs.
    pub fn io(context: impl std::fmt::Display, err: &std::io::Error) -> Self {
        let code = match err.kind() {
            std::io::ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            std::io::ErrorKind::NotFound => ErrorCode::Unavailable,
            _ => ErrorCode::Io,
        };
        Self::new(code, format!("{context}: {err}"))
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  fix: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

/// A named scalar a plugin reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
}

// ---------------------------------------------------------------- energy

/// What kind of hardware a measured device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    Gpu,
    CpuPackage,
    CpuCore,
    CpuUncore,
    Dram,
    Psys,
    Accelerator,
    System,
    Other,
}

/// One device an energy source measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Stable id within the source, e.g. `gpu0`, `package-0`.
    pub id: String,
    /// Human name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    pub kind: DeviceKind,
    /// Whether readings carry a cumulative energy counter.
    pub has_energy_counter: bool,
    /// The counter's modulus: values lie in `[0, counter_wrap_uj)`, so after a
    /// wrap the delta is `counter_wrap_uj - previous + current` (RAPL:
    /// `max_energy_range_uj + 1`). `None` if it does not wrap in practice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter_wrap_uj: Option<u64>,
    /// Whether readings carry power.
    pub has_power: bool,
    /// Power is a moving average over this window (ms); 0 = instantaneous.
    #[serde(default)]
    pub power_average_window_ms: u32,
    /// Values are modelled (e.g. TDP x utilisation), not measured.
    #[serde(default)]
    pub estimated: bool,
    /// Id of the device of the same source whose figure already includes this
    /// one (RAPL `core` inside its `package`, a package inside `psys`), so
    /// totals count the energy once. `None` for a top-level device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The most power this device can plausibly draw, watts; a counter delta
    /// or power reading implying more is a gap, not energy. `None` lets the
    /// kernel use a generous default for the device's kind (docs/architecture.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_power_w: Option<f64>,
}

/// One read of one device. Counters are raw: the kernel computes deltas,
/// handles wraps and resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reading {
    /// Index into the source's `devices()`.
    pub device: u32,
    /// Cumulative energy counter in microjoules.
    pub energy_uj: Option<u64>,
    /// Power in milliwatts.
    pub power_mw: Option<u64>,
}

/// Presence bit of a flat reading's second number: energy is present.
pub const FLAT_ENERGY: u64 = 1;
/// Presence bit of a flat reading's second number: power is present.
pub const FLAT_POWER: u64 = 2;

/// Readings as `llem:plugin-ext/energy-read-flat` lays them out for the
/// sampler's hot path: four numbers a reading — device index, presence bits
/// ([`FLAT_ENERGY`], [`FLAT_POWER`]), energy in µJ, power in mW (0 when
/// absent). The WASM export macro uses it; the kernel decodes the same layout.
pub fn flatten_readings(readings: &[Reading]) -> Vec<u64> {
    let mut flat = Vec::with_capacity(readings.len() * 4);
    for r in readings {
        let energy = if r.energy_uj.is_some() {
            FLAT_ENERGY
        } else {
            0
        };
        let power = if r.power_mw.is_some() { FLAT_POWER } else { 0 };
        let present = energy | power;
        flat.extend_from_slice(&[
            u64::from(r.device),
            present,
            r.energy_uj.unwrap_or(0),
            r.power_mw.unwrap_or(0),
        ]);
    }
    flat
}

/// Slower-changing telemetry for one device (utilisation, temperature, clocks...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTelemetry {
    pub device: u32,
    pub metrics: Vec<Metric>,
}

// ---------------------------------------------------------------- backend

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineMode {
    Server,
    Offline,
}

/// What the kernel asks a backend to plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    pub model: String,
    /// Address the kernel reserved for a server engine.
    pub host: String,
    pub port: u16,
    /// Directory of this run (logs, worker script).
    pub run_dir: String,
}

/// How to run an engine. The kernel alone spawns it and owns its lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnginePlan {
    pub mode: EngineMode,
    /// Engine name and, if known, version, e.g. `vllm`.
    pub engine: String,
    pub program: String,
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Server: base path of the OpenAI-compatible API, e.g. `/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_path: Option<String>,
    /// Offline: source of the worker the kernel writes next to the run and starts with `program`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_script: Option<String>,
    /// How long the engine may take to become ready.
    pub ready_timeout_s: u32,
}

// ---------------------------------------------------------------- dataset

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptBody {
    Text(String),
    Chat(Vec<ChatMessage>),
}

/// One request to send to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub id: String,
    pub body: PromptBody,
    /// Exact input length in the model's tokens, when the dataset knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// Output length to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRequest {
    pub model: String,
    /// Path of the model's `tokenizer.json`, when the kernel has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_path: Option<String>,
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

// ---------------------------------------------------------------- sink

/// One raw sample of one device, timestamped with the kernel's monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub device: u32,
    pub t_ns: u64,
    pub energy_uj: Option<u64>,
    pub power_mw: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleBatch {
    /// Energy source the samples came from.
    pub source: String,
    /// Device ids, indexed by `Sample::device`.
    pub devices: Vec<String>,
    pub samples: Vec<Sample>,
}

/// A run's result, as versioned JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultDocument {
    pub schema_version: String,
    pub run_id: String,
    pub json: String,
}

// ------------------------------------------------- sink stream (plugin-ext)

/// What a run is, handed to a streaming sink before anything else
/// (`llem:plugin-ext/sink-stream.begin-run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    /// `[experiment] name`.
    pub experiment: String,
    pub model: Option<String>,
    /// Which cycle of the experiment this run is (1-based).
    pub cycle: u32,
    /// Wall-clock start, RFC 3339 (UTC).
    pub started_at: String,
    /// Context the kernel knows, such as `study` and `config` for a run of a
    /// study; names are lower-case ASCII.
    pub labels: Vec<(String, String)>,
}

/// What a streaming sink wants delivered besides readings and the result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    pub phase_events: bool,
    pub requests: bool,
}

impl Wanted {
    pub const NOTHING: Wanted = Wanted {
        phase_events: false,
        requests: false,
    };
    pub const EVERYTHING: Wanted = Wanted {
        phase_events: true,
        requests: true,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseEdge {
    Start,
    End,
}

/// A phase of the run starting or ending. Names as in result.json
/// `phases[].name`; a sink should accept names it does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseEvent {
    pub phase: String,
    pub edge: PhaseEdge,
    /// CLOCK_MONOTONIC ns.
    pub t_ns: u64,
}

/// One finished request as the client saw it (a requests.jsonl line;
/// times CLOCK_MONOTONIC ns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Send order over the whole run, warm-up included.
    pub index: u32,
    pub prompt_id: String,
    /// `warmup` or `measured`.
    pub phase: String,
    pub send_ns: u64,
    pub first_token_ns: Option<u64>,
    /// Arrival of every chunk carrying text.
    pub chunk_ns: Vec<u64>,
    pub end_ns: u64,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    /// The token counts are the server's `usage`.
    pub tokens_from_usage: bool,
    pub success: bool,
    pub error: Option<String>,
}
