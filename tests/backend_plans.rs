//! The vLLM and TensorRT-LLM backends, loaded as WASM components through the
//! kernel: exact engine plans for every option, invalid combinations refused
//! with the key that is wrong, and metrics parsed from realistic Prometheus
//! pages. Build them first:
//! `cargo build --target wasm32-wasip2 -p backend-vllm -p backend-trtllm`
//! (or `cargo xtask fixtures`).

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem::plugin::{BackendInstance, FailureKind, PluginFailure};
use llem_integration_tests::{loader, wasm_artifact, workspace_root};
use llem_sdk::{EngineMode, EnginePlan, Metric, PlanRequest, PluginKind};
use serde_json::{Map, Value, json};

const MODEL: &str = "meta-llama/Llama-3.1-8B-Instruct";
const RUN_DIR: &str = "/runs/exp/2025-01-01T00-00-00Z";

fn request() -> PlanRequest {
    PlanRequest {
        model: MODEL.into(),
        host: "127.0.0.1".into(),
        port: 8123,
        run_dir: RUN_DIR.into(),
    }
}

/// The configuration the kernel hands a plugin: every declared option, its
/// default unless `overrides` sets it; an undeclared key is a test bug (the
/// kernel would refuse it before the plugin saw it).
fn config(plugin: &llem::Plugin, overrides: Value) -> Map<String, Value> {
    let mut out = Map::new();
    for option in &plugin.info().options {
        let default = option
            .default
            .clone()
            .unwrap_or_else(|| panic!("{} is required", option.name));
        out.insert(option.name.clone(), default);
    }
    let Value::Object(overrides) = overrides else {
        unreachable!("overrides are a table")
    };
    for (key, value) in overrides {
        assert!(out.contains_key(&key), "`{key}` is not an option");
        out.insert(key, value);
    }
    out
}

fn open(name: &str, overrides: Value) -> Result<Box<dyn BackendInstance>, PluginFailure> {
    let plugin = loader().load(&wasm_artifact(name)).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Backend);
    let cfg = config(&plugin, overrides);
    plugin.open_backend(&cfg, &Sandbox::default())
}

