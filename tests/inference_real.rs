//! `llem run` against real components: the PyTorch backend on a tiny,
//! randomly initialised Llama created here (nothing is downloaded), offline
//! through the PyTorch worker and as a server through the real
//! `transformers serve`. Needs the Python environment of
//! `tests/python/setup-venv.sh` (CI creates it; `.ci/run`).

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    llem, only_run, output, tiny_model, venv_python as python, wasm_artifact,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn run(mode: &str, extra: &[&str]) -> (PathBuf, Value, tempfile::TempDir) {
    let plugins = llem_integration_tests::plugin_dir(&[wasm_artifact("energy-fixture")]);
    let out = tempfile::tempdir().unwrap();
    let prompts = out.path().join("prompts.jsonl");
    let lines: String = [
        "Hello there",
        "Why is the sky blue?",
        "Count to five",
        "Write a poem",
        "What is energy?",
    ]
    .iter()
    .map(|p| format!("{{\"prompt\": {p:?}}}\n"))
    .collect();
    std::fs::write(&prompts, lines).unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=off",
                "--name",
                "real",
                "--plugins",
                "fixture,pytorch,jsonl",
            ])
            .arg("--set")
            .arg(format!(
                "experiment.model={:?}",
                tiny_model().display().to_string()
            ))
            .arg("--set")
            .arg(format!(
                "pytorch.python={:?}",
                python().display().to_string()
            ))
            .args(["--set", &format!("pytorch.mode={mode:?}")])
            .arg("--set")
            .arg(format!("jsonl.file={:?}", prompts.display().to_string()))
            .args([
                "--set",
                "jsonl.max_output_tokens=12",
                "--set",
                "experiment.sample_interval_ms=20",
            ])
            .args(extra)
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run, result) = only_run(&out.path().join("real"));
    (run, result, out)
}

