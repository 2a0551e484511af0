//! `sink-prometheus-push` in real `llem run`s against a real Pushgateway
//! (the Debian package's `prometheus-pushgateway`): the gateway's `/metrics`
//! then holds the run's figures, equal to result.json's. Without a connect
//! grant, or with nothing listening at `url`, the run is degraded and the
//! sink's error says why, never silent.
//!
//! Without a `prometheus-pushgateway` binary the gateway test is skipped with
//! a printed reason, unless `LLEM_REQUIRE_PROMETHEUS=1` (CI) makes it fail.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use crate::prometheus::{Guard, free_port, get, prometheus_binary, wait_for};
use crate::sinks::{manifest, run_any};
use backend_common::prometheus::{Sample, parse_line};
use llem_integration_tests::{plugin_dir, wasm_artifact};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn plugins() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
        wasm_artifact("sink-prometheus-push"),
    ])
}

/// A gateway on a free port, ready; `None` (skip) when it is not installed.
fn start_gateway(dir: &Path) -> Option<(Guard, u16)> {
    let binary = prometheus_binary("prometheus-pushgateway")?;
    let port = free_port();
    let log = std::fs::File::create(dir.join("pushgateway.log")).unwrap();
    let guard = Guard(
        Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's default persists to /var/lib/prometheus: keep nothing.
            .arg("--persistence.file=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(
        Duration::from_secs(20),
        "the Pushgateway to be ready",
        || matches!(get(port, "/-/ready"), Some((200, _))).then_some(()),
    );
    Some((guard, port))
}

fn push_sink(port: u16, grant: bool) -> String {
    let mut text = format!(
        "[plugins.push]\nplugin = \"sink-prometheus-push\"\nurl = \"http://127.0.0.1:{port}\"\n\
         labels = {{ site = \"lab 1\" }}\n"
    );
    if grant {
        text.push_str(&format!(
            "sandbox = {{ connect = [\"127.0.0.1:{port}\"] }}\n"
        ));
    }
    text
}

fn sink_entry(result: &Value) -> Value {
    result["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instance"] == "push")
        .cloned()
        .unwrap_or_else(|| panic!("no sink `push` in {}", result["sinks"]))
}

fn label<'a>(sample: &'a Sample<'_>, key: &str) -> Option<&'a str> {
    sample
        .labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn a_real_pushgateway_holds_the_runs_figures() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_gateway, port)) = start_gateway(dir.path()) else {
        return;
    };
    let plugins = plugins();
    let path = manifest(dir.path(), &push_sink(port, true));
    let (code, stdout, stderr, (_, result)) = run_any(plugins.path(), &path, dir.path());
    assert!(code == 0 || code == 3, "exit {code}\n{stderr}\n{stdout}");
    let entry = sink_entry(&result);
    assert!(entry.get("error").is_none(), "{entry}\n{stderr}");
    assert_eq!(entry["dropped"].as_u64(), Some(0), "{entry}");

    let (status, page) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200, "{page}");
    let run_id = result["run_id"].as_str().unwrap();
    let ours: Vec<Sample> = page
        .lines()
        .filter_map(parse_line)
        .filter(|s| label(s, "job") == Some("llem") && label(s, "run_id") == Some(run_id))
        .collect();
    let value = |name: &str, extra: Option<(&str, &str)>| -> f64 {
        let found: Vec<&Sample> = ours
            .iter()
            .filter(|s| s.name == name && extra.is_none_or(|(k, v)| label(s, k) == Some(v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {extra:?} in:\n{page}");
        // Every series carries the grouping key and the experiment.
        assert_eq!(label(found[0], "site"), Some("lab 1"));
        assert_eq!(label(found[0], "experiment"), Some("sinks"));
        found[0].value
    };
    let figure = |pointer: &str| result.pointer(pointer).unwrap().as_f64().unwrap();
    assert_eq!(
        value("llem_run_energy_joules", None),
        figure("/energy/total_j")
    );
    assert_eq!(
        value("llem_run_duration_seconds", None),
        figure("/duration_s")
    );
    assert_eq!(
        value("llem_run_requests", Some(("outcome", "succeeded"))),
        figure("/inference/requests_succeeded")
    );
    assert_eq!(
        value("llem_run_output_tokens", None),
        figure("/inference/latency/total_output_tokens")
    );
    assert_eq!(
        value("llem_run_average_power_watts", None),
        figure("/inference/average_power_w")
    );
    assert_eq!(
        value("llem_run_energy_per_output_token_joules", None),
        figure("/inference/energy_per_output_token_j")
    );
    // Latencies: ms in result.json, seconds on the gateway.
    let ttft = value("llem_run_ttft_seconds", Some(("stat", "mean")));
    let expected = figure("/inference/latency/ttft/mean") / 1000.0;
    assert!(
        (ttft - expected).abs() <= expected * 1e-12,
        "{ttft} vs {expected}"
    );
    let info = ours.iter().find(|s| s.name == "llem_run_info").unwrap();
    assert_eq!(label(info, "model"), Some("fake-model"));
    assert_eq!(label(info, "status"), result["status"].as_str());
    // Baseline measurement is off in these runs: no baseline figure, and so
    // no series (never a 0 standing for "unknown").
    assert!(result["energy"]["baseline_j"].is_null());
    assert!(
        !ours
            .iter()
            .any(|s| s.name == "llem_run_baseline_energy_joules")
    );
    // HELP and TYPE as the exporter writes them.
    assert!(
        page.contains("# TYPE llem_run_energy_joules gauge"),
        "{page}"
    );
}

#[test]
fn without_a_connect_grant_the_sink_fails_clearly() {
    // Nothing needs to listen: the sandbox refuses before a packet leaves.
    let port = free_port();
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), &push_sink(port, false));
    let (code, stdout, stderr, (_, result)) = run_any(plugins.path(), &path, dir.path());
    assert_eq!(code, 3, "{stderr}\n{stdout}");
    assert_eq!(result["status"], "degraded");
    let error = sink_entry(&result)["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!("connecting to 127.0.0.1:{port}")),
        "{error}"
    );
    let grant = format!("connect = [\"127.0.0.1:{port}\"]");
    assert!(
        error.contains(&grant) || stderr.contains(&grant),
        "the grant to add is not named:\n{error}\n{stderr}"
    );
    assert!(
        result["status_reasons"]
            .to_string()
            .contains("sink `push` failed"),
        "{}",
        result["status_reasons"]
    );
}

#[test]
fn an_unreachable_gateway_degrades_the_run() {
    // Granted, but nobody listens there.
    let port = free_port();
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), &push_sink(port, true));
    let (code, stdout, stderr, (_, result)) = run_any(plugins.path(), &path, dir.path());
    assert_eq!(code, 3, "{stderr}\n{stdout}");
    assert_eq!(result["status"], "degraded");
    let error = sink_entry(&result)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("connection refused"), "{error}");
    assert!(
        stderr.contains("warning: plugin `sink-prometheus-push`"),
        "no warning:\n{stderr}"
    );
}
