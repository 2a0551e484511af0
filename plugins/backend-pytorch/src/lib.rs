//! `backend-pytorch`: plans a PyTorch / Hugging Face transformers engine.
//! Pure: configuration in, engine plan out; the kernel starts and owns the
//! process.
//!
//! - **offline** (default): `<python> <run_dir>/pytorch_worker.py`; the plan
//!   carries the worker's source ([`WORKER_SCRIPT`]: backend-common's
//!   `worker_protocol.py` with `pytorch_worker.py` of this crate appended),
//!   which the kernel writes to that path. The worker speaks llem's worker protocol v1
//!   (JSON lines over stdio): it gets the model and this plugin's resolved
//!   options in `hello`, loads the model with `AutoModelForCausalLM`, runs
//!   requests in batches of `batch_size` through `model.generate` and
//!   timestamps every decoding step with `time.monotonic_ns()`.
//! - **server**: `<python> -m transformers.cli.transformers serve <model>
//!   --host <h> --port <p> --device … --dtype …` (transformers ≥ 5's CLI; the
//!   `transformers_executable` option names a console script instead). The
//!   model is preloaded at start (`FORCE_MODEL`), the OpenAI API is under
//!   `/v1`, health at `/health`; it has no Prometheus metrics page.
//!
//! Both modes run with `HF_HUB_OFFLINE=1` and `TRANSFORMERS_OFFLINE=1`, so a
//! measured run never downloads (the `env` table can override them).

use backend_common::OfflineWorker;
use llem_sdk::{
    Backend, Config, EngineMode, EnginePlan, OptionSpec, OptionType, PlanRequest, Plugin,
    PluginError, PluginInfo, PluginKind,
};
use serde_json::{Map, Value};

/// The worker the offline plan runs; the kernel writes it into the run
/// directory. One script, assembled here: the shared protocol module, then
/// this engine's part.
pub const WORKER_SCRIPT: &str = concat!(
    include_str!("../../backend-common/worker_protocol.py"),
    include_str!("../pytorch_worker.py")
);
/// The worker's file name inside the run directory.
pub const WORKER_FILE: &str = "pytorch_worker.py";
/// The module `transformers serve` runs from (transformers ≥ 5).
pub const SERVE_MODULE: &str = "transformers.cli.transformers";

const DTYPES: &[&str] = &["auto", "float32", "bfloat16", "float16"];
const ATTN_IMPLEMENTATIONS: &[&str] = &["eager", "sdpa", "flash_attention_2"];
const QUANTIZATIONS: &[&str] = &["none", "bnb-4bit", "bnb-8bit"];
/// `device_map` strategies of accelerate that spread one model over devices:
/// `from_pretrained` takes them, `transformers serve --device` does not.
const DEVICE_MAP_STRATEGIES: &[&str] = &["auto", "balanced", "balanced_low_0", "sequential"];

/// Environment both modes get (the `env` option can override each).
const DEFAULT_ENV: &[(&str, &str)] = &[
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("PYTHONUNBUFFERED", "1"),
];

const DEFAULT_READY_TIMEOUT_S: i64 = 600;

#[derive(Debug, Clone, PartialEq)]
pub struct Pytorch {
    mode: EngineMode,
    dtype: String,
    batch_size: u32,
    attn_implementation: Option<String>,
    device_map: String,
    torch_compile: bool,
    quantization: String,
    static_cache: bool,
    continuous_batching: bool,
    top_k: Option<i64>,
    seed: Option<i64>,
    python: String,
    transformers_executable: Option<String>,
    env: Vec<(String, String)>,
    ready_timeout_s: u32,
}

