//! How `llem run` describes and records its engine: attached to a running
//! server (`[load].endpoint`), the run says so and scrapes the server's
//! Prometheus page when it has one; an offline worker's script is recorded in
//! result.json by path and SHA-256, never as its text. The engines are the
//! stand-ins of tests/fixtures/engines, planned by the `backend-command`
//! fixture (build it with `cargo xtask fixtures`).

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, only_run, output, plugin_dir, wasm_artifact, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn engine(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/engines").join(name)
}

/// `llem run` of `backend` (the `[plugins.command]` table's body) on four
/// prompts, without a baseline: (exit code, stderr, run directory, result.json).
fn run(dir: &Path, backend: &str, load: &str) -> (i32, String, PathBuf, Value) {
    let plugins = plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
    ]);
    let prompts: String = (0..4)
        .map(|i| format!("{{\"prompt\": \"prompt {i}\"}}\n"))
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), prompts).unwrap();
    let manifest = dir.join("experiment.toml");
    std::fs::write(
        &manifest,
        format!(
            "[experiment]\nname = \"record\"\nmodel = \"fake-model\"\nsample_interval_ms = 20\n\n\
             [plugins.fixture]\n\n\
             [plugins.jsonl]\nfile = \"prompts.jsonl\"\nmax_output_tokens = 4\n\n\
             [plugins.command]\n{backend}\n\n[load]\n{load}\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args(["run", "--set", "measurement.baseline=off"])
            .arg(&manifest)
            .arg("--output")
            .arg(dir),
    );
    assert!(
        dir.join("record").exists(),
        "no run directory: {stderr}\n{stdout}"
    );
    let (run, result) = only_run(&dir.join("record"));
    (code, stderr, run, result)
}

/// The stand-in OpenAI server on a free port, running until dropped.
struct Server(Child, u16);

impl Server {
    fn start() -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .arg(engine("fake_openai_server.py"))
            .args(["--port", &port.to_string(), "--token-ms", "2"])
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the stand-in server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A finished run attached to the stand-in server.
struct Attached {
    port: u16,
    stderr: String,
    run: PathBuf,
    result: Value,
    /// Holds the run directory for the test's lifetime.
    _dir: tempfile::TempDir,
}

/// A run attached to the stand-in server (`endpoint` ends with a slash, as
/// users write it), whose backend names `metrics_path`: the plan's command is
/// never run (`false` would fail if it were). It must succeed.
fn attached_run(metrics_path: &str) -> Attached {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr, run, result) = run(
        dir.path(),
        &format!("command = [\"false\"]\nmetrics_path = \"{metrics_path}\""),
        &format!("endpoint = \"http://127.0.0.1:{}/v1/\"", server.1),
    );
    assert_eq!(
        code, 0,
        "status reasons: {}\n{stderr}",
        result["status_reasons"]
    );
    Attached {
        port: server.1,
        stderr,
        run,
        result,
        _dir: dir,
    }
}

#[test]
fn an_attached_run_says_where_and_scrapes_the_servers_metrics() {
    let a = attached_run("/metrics");
    let url = format!("http://127.0.0.1:{}/v1", a.port);
    for said in [
        format!("command: attached to {url} (a running server; llem starts nothing)"),
        format!(
            "scraping the server's metrics at http://127.0.0.1:{}/metrics",
            a.port
        ),
    ] {
        assert!(a.stderr.contains(&said), "{said}\n{}", a.stderr);
    }
    assert!(
        !a.stderr.contains("(server): false"),
        "the plan's command is not described as run: {}",
        a.stderr
    );
    let backend = &a.result["backend"];
    assert_eq!(backend["executed"], false);
    assert_eq!(backend["base_url"], url.as_str());
    assert!(backend.get("worker_script").is_none(), "{backend}");
    assert_eq!(a.result["inference"]["requests_succeeded"], 4);
    // The server's page, scraped and parsed by the backend.
    let metrics = std::fs::read_to_string(a.run.join("engine_metrics.jsonl")).unwrap();
    assert!(metrics.contains("fake:num_requests_running"), "{metrics}");
}

#[test]
fn an_attached_server_without_a_metrics_page_is_said_not_fatal() {
    let a = attached_run("/no-metrics-here");
    let said = format!(
        "the attached server has no metrics page at http://127.0.0.1:{}/no-metrics-here (HTTP 404)",
        a.port
    );
    assert!(a.stderr.contains(&said), "{said}\n{}", a.stderr);
    assert!(!a.run.join("engine_metrics.jsonl").exists());
}

#[test]
fn result_json_records_the_worker_script_by_path_and_hash_not_its_text() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let script = std::fs::read_to_string(engine("fake_worker.py")).unwrap();
    let backend = format!(
        "mode = \"offline\"\ncommand = [\"python3\", \"{{run_dir}}/worker.py\"]\n\
         worker_script = '''\n{script}'''\nsandbox = {{ programs = [\"python3\"] }}"
    );
    let (code, stderr, run, result) = run(dir.path(), &backend, "");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("command (offline worker): python3 "),
        "{stderr}"
    );
    let written = std::fs::read(run.join("worker.py")).unwrap();
    let sha256: String = Sha256::digest(&written)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let recorded = &result["backend"]["worker_script"];
    assert_eq!(recorded["sha256"], sha256.as_str());
    assert_eq!(recorded["bytes"], written.len());
    assert_eq!(
        recorded["path"],
        run.join("worker.py").display().to_string().as_str()
    );
    assert!(result["backend"]["plan"].get("worker_script").is_none());
    let text = std::fs::read_to_string(run.join("result.json")).unwrap();
    assert!(
        !text.contains("stand-in offline worker"),
        "result.json must not embed the script"
    );
    assert_eq!(result["inference"]["requests_succeeded"], 4);
}
