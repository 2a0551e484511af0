//! `llem run` driving engines end to end: the kernel starts a stand-in
//! OpenAI-compatible server (or an offline worker) planned by a backend,
//! measures energy while the load generator sends the dataset's prompts, and
//! writes requests, latency and energy per token — and leaves no engine
//! process behind, whether the run completes, the engine dies or Ctrl-C stops it.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    key_paths, llem, only_run, output, plugin_dir, schema_violations, wasm_artifact, workspace_root,
};
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

/// `llem run MANIFEST --output OUT` without an idle baseline (not what these
/// tests are about): (exit code, stdout, stderr).
fn run_manifest(plugins: &Path, manifest: &Path, out: &Path) -> (i32, String, String) {
    output(
        llem(plugins)
            .arg("run")
            .args(["--set", "measurement.baseline=off"])
            .arg(manifest)
            .arg("--output")
            .arg(out),
    )
}

fn the_run(out: &Path) -> (PathBuf, Value) {
    only_run(&out.join("e2e"))
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
    let (code, stdout, stderr) = run_manifest(plugins.path(), &path, dir.path());
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
    // No batch limit is known, so the headline is the whole window, and
    // ML.ENERGY's per-request figure is that J/token × 8.
    assert_eq!(inference["headline"], "measured_window");
    let mut attributed = 0.0;
    for r in records.iter().filter(|r| r["phase"] == "measured") {
        assert_eq!(r["output_tokens"], 8);
        assert!((r["energy_ml_j"].as_f64().unwrap() - per_token * 8.0).abs() < 1e-12);
        assert_eq!(r["chunk_ns"].as_array().unwrap().len(), 8);
        attributed += r["energy_j"].as_f64().unwrap();
    }
    // Interval attribution: the parts plus the idle (unattributed) energy
    // add up to the window's energy, recomputed here from requests.jsonl.
    let unattributed = inference["attribution"]["unattributed_j"].as_f64().unwrap();
    assert!(
        ((attributed + unattributed) - window_j).abs() / window_j < 1e-9,
        "{attributed} + {unattributed} vs {window_j}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r["phase"] == "warmup")
            .all(|r| r["energy_j"].is_null() && r["energy_ml_j"].is_null())
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
fn an_engine_that_dies_mid_run_leaves_partial_results_marked_degraded() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        12,
        8,
        &server_command(&["--token-ms", "5", "--die-after", "5"]),
        "[load]\nmax_concurrency = 1\n",
    );
    let (code, _, stderr) = run_manifest(plugins.path(), &path, dir.path());
    // Measured, but not what it set out to: degraded (exit 3), with the reasons.
    assert_eq!(code, 3, "{stderr}");
    let (run, result) = the_run(dir.path());
    assert_eq!(result["status"], "degraded");
    let reasons = result["status_reasons"].to_string();
    assert!(reasons.contains("the engine exited"), "{reasons}");
    assert!(
        reasons.contains("8 of 12 measured requests failed"),
        "{reasons}"
    );
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

/// A server run interrupted by `signal` 2.5 s after its engine started:
/// (llem's exit code, the run directory, the engine's pid file).
fn interrupted_server_run(signal: i32) -> (Option<i32>, tempfile::TempDir, PathBuf) {
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
        .args(["--set", "measurement.baseline=off"])
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
    unsafe { kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    (status.code(), dir, pid_file)
}

#[test]
fn ctrl_c_mid_run_keeps_results_and_stops_the_engine() {
    let (code, dir, pid_file) = interrupted_server_run(2);
    assert_eq!(code, Some(130));
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
    let (code, stdout, stderr) = run_manifest(plugins.path(), &path, dir.path());
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (_, result) = the_run(dir.path());
    assert_eq!(result["backend"]["engine_info"]["engine"], "fake-worker");
    let inference = &result["inference"];
    assert_eq!(inference["requests_succeeded"], 6);
    assert_eq!(inference["latency"]["total_output_tokens"], 30);
    assert!(inference["energy_per_output_token_j"].as_f64().unwrap() > 0.0);
}

fn requests(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn phase<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name}: {}", result["phases"]))
}

/// Defect: offline mode measured model loading as inference. A worker that
/// takes 3 s to load its model: the measured window opens after `ready` and
/// after warm-up, and the first measured request goes out within 1 s of it.
#[test]
fn an_offline_window_excludes_model_loading_and_warmup() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    // Inside the run directory: the confined engine may write nothing else.
    let command = vec![
        "python3".to_owned(),
        engine_script("fake_worker.py"),
        "--token-ms".into(),
        "2".into(),
        "--load-s".into(),
        "3".into(),
        "--ready-file".into(),
        "{run_dir}/ready_ns".into(),
    ];
    let path = manifest(
        dir.path(),
        8,
        6,
        &command,
        "mode = \"offline\"\n\n[load]\nwarmup_requests = 3\nmax_concurrency = 2\n",
    );
    let (code, stdout, stderr) = run_manifest(plugins.path(), &path, dir.path());
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run, result) = the_run(dir.path());
    let ready_ns: u64 = std::fs::read_to_string(run.join("ready_ns"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let window_start = result["window"]["start_ns"].as_u64().unwrap();
    let window_end = result["window"]["end_ns"].as_u64().unwrap();
    assert!(
        window_start > ready_ns,
        "the window opens after the model is loaded"
    );
    let start_engine = phase(&result, "start_engine");
    assert!(
        start_engine["duration_s"].as_f64().unwrap() >= 3.0,
        "{start_engine}"
    );
    let measured = phase(&result, "measured");
    assert_eq!(measured["start_ns"].as_u64(), Some(window_start));
    assert_eq!(measured["end_ns"].as_u64(), Some(window_end));
    // Recomputed from requests.jsonl: warm-up before the window, measured inside it.
    let records = requests(&run);
    let warmup: Vec<&Value> = records.iter().filter(|r| r["phase"] == "warmup").collect();
    let measured: Vec<&Value> = records
        .iter()
        .filter(|r| r["phase"] == "measured")
        .collect();
    assert_eq!((warmup.len(), measured.len()), (3, 8));
    for r in &warmup {
        assert!(
            r["end_ns"].as_u64().unwrap() <= window_start,
            "warm-up ends before the window: {r}"
        );
    }
    let first_send = measured
        .iter()
        .map(|r| r["send_ns"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(first_send >= window_start);
    assert!(
        first_send - window_start < 1_000_000_000,
        "first request {} ms after the window opened",
        (first_send - window_start) / 1_000_000
    );
    for r in &measured {
        assert!(r["end_ns"].as_u64().unwrap() <= window_end, "{r}");
    }
    // Concurrency 2: never more than 2 measured requests in flight at once.
    let mut events: Vec<(u64, i32)> = measured
        .iter()
        .flat_map(|r| {
            [
                (r["send_ns"].as_u64().unwrap(), 1),
                (r["end_ns"].as_u64().unwrap(), -1),
            ]
        })
        .collect();
    events.sort();
    let mut in_flight = 0;
    for (_, d) in events {
        in_flight += d;
        assert!(in_flight <= 2, "max_concurrency = 2 honoured offline");
    }
    // Energy per token: the window's energy over the window's output tokens (6 × 8).
    let inference = &result["inference"];
    assert_eq!(inference["latency"]["total_output_tokens"], 48);
    let per_token = inference["energy_per_output_token_j"].as_f64().unwrap();
    let window_j = inference["window_energy_j"].as_f64().unwrap();
    assert!((per_token - window_j / 48.0).abs() < 1e-12);
}

/// An offline worker cannot honour an arrival rate: refused by key, before anything starts.
#[test]
fn an_offline_run_refuses_request_rate_by_key() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let command = vec!["python3".to_owned(), engine_script("fake_worker.py")];
    let path = manifest(
        dir.path(),
        2,
        2,
        &command,
        "mode = \"offline\"\n\n[load]\nrequest_rate = 4.0\n",
    );
    let (code, _, stderr) = run_manifest(plugins.path(), &path, dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("[load].request_rate"), "{stderr}");
    assert!(
        !dir.path().join("e2e").exists()
            || std::fs::read_dir(dir.path().join("e2e"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// Defect: 100 % of requests failing said `complete`. Attached to a port where
/// nothing listens, every request is refused: `failed`, exit code 4, and the
/// run directory is kept with what was measured.
#[test]
fn an_endpoint_that_fails_every_request_is_a_failed_run() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = manifest(
        dir.path(),
        4,
        4,
        &server_command(&[]),
        &format!("\n[load]\nendpoint = \"http://127.0.0.1:{port}/v1\"\n"),
    );
    let (code, stdout, stderr) = run_manifest(plugins.path(), &path, dir.path());
    assert_eq!(code, 4, "{stderr}\n{stdout}");
    let (run, result) = the_run(dir.path());
    assert_eq!(result["status"], "failed");
    let reasons = result["status_reasons"].to_string();
    assert!(
        reasons.contains("every measured request failed (4 of 4)"),
        "{reasons}"
    );
    assert_eq!(result["inference"]["requests_failed"], 4);
    assert!(run.join("timeseries.csv").exists() && run.join("requests.jsonl").exists());
    assert!(stdout.contains("FAILED"), "{stdout}");
}

/// Defect: SIGTERM (timeout, Slurm, docker stop) lost everything. It is handled
/// like Ctrl-C: `interrupted`, exit 130, result.json and the streamed readings kept.
#[test]
fn sigterm_mid_run_keeps_the_result() {
    let (code, dir, pid_file) = interrupted_server_run(15);
    assert_eq!(code, Some(130));
    let (run, result) = the_run(dir.path());
    assert_eq!(result["status"], "interrupted");
    assert!(result["energy"]["total_j"].as_f64().is_some());
    let rows = std::fs::read_to_string(run.join("timeseries.csv")).unwrap();
    assert!(
        rows.lines().count() > 10,
        "readings streamed to disk: {rows}"
    );
    assert!(gone(&pid_file), "no engine left behind after SIGTERM");
}

/// result.json follows docs/result.schema.json, and its key paths match the
/// snapshot in tests/snapshots/result-keys.txt (a change to the document's
/// shape must update the schema, docs/result-schema.md and the snapshot:
/// rerun with LLEM_UPDATE_SNAPSHOTS=1 to rewrite it).
fn check_result_shape(result: &Value) {
    let root = workspace_root();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/result.schema.json")).unwrap(),
    )
    .unwrap();
    let violations = schema_violations(&schema, result);
    assert!(
        violations.is_empty(),
        "result.json vs its schema:\n{}",
        violations.join("\n")
    );
    let paths = key_paths(result).join("\n") + "\n";
    let snapshot = root.join("tests/snapshots/result-keys.txt");
    if std::env::var_os("LLEM_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &paths).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        paths == expected,
        "result.json's shape changed (LLEM_UPDATE_SNAPSHOTS=1 rewrites {}):\nnew: {:?}\ngone: {:?}",
        snapshot.display(),
        paths
            .lines()
            .filter(|l| !expected.lines().any(|e| e == *l))
            .collect::<Vec<_>>(),
        expected
            .lines()
            .filter(|e| !paths.lines().any(|l| l == *e))
            .collect::<Vec<_>>()
    );
}

/// (t_ns, cumulative µJ) of the one fixture device, from timeseries.csv.
fn counter_rows(run: &Path) -> Vec<(u64, f64)> {
    let mut rows = Vec::new();
    let mut last: Option<u64> = None;
    let mut total = 0.0;
    for line in std::fs::read_to_string(run.join("timeseries.csv"))
        .unwrap()
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split(',').collect();
        let (t, v): (u64, u64) = (f[0].parse().unwrap(), f[3].parse().unwrap());
        if let Some(l) = last {
            total += (v - l) as f64;
        }
        last = Some(v);
        rows.push((t, total));
    }
    rows
}

/// ML.ENERGY's steady state and interval attribution, recomputed here from
/// requests.jsonl and timeseries.csv alone (an implementation of the rules
/// that shares no code with llem's), on a server run with a known schedule:
/// 10 requests of 12 tokens, 5 ms apart, max_num_seqs 3 and concurrency 3.
#[test]
fn steady_state_and_attribution_agree_with_an_independent_recomputation() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        10,
        12,
        &server_command(&["--token-ms", "5", "--max-num-seqs", "3"]),
        "\n[load]\nmax_concurrency = 3\n",
    );
    let (code, stdout, stderr) = run_manifest(plugins.path(), &path, dir.path());
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run, result) = the_run(dir.path());
    check_result_shape(&result);
    let inference = &result["inference"];
    let records = requests(&run);
    let measured: Vec<&Value> = records
        .iter()
        .filter(|r| r["phase"] == "measured")
        .collect();
    assert_eq!(measured.len(), 10);
    let rows = counter_rows(&run);
    let (w0, w1) = (
        result["window"]["start_ns"].as_u64().unwrap(),
        result["window"]["end_ns"].as_u64().unwrap(),
    );
    // The readings the window opened and closed on.
    let opened = rows.iter().rposition(|(t, _)| *t <= w0).unwrap();
    let closed = rows.iter().rposition(|(t, _)| *t <= w1).unwrap();
    let rows = &rows[opened..=closed];
    let window_j = (rows.last().unwrap().1 - rows[0].1) / 1e6;
    assert!((window_j - inference["window_energy_j"].as_f64().unwrap()).abs() < 1e-12);
    let energy_at = |t: u64| -> f64 {
        let t = t.clamp(rows[0].0, rows.last().unwrap().0);
        let k = rows.partition_point(|(rt, _)| *rt < t).max(1);
        let ((t0, e0), (t1, e1)) = (rows[k - 1], rows[k.min(rows.len() - 1)]);
        if t1 == t0 {
            e1 / 1e6
        } else {
            (e0 + (e1 - e0) * (t - t0) as f64 / (t1 - t0) as f64) / 1e6
        }
    };
    let tokens = |r: &Value| -> Vec<u64> {
        r["chunk_ns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect()
    };

    // Steady state: from the 3rd first token to the (10 − 3 − 1) = 6th finish.
    let mut firsts: Vec<u64> = measured
        .iter()
        .map(|r| r["first_token_ns"].as_u64().unwrap())
        .collect();
    firsts.sort_unstable();
    let mut ends: Vec<u64> = measured
        .iter()
        .map(|r| r["end_ns"].as_u64().unwrap())
        .collect();
    ends.sort_unstable();
    let (s0, s1) = (firsts[2], ends[5]);
    let ss = &inference["steady_state"]["steady_state"];
    assert_eq!(ss["start_ns"].as_u64(), Some(s0));
    assert_eq!(ss["end_ns"].as_u64(), Some(s1));
    let ss_tokens: usize = measured
        .iter()
        .map(|r| tokens(r).iter().filter(|t| **t >= s0 && **t <= s1).count())
        .sum();
    assert_eq!(ss["output_tokens"].as_u64(), Some(ss_tokens as u64));
    let ss_j = energy_at(s1) - energy_at(s0);
    let expected = ss_j / ss_tokens as f64;
    let reported = inference["headline_energy_per_output_token_j"]
        .as_f64()
        .unwrap();
    assert_eq!(inference["headline"], "steady_state");
    assert!(
        (reported - expected).abs() / expected < 1e-9,
        "{reported} vs {expected}"
    );

    // Attribution: each reading interval's energy split by the tokens each
    // request produced in it ([start, end)), else equally among the requests
    // in flight, else idle.
    let mut mine = vec![0.0f64; measured.len()];
    let mut idle = 0.0;
    for pair in rows.windows(2) {
        let ((a, ea), (b, eb)) = (pair[0], pair[1]);
        if b <= a {
            continue;
        }
        let joules = (eb - ea) / 1e6;
        let counts: Vec<usize> = measured
            .iter()
            .map(|r| tokens(r).iter().filter(|t| **t >= a && **t < b).count())
            .collect();
        let total: usize = counts.iter().sum();
        if total > 0 {
            for (m, c) in mine.iter_mut().zip(&counts) {
                *m += joules * *c as f64 / total as f64;
            }
            continue;
        }
        let flying: Vec<usize> = (0..measured.len())
            .filter(|&i| {
                let (send, end) = (
                    measured[i]["send_ns"].as_u64().unwrap(),
                    measured[i]["end_ns"].as_u64().unwrap(),
                );
                send < b && end > a
            })
            .collect();
        if flying.is_empty() {
            idle += joules;
        } else {
            for i in &flying {
                mine[*i] += joules / flying.len() as f64;
            }
        }
    }
    for (r, expected) in measured.iter().zip(&mine) {
        let got = r["energy_j"].as_f64().unwrap();
        assert!(
            (got - expected).abs() <= 1e-9 * window_j,
            "request {}: {got} vs {expected}",
            r["index"]
        );
        assert!((r["energy_ml_j"].as_f64().unwrap() - reported * 12.0).abs() < 1e-12);
    }
    let unattributed = inference["attribution"]["unattributed_j"].as_f64().unwrap();
    assert!(
        (unattributed - idle).abs() <= 1e-9 * window_j,
        "{unattributed} vs {idle}"
    );
    let parts: f64 = mine.iter().sum();
    assert!(((parts + idle) - window_j).abs() / window_j < 1e-9);
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
