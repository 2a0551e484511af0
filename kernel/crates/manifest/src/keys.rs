//! The tables llem itself defines, each as ONE list of key specifications.
//!
//! Validation, default filling, `llem config default` and the JSON Schema all read
//! these lists, so a key is added (or documented) in exactly one place. To add a
//! top-level table (e.g. `[load]`): write its `*_keys()` list, add it to
//! [`SECTIONS`], give it a typed struct in `plan.rs`, and read it in `resolve.rs`.

use llem_sdk::{OptionSpec, OptionType};
use serde_json::{Value, json};

/// Keys every `[plugins.<name>]` table reserves for the kernel; no plugin may
/// declare an option with one of these names.
pub const RESERVED_PLUGIN_KEYS: [&str; 4] = ["plugin", "path", "sandbox", "sample_interval_ms"];

/// Largest `sandbox.memory_mib`: a 32-bit WebAssembly memory addresses 4 GiB.
pub const MAX_MEMORY_MIB: u32 = 4096;

/// The top-level table holding one sub-table per plugin instance.
pub const PLUGINS_TABLE: &str = "plugins";

/// A key of a table llem defines: the plugin-facing [`OptionSpec`] plus what
/// only the kernel needs (optional-without-default, bounds, paths, an example).
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub option: OptionSpec,
    /// No default, yet not required (e.g. `experiment.model`): absent means "none".
    pub optional: bool,
    pub bounds: Bounds,
    /// A string (or string list) naming files: relative values are made absolute
    /// against the directory of whatever wrote them.
    pub is_path: bool,
    /// Shown (commented out) by `llem config default` for keys without a default.
    pub example: Option<Value>,
}

/// Numeric limits of an integer or float key.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bounds {
    pub min: Option<f64>,
    /// `min` itself is not allowed (durations must be > 0).
    pub exclusive_min: bool,
    pub max: Option<f64>,
}

impl KeySpec {
    fn new(option: OptionSpec) -> Self {
        KeySpec {
            option,
            optional: false,
            bounds: Bounds::default(),
            is_path: false,
            example: None,
        }
    }

    fn optional(mut self, example: Value) -> Self {
        self.optional = true;
        self.example = Some(example);
        self
    }

    fn min(mut self, min: f64) -> Self {
        self.bounds.min = Some(min);
        self
    }

    fn above(mut self, min: f64) -> Self {
        self.bounds.min = Some(min);
        self.bounds.exclusive_min = true;
        self
    }

    fn max(mut self, max: f64) -> Self {
        self.bounds.max = Some(max);
        self
    }

    fn path(mut self) -> Self {
        self.is_path = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.option.name
    }

    /// Required: neither a default nor optional. Plugin options with no default are.
    pub fn is_required(&self) -> bool {
        self.option.default.is_none() && !self.optional
    }
}

impl From<OptionSpec> for KeySpec {
    /// A plugin's option: its spec alone says everything the kernel checks.
    fn from(option: OptionSpec) -> Self {
        // A path option is checked as a string and resolved like the kernel's own paths.
        if option.ty == OptionType::Path {
            return KeySpec::new(OptionSpec {
                ty: OptionType::String,
                ..option
            })
            .path();
        }
        KeySpec::new(option)
    }
}

/// A table with a fixed set of keys.
#[derive(Debug, Clone, Copy)]
pub struct Section {
    pub name: &'static str,
    pub doc: &'static str,
    pub keys: fn() -> Vec<KeySpec>,
}

/// The top-level tables with fixed keys. `[plugins]` is the other top-level table;
/// its keys are plugin instances, checked against each plugin's own options.
pub const SECTIONS: &[Section] = &[EXPERIMENT, LOAD, MEASUREMENT];

pub const EXPERIMENT: Section = Section {
    name: "experiment",
    doc: "What is measured and how the run is sampled and repeated.",
    keys: experiment_keys,
};

/// `[load]`: how requests are sent to the engine. Names follow `vllm bench serve`.
pub const LOAD: Section = Section {
    name: "load",
    doc: "How requests are sent to the engine (names follow `vllm bench serve`).",
    keys: load_keys,
};