fn plan(name: &str, overrides: Value) -> EnginePlan {
    open(name, overrides)
        .unwrap()
        .plan(&request())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The failure of opening with `overrides`, asserting it names `key`.
fn refused(name: &str, overrides: Value, key: &str) -> PluginFailure {
    let err = match open(name, overrides.clone()) {
        Ok(_) => panic!("{name} accepted {overrides}"),
        Err(err) => err,
    };
    assert_eq!(err.kind, FailureKind::InvalidConfig, "{err}");
    assert_eq!(err.key.as_deref(), Some(key), "{err}");
    err
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The worker a plan carries: the shared protocol module, then the engine's
/// part at `path` (assembled when the plugin is built).
fn worker_source(path: &str) -> String {
    let read = |path: &str| std::fs::read_to_string(workspace_root().join(path)).unwrap();
    read("plugins/backend-common/worker_protocol.py") + &read(path)
}

/// The entry a backend returns for an expected series the page lacks.
fn missing(series: &str, names: &str) -> Metric {
    metric(
        llem_sdk::MISSING_METRIC,
        1.0,
        "",
        &[("metric", series), ("names", names)],
    )
}

fn metric(name: &str, value: f64, unit: &str, labels: &[(&str, &str)]) -> Metric {
    Metric {
        name: name.into(),
        value,
        unit: unit.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

// ------------------------------------------------------------------ vLLM

#[test]
fn vllm_declares_its_options_with_types_defaults_and_choices() {
    let plugin = loader().load(&wasm_artifact("backend-vllm")).unwrap();
    let info = plugin.info();
    assert_eq!(info.name, "backend-vllm");
    let names: Vec<&str> = info.options.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mode",
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
            "python",
            "vllm_executable",
            "extra_args",
            "env",
            "ready_timeout_s",
        ]
    );
    let get = |name: &str| info.options.iter().find(|o| o.name == name).unwrap();
    assert_eq!(get("mode").default, Some(json!("server")));
    assert_eq!(get("mode").choices, ["server", "offline"]);
    for optional in [
        "dtype",
        "max_num_seqs",
        "quantization",
        "enforce_eager",
        "seed",
    ] {
        assert_eq!(get(optional).default, Some(Value::Null), "{optional}");
    }
    assert!(get("dtype").choices.iter().any(|c| c == "bfloat16"));
    assert!(get("quantization").choices.iter().any(|c| c == "awq"));
    assert!(
        get("kv_cache_dtype")
            .choices
            .iter()
            .any(|c| c == "fp8_e4m3")
    );
    assert_eq!(get("python").default, Some(json!("python3")));
    assert_eq!(get("vllm_executable").default, Some(json!("vllm")));
    assert_eq!(get("extra_args").default, Some(json!([])));
    assert_eq!(get("env").default, Some(json!({})));
    assert!(info.options.iter().all(|o| !o.doc.is_empty()));
}

#[test]
fn vllm_server_plan_with_defaults_passes_only_the_parallel_sizes() {
    let plan = plan("backend-vllm", json!({}));
    assert_eq!(plan.mode, EngineMode::Server);
    assert_eq!(plan.engine, "vllm");
    assert_eq!(plan.program, "vllm");
    assert_eq!(
        plan.args,
        strings(&[
            "serve",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--tensor-parallel-size",
            "1",
            "--pipeline-parallel-size",
            "1",
        ])
    );
    assert!(plan.env.is_empty());
    assert_eq!(plan.api_base_path.as_deref(), Some("/v1"));
    assert_eq!(plan.health_path.as_deref(), Some("/health"));
    assert_eq!(plan.metrics_path.as_deref(), Some("/metrics"));
    assert_eq!(plan.worker_script, None);
    assert_eq!(plan.ready_timeout_s, 1200);
}

#[test]
fn vllm_server_plan_spells_every_option_as_vllm_serve_does() {
    let plan = plan(
        "backend-vllm",
        json!({
            "dtype": "bfloat16",
            "max_num_seqs": 128,
            "max_num_batched_tokens": 8192,
            "max_model_len": 4096,
            "gpu_memory_utilization": 0.85,
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 1,
            "quantization": "fp8",
            "kv_cache_dtype": "fp8_e4m3",
            "enable_prefix_caching": false,
            "enable_chunked_prefill": true,
            "enforce_eager": true,
            "seed": 42,
            "vllm_executable": "/opt/venv/bin/vllm",
            "extra_args": ["--disable-log-requests", "--block-size", "32"],
            "env": {"VLLM_USE_V1": "1", "CUDA_VISIBLE_DEVICES": "0,1"},
            "ready_timeout_s": 900,
        }),
    );
    assert_eq!(plan.program, "/opt/venv/bin/vllm");
    assert_eq!(
        plan.args,
        strings(&[
            "serve",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--dtype",
            "bfloat16",
            "--max-num-seqs",
            "128",
            "--max-num-batched-tokens",
            "8192",
            "--max-model-len",
            "4096",
            "--gpu-memory-utilization",
            "0.85",
            "--tensor-parallel-size",
            "2",
            "--pipeline-parallel-size",
            "1",
            "--quantization",
            "fp8",
            "--kv-cache-dtype",
            "fp8_e4m3",
            "--no-enable-prefix-caching",
            "--enable-chunked-prefill",
            "--enforce-eager",
            "--seed",
            "42",
            "--disable-log-requests",
            "--block-size",
            "32",
        ])
    );
    // The env table arrives as JSON (keys sorted); the plan keeps that order.
    assert_eq!(
        plan.env,
        vec![
            ("CUDA_VISIBLE_DEVICES".to_owned(), "0,1".to_owned()),
            ("VLLM_USE_V1".to_owned(), "1".to_owned()),
        ]
    );
    assert_eq!(plan.ready_timeout_s, 900);
}

#[test]
fn vllm_offline_plan_runs_the_worker_with_the_engine_arguments() {
    let plan = plan(
        "backend-vllm",
        json!({
            "mode": "offline",
            "dtype": "float16",
            "max_model_len": 2048,
            "gpu_memory_utilization": 0.9,
            "enable_prefix_caching": true,
            "python": "/opt/venv/bin/python",
            "extra_args": ["--block-size", "32"],
            "env": {"HF_HUB_OFFLINE": "1"},
        }),
    );
    assert_eq!(plan.mode, EngineMode::Offline);
    assert_eq!(plan.engine, "vllm");
    assert_eq!(plan.program, "/opt/venv/bin/python");
    assert_eq!(
        plan.args,
        strings(&[
            &format!("{RUN_DIR}/vllm_worker.py"),
            "--engine-args",
            r#"{"dtype":"float16","enable_prefix_caching":true,"gpu_memory_utilization":0.9,"max_model_len":2048,"pipeline_parallel_size":1,"tensor_parallel_size":1}"#,
            "--extra-args",
            r#"["--block-size","32"]"#,
        ])
    );
    assert_eq!(
        plan.env,
        vec![("HF_HUB_OFFLINE".to_owned(), "1".to_owned())]
    );
    assert_eq!(
        plan.worker_script.as_deref(),
        Some(worker_source("plugins/backend-vllm/vllm_worker.py").as_str())
    );
    assert_eq!(plan.api_base_path, None);
    assert_eq!(plan.health_path, None);
    assert_eq!(plan.metrics_path, None);

    // Defaults: python3, no extra arguments; a trailing slash on the run directory is harmless.
    let mut backend = open("backend-vllm", json!({"mode": "offline"})).unwrap();
    let plan = backend
        .plan(&PlanRequest {
            run_dir: format!("{RUN_DIR}/"),
            ..request()
        })
        .unwrap();
    assert_eq!(plan.program, "python3");
    assert_eq!(
        plan.args,
        strings(&[
            &format!("{RUN_DIR}/vllm_worker.py"),
            "--engine-args",
            r#"{"pipeline_parallel_size":1,"tensor_parallel_size":1}"#,
        ])
    );
}

#[test]
fn vllm_refuses_invalid_values_and_combinations_naming_the_key() {
    refused(
        "backend-vllm",
        json!({"tensor_parallel_size": 0}),
        "tensor_parallel_size",
    );
    refused(
        "backend-vllm",
        json!({"pipeline_parallel_size": -1}),
        "pipeline_parallel_size",
    );
    for bad in [0.0, -0.5, 1.01] {
        let err = refused(
            "backend-vllm",
            json!({"gpu_memory_utilization": bad}),
            "gpu_memory_utilization",
        );
        assert!(err.message.contains("(0, 1]"), "{err}");
    }
    assert!(open("backend-vllm", json!({"gpu_memory_utilization": 1.0})).is_ok());
    refused("backend-vllm", json!({"max_num_seqs": 0}), "max_num_seqs");
    // vLLM SchedulerConfig.verify_max_model_len: batched tokens >= sequences ...
    let err = refused(
        "backend-vllm",
        json!({"max_num_batched_tokens": 64, "max_num_seqs": 128}),
        "max_num_batched_tokens",
    );
    assert!(err.message.contains("max_num_seqs (128)"), "{err}");
    // ... and >= the context length when chunked prefill is off.
    let long = json!({"max_num_batched_tokens": 2048, "max_model_len": 8192, "enable_chunked_prefill": false});
    let err = refused("backend-vllm", long, "max_num_batched_tokens");
    assert!(err.message.contains("max_model_len (8192)"), "{err}");
    for chunked in [Value::Null, Value::Bool(true)] {
        let ok = json!({"max_num_batched_tokens": 2048, "max_model_len": 8192, "enable_chunked_prefill": chunked});
        assert!(open("backend-vllm", ok).is_ok());
    }
    // Choices are re-checked by the plugin too (a native caller skips the kernel).
    refused(
        "backend-vllm",
        json!({"quantization": "int3"}),
        "quantization",
    );
    refused("backend-vllm", json!({"mode": "batch"}), "mode");
    refused("backend-vllm", json!({"env": {"A=B": "1"}}), "env.A=B");
    refused("backend-vllm", json!({"env": {"X": ["1"]}}), "env.X");
    refused(
        "backend-vllm",
        json!({"extra_args": ["--port", "9000"]}),
        "extra_args",
    );
    refused("backend-vllm", json!({"python": " "}), "python");
    refused(
        "backend-vllm",
        json!({"ready_timeout_s": 0}),
        "ready_timeout_s",
    );
    let err = open("backend-vllm", json!({}))
        .unwrap()
        .plan(&PlanRequest {
            model: String::new(),
            ..request()
        })
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("experiment.model"));
}

const VLLM_METRICS: &str = r#"# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 14392.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.143289344e+09
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.4375
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 52310.0
# HELP vllm:prompt_tokens_created Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_created gauge
vllm:prompt_tokens_created{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.7324896e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40960.0
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="meta-llama/Llama-3.1-8B-Instruct"} 160.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="meta-llama/Llama-3.1-8B-Instruct"} 151.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 160.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 160.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 21.75
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",gpu_memory_utilization="0.9"} 1.0
vllm:gpu_cache_usage_perc{model_name="old \"v0\" engine"} 0.25
this line is not prometheus text
vllm:num_requests_running{engine="1" 5
"#;

#[test]
fn vllm_parses_its_metrics_page_exactly() {
    let mut backend = open("backend-vllm", json!({})).unwrap();
    let metrics = backend.parse_metrics(VLLM_METRICS).unwrap();
    let labels = [("engine", "0"), ("model_name", MODEL)];
    let with = |reason: &'static str| {
        vec![
            ("engine", "0"),
            ("finished_reason", reason),
            ("model_name", MODEL),
        ]
    };
    assert_eq!(
        metrics,
        vec![
            metric("vllm:num_requests_running", 12.0, "requests", &labels),
            metric("vllm:num_requests_waiting", 3.0, "requests", &labels),
            metric("vllm:kv_cache_usage_perc", 0.4375, "ratio", &labels),
            metric("vllm:prompt_tokens_total", 52310.0, "tokens", &labels),
            metric("vllm:generation_tokens_total", 40960.0, "tokens", &labels),
            metric("vllm:request_success_total", 0.0, "requests", &with("stop")),
            metric(
                "vllm:request_success_total",
                160.0,
                "requests",
                &with("length")
            ),
            metric(
                "vllm:time_to_first_token_seconds_count",
                160.0,
                "count",
                &labels
            ),
            metric("vllm:time_to_first_token_seconds_sum", 21.75, "s", &labels),
            // V0's name, recorded under V1's.
            metric(
                "vllm:kv_cache_usage_perc",
                0.25,
                "ratio",
                &[("model_name", "old \"v0\" engine")]
            ),
            // Expected, and on no line of this page: reported, not silently absent.
            missing(
                "vllm:request_time_per_output_token_seconds",
                "vllm:request_time_per_output_token_seconds | vllm:time_per_output_token_seconds"
            ),
            missing(
                "vllm:e2e_request_latency_seconds",
                "vllm:e2e_request_latency_seconds"
            ),
        ]
    );
    let empty = backend.parse_metrics("").unwrap();
    assert_eq!(empty.len(), 8, "{empty:?}");
    assert!(empty.iter().all(|m| m.name == llem_sdk::MISSING_METRIC));
}

