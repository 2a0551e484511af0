//! `backend-vllm`: plans a vLLM engine. Pure: configuration in, engine plan
//! out; the kernel starts and owns the process.
//!
//! - **server** (default): `vllm serve <model> --host <h> --port <p> …`, one
//!   flag per option that is set, spelled as vLLM's CLI spells it
//!   (`vllm/engine/arg_utils.py`, `EngineArgs.add_cli_args`). Health at
//!   `/health`, Prometheus metrics at `/metrics`, the OpenAI API under `/v1`.
//! - **offline**: `python3 <run_dir>/vllm_worker.py --engine-args <json>`;
//!   the plan carries the worker's source ([`WORKER_SCRIPT`]: backend-common's
//!   `worker_protocol.py` with `vllm_worker.py` of this crate appended), which
//!   the kernel writes to that path. The worker speaks llem's worker
//!   protocol v1 (JSON lines over stdio) and drives vLLM's `LLMEngine` step
//!   loop itself, so every request's tokens are timestamped with
//!   `time.monotonic_ns()` as they come out of the engine.
//!
//! Options left `null` are not passed: vLLM's own default applies (and is
//! the installed vLLM's, which changes between releases).

use backend_common::OfflineWorker;
use backend_common::prometheus::{self, Keep};
use llem_sdk::{
    Backend, Config, EngineMode, EnginePlan, Metric, OptionSpec, OptionType, PlanRequest, Plugin,
    PluginError, PluginInfo, PluginKind,
};
use serde_json::{Map, Value};

/// The worker the offline plan runs; the kernel writes it into the run
/// directory. One script, assembled here: the shared protocol module, then
/// this engine's part.
pub const WORKER_SCRIPT: &str = concat!(
    include_str!("../../backend-common/worker_protocol.py"),
    include_str!("../vllm_worker.py")
);
/// The worker's file name inside the run directory.
pub const WORKER_FILE: &str = "vllm_worker.py";

/// `--dtype` (vLLM `ModelDType`).
const DTYPES: &[&str] = &["auto", "half", "float16", "bfloat16", "float", "float32"];

/// `--quantization`: the methods vLLM releases accept (`QuantizationMethods` in
/// `vllm/model_executor/layers/quantization/__init__.py`), the union over the
/// releases from 0.8 to main, since the list changes from one release to the
/// next. The installed vLLM has the last word: it refuses what it lacks.
const QUANTIZATIONS: &[&str] = &[
    "aqlm",
    "auto-round",
    "auto_awq",
    "auto_gptq",
    "awq",
    "awq_marlin",
    "bitblas",
    "bitsandbytes",
    "compressed-tensors",
    "cpu_awq",
    "deepgemm_fp8",
    "deepseek_v4_fp8",
    "deepspeedfp",
    "experts_int8",
    "fbgemm_fp8",
    "fp8",
    "fp8_per_block",
    "fp8_per_channel",
    "fp8_per_tensor",
    "fp_quant",
    "gguf",
    "gpt_oss_mxfp4",
    "gptq",
    "gptq_bitblas",
    "gptq_marlin",
    "gptq_marlin_24",
    "hqq",
    "inc",
    "int8_per_channel_weight_only",
    "ipex",
    "marlin",
    "modelopt",
    "modelopt_fp4",
    "modelopt_mixed",
    "modelopt_mxfp8",
    "moe_wna16",
    "mxfp4",
    "mxfp8",
    "neuron_quant",
    "nvfp4_per_token",
    "online",
    "ptpc_fp8",
    "qqq",
    "quark",
    "torchao",
    "tpu_int8",
];

/// `--kv-cache-dtype` (vLLM `CacheDType` in `vllm/config/cache.py`), likewise
/// the union over releases.
const KV_CACHE_DTYPES: &[&str] = &[
    "auto",
    "bfloat16",
    "float16",
    "fp8",
    "fp8_ds_mla",
    "fp8_e4m3",
    "fp8_e5m2",
    "fp8_inc",
    "fp8_per_token_head",
    "int4_per_token_head",
    "int8_per_token_head",
    "nvfp4",
    "nvfp4_4over6",
    "nvfp4_ds_mla",
    "turboquant_3bit_nc",
    "turboquant_4bit_nc",
    "turboquant_k3v4_nc",
    "turboquant_k8v4",
];

