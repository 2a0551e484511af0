//! A new user's first hour (issue 9): `llem run --plugins <backend>,<energy>
//! --model <dir>` with no dataset runs the default workload; `--dry-run`
//! shows the plan and a memory estimate; `llem env` checks the Python stack;
//! `llem config validate` refuses what `llem run` would refuse.
//!
//! Figures are recomputed here from raw data: the memory estimate from the
//! checkpoint's own safetensors header, the workload from requests.jsonl.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    llem, native_artifact, output, plugin_dir, tiny_model, venv_python, wasm_artifact,
};
use serde_json::Value;
use std::path::Path;

fn first_run_plugins() -> tempfile::TempDir {
    plugin_dir(&[
        native_artifact("energy-cpu-estimate"),
        wasm_artifact("backend-pytorch"),
        wasm_artifact("dataset-synthetic"),
    ])
}

/// Parameters of a safetensors checkpoint, from its header alone (8-byte
/// little-endian length, then JSON: each tensor's shape).
fn safetensors_parameters(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| {
            t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .product::<u64>()
        })
        .sum()
}

fn model_arg() -> String {
    tiny_model().display().to_string()
}

#[test]
fn the_headline_command_runs_the_default_workload() {
    let plugins = first_run_plugins();
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args(["run", "--plugins", "pytorch,cpu-estimate", "--model"])
            .arg(model_arg())
            .args(["-n", "3", "--name", "first"])
            .args(["--set", "measurement.baseline=off"])
            .arg("--set")
            .arg(format!(
                "pytorch.python={:?}",
                venv_python().display().to_string()
            ))
            .args([
                "--set",
                "pytorch.mode=\"offline\"",
                "--set",
                "pytorch.batch_size=3",
            ])
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    // The tiny model's context is 512 tokens: the default 1024 + 128 is shortened.
    assert!(
        stderr.contains(
            "the default workload: 3 prompts of 384 input tokens asking for 128 output tokens"
        ),
        "{stderr}"
    );
    let run = std::fs::read_dir(out.path().join("first"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["status"], "complete", "{result:#}");
    let resolved = std::fs::read_to_string(run.join("manifest.resolved.toml")).unwrap();
    assert!(resolved.contains("[plugins.synthetic]"), "{resolved}");
    let records: Vec<Value> = std::fs::read_to_string(run.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let measured: Vec<&Value> = records
        .iter()
        .filter(|r| r["phase"] == "measured")
        .collect();
    assert_eq!(measured.len(), 3, "{records:#?}");
    for r in measured {
        // 384 tokens of text, as the dataset counts them, plus the BOS token
        // the tiny tokenizer's template adds: what the engine processed.
        assert_eq!(r["input_tokens"], 385, "{r}");
        assert!(r["output_tokens"].as_u64().unwrap() <= 128, "{r}");
    }
}

#[test]
fn dry_run_prints_the_plan_and_a_memory_estimate_starting_nothing() {
    let plugins = first_run_plugins();
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args([
                "run",
                "--dry-run",
                "--plugins",
                "pytorch,cpu-estimate",
                "--model",
            ])
            .arg(model_arg())
            .args([
                "--set",
                "pytorch.batch_size=4",
                "--set",
                "pytorch.mode=\"offline\"",
            ])
            .arg("--set")
            .arg(format!(
                "pytorch.python={:?}",
                venv_python().display().to_string()
            ))
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    // Nothing ran: no run directory.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    for part in [
        "plugins:",
        "pytorch (backend-pytorch, backend)",
        "synthetic (dataset-synthetic, dataset)",
        "engine: transformers (offline):",
        "phases:",
        "start_engine",
        "measured",
        "resolved manifest",
    ] {
        assert!(stdout.contains(part), "missing {part:?} in:\n{stdout}");
    }
    // The engine's Python is checked as `llem env` does: the venv has both.
    assert!(
        stdout.contains("✔ torch ") && stdout.contains("✔ transformers "),
        "{stdout}"
    );
    assert!(!stdout.contains("fix:"), "{stdout}");
    // By hand (config.json: hidden 64, 2 layers, 4 heads of 16, 2 KV heads,
    // MLP 128, vocabulary 500, untied, float32): per layer 64·64 + 2·64·32 +
    // 64·64 + 3·64·128 + 2·64 = 36 992; × 2 + 64 + 2·500·64 = 138 048.
    let parameters = safetensors_parameters(&tiny_model().join("model.safetensors"));
    assert_eq!(parameters, 138_048, "the checkpoint itself says");
    assert!(stdout.contains("138048 parameters, float32"), "{stdout}");
    assert!(
        stdout.contains("(552192 bytes)"),
        "weights 138 048 × 4: {stdout}"
    );
    // KV: 2 · 2 layers · 2 heads · 16 · 4 bytes = 512 bytes a token, × 4 × 512.
    assert!(
        stdout.contains("(1048576 bytes) (512 B per token × 4 sequences × 512 tokens)"),
        "{stdout}"
    );
    assert!(stdout.contains("= 1.53 MiB (1600768 bytes)"), "{stdout}");
}

#[test]
fn env_checks_each_backends_python_and_says_how_to_fix_what_is_missing() {
    let plugins = plugin_dir(&[
        wasm_artifact("backend-pytorch"),
        wasm_artifact("backend-vllm"),
        wasm_artifact("backend-trtllm"),
    ]);
    // The three backends name one Python, through a wrapper that logs each
    // start: `llem env` probes it once, importing every backend's packages.
    let wrapper_dir = tempfile::tempdir().unwrap();
    let log = wrapper_dir.path().join("starts.log");
    let wrapper = wrapper_dir.path().join("python");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$#\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            venv_python().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let python = wrapper.display().to_string();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args(["env", "--json", "--set"])
            .arg(format!("pytorch.python={python:?}"))
            .arg("--set")
            .arg(format!("vllm.python={python:?}"))
            .arg("--set")
            .arg(format!("trtllm.python={python:?}")),
    );
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let backend = |name: &str| {
        doc["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc:#}"))
            .clone()
    };
    // One start: `-c`, the probe, and the four packages of the three backends.
    let starts = std::fs::read_to_string(&log).unwrap();
    assert_eq!(starts, "6\n", "one probe for the shared Python");
    let pytorch = backend("pytorch");
    assert_eq!(pytorch["ok"], true, "{pytorch:#}");
    let names = |b: &Value| -> Vec<String> {
        b["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Each backend still lists only the packages its engine needs.
    assert_eq!(names(&pytorch), ["torch", "transformers"]);
    assert_eq!(names(&backend("vllm")), ["vllm", "torch", "transformers"]);
    assert_eq!(names(&backend("trtllm")), ["tensorrt_llm", "torch"]);
    // The versions the venv really has, asked of it independently.
    let versions = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import torch, transformers; print(torch.__version__); print(transformers.__version__)",
        ])
        .output()
        .unwrap();
    let versions = String::from_utf8(versions.stdout).unwrap();
    let mut lines = versions.lines();
    let module = |b: &Value, name: &str| {
        b["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(module(&pytorch, "torch")["version"], lines.next().unwrap());
    assert_eq!(
        module(&pytorch, "transformers")["version"],
        lines.next().unwrap()
    );

    // vLLM and TensorRT-LLM are not in the venv: each says exactly what to run.
    for (name, package) in [("vllm", "vllm"), ("trtllm", "tensorrt-llm")] {
        let b = backend(name);
        assert_eq!(b["ok"], false, "{b:#}");
        let problems = b["problems"].to_string();
        let fix = format!("-m pip install {package}");
        assert!(problems.contains(&fix), "{name}: {problems}");
    }

    // The text form says the same to people.
    let (code, text, stderr) = output(
        llem(plugins.path())
            .args(["env", "--set"])
            .arg(format!("pytorch.python={python:?}")),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(text.contains("✔ pytorch (backend-pytorch)"), "{text}");
    assert!(text.contains("✔ torch "), "{text}");
    assert!(text.contains("✘ vllm"), "{text}");
    assert!(text.contains("fix: "), "{text}");
}

fn validate(manifest: &str) -> (i32, String) {
    let plugins = plugin_dir(&[
        native_artifact("energy-cpu-estimate"),
        wasm_artifact("backend-pytorch"),
        wasm_artifact("backend-vllm"),
        wasm_artifact("dataset-synthetic"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("experiment.toml");
    std::fs::write(&path, manifest).unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("config")
            .arg("validate")
            .arg(&path),
    );
    (code, stderr)
}

#[test]
fn validate_refuses_what_run_would_refuse_by_key() {
    let model = format!("{:?}", model_arg());
    // Two backends: refused at the second table, not reduced to the first.
    let (code, err) = validate(&format!(
        "[experiment]\nmodel = {model}\n\n[plugins.pytorch]\n\n[plugins.vllm]\n\n[plugins.cpu-estimate]\n"
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("experiment.toml:6:10: a second backend: [plugins.vllm]"),
        "{err}"
    );

    // An unknown service-level objective, at its key.
    let (code, err) = validate(&format!(
        "[experiment]\nmodel = {model}\n[load]\ngoodput = {{ ttft_ms = 200, tbt_ms = 5 }}\n[plugins.cpu-estimate]\n"
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown service-level objective `tbt_ms`"),
        "{err}"
    );
    assert!(err.contains("experiment.toml:4:"), "{err}");

    // An endpoint that is not http://host:port.
    let (code, err) =
        validate("[load]\nendpoint = \"https://example.org\"\n[plugins.cpu-estimate]\n");
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("experiment.toml:2:12:") && err.contains("https is not supported"),
        "{err}"
    );

    // The backend's own combination checks run, as `llem run` would: vLLM
    // refuses fewer batched tokens than sequences.
    let (code, err) = validate(&format!(
        "[experiment]\nmodel = {model}\n[plugins.vllm]\nmax_num_seqs = 64\nmax_num_batched_tokens = 32\n[plugins.cpu-estimate]\n"
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("would refuse it") && err.contains("must be at least max_num_seqs (64)"),
        "{err}"
    );

    // A valid one passes, and says which workload it would run.
    let (code, err) = validate(&format!(
        "[experiment]\nmodel = {model}\n[plugins.pytorch]\nmode = \"offline\"\n[plugins.cpu-estimate]\n"
    ));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the default workload"), "{err}");
}

/// A Hugging Face id is found in the local hub cache (refs → snapshot → links
/// into blobs, as `huggingface_hub` writes it); an id that is not there says
/// where llem looked and how to fix it.
#[test]
fn a_model_id_is_found_in_the_hugging_face_cache_offline() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--tiny-org--tiny-llama");
    let snapshot = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "abc123").unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        let blob = repo.join("blobs").join(format!("blob-{file}"));
        std::fs::copy(tiny_model().join(&file), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob-{file}"), snapshot.join(&file))
            .unwrap();
    }
    let plugins = first_run_plugins();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .env("HF_HUB_CACHE", cache.path())
            .args(["run", "--dry-run", "--plugins", "pytorch,cpu-estimate"])
            .args([
                "--model",
                "tiny-org/tiny-llama",
                "--set",
                "pytorch.mode=\"offline\"",
            ]),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(
        stdout.contains("model: tiny-org/tiny-llama in the Hugging Face cache (revision abc123"),
        "{stdout}"
    );
    // The context (512) came from the cached config.json, and so did the estimate.
    assert!(stderr.contains("384 input tokens"), "{stderr}");
    assert!(stdout.contains("138048 parameters"), "{stdout}");

    // A real run by id: the dataset reads the cached tokenizer (granted that
    // file alone), the confined engine loads the cached weights.
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_HUB_OFFLINE", "1")
            .args([
                "run",
                "--plugins",
                "pytorch,cpu-estimate",
                "--model",
                "tiny-org/tiny-llama",
            ])
            .args([
                "-n",
                "2",
                "--name",
                "by-id",
                "--set",
                "measurement.baseline=off",
            ])
            .args(["--set", "pytorch.mode=\"offline\""])
            .arg("--set")
            .arg(format!(
                "pytorch.python={:?}",
                venv_python().display().to_string()
            ))
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(
        stderr.contains("synthetic (dataset): 2 prompts"),
        "{stderr}"
    );

    let (code, _, stderr) = output(
        llem(plugins.path())
            .env("HF_HUB_CACHE", cache.path())
            .args([
                "run",
                "--plugins",
                "pytorch,cpu-estimate",
                "--model",
                "tiny-org/absent",
            ])
            .args([
                "--set",
                "measurement.baseline=off",
                "--set",
                "pytorch.mode=\"offline\"",
            ]),
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("huggingface-cli download tiny-org/absent")
            && stderr.contains(&cache.path().display().to_string()),
        "{stderr}"
    );
}