/// `[measurement]`: the methodology of a run — idle baseline, warm-up, thermal
/// control, the thresholds behind a run's status, carbon accounting.
pub const MEASUREMENT: Section = Section {
    name: "measurement",
    doc: "How a run is measured: idle baseline, warm-up, thermal settle and cool-down, the thresholds behind `degraded`, carbon.",
    keys: measurement_keys,
};

/// `[plugins.<name>.sandbox]`: capabilities granted to a WASM plugin.
pub const SANDBOX: Section = Section {
    name: "sandbox",
    doc: "Capabilities granted to a WASM plugin (deny by default; an error on native plugins, which cannot be confined).",
    keys: sandbox_keys,
};

/// Names allowed at the top level of a manifest.
pub fn top_level_names() -> Vec<&'static str> {
    SECTIONS
        .iter()
        .map(|s| s.name)
        .chain([PLUGINS_TABLE])
        .collect()
}

fn experiment_keys() -> Vec<KeySpec> {
    use OptionType::*;
    vec![
        KeySpec::new(OptionSpec::with_default(
            "name",
            String,
            "llem-run",
            "Name of the experiment; names its directory under `output_dir`.",
        )),
        KeySpec::new(OptionSpec::required(
            "model",
            String,
            "Model to measure (Hugging Face id or local path); backends require it.",
        ))
        .optional(json!("Qwen/Qwen3-8B")),
        KeySpec::new(OptionSpec::with_default(
            "output_dir",
            String,
            "runs",
            "Directory that receives one sub-directory per run; relative to this manifest.",
        ))
        .path(),
        KeySpec::new(OptionSpec::with_default(
            "duration_s",
            Float,
            10.0,
            "Seconds to sample when no backend drives the run.",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "sample_interval_ms",
            Integer,
            100,
            "Milliseconds between two readings of every energy source (1 to 60000).",
        ))
        .min(1.0)
        .max(60_000.0),
        KeySpec::new(OptionSpec::with_default(
            "seed",
            Integer,
            0,
            "Seed for every random choice (prompt sampling, arrival times).",
        ))
        .min(0.0),
        KeySpec::new(OptionSpec::with_default(
            "cycles",
            Integer,
            1,
            "How many times the whole measurement is repeated; statistics span cycles.",
        ))
        .min(1.0)
        .max(f64::from(u32::MAX)),
    ]
}

fn load_keys() -> Vec<KeySpec> {
    use OptionType::*;
    vec![
        KeySpec::new(
            OptionSpec::with_default(
                "api",
                String,
                "completions",
                "OpenAI-compatible endpoint: `completions` (/v1/completions) or `chat` (/v1/chat/completions).",
            )
            .choices(&["completions", "chat"]),
        ),
        KeySpec::new(OptionSpec::required(
            "endpoint",
            String,
            "Attach to an already running server at this base URL (e.g. http://127.0.0.1:8000/v1) instead of starting the backend's engine.",
        ))
        .optional(json!("http://127.0.0.1:8000/v1")),
        KeySpec::new(OptionSpec::required(
            "num_prompts",
            Integer,
            "How many of the dataset's prompts to send (default: all of them).",
        ))
        .optional(json!(1000))
        .min(1.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::required(
            "max_concurrency",
            Integer,
            "Most requests in flight at once (closed loop); default: no limit.",
        ))
        .optional(json!(64))
        .min(1.0)
        .max(1_000_000.0),
        KeySpec::new(OptionSpec::required(
            "request_rate",
            Float,
            "Requests per second, arrivals drawn from a Poisson (or gamma) process; default: all at once, limited by max_concurrency.",
        ))
        .optional(json!(8.0))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "burstiness",
            Float,
            1.0,
            "Gamma shape of inter-arrival times with request_rate: 1 is Poisson, lower is burstier.",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "warmup_requests",
            Integer,
            0,
            "Requests sent before measuring, excluded from every figure.",
        ))
        .min(0.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::with_default(
            "ignore_eos",
            Boolean,
            false,
            "Ask the engine to ignore end-of-sequence so every request produces its full output length.",
        )),
        KeySpec::new(OptionSpec::with_default(
            "temperature",
            Float,
            0.0,
            "Sampling temperature of every request, sent explicitly to every engine: 0 is greedy decoding (the same tokens every run, and the same output lengths on every engine).",
        ))
        .min(0.0),
        KeySpec::new(OptionSpec::with_default(
            "top_p",
            Float,
            1.0,
            "Nucleus-sampling mass of every request, in (0, 1]; 1 keeps every token. Only matters when temperature > 0.",
        ))
        .above(0.0)
        .max(1.0),
        KeySpec::new(OptionSpec::required(
            "seed",
            Integer,
            "Sampling seed sent with every request (temperature > 0 then draws the same tokens every run); default: none, the engine's own randomness. Greedy decoding does not use it.",
        ))
        .optional(json!(0))
        .min(0.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::with_default(
            "max_tokens",
            Integer,
            256,
            "Output-token limit of a request whose dataset prompt sets none (a prompt's own limit wins); sent explicitly, since engines' own defaults differ (16, 32, the context length).",
        ))
        .min(1.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::with_default(
            "request_timeout_s",
            Float,
            600.0,
            "A request that takes longer fails.",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "goodput",
            Table,
            json!({}),
            "Service-level objectives in ms, e.g. { ttft_ms = 200, tpot_ms = 50 }: goodput counts requests meeting all of them.",
        )),
    ]
}

