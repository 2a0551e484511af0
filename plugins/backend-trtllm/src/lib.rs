//! `backend-trtllm`: plans a TensorRT-LLM engine. Pure: configuration in,
//! engine plan out; the kernel starts and owns the process.
//!
//! TensorRT-LLM takes most of its configuration as LLM API arguments
//! (`tensorrt_llm.LLM(**kwargs)`; `trtllm-serve --extra_llm_api_options
//! <yaml>` reads the same keys from a file). This plugin builds that table
//! once — `dtype`, `quant_config`, `kv_cache_config`, `scheduler_config`,
//! `return_perf_metrics`, with `extra_llm_api_options` merged over it — and
//! hands it to whichever mode runs:
//!
//! - **server** (default): `trtllm-serve <model> --host <h> --port <p>
//!   --backend <b> [--max_batch_size N] [--max_num_tokens N] [--max_seq_len N]
//!   --tp_size N --pp_size N [--extra_llm_api_options <run_dir>/extra_llm_api_options.yaml]
//!   [extra_args…]` (flag spellings from `tensorrt_llm/commands/serve.py`).
//!   When there is a table to pass, the plan carries it (as JSON, which YAML
//!   parsers read) as its `worker_script`, which the kernel writes to the
//!   `.yaml` argument in the run directory before starting `trtllm-serve`: the
//!   plan stays pure and runs no shell.
//!   Health at `/health`, the OpenAI API under `/v1`. `trtllm-serve`'s
//!   `/metrics` is JSON iteration statistics; its Prometheus page is
//!   `/prometheus/metrics` and exists only with `return_perf_metrics = true`,
//!   so the plan names a metrics path only then.
//! - **offline**: `python3 <run_dir>/trtllm_worker.py --llm-args <json>`; the
//!   worker ([`WORKER_SCRIPT`]: backend-common's `worker_protocol.py` with
//!   `trtllm_worker.py` of this crate appended) speaks llem's worker protocol v1
//!   on `tensorrt_llm.LLM.generate_async(…, streaming=True)`.

use backend_common::prometheus::{self, Keep};
use backend_common::{OfflineWorker, in_run_dir, positive};
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
    include_str!("../trtllm_worker.py")
);
/// The worker's file name inside the run directory.
pub const WORKER_FILE: &str = "trtllm_worker.py";
/// The LLM API arguments file a server plan writes into the run directory.
pub const LLM_API_OPTIONS_FILE: &str = "extra_llm_api_options.yaml";

/// `--backend` of `trtllm-serve` (`tensorrt_llm/commands/serve.py`).
const BACKENDS: &[&str] = &["pytorch", "tensorrt"];
/// `dtype` of the LLM API.
const DTYPES: &[&str] = &["auto", "float16", "bfloat16", "float32"];
/// `SchedulerConfig.capacity_scheduler_policy` (`CapacitySchedulerPolicy` in
/// `tensorrt_llm/llmapi/llm_args.py`).
const SCHEDULER_POLICIES: &[&str] = &["MAX_UTILIZATION", "GUARANTEED_NO_EVICT", "STATIC_BATCH"];

