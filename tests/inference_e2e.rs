//! `llem run` driving engines end to end: the kernel starts a stand-in
//! OpenAI-compatible server (or an offline worker) planned by a backend,
//! measures energy while the load generator sends the dataset's prompts, and
//! writes requests, latency and energy per token — and leaves no engine
//! process behind, whether the run completes, the engine dies or Ctrl-C stops it.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, output, plugin_dir, wasm_artifact, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn plugins() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
    ])
}

fn engine_script(name: &str) -> String {
    workspace_root()
        .join("tests/fixtures/engines")
        .join(name)
        .display()
        .to_string()
}

/// A manifest for `prompts` prompts of `max_tokens` each, against `command`.
fn manifest(
    dir: &Path,
    prompts: usize,
    max_tokens: u32,
    command: &[String],
    extra: &str,
) -> PathBuf {
    let data = dir.join("prompts.jsonl");
    let lines: String = (0..prompts)
        .map(|i| format!("{{\"prompt\": \"prompt number {i}\"}}\n"))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let command = command
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    // backend-command is a third-party backend: its engine runs only what the
    // user allows (python3) and reads only what is granted (the fake engines).
    let engines = format!("{:?}", engine_script(""));
    let text = format!(
        "[experiment]\nname = \"e2e\"\nmodel = \"fake-model\"\nsample_interval_ms = 20\n\n\
         [plugins.fixture]\n\n\
         [plugins.jsonl]\nfile = \"prompts.jsonl\"\nmax_output_tokens = {max_tokens}\n\n\
         [plugins.command]\ncommand = [{command}]\n\
         sandbox = {{ programs = [\"python3\"], engine_read = [{engines}] }}\n{extra}\n"
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn the_run(out: &Path) -> (PathBuf, Value) {
    let run = std::fs::read_dir(out.join("e2e"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    (run, result)
}

fn gone(pid_file: &Path) -> bool {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

fn server_command(extra: &[&str]) -> Vec<String> {
    let mut command: Vec<String> = vec![
        "python3".into(),
        engine_script("fake_openai_server.py"),
        "--port".into(),
        "{port}".into(),
        "--pid-file".into(),
        "{run_dir}/engine.pid".into(),
    ];
    command.extend(extra.iter().map(|s| (*s).to_owned()));
    command
}

#[test]
fn a_server_run_measures_requests_latency_and_energy_per_token() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        10,
        8,
        &server_command(&["--token-ms", "5"]),
        "metrics_path = \"/metrics\"\n\n[load]\nmax_concurrency = 4\nwarmup_requests = 2\ngoodput = { ttft_ms = 5000 }\n",
    );
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .arg("run")
            .arg(&path)
            .arg("--output")
            .arg(dir.path()),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run, result) = the_run(dir.path());
    assert_eq!(result["status"], "complete");
    let inference = &result["inference"];
    assert_eq!(inference["requests_sent"], 12);
    assert_eq!(inference["requests_succeeded"], 12);
    assert_eq!(inference["warmup_requests"], 2);
    let latency = &inference["latency"];
    assert_eq!(latency["completed"], 10, "{latency}");
    assert_eq!(
        latency["total_output_tokens"], 80,
        "10 measured requests x 8 tokens, from the server's usage"
    );
    assert_eq!(latency["goodput"]["fraction"], 1.0);
    let ttft = latency["ttft"]["median"].as_f64().unwrap();
    assert!(
        ttft >= 5.0,
        "the first token comes after one 5 ms step: {ttft}"
    );
    let window_j = inference["window_energy_j"].as_f64().unwrap();
    let per_token = inference["energy_per_output_token_j"].as_f64().unwrap();
    assert!(
        (per_token - window_j / 80.0).abs() < 1e-12,
        "{per_token} vs {window_j}/80"
    );
    assert!(window_j > 0.0);
    // One record per request; measured ones carry their share of the energy.
    let records: Vec<Value> = std::fs::read_to_string(run.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 12);
    for r in records.iter().filter(|r| r["phase"] == "measured") {
        assert_eq!(r["output_tokens"], 8);
        assert!((r["energy_j"].as_f64().unwrap() - per_token * 8.0).abs() < 1e-12);
        assert_eq!(r["chunk_ns"].as_array().unwrap().len(), 8);
    }
    assert!(
        records
            .iter()
            .filter(|r| r["phase"] == "warmup")
            .all(|r| r["energy_j"].is_null())
    );
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    assert!(log.contains("fake engine listening"), "{log}");
    let metrics = std::fs::read_to_string(run.join("engine_metrics.jsonl")).unwrap();
    assert!(metrics.contains("fake:num_requests_running"), "{metrics}");
    assert!(gone(&run.join("engine.pid")), "the engine is torn down");
    assert!(stdout.contains("energy / output token"), "{stdout}");
    assert!(stdout.contains("TTFT p50 / p99"), "{stdout}");
}

#[test]
fn an_engine_that_dies_mid_run_leaves_partial_results_marked_incomplete() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        12,
        8,
        &server_command(&["--token-ms", "5", "--die-after", "5"]),
        "[load]\nmax_concurrency = 1\n",
    );
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("run")
            .arg(&path)
            .arg("--output")
            .arg(dir.path()),
    );
    assert_eq!(code, 1, "{stderr}");
    let (run, result) = the_run(dir.path());
    assert_eq!(result["status"], "incomplete");
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains("the engine exited during the run"),
        "{warnings}"
    );
    let inference = &result["inference"];
    assert_eq!(
        inference["requests_succeeded"], 4,
        "four requests finished before the crash"
    );
    assert!(inference["requests_failed"].as_u64().unwrap() >= 1);
    assert!(run.join("requests.jsonl").exists() && run.join("timeseries.csv").exists());
    assert!(gone(&run.join("engine.pid")));
}

#[test]
fn ctrl_c_mid_run_keeps_results_and_stops_the_engine() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        50,
        40,
        &server_command(&["--token-ms", "50"]),
        "[load]\nmax_concurrency = 2\n",
    );
    let mut child = llem(plugins.path())
        .arg("run")
        .arg(&path)
        .arg("--output")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let the engine start and requests flow, then interrupt.
    let pid_file = loop {
        if let Some(run) = std::fs::read_dir(dir.path().join("e2e"))
            .ok()
            .and_then(|mut d| d.next())
        {
            let pid_file = run.unwrap().path().join("engine.pid");
            if pid_file.exists() {
                break pid_file;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let (_, result) = the_run(dir.path());
    assert_eq!(result["status"], "interrupted");
    assert!(result["inference"]["requests_sent"].as_u64().unwrap() >= 2);
    assert!(gone(&pid_file), "no engine left behind after Ctrl-C");
}

#[test]
fn an_offline_worker_run_reports_tokens_from_the_worker() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let command = vec![
        "python3".to_owned(),
        engine_script("fake_worker.py"),
        "--token-ms".into(),
        "1".into(),
    ];
    let path = manifest(dir.path(), 6, 5, &command, "mode = \"offline\"\n");
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .arg("run")
            .arg(&path)
            .arg("--output")
            .arg(dir.path()),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (_, result) = the_run(dir.path());
    assert_eq!(result["backend"]["engine_info"]["engine"], "fake-worker");
    let inference = &result["inference"];
    assert_eq!(inference["requests_succeeded"], 6);
    assert_eq!(inference["latency"]["total_output_tokens"], 30);
    assert!(inference["energy_per_output_token_j"].as_f64().unwrap() > 0.0);
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
