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
pub const SECTIONS: &[Section] = &[EXPERIMENT, LOAD];

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

/// `[plugins.<name>.sandbox]`: capabilities granted to a WASM plugin.
pub const SANDBOX: Section = Section {
    name: "sandbox",
    doc: "Capabilities granted to a WASM plugin (deny by default; ignored for native plugins).",
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

fn sandbox_keys() -> Vec<KeySpec> {
    use OptionType::*;
    vec![
        KeySpec::new(OptionSpec::with_default(
            "read",
            StringList,
            json!([]),
            "Directories the plugin may read (read-only preopens); relative to this manifest.",
        ))
        .path(),
        KeySpec::new(OptionSpec::required(
            "write",
            String,
            "The one directory the plugin may write; none by default.",
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
            "Memory cap of the plugin's instance, in MiB.",
        ))
        .min(1.0)
        .max(f64::from(u32::MAX)),
        KeySpec::new(OptionSpec::with_default(
            "call_timeout_ms",
            Integer,
            5000,
            "Longest a single call into the plugin may take before it is interrupted.",
        ))
        .min(1.0)
        .max(f64::from(u32::MAX)),
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