/// The series `parse_metrics` keeps from `/prometheus/metrics`
/// (`tensorrt_llm/metrics/collector.py`, `MetricsCollector`), under their
/// `trtllm_`-prefixed names with the unprefixed names of earlier releases as
/// aliases. The ones every release exposes are `expected`: a run warns when
/// the engine never showed one.
const KEEP: &[Keep] = &[
    Keep::value("trtllm_num_requests_running", "requests")
        .or(&["num_requests_running"])
        .expected(),
    Keep::value("trtllm_num_requests_waiting", "requests")
        .or(&["num_requests_waiting"])
        .expected(),
    Keep::value("trtllm_kv_cache_utilization", "ratio")
        .or(&["kv_cache_utilization"])
        .expected(),
    Keep::value("trtllm_kv_cache_hit_rate", "ratio").or(&["kv_cache_hit_rate"]),
    Keep::value("trtllm_prompt_tokens_total", "tokens").or(&["prompt_tokens_total"]),
    Keep::value("trtllm_generation_tokens_total", "tokens").or(&["generation_tokens_total"]),
    Keep::value("trtllm_request_success_total", "requests")
        .or(&["request_success_total"])
        .expected(),
    Keep::value("trtllm_num_requests_completed_total", "requests")
        .or(&["num_requests_completed_total"]),
    Keep::value("trtllm_gpu_memory_usage_bytes", "bytes").or(&["gpu_memory_usage_bytes"]),
    Keep::histogram("trtllm_time_to_first_token_seconds", "s")
        .or(&["time_to_first_token_seconds"])
        .expected(),
    Keep::histogram("trtllm_time_per_output_token_seconds", "s")
        .or(&["time_per_output_token_seconds"])
        .expected(),
    Keep::histogram("trtllm_e2e_request_latency_seconds", "s")
        .or(&["e2e_request_latency_seconds"])
        .expected(),
    Keep::histogram("trtllm_request_queue_time_seconds", "s").or(&["request_queue_time_seconds"]),
];

pub struct Trtllm {
    mode: EngineMode,
    backend: String,
    max_batch_size: Option<i64>,
    max_num_tokens: Option<i64>,
    max_seq_len: Option<i64>,
    tensor_parallel_size: i64,
    pipeline_parallel_size: i64,
    return_perf_metrics: bool,
    /// LLM API arguments beyond the ones with `trtllm-serve` flags.
    llm_api_options: Map<String, Value>,
    python: String,
    trtllm_serve_executable: String,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    ready_timeout_s: u32,
}

