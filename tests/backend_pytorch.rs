//! The PyTorch backend, loaded as a WASM component through the kernel: exact
//! engine plans for offline (the Python worker) and server (`transformers
//! serve`) mode, and invalid combinations refused with the key that is wrong.
//! Build it first: `cargo build --target wasm32-wasip2 -p backend-pytorch`
//! (or `cargo xtask fixtures`). The worker itself is tested in
//! tests/python/test_pytorch_worker.py, the server in
//! tests/python/test_transformers_serve.py.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem::plugin::{BackendInstance, FailureKind, PluginFailure};
use llem_integration_tests::{loader, wasm_artifact, workspace_root};
use llem_sdk::{EngineMode, EnginePlan, PlanRequest, PluginKind};
use serde_json::{Map, Value, json};

const PLUGIN: &str = "backend-pytorch";
const MODEL: &str = "/models/tiny-llama";
const RUN_DIR: &str = "/runs/exp/2025-01-01T00-00-00Z";

fn request() -> PlanRequest {
    PlanRequest {
        model: MODEL.into(),
        host: "127.0.0.1".into(),
        port: 8123,
        run_dir: RUN_DIR.into(),
    }
}

/// The configuration the kernel hands the plugin: every declared option, its
/// default unless `overrides` sets it.
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

fn open(overrides: Value) -> Result<Box<dyn BackendInstance>, PluginFailure> {
    let plugin = loader().load(&wasm_artifact(PLUGIN)).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Backend);
    assert_eq!(plugin.name(), PLUGIN);
    let cfg = config(&plugin, overrides);
    plugin.open_backend(&cfg, &Sandbox::default())
}