impl Plugin for Pytorch {
    fn describe() -> PluginInfo {
        use OptionType::{Boolean, Integer, String, Table};
        let null = |name: &str, ty, doc: &str| OptionSpec::with_default(name, ty, Value::Null, doc);
        PluginInfo {
            name: "backend-pytorch".into(),
            kind: PluginKind::Backend,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "PyTorch / transformers: a worker on `model.generate` (offline) or `transformers serve` (server)".into(),
            options: vec![
                OptionSpec::with_default(
                    "mode",
                    String,
                    "offline",
                    "`offline`: a Python worker loads the model and runs `model.generate` in batches; `server`: `transformers serve`, measured through its OpenAI API",
                )
                .choices(backend_common::MODES),
                OptionSpec::with_default(
                    "dtype",
                    String,
                    "auto",
                    "Weights and activations data type; `auto`: as stored in the checkpoint",
                )
                .choices(DTYPES),
                OptionSpec::with_default(
                    "batch_size",
                    Integer,
                    1,
                    "Offline: requests per `model.generate` call (left-padded)",
                ),
                null(
                    "attn_implementation",
                    String,
                    "Attention kernel; null: transformers' default (sdpa where available)",
                )
                .choices(ATTN_IMPLEMENTATIONS),
                OptionSpec::with_default(
                    "device_map",
                    String,
                    "auto",
                    "Where the model goes: offline, `from_pretrained(device_map=…)` (`auto`, `cpu`, `cuda`, `cuda:0`, `balanced`, …); server, `--device` (`auto`, `cpu`, `cuda:0`, …)",
                ),
                OptionSpec::with_default(
                    "torch_compile",
                    Boolean,
                    false,
                    "Compile the forward pass with `torch.compile` (server: `--compile`)",
                ),
                OptionSpec::with_default(
                    "quantization",
                    String,
                    "none",
                    "bitsandbytes weight quantization (needs a GPU and the bitsandbytes package)",
                )
                .choices(QUANTIZATIONS),
                OptionSpec::with_default(
                    "static_cache",
                    Boolean,
                    false,
                    "Offline: a static KV cache (`cache_implementation=\"static\"`), the usual partner of torch_compile",
                ),
                OptionSpec::with_default(
                    "continuous_batching",
                    Boolean,
                    false,
                    "Server: continuous batching with paged attention (`--continuous-batching`)",
                ),
                null(
                    "top_k",
                    Integer,
                    "Offline, when [load].temperature > 0: sample from the k likeliest tokens (≥ 1). Temperature, top_p, seed and max_tokens are [load]'s, the same for every engine",
                ),
                null(
                    "seed",
                    Integer,
                    "Random seed (offline: `torch.manual_seed` before loading; server: `--default-seed`)",
                ),
                OptionSpec::with_default(
                    "python",
                    String,
                    "python3",
                    "The Python interpreter that has torch and transformers installed (e.g. a venv's `bin/python`)",
                ),
                null(
                    "transformers_executable",
                    String,
                    "Server: a `transformers` console script to run instead of `<python> -m transformers.cli.transformers` (transformers < 5)",
                ),
                OptionSpec::with_default(
                    "env",
                    Table,
                    Value::Object(Map::new()),
                    "Environment variables for the engine, e.g. { CUDA_VISIBLE_DEVICES = \"0\" }; HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are 1 unless set here",
                ),
                OptionSpec::with_default(
                    "ready_timeout_s",
                    Integer,
                    DEFAULT_READY_TIMEOUT_S,
                    "Seconds the engine may take to load the model and become ready",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let mode = backend_common::mode(&config, "offline")?;
        let batch_size: i64 = config.optional("batch_size")?.unwrap_or(1);
        let batch_size = u32::try_from(batch_size)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                PluginError::invalid_config(
                    "batch_size",
                    format!("must be at least 1, found {batch_size}"),
                )
            })?;
        let attn_implementation = config.choice("attn_implementation", ATTN_IMPLEMENTATIONS)?;
        let device_map: String = config
            .optional("device_map")?
            .unwrap_or_else(|| "auto".into());
        if device_map.trim().is_empty() {
            return Err(PluginError::invalid_config(
                "device_map",
                "must name a device or a strategy (`auto`, `cpu`, `cuda:0`, …)",
            ));
        }
        let pytorch = Pytorch {
            mode,
            dtype: config.choice_or("dtype", "auto", DTYPES)?,
            batch_size,
            attn_implementation,
            device_map,
            torch_compile: config.optional("torch_compile")?.unwrap_or(false),
            quantization: config.choice_or("quantization", "none", QUANTIZATIONS)?,
            static_cache: config.optional("static_cache")?.unwrap_or(false),
            continuous_batching: config.optional("continuous_batching")?.unwrap_or(false),
            top_k: config.optional("top_k")?,
            seed: config.optional("seed")?,
            python: config.program_or("python", "python3")?,
            transformers_executable: config
                .optional::<String>("transformers_executable")?
                .filter(|s| !s.trim().is_empty()),
            env: env(&config)?,
            ready_timeout_s: config
                .positive_seconds_or("ready_timeout_s", DEFAULT_READY_TIMEOUT_S)?,
        };
        pytorch.validate()?;
        Ok(pytorch)
    }
}

/// `DEFAULT_ENV`, then the `env` table (a name set there replaces the default).
fn env(config: &Config) -> Result<Vec<(String, String)>, PluginError> {
    let user = config.env_table("env")?;
    let mut env: Vec<(String, String)> = DEFAULT_ENV
        .iter()
        .filter(|(name, _)| !user.iter().any(|(n, _)| n == name))
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    env.extend(user);
    Ok(env)
}

impl Pytorch {
    fn is_cpu(&self) -> bool {
        self.device_map == "cpu"
    }