impl Plugin for Trtllm {
    fn describe() -> PluginInfo {
        use OptionType::{Boolean, Integer, String, StringList, Table};
        let opt = |name: &str, ty, doc: &str| OptionSpec::with_default(name, ty, Value::Null, doc);
        PluginInfo {
            name: "backend-trtllm".into(),
            kind: PluginKind::Backend,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "TensorRT-LLM: `trtllm-serve` (server) or a worker on the `tensorrt_llm.LLM` API (offline)".into(),
            options: vec![
                OptionSpec::with_default(
                    "mode",
                    String,
                    "server",
                    "`server`: `trtllm-serve`, measured through its OpenAI API; `offline`: a Python worker on the `tensorrt_llm.LLM` API",
                )
                .choices(backend_common::MODES),
                OptionSpec::with_default(
                    "backend",
                    String,
                    "pytorch",
                    "TensorRT-LLM runtime (`--backend`): `pytorch`, or `tensorrt` (a built TensorRT engine)",
                )
                .choices(BACKENDS),
                opt("max_batch_size", Integer, "Most requests scheduled together (`--max_batch_size`)"),
                opt(
                    "max_num_tokens",
                    Integer,
                    "Most batched input tokens per iteration (`--max_num_tokens`)",
                ),
                opt(
                    "max_seq_len",
                    Integer,
                    "Longest request, prompt plus output (`--max_seq_len`); null: from the model's config",
                ),
                OptionSpec::with_default(
                    "tensor_parallel_size",
                    Integer,
                    1,
                    "Tensor-parallel GPUs (`--tp_size`)",
                ),
                OptionSpec::with_default(
                    "pipeline_parallel_size",
                    Integer,
                    1,
                    "Pipeline stages (`--pp_size`)",
                ),
                opt("dtype", String, "Model data type (LLM API `dtype`); null: `auto`")
                    .choices(DTYPES),
                opt(
                    "quant_config",
                    Table,
                    "LLM API `quant_config`, e.g. { quant_algo = \"FP8\", kv_cache_quant_algo = \"FP8\" }",
                ),
                opt(
                    "kv_cache_config",
                    Table,
                    "LLM API `kv_cache_config`, e.g. { free_gpu_memory_fraction = 0.9, enable_block_reuse = true }",
                ),
                opt(
                    "scheduler_policy",
                    String,
                    "Capacity scheduler policy (`scheduler_config.capacity_scheduler_policy`)",
                )
                .choices(SCHEDULER_POLICIES),
                OptionSpec::with_default(
                    "return_perf_metrics",
                    Boolean,
                    false,
                    "Server: turn on TensorRT-LLM's per-request metrics and its Prometheus page (`/prometheus/metrics`), which llem then scrapes",
                ),
                opt(
                    "extra_llm_api_options",
                    Table,
                    "More LLM API arguments, merged over the ones above (the `--extra_llm_api_options` YAML route)",
                ),
                OptionSpec::with_default(
                    "python",
                    String,
                    "python3",
                    "Offline mode: the Python interpreter that has TensorRT-LLM installed",
                ),
                OptionSpec::with_default(
                    "trtllm_serve_executable",
                    String,
                    "trtllm-serve",
                    "Server mode: the `trtllm-serve` command",
                ),
                OptionSpec::with_default(
                    "extra_args",
                    StringList,
                    Value::Array(Vec::new()),
                    "Server mode: more `trtllm-serve` arguments, appended verbatim",
                ),
                OptionSpec::with_default(
                    "env",
                    Table,
                    Value::Object(Map::new()),
                    "Environment variables for the engine",
                ),
                OptionSpec::with_default(
                    "ready_timeout_s",
                    Integer,
                    1800,
                    "Seconds the engine may take to load (or build) the model and become ready",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let mode = backend_common::mode(&config, "server")?;
        let backend = config.choice_or("backend", "pytorch", BACKENDS)?;
        let trtllm = Trtllm {
            mode,
            backend,
            max_batch_size: positive(&config, "max_batch_size")?,
            max_num_tokens: positive(&config, "max_num_tokens")?,
            max_seq_len: positive(&config, "max_seq_len")?,
            tensor_parallel_size: positive(&config, "tensor_parallel_size")?.unwrap_or(1),
            pipeline_parallel_size: positive(&config, "pipeline_parallel_size")?.unwrap_or(1),
            return_perf_metrics: config.optional("return_perf_metrics")?.unwrap_or(false),
            llm_api_options: llm_api_options(&config)?,
            python: config.program_or("python", "python3")?,
            trtllm_serve_executable: config
                .program_or("trtllm_serve_executable", "trtllm-serve")?,
            extra_args: config.optional("extra_args")?.unwrap_or_default(),
            env: config.env_table("env")?,
            ready_timeout_s: config.positive_seconds_or("ready_timeout_s", 1800)?,
        };
        trtllm.validate()?;
        Ok(trtllm)
    }
}

fn table(config: &Config, key: &str) -> Result<Option<Map<String, Value>>, PluginError> {
    config.optional(key)
}

/// Check one key of a table option, if present, with `check`; errors name `table.key`.
fn check_field(
    table: &Map<String, Value>,
    table_key: &str,
    field: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<(), PluginError> {
    match table.get(field) {
        Some(value) if !check(value) => Err(PluginError::invalid_config(
            &format!("{table_key}.{field}"),
            format!("must be {what}, found {value}"),
        )),
        _ => Ok(()),
    }
}

/// The LLM API table from the structured options, with `extra_llm_api_options`
/// merged over it (tables merge key by key; anything else is replaced).
fn llm_api_options(config: &Config) -> Result<Map<String, Value>, PluginError> {
    let mut out = Map::new();
    if let Some(dtype) = config.choice("dtype", DTYPES)? {
        out.insert("dtype".into(), Value::String(dtype));
    }
    if let Some(quant) = table(config, "quant_config")? {
        let is_name = |v: &Value| v.is_null() || v.as_str().is_some_and(|s| !s.is_empty());
        check_field(
            &quant,
            "quant_config",
            "quant_algo",
            "a QuantAlgo name",
            is_name,
        )?;
        check_field(
            &quant,
            "quant_config",
            "kv_cache_quant_algo",
            "a QuantAlgo name",
            is_name,
        )?;
        out.insert("quant_config".into(), Value::Object(quant));
    }
    if let Some(kv) = table(config, "kv_cache_config")? {
        // KvCacheConfig.validate_free_gpu_memory_fraction: 0 <= v <= 1.
        check_field(
            &kv,
            "kv_cache_config",
            "free_gpu_memory_fraction",
            "a number between 0 and 1",
            |v| v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)),
        )?;
        check_field(
            &kv,
            "kv_cache_config",
            "enable_block_reuse",
            "a boolean",
            Value::is_boolean,
        )?;
        check_field(
            &kv,
            "kv_cache_config",
            "max_tokens",
            "a positive integer",
            |v| v.is_null() || v.as_i64().is_some_and(|n| n >= 1),
        )?;
        out.insert("kv_cache_config".into(), Value::Object(kv));
    }
    if let Some(policy) = config.choice("scheduler_policy", SCHEDULER_POLICIES)? {
        let mut scheduler = Map::new();
        scheduler.insert("capacity_scheduler_policy".into(), Value::String(policy));
        out.insert("scheduler_config".into(), Value::Object(scheduler));
    }
    if config.optional::<bool>("return_perf_metrics")? == Some(true) {
        out.insert("return_perf_metrics".into(), Value::Bool(true));
    }
    if let Some(extra) = table(config, "extra_llm_api_options")? {
        for reserved in ["model", "backend"] {
            if extra.contains_key(reserved) {
                return Err(PluginError::invalid_config(
                    &format!("extra_llm_api_options.{reserved}"),
                    "is set by llem (from experiment.model and `backend`), not here",
                ));
            }
        }
        merge(&mut out, extra);
    }
    Ok(out)
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => merge(existing, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

impl Trtllm {
    fn validate(&self) -> Result<(), PluginError> {
        if self.mode == EngineMode::Offline && !self.extra_args.is_empty() {
            return Err(PluginError::invalid_config(
                "extra_args",
                "are `trtllm-serve` arguments; offline mode has no command line",
            )
            .with_hint("put LLM API arguments in extra_llm_api_options instead"));
        }
        backend_common::refuse_address_flags(&self.extra_args, &["--host", "--port"])?;
        for (i, arg) in self.extra_args.iter().enumerate() {
            let flag = arg.split('=').next().unwrap_or(arg);
            if matches!(flag, "--extra_llm_api_options" | "--config") {
                return Err(PluginError::invalid_config(
                    "extra_args",
                    format!(
                        "element {i} ({arg:?}) names an LLM API options file; llem writes that file from extra_llm_api_options"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The LLM API arguments of an offline worker: everything, flags included.
    fn worker_llm_args(&self) -> String {
        let mut args = Map::new();
        args.insert("backend".into(), Value::String(self.backend.clone()));
        args.insert(
            "tensor_parallel_size".into(),
            Value::from(self.tensor_parallel_size),
        );
        args.insert(
            "pipeline_parallel_size".into(),
            Value::from(self.pipeline_parallel_size),
        );
        for (key, value) in [
            ("max_batch_size", self.max_batch_size),
            ("max_num_tokens", self.max_num_tokens),
            ("max_seq_len", self.max_seq_len),
        ] {
            if let Some(n) = value {
                args.insert(key.into(), Value::from(n));
            }
        }
        merge(&mut args, self.llm_api_options.clone());
        Value::Object(args).to_string()
    }
}

impl Backend for Trtllm {
    fn plan(&mut self, request: &PlanRequest) -> Result<EnginePlan, PluginError> {
        backend_common::require_model(
            request,
            "a TensorRT-LLM run needs a model (a Hugging Face id, a checkpoint or an engine directory)",
        )?;
        if self.mode == EngineMode::Offline {
            return Ok(OfflineWorker {
                engine: "trtllm",
                python: &self.python,
                file: WORKER_FILE,
                script: WORKER_SCRIPT,
                args: vec!["--llm-args".into(), self.worker_llm_args()],
                env: &self.env,
                ready_timeout_s: self.ready_timeout_s,
            }
            .plan(request));
        }
        let mut serve = vec![self.trtllm_serve_executable.clone(), request.model.clone()];
        serve.extend(backend_common::address_args(request));
        serve.extend(["--backend".into(), self.backend.clone()]);
        for (flag, value) in [
            ("--max_batch_size", self.max_batch_size),
            ("--max_num_tokens", self.max_num_tokens),
            ("--max_seq_len", self.max_seq_len),
        ] {
            if let Some(n) = value {
                serve.extend([flag.to_owned(), n.to_string()]);
            }
        }
        serve.extend([
            "--tp_size".into(),
            self.tensor_parallel_size.to_string(),
            "--pp_size".into(),
            self.pipeline_parallel_size.to_string(),
        ]);
        // The options file, if any, is written by the kernel from `worker_script`
        // to the `.yaml` argument (plugins cannot write files).
        let mut options_file = None;
        if !self.llm_api_options.is_empty() {
            let path = in_run_dir(&request.run_dir, LLM_API_OPTIONS_FILE);
            serve.extend(["--extra_llm_api_options".into(), path]);
            let text = serde_json::to_string_pretty(&Value::Object(self.llm_api_options.clone()))
                .map_err(|e| {
                PluginError::other(format!("cannot write the LLM API options: {e}"))
            })?;
            options_file = Some(format!("{text}\n"));
        }
        serve.extend(self.extra_args.iter().cloned());
        let program = serve.remove(0);
        let args = serve;
        Ok(EnginePlan {
            mode: EngineMode::Server,
            engine: "trtllm".into(),
            program,
            args,
            env: self.env.clone(),
            api_base_path: Some("/v1".into()),
            health_path: Some("/health".into()),
            metrics_path: self
                .return_perf_metrics
                .then(|| "/prometheus/metrics".to_owned()),
            worker_script: options_file,
            ready_timeout_s: self.ready_timeout_s,
        })
    }

    fn parse_metrics(&mut self, prometheus_text: &str) -> Result<Vec<Metric>, PluginError> {
        Ok(prometheus::metrics(prometheus_text, KEEP))
    }
}

llem_sdk::export_backend!(Trtllm);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn open(config: Value) -> Result<Trtllm, PluginError> {
        Trtllm::open(Config::from_json(&config.to_string()).unwrap())
    }

    #[test]
    fn the_worker_is_the_protocol_module_then_the_trtllm_part() {
        assert!(WORKER_SCRIPT.starts_with(backend_common::WORKER_PROTOCOL));
        assert!(WORKER_SCRIPT.ends_with(include_str!("../trtllm_worker.py")));
    }

    #[test]
    fn extra_options_merge_over_the_structured_ones() {
        let t = open(json!({
            "kv_cache_config": {"free_gpu_memory_fraction": 0.8, "enable_block_reuse": true},
            "extra_llm_api_options": {"kv_cache_config": {"enable_block_reuse": false}, "print_iter_log": true},
        }))
        .unwrap();
        assert_eq!(
            Value::Object(t.llm_api_options),
            json!({
                "kv_cache_config": {"free_gpu_memory_fraction": 0.8, "enable_block_reuse": false},
                "print_iter_log": true,
            })
        );
    }

    #[test]
    fn table_fields_are_checked_with_their_key_path() {
        let err = open(json!({"kv_cache_config": {"free_gpu_memory_fraction": 1.5}}))
            .err()
            .unwrap();
        assert_eq!(
            err.key.as_deref(),
            Some("kv_cache_config.free_gpu_memory_fraction")
        );
        let err = open(json!({"quant_config": {"quant_algo": 8}}))
            .err()
            .unwrap();
        assert_eq!(err.key.as_deref(), Some("quant_config.quant_algo"));
    }
}