#[test]
fn vllm_time_per_output_token_is_read_under_both_release_names() {
    let mut backend = open("backend-vllm", json!({})).unwrap();
    // vLLM 0.33 names it request_time_per_output_token_seconds; earlier
    // releases time_per_output_token_seconds. Both land under the new name.
    for name in [
        "vllm:request_time_per_output_token_seconds",
        "vllm:time_per_output_token_seconds",
    ] {
        let page = format!(
            "{name}_bucket{{le=\"0.1\"}} 7\n{name}_sum 0.42\n{name}_count 9\n{name}_created 1.7e9\n"
        );
        let got: Vec<Metric> = backend
            .parse_metrics(&page)
            .unwrap()
            .into_iter()
            .filter(|m| m.name != llem_sdk::MISSING_METRIC)
            .collect();
        assert_eq!(
            got,
            vec![
                metric(
                    "vllm:request_time_per_output_token_seconds_sum",
                    0.42,
                    "s",
                    &[]
                ),
                metric(
                    "vllm:request_time_per_output_token_seconds_count",
                    9.0,
                    "count",
                    &[]
                ),
            ],
            "{name}"
        );
    }
}

// ------------------------------------------------------------------ TensorRT-LLM

#[test]
fn trtllm_declares_its_options() {
    let plugin = loader().load(&wasm_artifact("backend-trtllm")).unwrap();
    let info = plugin.info();
    assert_eq!(info.name, "backend-trtllm");
    let names: Vec<&str> = info.options.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mode",
            "backend",
            "max_batch_size",
            "max_num_tokens",
            "max_seq_len",
            "tensor_parallel_size",
            "pipeline_parallel_size",
            "dtype",
            "quant_config",
            "kv_cache_config",
            "scheduler_policy",
            "return_perf_metrics",
            "extra_llm_api_options",
            "python",
            "trtllm_serve_executable",
            "extra_args",
            "env",
            "ready_timeout_s",
        ]
    );
    let get = |name: &str| info.options.iter().find(|o| o.name == name).unwrap();
    assert_eq!(get("backend").choices, ["pytorch", "tensorrt"]);
    assert_eq!(
        get("scheduler_policy").choices,
        ["MAX_UTILIZATION", "GUARANTEED_NO_EVICT", "STATIC_BATCH"]
    );
    assert_eq!(get("quant_config").default, Some(Value::Null));
}