fn plan(overrides: Value) -> EnginePlan {
    open(overrides)
        .unwrap()
        .plan(&request())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The failure of opening with `overrides`, asserting it names `key`.
fn refused(overrides: Value, key: &str) -> PluginFailure {
    let err = match open(overrides.clone()) {
        Ok(_) => panic!("{PLUGIN} accepted {overrides}"),
        Err(err) => err,
    };
    assert_eq!(err.kind, FailureKind::InvalidConfig, "{err}");
    assert_eq!(err.key.as_deref(), Some(key), "{err}");
    err
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const OFFLINE_ENV: &[(&str, &str)] = &[
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("PYTHONUNBUFFERED", "1"),
];

#[test]
fn the_default_is_the_offline_worker() {
    let plan = plan(json!({}));
    assert_eq!(plan.mode, EngineMode::Offline);
    assert_eq!(plan.engine, "transformers");
    assert_eq!(plan.program, "python3");
    assert_eq!(
        plan.args,
        strings(&[&format!("{RUN_DIR}/pytorch_worker.py")])
    );
    assert_eq!(plan.env, pairs(OFFLINE_ENV));
    assert_eq!(plan.api_base_path, None);
    assert_eq!(plan.health_path, None);
    assert_eq!(plan.metrics_path, None);
    assert_eq!(plan.ready_timeout_s, 600);
    // The plan carries the worker's source, byte for byte: the shared
    // protocol module with the PyTorch part appended (one script).
    let read = |path: &str| std::fs::read_to_string(workspace_root().join(path)).unwrap();
    let source = read("plugins/backend-common/worker_protocol.py")
        + &read("plugins/backend-pytorch/pytorch_worker.py");
    assert_eq!(plan.worker_script.as_deref(), Some(source.as_str()));
    assert!(source.contains("PROTOCOL = 1"));
}

#[test]
fn offline_options_go_to_the_worker_not_the_command_line() {
    let plan = plan(json!({
        "python": "/opt/venv/bin/python",
        "dtype": "bfloat16",
        "batch_size": 8,
        "attn_implementation": "sdpa",
        "device_map": "cuda:0",
        "torch_compile": true,
        "static_cache": true,
        "quantization": "bnb-4bit",
        "top_k": 40,
        "seed": 1,
        "ready_timeout_s": 900,
        "env": {"CUDA_VISIBLE_DEVICES": "0", "TRANSFORMERS_OFFLINE": "0"},
    }));
    assert_eq!(plan.program, "/opt/venv/bin/python");
    assert_eq!(
        plan.args,
        strings(&[&format!("{RUN_DIR}/pytorch_worker.py")])
    );
    assert_eq!(
        plan.env,
        pairs(&[
            ("HF_HUB_OFFLINE", "1"),
            ("PYTHONUNBUFFERED", "1"),
            ("CUDA_VISIBLE_DEVICES", "0"),
            ("TRANSFORMERS_OFFLINE", "0"),
        ])
    );
    assert_eq!(plan.ready_timeout_s, 900);
}

#[test]
fn a_trailing_slash_on_the_run_directory_is_not_doubled() {
    let mut instance = open(json!({})).unwrap();
    let mut r = request();
    r.run_dir = format!("{RUN_DIR}/");
    let plan = instance.plan(&r).unwrap();
    assert_eq!(
        plan.args,
        strings(&[&format!("{RUN_DIR}/pytorch_worker.py")])
    );
}

#[test]
fn the_server_plan_is_transformers_serve() {
    let plan = plan(json!({"mode": "server", "python": "/opt/venv/bin/python"}));
    assert_eq!(plan.mode, EngineMode::Server);
    assert_eq!(plan.engine, "transformers");
    assert_eq!(plan.program, "/opt/venv/bin/python");
    assert_eq!(
        plan.args,
        strings(&[
            "-m",
            "transformers.cli.transformers",
            "serve",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--device",
            "auto",
            "--dtype",
            "auto",
        ])
    );
    assert_eq!(plan.env, pairs(OFFLINE_ENV));
    assert_eq!(plan.api_base_path.as_deref(), Some("/v1"));
    assert_eq!(plan.health_path.as_deref(), Some("/health"));
    assert_eq!(plan.metrics_path, None);
    assert_eq!(plan.worker_script, None);
    assert_eq!(plan.ready_timeout_s, 600);
}

#[test]
fn every_server_option_has_its_flag() {
    let plan = plan(json!({
        "mode": "server",
        "transformers_executable": "transformers",
        "device_map": "cuda:0",
        "dtype": "float16",
        "attn_implementation": "flash_attention_2",
        "quantization": "bnb-8bit",
        "torch_compile": true,
        "continuous_batching": true,
        "seed": 7,
    }));
    assert_eq!(plan.program, "transformers");
    assert_eq!(
        plan.args,
        strings(&[
            "serve",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--device",
            "cuda:0",
            "--dtype",
            "float16",
            "--attn-implementation",
            "flash_attention_2",
            "--quantization",
            "bnb-8bit",
            "--compile",
            "--continuous-batching",
            "--default-seed",
            "7",
        ])
    );
}

#[test]
fn what_cannot_work_is_refused_with_its_key() {
    // Knowable without the machine: the model is put on the CPU.
    let e = refused(
        json!({"quantization": "bnb-4bit", "device_map": "cpu"}),
        "quantization",
    );
    assert!(
        e.hint.as_deref().unwrap_or("").contains("quantization"),
        "{e}"
    );
    refused(
        json!({"mode": "server", "quantization": "bnb-8bit", "device_map": "cpu"}),
        "quantization",
    );
    refused(
        json!({"attn_implementation": "flash_attention_2", "device_map": "cpu"}),
        "attn_implementation",
    );
    refused(
        json!({"attn_implementation": "flash_attention_2", "dtype": "float32"}),
        "attn_implementation",
    );
    // Choices.
    refused(json!({"mode": "batch"}), "mode");
    refused(json!({"dtype": "fp8"}), "dtype");
    refused(
        json!({"attn_implementation": "flash_attention_3"}),
        "attn_implementation",
    );
    refused(json!({"quantization": "gptq"}), "quantization");
    // Numbers and names.
    refused(json!({"batch_size": 0}), "batch_size");
    refused(json!({"ready_timeout_s": 0}), "ready_timeout_s");
    refused(json!({"python": ""}), "python");
    refused(json!({"device_map": " "}), "device_map");
    refused(json!({"env": {"A=B": "1"}}), "env.A=B");
    // Sampling (temperature, top_p and seed are [load]'s, the same for every engine).
    refused(json!({"top_k": 0}), "top_k");
    // Options of the other mode.
    refused(json!({"continuous_batching": true}), "continuous_batching");
    refused(
        json!({"transformers_executable": "transformers"}),
        "transformers_executable",
    );
    refused(json!({"mode": "server", "batch_size": 4}), "batch_size");
    refused(
        json!({"mode": "server", "static_cache": true}),
        "static_cache",
    );
    refused(json!({"mode": "server", "top_k": 5}), "top_k");
    refused(
        json!({"mode": "server", "device_map": "balanced"}),
        "device_map",
    );
    // What only the machine can tell is left to the engine.
    assert!(open(json!({"attn_implementation": "flash_attention_2", "dtype": "bfloat16"})).is_ok());
    assert!(open(json!({"quantization": "bnb-4bit"})).is_ok());
}

#[test]
fn an_empty_model_is_refused_at_plan_time() {
    let mut instance = open(json!({})).unwrap();
    let mut r = request();
    r.model = String::new();
    let err = instance.plan(&r).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("experiment.model"), "{err}");
}

#[test]
fn every_option_is_documented_with_a_default() {
    let plugin = loader().load(&wasm_artifact(PLUGIN)).unwrap();
    let names: Vec<&str> = plugin
        .info()
        .options
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    for name in [
        "mode",
        "dtype",
        "batch_size",
        "attn_implementation",
        "device_map",
        "torch_compile",
        "quantization",
        "static_cache",
        "top_k",
        "python",
        "ready_timeout_s",
    ] {
        assert!(names.contains(&name), "{name} is not declared");
    }
    for gone in ["do_sample", "temperature", "top_p"] {
        assert!(
            !names.contains(&gone),
            "{gone} is decided once by the kernel ([load]), not per backend"
        );
    }
    for option in &plugin.info().options {
        assert!(option.default.is_some(), "{} has no default", option.name);
        assert!(!option.doc.is_empty(), "{} has no doc", option.name);
    }
}
