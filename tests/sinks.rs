//! First-party sinks in a real `llem run`: `sink-csv` and `sink-mlenergy`,
//! sandboxed WASM, write into the run directory they are granted by default
//! (or the `dir` the manifest names), and what they write agrees with
//! result.json and timeseries.csv.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, only_run, output, plugin_dir, wasm_artifact, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn plugins() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
        wasm_artifact("sink-csv"),
        wasm_artifact("sink-mlenergy"),
        wasm_artifact("sink-hostile"),
    ])
}

/// A short server run against the fake OpenAI server, with `sinks` appended.
pub(crate) fn manifest(dir: &Path, sinks: &str) -> PathBuf {
    fake_server_manifest(dir, "sinks", 8, 8, 2, "max_concurrency = 4", sinks)
}

/// A run of experiment `name` against the fake OpenAI server: `prompts`
/// prompts of `tokens` output tokens, one every `token_ms`, `[load]` set to
/// `load`, then `tail` (sinks, more tables) appended.
pub(crate) fn fake_server_manifest(
    dir: &Path,
    name: &str,
    prompts: usize,
    tokens: u32,
    token_ms: u32,
    load: &str,
    tail: &str,
) -> PathBuf {
    let data = dir.join("prompts.jsonl");
    let lines: String = (0..prompts)
        .map(|i| format!("{{\"prompt\": \"prompt number {i}\"}}\n"))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let engines = workspace_root().join("tests/fixtures/engines");
    let server = engines.join("fake_openai_server.py");
    let text = format!(
        "[experiment]\nname = \"{name}\"\nmodel = \"fake-model\"\nsample_interval_ms = 20\n\n\
         [plugins.fixture]\n\n\
         [plugins.jsonl]\nfile = \"prompts.jsonl\"\nmax_output_tokens = {tokens}\n\n\
         [plugins.command]\ncommand = [\"python3\", {server:?}, \"--port\", \"{{port}}\", \"--token-ms\", \"{token_ms}\"]\n\
         sandbox = {{ programs = [\"python3\"], engine_read = [{engines:?}] }}\n\n\
         [load]\n{load}\n\n{tail}\n",
        server = server.display().to_string(),
        engines = engines.display().to_string(),
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(plugins: &Path, manifest: &Path, out: &Path) -> (PathBuf, Value) {
    let (code, stdout, stderr, run) = run_any(plugins, manifest, out);
    assert!(code == 0 || code == 3, "exit {code}\n{stderr}\n{stdout}");
    assert!(
        !stderr.contains("warning: plugin `sink"),
        "a sink warned:\n{stderr}"
    );
    run
}

pub(crate) fn run_any(
    plugins: &Path,
    manifest: &Path,
    out: &Path,
) -> (i32, String, String, (PathBuf, Value)) {
    let (code, stdout, stderr) = output(
        llem(plugins)
            .arg("run")
            .args(["--set", "measurement.baseline=off"])
            .arg(manifest)
            .arg("--output")
            .arg(out),
    );
    let run = only_run(&out.join("sinks"));
    (code, stdout, stderr, run)
}

#[test]
fn csv_and_mlenergy_write_into_the_run_directory() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        "[plugins.csv]\nplugin = \"sink-csv\"\n\n[plugins.ml]\nplugin = \"sink-mlenergy\"\ntask = \"lm-arena-chat\"\n",
    );
    let (run_dir, result) = run(plugins.path(), &path, dir.path());

    // samples.csv holds exactly the readings of timeseries.csv.
    let samples = std::fs::read_to_string(run_dir.join("samples.csv")).unwrap();
    let timeseries = std::fs::read_to_string(run_dir.join("timeseries.csv")).unwrap();
    let mut ours: Vec<&str> = samples.lines().skip(1).collect();
    let mut theirs: Vec<&str> = timeseries.lines().skip(1).collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(
        samples.lines().next(),
        Some("t_ns,source,device,energy_uj,power_mw")
    );
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs, "samples.csv and timeseries.csv differ");

    // result.csv: one row, figures equal to result.json's.
    let text = std::fs::read_to_string(run_dir.join("result.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), row.len());
    let get = |c: &str| row[header.iter().position(|h| *h == c).unwrap()];
    assert_eq!(get("run_id"), result["run_id"].as_str().unwrap());
    assert_eq!(
        get("energy_total_j").parse::<f64>().unwrap(),
        result["energy"]["total_j"].as_f64().unwrap()
    );
    assert_eq!(
        get("requests_succeeded"),
        result["inference"]["requests_succeeded"].to_string()
    );

    // mlenergy.json: ML.ENERGY's names over the run's figures.
    let ml: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("mlenergy.json")).unwrap())
            .unwrap();
    assert_eq!(
        ml["leaderboard"]["energy_per_token_joules"],
        result["inference"]["headline_energy_per_output_token_j"]
    );
    assert_eq!(
        ml["results"]["total_output_tokens"].as_f64(),
        result["inference"]["latency"]["total_output_tokens"].as_f64()
    );
    assert_eq!(
        ml["results"]["mean_ttft_ms"],
        result["inference"]["latency"]["ttft"]["mean"]
    );
    assert_eq!(ml["leaderboard"]["task"], "lm-arena-chat");
    assert_eq!(ml["leaderboard"]["model_id"], "fake-model");
    assert_eq!(
        ml["llem"]["energy_per_token_basis"],
        result["inference"]["headline"]
    );
    // The fixture source is no GPU: no GPU model, and it says so.
    assert_eq!(ml["leaderboard"]["gpu_model"], Value::Null);
    assert_eq!(ml["llem"]["gpu_only"], false);
}