/// The series `parse_metrics` keeps, from vLLM's `/metrics` page, under
/// their current names with the names of earlier releases as aliases: V0's
/// `gpu_cache_usage_perc` became V1's `kv_cache_usage_perc`, and
/// `time_per_output_token_seconds` became `request_time_per_output_token_seconds`
/// (vLLM 0.33). The ones every vLLM exposes are `expected`: a run warns when
/// the engine never showed one.
const KEEP: &[Keep] = &[
    Keep::value("vllm:num_requests_running", "requests").expected(),
    Keep::value("vllm:num_requests_waiting", "requests").expected(),
    Keep::value("vllm:num_requests_swapped", "requests"),
    Keep::value("vllm:kv_cache_usage_perc", "ratio")
        .or(&["vllm:gpu_cache_usage_perc"])
        .expected(),
    Keep::value("vllm:cpu_cache_usage_perc", "ratio"),
    Keep::value("vllm:gpu_prefix_cache_hit_rate", "ratio"),
    Keep::value("vllm:prompt_tokens_total", "tokens").expected(),
    Keep::value("vllm:generation_tokens_total", "tokens").expected(),
    Keep::value("vllm:prefix_cache_queries_total", "tokens"),
    Keep::value("vllm:prefix_cache_hits_total", "tokens"),
    Keep::value("vllm:num_preemptions_total", "count"),
    Keep::value("vllm:request_success_total", "requests"),
    Keep::histogram("vllm:time_to_first_token_seconds", "s").expected(),
    Keep::histogram("vllm:request_time_per_output_token_seconds", "s")
        .or(&["vllm:time_per_output_token_seconds"])
        .expected(),
    Keep::histogram("vllm:inter_token_latency_seconds", "s"),
    Keep::histogram("vllm:e2e_request_latency_seconds", "s").expected(),
    Keep::histogram("vllm:request_queue_time_seconds", "s"),
    Keep::histogram("vllm:request_prefill_time_seconds", "s"),
    Keep::histogram("vllm:request_decode_time_seconds", "s"),
    Keep::histogram("vllm:request_prompt_tokens", "tokens"),
    Keep::histogram("vllm:request_generation_tokens", "tokens"),
];

/// One engine argument: the option's name is vLLM's `EngineArgs` field, so
/// the CLI flag is the name with `-` for `_`, and the offline worker passes
/// it to `vllm.LLM(**engine_args)` unchanged.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

/// Engine arguments, in the order their options are declared.
const ENGINE_ARGS: &[&str] = &[
    "dtype",
    "max_num_seqs",
    "max_num_batched_tokens",
    "max_model_len",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "quantization",
    "kv_cache_dtype",
    "enable_prefix_caching",
    "enable_chunked_prefill",
    "enforce_eager",
    "seed",
];