fn records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn offline_with_the_pytorch_worker_counts_what_generate_produced() {
    // The README's main job, in small: an offline PyTorch run with a fresh
    // idle baseline, whose result carries phases, baseline, verdict and
    // environment, and whose window opens after the model is loaded.
    let (run, result, _out) = run(
        "offline",
        &[
            "--set",
            "pytorch.batch_size=2",
            "--set",
            "measurement.baseline=fresh",
            "--set",
            "measurement.baseline_s=1",
        ],
    );
    assert_eq!(result["status"], "complete", "{}", result["status_reasons"]);
    let phases: Vec<&str> = result["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases[..4],
        ["open_sources", "idle_baseline", "start_engine", "measured"],
        "{phases:?}"
    );
    assert_eq!(result["baseline"]["origin"], "measured");
    assert!(result["quality"]["level"].is_string());
    assert!(
        result["environment"]["engine_versions"]["torch"].is_string(),
        "{}",
        result["environment"]
    );
    assert!(result["environment"]["cpu_model"].is_string());
    let window_start = result["window"]["start_ns"].as_u64().unwrap();
    let first_send = records(&run)
        .iter()
        .map(|r| r["send_ns"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(first_send >= window_start);
    assert!(
        first_send - window_start < 1_000_000_000,
        "first request {} ms after the measured window opened",
        (first_send - window_start) / 1_000_000
    );
    assert_eq!(result["backend"]["engine_info"]["engine"], "transformers");
    // The real worker starts and runs under the engine confinement.
    let expected = if llem::engine::landlock_abi().is_some() {
        "landlock"
    } else {
        "unavailable"
    };
    assert_eq!(result["backend"]["confinement"]["mode"], expected);
    let inference = &result["inference"];
    assert_eq!(inference["requests_succeeded"], 5);
    let records = records(&run);
    let mut total = 0;
    for r in &records {
        let n = r["output_tokens"].as_u64().unwrap();
        assert!((1..=12).contains(&n), "{r}");
        // One timestamp per generated token: the worker's streamer saw each step.
        assert_eq!(r["chunk_ns"].as_array().unwrap().len() as u64, n, "{r}");
        assert!(r["ttft_ms"].as_f64().unwrap() > 0.0);
        total += n;
    }
    assert_eq!(
        inference["latency"]["total_output_tokens"]
            .as_u64()
            .unwrap(),
        total
    );
    let per_token = inference["energy_per_output_token_j"].as_f64().unwrap();
    let window = inference["window_energy_j"].as_f64().unwrap();
    assert!((per_token * total as f64 - window).abs() < 1e-9 * window.max(1.0));
}

#[test]
fn server_mode_against_transformers_serve_records_every_request() {
    let (run, result, _out) = run(
        "server",
        &[
            "--set",
            "load.max_concurrency=2",
            "--set",
            "load.api=\"chat\"",
        ],
    );
    assert_eq!(result["status"], "complete", "{}", result["warnings"]);
    assert_eq!(result["backend"]["executed"], true);
    let records = records(&run);
    assert_eq!(records.len(), 5);
    for r in &records {
        assert_eq!(r["success"], true, "{r}");
        assert!(r["ttft_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["e2el_ms"].as_f64().unwrap() >= r["ttft_ms"].as_f64().unwrap());
        assert!(!r["chunk_ns"].as_array().unwrap().is_empty(), "{r}");
        // Output token counts are the server's own `usage`.
        assert_eq!(r["tokens_from_usage"], true, "{r}");
        assert!(r["output_tokens"].as_u64().unwrap() >= 1);
    }
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    assert!(!log.is_empty());
}

/// Output tokens per prompt id, from requests.jsonl.
fn output_tokens_by_prompt(run: &Path) -> std::collections::BTreeMap<String, u64> {
    records(run)
        .iter()
        .map(|r| {
            assert_eq!(r["success"], true, "{r}");
            (
                r["prompt_id"].as_str().unwrap().to_owned(),
                r["output_tokens"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn offline_and_server_produce_the_same_output_tokens_with_greedy_decoding() {
    // The kernel decides decoding once ([load]: greedy, the prompt's max_tokens)
    // and sends it to the worker and in every request body alike, so the PyTorch
    // worker and `transformers serve` run the same workload: the same tokens,
    // prompt by prompt (one request at a time on the server, so no batching
    // padding differs).
    let (offline_run, offline, _a) = run("offline", &[]);
    let (server_run, server, _b) = run("server", &["--set", "load.max_concurrency=1"]);
    assert_eq!(offline["status"], "complete", "{}", offline["warnings"]);
    assert_eq!(server["status"], "complete", "{}", server["warnings"]);
    let offline_tokens = output_tokens_by_prompt(&offline_run);
    let server_tokens = output_tokens_by_prompt(&server_run);
    assert_eq!(offline_tokens.len(), 5);
    assert_eq!(offline_tokens, server_tokens);

    // Two engines on identical prompts: `llem report`'s cross-engine table
    // pairs them by the prompts' fingerprint and shows each run's figures.
    let sha = offline["dataset"]["prompts_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64, "{sha}");
    assert_eq!(server["dataset"]["prompts_sha256"].as_str(), Some(sha));
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let (code, summary, stderr) = output(
        llem(dir.path())
            .arg("report")
            .arg(&offline_run)
            .arg(&server_run)
            .arg("-o")
            .arg(&html),
    );
    assert_eq!(code, 0, "{summary}\n{stderr}");
    let rows = engine_table(&std::fs::read_to_string(&html).unwrap());
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (run, mode) in [(&offline, "offline"), (&server, "server")] {
        let engine = format!(
            "{} ({mode})",
            run["backend"]["plan"]["engine"].as_str().unwrap()
        );
        let row = rows
            .iter()
            .find(|r| r[1] == engine)
            .unwrap_or_else(|| panic!("no row for {engine}: {rows:?}"));
        assert!(row[0].contains(&sha[..12]), "{row:?}");
        assert_eq!(row[2], "1", "one run each: {row:?}");
        // The cells are the run's own figures, to the 3 significant digits shown.
        for (cell, pointer) in [
            (3, "/inference/energy_per_output_token_j"),
            (4, "/inference/latency/ttft/median"),
            (5, "/inference/latency/ttft/p99"),
            (6, "/inference/latency/output_token_throughput"),
        ] {
            let want = run.pointer(pointer).and_then(Value::as_f64).unwrap();
            let shown: f64 = row[cell].parse().unwrap();
            assert!(
                (shown - want).abs() <= 0.005 * want.abs() + 1e-12,
                "{engine} {pointer}: shown {shown}, result.json {want}"
            );
        }
        assert!(
            summary.contains(&format!("engine {engine} on ")),
            "terminal summary names {engine}:\n{summary}"
        );
    }
}

/// The cells of the report's cross-engine table, row by row (header left out).
fn engine_table(page: &str) -> Vec<Vec<String>> {
    let section = page
        .split(r#"<h2 id="engines">"#)
        .nth(1)
        .and_then(|s| s.split("</table>").next())
        .unwrap_or_default();
    section
        .split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = cell.split_once('>').map_or("", |(_, t)| t);
                    text.split("</td>").next().unwrap_or("").to_owned()
                })
                .collect()
        })
        .collect()
}