fn measurement_keys() -> Vec<KeySpec> {
    use OptionType::*;
    vec![
        KeySpec::new(
            OptionSpec::with_default(
                "baseline",
                String,
                "validated",
                "Idle power per device before the engine starts: `fresh` (measured every run), `cached` (reused while younger than baseline_ttl_h for this host, devices and llem version), `validated` (cached, spot-checked for baseline_spot_check_s and re-measured when it drifted by more than baseline_drift) or `off`.",
            )
            .choices(&["fresh", "cached", "validated", "off"]),
        ),
        KeySpec::new(OptionSpec::with_default(
            "baseline_s",
            Float,
            15.0,
            "Seconds of idle measured for a fresh baseline (LLenergyMeasure uses 30).",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "baseline_spot_check_s",
            Float,
            3.0,
            "Seconds of idle measured to validate a cached baseline.",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "baseline_ttl_h",
            Float,
            24.0,
            "Hours a cached baseline stays usable.",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "baseline_drift",
            Float,
            0.10,
            "Relative change of idle power (0.10 = 10 %) past which a cached baseline is re-measured.",
        ))
        .above(0.0),
        KeySpec::new(
            OptionSpec::with_default(
                "warmup",
                String,
                "requests",
                "Warm-up before measuring: `requests` ([load].warmup_requests requests) or `until-stable` (batches of warmup_window requests until the coefficient of variation of their latency drops below warmup_cv, at most warmup_max_requests).",
            )
            .choices(&["requests", "until-stable"]),
        ),
        KeySpec::new(OptionSpec::with_default(
            "warmup_cv",
            Float,
            0.10,
            "Coefficient of variation of end-to-end latency over the last warmup_window requests below which warm-up ends (`until-stable`).",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "warmup_window",
            Integer,
            8,
            "Requests per warm-up batch and in the sliding window of `until-stable`.",
        ))
        .min(2.0)
        .max(100_000.0),
        KeySpec::new(OptionSpec::with_default(
            "warmup_max_requests",
            Integer,
            64,
            "Most warm-up requests `until-stable` sends before measuring anyway (recorded).",
        ))
        .min(1.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::with_default(
            "thermal_settle_max_s",
            Float,
            0.0,
            "After warm-up, wait up to this long for power and temperature to stop drifting before measuring; 0 turns it off.",
        ))
        .min(0.0),
        KeySpec::new(OptionSpec::with_default(
            "thermal_settle_drift",
            Float,
            0.02,
            "Settled when total power over the last 5 s differs from the 5 s before by less than this fraction.",
        ))
        .above(0.0),
        KeySpec::new(OptionSpec::with_default(
            "cooldown_s",
            Float,
            0.0,
            "Seconds of idle after the measured window (between runs), recorded as its own phase.",
        ))
        .min(0.0),
        KeySpec::new(OptionSpec::with_default(
            "max_failed_fraction",
            Float,
            0.05,
            "A run whose share of failed measured requests exceeds this is `degraded`; all failing is `failed`.",
        ))
        .min(0.0)
        .max(1.0),
        KeySpec::new(OptionSpec::with_default(
            "min_coverage",
            Float,
            0.95,
            "A run where a device's readings cover less than this share of the measured window is `degraded`.",
        ))
        .min(0.0)
        .max(1.0),
        KeySpec::new(OptionSpec::required(
            "grid_gco2_per_kwh",
            Float,
            "Carbon intensity of the electricity, gCO2e per kWh, for the carbon figures; none by default.",
        ))
        .optional(json!(390.0))
        .min(0.0),
        KeySpec::new(OptionSpec::with_default(
            "pue",
            Float,
            1.0,
            "Power usage effectiveness of the facility, multiplied into the carbon figures.",
        ))
        .min(1.0),
    ]
}