pub struct Vllm {
    mode: EngineMode,
    engine_args: Vec<(&'static str, Arg)>,
    python: String,
    vllm_executable: String,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    ready_timeout_s: u32,
}

fn null() -> Value {
    Value::Null
}

impl Plugin for Vllm {
    fn describe() -> PluginInfo {
        use OptionType::{Boolean, Float, Integer, String, StringList, Table};
        let opt = |name: &str, ty, doc: &str| OptionSpec::with_default(name, ty, null(), doc);
        PluginInfo {
            name: "backend-vllm".into(),
            kind: PluginKind::Backend,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "vLLM: `vllm serve` (server) or a worker on vLLM's engine (offline)".into(),
            options: vec![
                OptionSpec::with_default(
                    "mode",
                    String,
                    "server",
                    "`server`: `vllm serve`, measured through its OpenAI API; `offline`: a Python worker drives vLLM's engine directly",
                )
                .choices(backend_common::MODES),
                opt("dtype", String, "Weights and activations data type (`--dtype`); null: vLLM's `auto`")
                    .choices(DTYPES),
                opt("max_num_seqs", Integer, "Most sequences per iteration (`--max-num-seqs`)"),
                opt(
                    "max_num_batched_tokens",
                    Integer,
                    "Most tokens per iteration (`--max-num-batched-tokens`)",
                ),
                opt(
                    "max_model_len",
                    Integer,
                    "Context length, prompt plus output (`--max-model-len`); null: from the model's config",
                ),
                opt(
                    "gpu_memory_utilization",
                    Float,
                    "Fraction of each GPU's memory vLLM may use, in (0, 1] (`--gpu-memory-utilization`)",
                ),
                OptionSpec::with_default(
                    "tensor_parallel_size",
                    Integer,
                    1,
                    "GPUs per tensor-parallel group (`--tensor-parallel-size`)",
                ),
                OptionSpec::with_default(
                    "pipeline_parallel_size",
                    Integer,
                    1,
                    "Pipeline stages (`--pipeline-parallel-size`)",
                ),
                opt(
                    "quantization",
                    String,
                    "Weight quantization method (`--quantization`); null: from the model's config",
                )
                .choices(QUANTIZATIONS),
                opt(
                    "kv_cache_dtype",
                    String,
                    "KV cache data type (`--kv-cache-dtype`); null: vLLM's `auto` (the model's)",
                )
                .choices(KV_CACHE_DTYPES),
                opt(
                    "enable_prefix_caching",
                    Boolean,
                    "Prefix caching: true `--enable-prefix-caching`, false `--no-enable-prefix-caching`",
                ),
                opt(
                    "enable_chunked_prefill",
                    Boolean,
                    "Chunked prefill: true `--enable-chunked-prefill`, false `--no-enable-chunked-prefill`",
                ),
                opt(
                    "enforce_eager",
                    Boolean,
                    "Eager mode, no CUDA graphs: true `--enforce-eager`, false `--no-enforce-eager`",
                ),
                opt("seed", Integer, "Random seed (`--seed`)"),
                OptionSpec::with_default(
                    "python",
                    String,
                    "python3",
                    "Offline mode: the Python interpreter that has vLLM installed",
                ),
                OptionSpec::with_default(
                    "vllm_executable",
                    String,
                    "vllm",
                    "Server mode: the `vllm` command",
                ),
                OptionSpec::with_default(
                    "extra_args",
                    StringList,
                    Value::Array(Vec::new()),
                    "More `vllm serve` arguments, appended verbatim (offline: parsed by vLLM's own argument parser in the worker)",
                ),
                OptionSpec::with_default(
                    "env",
                    Table,
                    Value::Object(Map::new()),
                    "Environment variables for the engine, e.g. { VLLM_USE_V1 = \"1\" }",
                ),
                OptionSpec::with_default(
                    "ready_timeout_s",
                    Integer,
                    1200,
                    "Seconds the engine may take to load the model and become ready",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let mode = backend_common::mode(&config, "server")?;
        let mut engine_args = Vec::new();
        for &name in ENGINE_ARGS {
            if let Some(arg) = engine_arg(&config, name)? {
                engine_args.push((name, arg));
            }
        }
        let vllm = Vllm {
            mode,
            engine_args,
            python: config.program_or("python", "python3")?,
            vllm_executable: config.program_or("vllm_executable", "vllm")?,
            extra_args: config.optional("extra_args")?.unwrap_or_default(),
            env: config.env_table("env")?,
            ready_timeout_s: config.positive_seconds_or("ready_timeout_s", 1200)?,
        };
        vllm.validate()?;
        Ok(vllm)
    }
}

/// Read one engine argument with the type its option declares.
fn engine_arg(config: &Config, name: &'static str) -> Result<Option<Arg>, PluginError> {
    Ok(match name {
        "dtype" | "quantization" | "kv_cache_dtype" => {
            let choices = match name {
                "dtype" => DTYPES,
                "quantization" => QUANTIZATIONS,
                _ => KV_CACHE_DTYPES,
            };
            config.choice(name, choices)?.map(Arg::Str)
        }
        "gpu_memory_utilization" => config.optional::<f64>(name)?.map(Arg::Float),
        "enable_prefix_caching" | "enable_chunked_prefill" | "enforce_eager" => {
            config.optional::<bool>(name)?.map(Arg::Bool)
        }
        _ => config.optional::<i64>(name)?.map(Arg::Int),
    })
}

impl Vllm {
    fn int(&self, name: &str) -> Option<i64> {
        self.engine_args.iter().find_map(|(n, a)| match a {
            Arg::Int(i) if *n == name => Some(*i),
            _ => None,
        })
    }

    fn bool(&self, name: &str) -> Option<bool> {
        self.engine_args.iter().find_map(|(n, a)| match a {
            Arg::Bool(b) if *n == name => Some(*b),
            _ => None,
        })
    }

    /// Combinations vLLM refuses, caught before a model is loaded. Each rule
    /// names where vLLM enforces it.
    fn validate(&self) -> Result<(), PluginError> {
        for key in ["tensor_parallel_size", "pipeline_parallel_size"] {
            if let Some(n) = self.int(key).filter(|n| *n < 1) {
                return Err(PluginError::invalid_config(
                    key,
                    format!("must be at least 1, found {n}"),
                ));
            }
        }
        // SchedulerConfig: `max_num_batched_tokens` and `max_num_seqs` are `ge=1`;
        // ModelConfig: a context length is positive.
        for key in ["max_num_seqs", "max_num_batched_tokens", "max_model_len"] {
            if let Some(n) = self.int(key).filter(|n| *n < 1) {
                return Err(PluginError::invalid_config(
                    key,
                    format!("must be at least 1, found {n}"),
                ));
            }
        }
        // CacheConfig: `gpu_memory_utilization: float = Field(gt=0, le=1)`.
        if let Some(Arg::Float(x)) = self
            .engine_args
            .iter()
            .find(|(n, _)| *n == "gpu_memory_utilization")
            .map(|(_, a)| a)
            && !(*x > 0.0 && *x <= 1.0)
        {
            return Err(PluginError::invalid_config(
                "gpu_memory_utilization",
                format!("must be in (0, 1], found {x}"),
            ));
        }
        // SchedulerConfig.verify_max_model_len: fewer batched tokens than sequences
        // is an error, and so is a context longer than one iteration's token
        // budget unless chunked prefill splits long prompts.
        if let Some(tokens) = self.int("max_num_batched_tokens") {
            if let Some(seqs) = self.int("max_num_seqs")
                && tokens < seqs
            {
                return Err(PluginError::invalid_config(
                    "max_num_batched_tokens",
                    format!("({tokens}) must be at least max_num_seqs ({seqs}); vLLM refuses this"),
                )
                .with_hint("raise max_num_batched_tokens or lower max_num_seqs"));
            }
            if let Some(len) = self.int("max_model_len")
                && tokens < len
                && self.bool("enable_chunked_prefill") == Some(false)
            {
                return Err(PluginError::invalid_config(
                    "max_num_batched_tokens",
                    format!(
                        "({tokens}) is smaller than max_model_len ({len}) with chunked prefill off; vLLM refuses this"
                    ),
                )
                .with_hint(
                    "raise max_num_batched_tokens, lower max_model_len, or enable chunked prefill",
                ));
            }
        }
        backend_common::refuse_address_flags(&self.extra_args, &["--host", "--port", "--uds"])
    }

    /// `--flag value` per engine argument; booleans as vLLM's
    /// `BooleanOptionalAction` pairs (`--x` / `--no-x`).
    fn cli_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, arg) in &self.engine_args {
            let flag = name.replace('_', "-");
            match arg {
                Arg::Bool(true) => out.push(format!("--{flag}")),
                Arg::Bool(false) => out.push(format!("--no-{flag}")),
                Arg::Int(i) => out.extend([format!("--{flag}"), i.to_string()]),
                Arg::Float(x) => out.extend([format!("--{flag}"), x.to_string()]),
                Arg::Str(s) => out.extend([format!("--{flag}"), s.clone()]),
            }
        }
        out
    }

    /// The keyword arguments of `vllm.LLM(...)`, as JSON (keys sorted).
    fn engine_args_json(&self) -> String {
        let map: Map<String, Value> = self
            .engine_args
            .iter()
            .map(|(name, arg)| {
                let value = match arg {
                    Arg::Bool(b) => Value::Bool(*b),
                    Arg::Int(i) => Value::from(*i),
                    Arg::Float(x) => serde_json::Number::from_f64(*x)
                        .map(Value::Number)
                        .unwrap_or(Value::Null),
                    Arg::Str(s) => Value::String(s.clone()),
                };
                ((*name).to_owned(), value)
            })
            .collect();
        Value::Object(map).to_string()
    }
}

impl Backend for Vllm {
    fn plan(&mut self, request: &PlanRequest) -> Result<EnginePlan, PluginError> {
        backend_common::require_model(
            request,
            "a vLLM run needs a model (a Hugging Face id or a local directory)",
        )?;
        match self.mode {
            EngineMode::Server => {
                let mut args = vec!["serve".to_owned(), request.model.clone()];
                args.extend(backend_common::address_args(request));
                args.extend(self.cli_flags());
                args.extend(self.extra_args.iter().cloned());
                Ok(EnginePlan {
                    mode: EngineMode::Server,
                    engine: "vllm".into(),
                    program: self.vllm_executable.clone(),
                    args,
                    env: self.env.clone(),
                    api_base_path: Some("/v1".into()),
                    health_path: Some("/health".into()),
                    metrics_path: Some("/metrics".into()),
                    worker_script: None,
                    ready_timeout_s: self.ready_timeout_s,
                })
            }
            EngineMode::Offline => {
                let mut args = vec!["--engine-args".to_owned(), self.engine_args_json()];
                if !self.extra_args.is_empty() {
                    args.push("--extra-args".to_owned());
                    args.push(Value::from(self.extra_args.clone()).to_string());
                }
                Ok(OfflineWorker {
                    engine: "vllm",
                    python: &self.python,
                    file: WORKER_FILE,
                    script: WORKER_SCRIPT,
                    args,
                    env: &self.env,
                    ready_timeout_s: self.ready_timeout_s,
                }
                .plan(request))
            }
        }
    }