    /// Combinations that cannot work, known without looking at the machine.
    /// (Whether a GPU or flash-attn is present is the engine's to find out.)
    fn validate(&self) -> Result<(), PluginError> {
        if self.quantization != "none" && self.is_cpu() {
            return Err(PluginError::invalid_config(
                "quantization",
                format!(
                    "`{}` (bitsandbytes) quantizes for a GPU, but device_map = \"cpu\" loads the model on the CPU",
                    self.quantization
                ),
            )
            .with_hint("set quantization = \"none\", or device_map to a GPU (\"auto\", \"cuda:0\")"));
        }
        if self.attn_implementation.as_deref() == Some("flash_attention_2") && self.is_cpu() {
            return Err(PluginError::invalid_config(
                "attn_implementation",
                "flash_attention_2 runs on CUDA GPUs only, but device_map = \"cpu\"",
            )
            .with_hint("use \"sdpa\" or \"eager\" on the CPU"));
        }
        if self.attn_implementation.as_deref() == Some("flash_attention_2")
            && self.dtype == "float32"
        {
            return Err(PluginError::invalid_config(
                "attn_implementation",
                "flash_attention_2 supports float16 and bfloat16 only, but dtype = \"float32\"",
            ));
        }
        match self.mode {
            EngineMode::Offline => self.validate_offline(),
            EngineMode::Server => self.validate_server(),
        }
    }

    fn validate_offline(&self) -> Result<(), PluginError> {
        if self.continuous_batching {
            return Err(PluginError::invalid_config(
                "continuous_batching",
                "is a `transformers serve` option (mode = \"server\"); offline batches with batch_size",
            ));
        }
        if self.transformers_executable.is_some() {
            return Err(PluginError::invalid_config(
                "transformers_executable",
                "is for mode = \"server\"; offline runs the worker with `python`",
            ));
        }
        if let Some(k) = self.top_k.filter(|k| *k < 1) {
            return Err(PluginError::invalid_config(
                "top_k",
                format!("must be at least 1, found {k}"),
            ));
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), PluginError> {
        if self.batch_size != 1 {
            return Err(PluginError::invalid_config(
                "batch_size",
                "is for mode = \"offline\"; `transformers serve` batches by itself",
            )
            .with_hint("set continuous_batching = true to batch concurrent requests"));
        }
        if self.static_cache {
            return Err(PluginError::invalid_config(
                "static_cache",
                "is for mode = \"offline\"; `transformers serve` has no flag for it",
            ));
        }
        if self.top_k.is_some() {
            return Err(PluginError::invalid_config(
                "top_k",
                "is for mode = \"offline\"; a server samples as each request asks ([load].temperature, top_p, seed)",
            ));
        }
        if DEVICE_MAP_STRATEGIES.contains(&self.device_map.as_str()) && self.device_map != "auto" {
            return Err(PluginError::invalid_config(
                "device_map",
                format!(
                    "{:?} is a from_pretrained strategy; `transformers serve --device` takes `auto`, `cpu` or one device such as `cuda:0`",
                    self.device_map
                ),
            ));
        }
        Ok(())
    }

    fn server_args(&self, request: &PlanRequest) -> Vec<String> {
        let mut args = vec!["serve".to_owned(), request.model.clone()];
        args.extend(backend_common::address_args(request));
        args.extend([
            "--device".to_owned(),
            self.device_map.clone(),
            "--dtype".to_owned(),
            self.dtype.clone(),
        ]);
        if let Some(attn) = &self.attn_implementation {
            args.extend(["--attn-implementation".to_owned(), attn.clone()]);
        }
        if self.quantization != "none" {
            args.extend(["--quantization".to_owned(), self.quantization.clone()]);
        }
        if self.torch_compile {
            args.push("--compile".to_owned());
        }
        if self.continuous_batching {
            args.push("--continuous-batching".to_owned());
        }
        if let Some(seed) = self.seed {
            args.extend(["--default-seed".to_owned(), seed.to_string()]);
        }
        args
    }
}

impl Backend for Pytorch {
    fn plan(&mut self, request: &PlanRequest) -> Result<EnginePlan, PluginError> {
        backend_common::require_model(
            request,
            "a PyTorch run needs a model (a local directory, or a Hugging Face id already in the cache)",
        )?;
        match self.mode {
            EngineMode::Offline => Ok(OfflineWorker {
                engine: "transformers",
                python: &self.python,
                file: WORKER_FILE,
                script: WORKER_SCRIPT,
                args: Vec::new(),
                env: &self.env,
                ready_timeout_s: self.ready_timeout_s,
            }
            .plan(request)),
            EngineMode::Server => {
                let (program, mut args) = match &self.transformers_executable {
                    Some(exe) => (exe.clone(), Vec::new()),
                    None => (
                        self.python.clone(),
                        vec!["-m".to_owned(), SERVE_MODULE.to_owned()],
                    ),
                };
                args.extend(self.server_args(request));
                Ok(EnginePlan {
                    mode: EngineMode::Server,
                    engine: "transformers".into(),
                    program,
                    args,
                    env: self.env.clone(),
                    api_base_path: Some("/v1".into()),
                    health_path: Some("/health".into()),
                    metrics_path: None,
                    worker_script: None,
                    ready_timeout_s: self.ready_timeout_s,
                })
            }
        }
    }
}

llem_sdk::export_backend!(Pytorch);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn open(config: Value) -> Result<Pytorch, PluginError> {
        Pytorch::open(Config::from_json(&config.to_string()).unwrap())
    }