fn sandbox_keys() -> Vec<KeySpec> {
    use OptionType::*;
    vec![
        KeySpec::new(OptionSpec::with_default(
            "read",
            StringList,
            json!([]),
            "Files and directories the plugin may read, read-only: a directory grants its tree, a file that file alone; relative to this manifest.",
        ))
        .path(),
        KeySpec::new(OptionSpec::required(
            "write",
            String,
            "The one directory (or, for a sink, file) the plugin may write; none by default (sinks: the run directory).",
        ))
        .optional(json!("out"))
        .path(),
        KeySpec::new(OptionSpec::with_default(
            "env",
            StringList,
            json!([]),
            "Environment variables passed through to the plugin; none by default.",
        )),
        KeySpec::new(OptionSpec::with_default(
            "memory_mib",
            Integer,
            256,
            "Memory cap of the plugin's instance, in MiB (1 to 4096, the most a 32-bit WebAssembly memory can address).",
        ))
        .min(1.0)
        .max(f64::from(MAX_MEMORY_MIB)),
        KeySpec::new(OptionSpec::with_default(
            "call_timeout_ms",
            Integer,
            5000,
            "Longest a single call into the plugin may take before it is interrupted.",
        ))
        .min(1.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::with_default(
            "grant_paths",
            Boolean,
            true,
            "Grant what this table's `path` options name, when you wrote them (never their defaults): a file read-only, alone; a directory, its tree; a sink's path, writable.",
        )),
        KeySpec::new(OptionSpec::with_default(
            "connect",
            StringList,
            json!([]),
            "Outgoing TCP connections the plugin may open, as `host:port` (e.g. \"127.0.0.1:9091\", \"pdu.lab:443\"); none by default.",
        )),
        KeySpec::new(OptionSpec::with_default(
            "programs",
            StringList,
            json!([]),
            "Backends: programs the engine plan may run besides the backend's documented ones (a bare name is looked up on PATH; a path must match exactly).",
        )),
        KeySpec::new(OptionSpec::with_default(
            "engine_env",
            StringList,
            json!([]),
            "Backends: environment variables the engine may inherit or the plan may set, besides llem's allow-list (e.g. HF_TOKEN).",
        )),
        KeySpec::new(OptionSpec::with_default(
            "engine_read",
            StringList,
            json!([]),
            "Backends: extra paths the confined engine may read; relative to this manifest.",
        ))
        .path(),
        KeySpec::new(OptionSpec::with_default(
            "engine_write",
            StringList,
            json!([]),
            "Backends: extra directories the confined engine may write; relative to this manifest.",
        ))
        .path(),
        KeySpec::new(
            OptionSpec::with_default(
                "confinement",
                String,
                "landlock",
                "Backends: `landlock` confines the engine's files where the kernel supports it (a notice otherwise); `none` runs it unconfined.",
            )
            .choices(&["landlock", "none"]),
        ),
    ]
}