    fn parse_metrics(&mut self, prometheus_text: &str) -> Result<Vec<Metric>, PluginError> {
        Ok(prometheus::metrics(prometheus_text, KEEP))
    }
}

llem_sdk::export_backend!(Vllm);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn open(config: Value) -> Result<Vllm, PluginError> {
        Vllm::open(Config::from_json(&config.to_string()).unwrap())
    }

    #[test]
    fn every_engine_arg_is_a_declared_option() {
        let info = Vllm::describe();
        for name in ENGINE_ARGS {
            assert!(info.options.iter().any(|o| o.name == *name), "{name}");
        }
    }

    #[test]
    fn float_flags_print_as_typed() {
        let v = open(json!({"gpu_memory_utilization": 0.85})).unwrap();
        assert!(
            v.cli_flags()
                .ends_with(&["--gpu-memory-utilization".into(), "0.85".into()])
        );
        assert_eq!(v.engine_args_json(), r#"{"gpu_memory_utilization":0.85}"#);
    }

    #[test]
    fn null_options_are_not_passed() {
        let v = open(json!({"dtype": null, "tensor_parallel_size": 2})).unwrap();
        assert_eq!(v.cli_flags(), vec!["--tensor-parallel-size", "2"]);
    }

    #[test]
    fn the_worker_is_the_protocol_module_then_the_vllm_part() {
        assert!(WORKER_SCRIPT.starts_with(backend_common::WORKER_PROTOCOL));
        assert!(WORKER_SCRIPT.ends_with(include_str!("../vllm_worker.py")));
    }

    #[test]
    fn the_address_cannot_be_overridden() {
        let err = open(json!({"extra_args": ["--port=9"]})).err().unwrap();
        assert_eq!(err.key.as_deref(), Some("extra_args"));
    }
}