#[test]
fn trtllm_server_plan_without_api_options_is_a_plain_trtllm_serve() {
    let plan = plan("backend-trtllm", json!({"max_batch_size": 64}));
    assert_eq!(plan.mode, EngineMode::Server);
    assert_eq!(plan.engine, "trtllm");
    assert_eq!(plan.program, "trtllm-serve");
    assert_eq!(
        plan.args,
        strings(&[
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--backend",
            "pytorch",
            "--max_batch_size",
            "64",
            "--tp_size",
            "1",
            "--pp_size",
            "1",
        ])
    );
    assert_eq!(plan.api_base_path.as_deref(), Some("/v1"));
    assert_eq!(plan.health_path.as_deref(), Some("/health"));
    // trtllm-serve's /metrics is JSON; Prometheus needs return_perf_metrics.
    assert_eq!(plan.metrics_path, None);
    assert_eq!(plan.worker_script, None);
    assert_eq!(plan.ready_timeout_s, 1800);
}

fn trtllm_full() -> Value {
    json!({
        "backend": "tensorrt",
        "max_batch_size": 256,
        "max_num_tokens": 8192,
        "max_seq_len": 4096,
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 2,
        "dtype": "bfloat16",
        "quant_config": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"},
        "kv_cache_config": {"free_gpu_memory_fraction": 0.85, "enable_block_reuse": false},
        "scheduler_policy": "MAX_UTILIZATION",
        "return_perf_metrics": true,
        "extra_llm_api_options": {"enable_chunked_prefill": true, "kv_cache_config": {"enable_block_reuse": true}},
        "env": {"TLLM_LOG_LEVEL": "INFO"},
    })
}