    fn request() -> PlanRequest {
        PlanRequest {
            model: "/models/tiny".into(),
            host: "127.0.0.1".into(),
            port: 8123,
            run_dir: "/runs/r1/".into(),
        }
    }

    #[test]
    fn every_declared_default_opens() {
        let defaults: Map<String, Value> = Pytorch::describe()
            .options
            .into_iter()
            .map(|o| (o.name, o.default.unwrap_or(Value::Null)))
            .collect();
        let p = open(Value::Object(defaults)).unwrap();
        assert_eq!(p, open(json!({})).unwrap());
        assert_eq!(p.mode, EngineMode::Offline);
    }

    #[test]
    fn the_worker_is_written_into_the_run_directory() {
        let plan = open(json!({})).unwrap().plan(&request()).unwrap();
        assert_eq!(plan.args, vec!["/runs/r1/pytorch_worker.py".to_owned()]);
        assert_eq!(plan.worker_script.as_deref(), Some(WORKER_SCRIPT));
        // One script: the shared protocol module, then this engine's part.
        assert!(WORKER_SCRIPT.starts_with(backend_common::WORKER_PROTOCOL));
        assert!(WORKER_SCRIPT.ends_with(include_str!("../pytorch_worker.py")));
    }

    #[test]
    fn env_overrides_the_offline_defaults() {
        let p = open(json!({"env": {"HF_HUB_OFFLINE": "0", "X": 1}})).unwrap();
        assert_eq!(
            p.env,
            vec![
                ("TRANSFORMERS_OFFLINE".to_owned(), "1".to_owned()),
                ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
                ("HF_HUB_OFFLINE".to_owned(), "0".to_owned()),
                ("X".to_owned(), "1".to_owned()),
            ]
        );
        let err = open(json!({"env": {"A=B": "x"}})).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("env.A=B"));
    }

    #[test]
    fn settings_are_checked() {
        // Temperature, top_p and seed are [load]'s now; top_k stays the plugin's.
        assert!(open(json!({"top_k": 50})).is_ok());
        for (config, key) in [
            (json!({"top_k": 0}), "top_k"),
            (json!({"mode": "server", "top_k": 5}), "top_k"),
            (json!({"batch_size": 0}), "batch_size"),
            (json!({"ready_timeout_s": 0}), "ready_timeout_s"),
            (json!({"python": " "}), "python"),
            (json!({"device_map": ""}), "device_map"),
        ] {
            let err = open(config.clone()).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{config}: {err:?}");
        }
        let names: Vec<String> = Pytorch::describe()
            .options
            .into_iter()
            .map(|o| o.name)
            .collect();
        for gone in ["do_sample", "temperature", "top_p"] {
            assert!(!names.iter().any(|n| n == gone), "{gone} is [load]'s now");
        }
    }

    #[test]
    fn an_empty_model_is_refused() {
        let mut r = request();
        r.model = " ".into();
        let err = open(json!({})).unwrap().plan(&r).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("experiment.model"));
    }
}