#[test]
fn a_sink_dir_option_redirects_its_files_and_grants_only_that() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("exports");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let path = manifest(
        dir.path(),
        &format!(
            "[plugins.ml]\nplugin = \"sink-mlenergy\"\ndir = {:?}\n",
            elsewhere.display().to_string()
        ),
    );
    let (run_dir, result) = run(plugins.path(), &path, dir.path());
    assert!(elsewhere.join("mlenergy.json").is_file());
    assert!(!run_dir.join("mlenergy.json").exists());
    let grants = result["grants"].as_array().unwrap();
    assert!(
        grants
            .iter()
            .any(|g| g["instance"] == "ml" && g["target"] == elsewhere.display().to_string()),
        "{grants:?}"
    );
}

#[test]
fn a_failing_sink_is_recorded_and_degrades_the_run() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    // sink-hostile writes its result to `file` (default `/`): refused in the
    // sandbox, so its write-result fails; the csv sink beside it succeeds.
    let path = manifest(
        dir.path(),
        "[plugins.bad]\nplugin = \"sink-hostile\"\n\n[plugins.csv]\nplugin = \"sink-csv\"\n",
    );
    let (code, stdout, stderr, (run_dir, result)) = run_any(plugins.path(), &path, dir.path());
    assert_eq!(code, 3, "{stderr}\n{stdout}");
    assert_eq!(result["status"], "degraded");
    let reasons = result["status_reasons"].to_string();
    assert!(reasons.contains("sink `bad` failed"), "{reasons}");
    assert!(
        stderr.contains("warning: plugin `sink-hostile`"),
        "no warning:\n{stderr}"
    );
    let sinks = result["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2, "{sinks:?}");
    let bad = sinks.iter().find(|s| s["instance"] == "bad").unwrap();
    assert!(
        bad["error"].as_str().unwrap().contains("writing /"),
        "{bad}"
    );
    // It took every reading, then lost the result document.
    let readings = std::fs::read_to_string(run_dir.join("timeseries.csv"))
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    assert_eq!(bad["delivered"].as_u64(), Some(readings));
    assert_eq!(bad["dropped"].as_u64(), Some(1));
    let good = sinks.iter().find(|s| s["instance"] == "csv").unwrap();
    assert_eq!(good["delivered"].as_u64(), Some(readings + 1));
    assert_eq!(good["dropped"].as_u64(), Some(0));
    assert!(good.get("error").is_none(), "{good}");
    assert!(run_dir.join("result.csv").is_file());
    // Nothing escaped the sandbox.
    assert!(!bad["error"].as_str().unwrap().contains("SANDBOX LEAK"));
}