const TRTLLM_API_OPTIONS: &str = r#"{
  "dtype": "bfloat16",
  "enable_chunked_prefill": true,
  "kv_cache_config": {
    "enable_block_reuse": true,
    "free_gpu_memory_fraction": 0.85
  },
  "quant_config": {
    "kv_cache_quant_algo": "FP8",
    "quant_algo": "FP8"
  },
  "return_perf_metrics": true,
  "scheduler_config": {
    "capacity_scheduler_policy": "MAX_UTILIZATION"
  }
}"#;

#[test]
fn trtllm_server_plan_passes_its_llm_api_options_as_a_file_the_kernel_writes() {
    let mut overrides = trtllm_full();
    overrides["extra_args"] = json!(["--log_level", "info"]);
    let plan = plan("backend-trtllm", overrides);
    let yaml = format!("{RUN_DIR}/extra_llm_api_options.yaml");
    // No shell: the kernel writes the options file from `worker_script`.
    assert_eq!(plan.program, "trtllm-serve");
    assert_eq!(
        plan.worker_script.as_deref(),
        Some(format!("{TRTLLM_API_OPTIONS}\n").as_str())
    );
    assert_eq!(
        plan.args,
        strings(&[
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--backend",
            "tensorrt",
            "--max_batch_size",
            "256",
            "--max_num_tokens",
            "8192",
            "--max_seq_len",
            "4096",
            "--tp_size",
            "2",
            "--pp_size",
            "2",
            "--extra_llm_api_options",
            &yaml,
            "--log_level",
            "info",
        ])
    );
    assert_eq!(
        plan.env,
        vec![("TLLM_LOG_LEVEL".to_owned(), "INFO".to_owned())]
    );
    assert_eq!(plan.metrics_path.as_deref(), Some("/prometheus/metrics"));
}

#[test]
fn trtllm_server_plan_gets_its_options_file_from_the_kernel_and_keeps_the_arguments_intact() {
    // Run the plan with `trtllm-serve` replaced by a script that prints its
    // arguments: the file holds the options, and quoting survives the shell.
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().to_str().unwrap().to_owned();
    let fake = dir.path().join("fake-trtllm-serve");
    std::fs::write(
        &fake,
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut overrides = trtllm_full();
    overrides["trtllm_serve_executable"] = json!(fake.to_str().unwrap());
    overrides["extra_args"] = json!(["it's $HOME \"quoted\"\n"]);
    let plan = open("backend-trtllm", overrides)
        .unwrap()
        .plan(&PlanRequest {
            run_dir: run_dir.clone(),
            ..request()
        })
        .unwrap();
    // The kernel starts it as it starts any engine: checked, confined, with
    // the options file written from the plan's `worker_script`.
    let grants = llem::engine::EngineGrants::allowing("trtllm", &[fake.to_str().unwrap()]);
    let mut engine = llem::engine::EngineProcess::spawn(&plan, &grants, dir.path(), false).unwrap();
    let started = std::time::Instant::now();
    while engine.exited().is_none() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let written = std::fs::read_to_string(dir.path().join("extra_llm_api_options.yaml")).unwrap();
    assert_eq!(written, format!("{TRTLLM_API_OPTIONS}\n"));
    let printed = std::fs::read_to_string(dir.path().join("engine.log")).unwrap();
    assert!(
        printed.starts_with(&format!("[{MODEL}]\n[--host]\n[127.0.0.1]\n")),
        "{printed}"
    );
    assert!(
        printed.ends_with("[it's $HOME \"quoted\"\n]\n"),
        "{printed}"
    );
}

#[test]
fn trtllm_offline_plan_runs_the_worker_with_every_llm_argument() {
    let mut overrides = trtllm_full();
    overrides["mode"] = json!("offline");
    let plan = plan("backend-trtllm", overrides);
    assert_eq!(plan.mode, EngineMode::Offline);
    assert_eq!(plan.program, "python3");
    assert_eq!(plan.args.len(), 3);
    assert_eq!(plan.args[0], format!("{RUN_DIR}/trtllm_worker.py"));
    assert_eq!(plan.args[1], "--llm-args");
    let args: Value = serde_json::from_str(&plan.args[2]).unwrap();
    assert_eq!(
        args,
        json!({
            "backend": "tensorrt",
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 2,
            "max_batch_size": 256,
            "max_num_tokens": 8192,
            "max_seq_len": 4096,
            "dtype": "bfloat16",
            "enable_chunked_prefill": true,
            "kv_cache_config": {"enable_block_reuse": true, "free_gpu_memory_fraction": 0.85},
            "quant_config": {"kv_cache_quant_algo": "FP8", "quant_algo": "FP8"},
            "return_perf_metrics": true,
            "scheduler_config": {"capacity_scheduler_policy": "MAX_UTILIZATION"},
        })
    );
    assert_eq!(
        plan.worker_script.as_deref(),
        Some(worker_source("plugins/backend-trtllm/trtllm_worker.py").as_str())
    );
    assert_eq!(plan.health_path, None);
    assert_eq!(plan.metrics_path, None);
}

#[test]
fn trtllm_refuses_invalid_values_and_combinations_naming_the_key() {
    refused(
        "backend-trtllm",
        json!({"tensor_parallel_size": 0}),
        "tensor_parallel_size",
    );
    refused(
        "backend-trtllm",
        json!({"max_batch_size": 0}),
        "max_batch_size",
    );
    refused(
        "backend-trtllm",
        json!({"kv_cache_config": {"free_gpu_memory_fraction": 1.2}}),
        "kv_cache_config.free_gpu_memory_fraction",
    );
    refused(
        "backend-trtllm",
        json!({"kv_cache_config": {"enable_block_reuse": "yes"}}),
        "kv_cache_config.enable_block_reuse",
    );
    refused(
        "backend-trtllm",
        json!({"quant_config": {"quant_algo": ""}}),
        "quant_config.quant_algo",
    );
    refused(
        "backend-trtllm",
        json!({"mode": "offline", "extra_args": ["--log_level", "info"]}),
        "extra_args",
    );
    refused(
        "backend-trtllm",
        json!({"extra_args": ["--extra_llm_api_options", "/tmp/x.yaml"]}),
        "extra_args",
    );
    refused(
        "backend-trtllm",
        json!({"extra_args": ["--host=0.0.0.0"]}),
        "extra_args",
    );
    refused(
        "backend-trtllm",
        json!({"extra_llm_api_options": {"model": "other"}}),
        "extra_llm_api_options.model",
    );
    refused(
        "backend-trtllm",
        json!({"scheduler_policy": "FCFS"}),
        "scheduler_policy",
    );
}

const TRTLLM_METRICS: &str = r#"# HELP trtllm_num_requests_running Number of active requests
# TYPE trtllm_num_requests_running gauge
trtllm_num_requests_running{engine_type="undefined",model_name="undefined"} 64.0
trtllm_num_requests_waiting{engine_type="undefined",model_name="undefined"} 0.0
trtllm_kv_cache_utilization{engine_type="undefined",model_name="undefined"} 0.62
trtllm_generation_tokens_total{engine_type="undefined",model_name="undefined"} 123456.0
trtllm_time_to_first_token_seconds_bucket{engine_type="undefined",le="0.1",model_name="undefined"} 10.0
trtllm_time_to_first_token_seconds_sum{engine_type="undefined",model_name="undefined"} 3.5
trtllm_time_to_first_token_seconds_count{engine_type="undefined",model_name="undefined"} 64.0
http_requests_total{handler="/v1/completions",method="POST",status="200"} 64.0
"#;

#[test]
fn trtllm_parses_its_prometheus_page_exactly() {
    let mut backend = open("backend-trtllm", json!({"return_perf_metrics": true})).unwrap();
    let labels = [("engine_type", "undefined"), ("model_name", "undefined")];
    assert_eq!(
        backend.parse_metrics(TRTLLM_METRICS).unwrap(),
        vec![
            metric("trtllm_num_requests_running", 64.0, "requests", &labels),
            metric("trtllm_num_requests_waiting", 0.0, "requests", &labels),
            metric("trtllm_kv_cache_utilization", 0.62, "ratio", &labels),
            metric(
                "trtllm_generation_tokens_total",
                123456.0,
                "tokens",
                &labels
            ),
            metric("trtllm_time_to_first_token_seconds_sum", 3.5, "s", &labels),
            metric(
                "trtllm_time_to_first_token_seconds_count",
                64.0,
                "count",
                &labels
            ),
            missing(
                "trtllm_request_success_total",
                "trtllm_request_success_total | request_success_total"
            ),
            missing(
                "trtllm_time_per_output_token_seconds",
                "trtllm_time_per_output_token_seconds | time_per_output_token_seconds"
            ),
            missing(
                "trtllm_e2e_request_latency_seconds",
                "trtllm_e2e_request_latency_seconds | e2e_request_latency_seconds"
            ),
        ]
    );
}

#[test]
fn trtllm_metrics_without_the_prefix_of_recent_releases_are_read_too() {
    let mut backend = open("backend-trtllm", json!({"return_perf_metrics": true})).unwrap();
    let page = "num_requests_running 4\nkv_cache_utilization 0.5\n\
                time_per_output_token_seconds_sum 1.25\ntime_per_output_token_seconds_count 50\n\
                process_cpu_seconds_total 12\n";
    let got: Vec<Metric> = backend
        .parse_metrics(page)
        .unwrap()
        .into_iter()
        .filter(|m| m.name != llem_sdk::MISSING_METRIC)
        .collect();
    assert_eq!(
        got,
        vec![
            metric("trtllm_num_requests_running", 4.0, "requests", &[]),
            metric("trtllm_kv_cache_utilization", 0.5, "ratio", &[]),
            metric("trtllm_time_per_output_token_seconds_sum", 1.25, "s", &[]),
            metric(
                "trtllm_time_per_output_token_seconds_count",
                50.0,
                "count",
                &[]
            ),
        ]
    );
}
