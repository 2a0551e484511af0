//! Studies (issue 10): a sweep over the tiny local model, interrupted after a
//! few runs and resumed to completion with no run repeated; an engine kept up
//! across a load-only axis (one start in engine.log, said in the plan); the
//! per-configuration statistics of study.json recomputed from the runs'
//! result.json files; a changed design refused; points the plugins refuse
//! skipped with the reason; the circuit breaker and the run time limit.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    llem, native_artifact, output, plugin_dir, tiny_model, venv_python, wasm_artifact,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
const SIGINT: i32 = 2;

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Slot states of a study directory, by slot index.
fn states(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("state"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "json"));
    files.sort();
    files.iter().map(|f| read_json(f)).collect()
}

fn tiny_study(dir: &Path) -> PathBuf {
    let text = format!(
        r#"[study]
name = "tiny-sweep"
cycles = 2
order = "interleave"

[experiment]
model = {model:?}
output_dir = "out"

[measurement]
baseline = "off"

[plugins.pytorch]
python = {python:?}
mode = "offline"

[plugins.cpu-estimate]

[plugins.synthetic]
input_tokens = {{ dist = "fixed", value = 16 }}
output_tokens = {{ dist = "fixed", value = 8 }}
num_prompts = 4

[sweep]
"pytorch.batch_size" = [1, 2]
"load.max_concurrency" = [1, 2]
"#,
        model = tiny_model().display().to_string(),
        python = venv_python().display().to_string(),
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_study_interrupted_after_a_few_runs_resumes_without_repeating_a_run() {
    let plugins = plugin_dir(&[
        native_artifact("energy-cpu-estimate"),
        wasm_artifact("backend-pytorch"),
        wasm_artifact("dataset-synthetic"),
    ]);
    let work = tempfile::tempdir().unwrap();
    let study = tiny_study(work.path());
    let dir = work.path().join("out/tiny-sweep");

    // The plan: 2 × 2 configurations × 2 cycles, interleaved; the
    // concurrency-only neighbours share an engine.
    let (code, plan, stderr) = output(
        llem(plugins.path())
            .current_dir(work.path())
            .args(["run", "--dry-run"])
            .arg(&study),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        plan.contains(": 4 configs × 2 cycles = 8 runs · order interleave"),
        "{plan}"
    );
    for line in [
        "     0  cycle 1  batch_size=1 max_concurrency=1  starts an engine",
        "     1  cycle 1  batch_size=1 max_concurrency=2  engine of run 0 kept up",
        "     2  cycle 1  batch_size=2 max_concurrency=1  starts an engine",
        "     7  cycle 2  batch_size=2 max_concurrency=2  engine of run 6 kept up",
        "engine starts: 4 for 8 runs",
    ] {
        assert!(plan.contains(line), "{line}\n{plan}");
    }
    assert!(!dir.exists(), "a dry run makes no study directory");

    // Interrupted once three runs are complete.
    let mut child = llem(plugins.path())
        .current_dir(work.path())
        .arg("run")
        .arg(&study)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let complete = states(&dir)
            .iter()
            .filter(|s| s["status"] == "complete")
            .count();
        if complete >= 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "three runs did not complete in time"
        );
        assert!(child.try_wait().unwrap().is_none(), "llem ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { kill(child.id() as i32, SIGINT) };
    let first = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    let before: Vec<Value> = states(&dir);
    let done_before: Vec<u64> = before
        .iter()
        .filter(|s| s["status"] == "complete")
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert!(
        done_before.len() >= 3 && done_before.len() < 8,
        "{before:?}"
    );

    // Resumed to completion: the finished runs are not run again.
    let (code, stdout, stderr) = run_study(plugins.path(), work.path(), &study);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("[complete: not run again]"), "{stdout}");
    let after = states(&dir);
    assert_eq!(after.len(), 8);
    for s in &after {
        assert_eq!(s["status"], "complete", "{s}");
        let index = s["index"].as_u64().unwrap();
        let name = std::fs::read_dir(dir.join("runs"))
            .unwrap()
            .flatten()
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{index:04}-"))
            })
            .unwrap()
            .path();
        let attempts = std::fs::read_dir(&name).unwrap().count();
        if done_before.contains(&index) {
            assert_eq!(s["attempts"], 1, "{s}");
            assert_eq!(attempts, 1, "run {index} was repeated: {}", name.display());
            // Its state is the one written before the interruption.
            let old = before.iter().find(|b| b["index"] == index).unwrap();
            assert_eq!(s["run_dir"], old["run_dir"]);
        }
    }

    // Engines: a run that kept its predecessor's engine has no engine.log of
    // its own; the one it names has one, with one model load in it.
    let mut starts = 0;
    for s in &after {
        let run = PathBuf::from(s["run_dir"].as_str().unwrap());
        let result = read_json(&run.join("result.json"));
        let kept = result["backend"]["engine_kept_from"].as_str();
        let log = run.join("engine.log");
        match kept {
            Some(from) => {
                assert!(!log.exists(), "{}", run.display());
                let text = std::fs::read_to_string(Path::new(from).join("engine.log")).unwrap();
                assert_eq!(text.matches("] loaded in ").count(), 1, "{text}");
                assert_eq!(s["engine_kept_from"].as_str(), Some(from));
            }
            None => {
                starts += 1;
                let text = std::fs::read_to_string(&log).unwrap();
                assert_eq!(text.matches("] loaded in ").count(), 1, "{text}");
            }
        }
        // Engine options decide: a kept engine served the same batch size.
        if let Some(from) = kept {
            let mine = read_json(&run.join("result.json"));
            let theirs = read_json(&Path::new(from).join("result.json"));
            assert_eq!(
                mine["backend"]["plan"],
                theirs["backend"]["plan"],
                "{}",
                run.display()
            );
        }
    }
    // Four engine starts straight through; the interruption may add one.
    assert!((4..=5).contains(&starts), "{starts} engine starts");
    let kept_1 =
        read_json(&PathBuf::from(after[1]["run_dir"].as_str().unwrap()).join("result.json"));
    if done_before.contains(&1) {
        assert_eq!(
            kept_1["backend"]["engine_kept_from"].as_str(),
            after[0]["run_dir"].as_str(),
            "run 1 (concurrency only) used run 0's engine"
        );
    }

    // study.json, recomputed from the runs' own result.json files.
    let doc = read_json(&dir.join("study.json"));
    assert_eq!(doc["runs"]["complete"], 8);
    let configs = doc["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 4);
    for config in configs {
        assert_eq!(config["measured_runs"], 2, "{config}");
        let values: Vec<f64> = config["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                read_json(&Path::new(r["run_dir"].as_str().unwrap()).join("result.json"))
                    ["inference"]["energy_per_output_token_j"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        let mean = (values[0] + values[1]) / 2.0;
        let sd = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
        let m = &config["metrics"]["energy_per_output_token_j"];
        assert!((m["mean"].as_f64().unwrap() - mean).abs() <= 1e-12 * mean.abs().max(1.0));
        assert!((m["sd"].as_f64().unwrap() - sd).abs() <= 1e-9 * sd.max(1e-12));
        // t(0.975, 1) = 12.7062047 (any table): half-width = t · sd / √2.
        let half = 12.706_204_736 * sd / 2f64.sqrt();
        let ci = &m["ci95"];
        assert!((ci["low"].as_f64().unwrap() - (mean - half)).abs() <= 1e-6 * half.max(1e-9));
        assert!((ci["high"].as_f64().unwrap() - (mean + half)).abs() <= 1e-6 * half.max(1e-9));
    }

    // Status and compare read the same directory.
    let (code, status, stderr) = output(
        llem(plugins.path())
            .args(["study", "status", "--json"])
            .arg(&dir),
    );
    assert_eq!(code, 0, "{stderr}");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["counts"]["complete"], 8);
    let a = configs[0]["id"].as_str().unwrap();
    let b = configs[3]["id"].as_str().unwrap();
    let (code, compared, stderr) = output(
        llem(plugins.path())
            .args(["compare", "--json", "--metric", "energy_per_output_token_j"])
            .arg(format!("{}:{a}", dir.display()))
            .arg(format!("{}:{b}", dir.display())),
    );
    assert_eq!(code, 0, "{stderr}");
    let compared: Value = serde_json::from_str(&compared).unwrap();
    let c = &compared[0]["comparison"];
    let mean_of = |i: usize| {
        configs[i]["metrics"]["energy_per_output_token_j"]["mean"]
            .as_f64()
            .unwrap()
    };
    assert!((c["difference"].as_f64().unwrap() - (mean_of(3) - mean_of(0))).abs() < 1e-12);

    // The same directory with another design is refused, and says how out.
    let text = std::fs::read_to_string(&study)
        .unwrap()
        .replace("[1, 2]\n\"load", "[1, 3]\n\"load");
    std::fs::write(&study, text).unwrap();
    let (code, _, stderr) = run_study(plugins.path(), work.path(), &study);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--ignore-design-change"), "{stderr}");
    assert!(
        stderr.contains(doc["hash"].as_str().unwrap()),
        "names the recorded design: {stderr}"
    );
}

/// `llem run STUDY` from the study's directory: (exit code, stdout, stderr).
fn run_study(plugins: &Path, work: &Path, study: &Path) -> (i32, String, String) {
    output(llem(plugins).current_dir(work).arg("run").arg(study))
}

/// An energy-only study of the fixture source.
fn fixture_study(dir: &Path, study: &str, sweep: &str) -> PathBuf {
    let text = format!(
        "[study]\nname = \"fx\"\n{study}\n\n[experiment]\nduration_s = 0.2\nsample_interval_ms = 20\noutput_dir = \"out\"\n\n\
         [measurement]\nbaseline = \"off\"\n\n[plugins.fixture]\n\n[sweep]\n{sweep}\n"
    );
    let path = dir.join("study.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_streaming_sink_is_told_the_study_and_configuration_of_each_run() {
    let plugins = plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("sink-stream"),
    ]);
    let work = tempfile::tempdir().unwrap();
    let study = fixture_study(
        work.path(),
        "cycles = 1\n\n[plugins.rec]\nplugin = \"sink-stream\"",
        "\"fixture.step_uj\" = [1000, 2000]",
    );
    let (code, stdout, stderr) = run_study(plugins.path(), work.path(), &study);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let doc = read_json(&work.path().join("out/fx/study.json"));
    let configs = doc["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    let mut seen = Vec::new();
    for config in configs {
        let run = Path::new(config["runs"][0]["run_dir"].as_str().unwrap());
        // The recorder's first line is the run's begin_run, as the sink got it.
        let calls = std::fs::read_to_string(run.join("calls.jsonl")).unwrap();
        let first: Value = serde_json::from_str(calls.lines().next().unwrap()).unwrap();
        assert_eq!(first["call"], "begin_run", "{first}");
        let id = config["id"].as_str().unwrap();
        assert_eq!(
            first["run"]["labels"],
            serde_json::json!([["study", "fx"], ["config", id]]),
            "{first}"
        );
        seen.push(id.to_owned());
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        2,
        "each run names its own configuration: {seen:?}"
    );
}

#[test]
fn a_point_a_plugin_refuses_is_skipped_with_its_reason() {
    let plugins = plugin_dir(&[wasm_artifact("energy-fixture")]);
    let work = tempfile::tempdir().unwrap();
    let study = fixture_study(
        work.path(),
        "cycles = 1",
        "\"fixture.step_uj\" = [1000, \"lots\", 2000]",
    );
    let (code, stdout, stderr) = run_study(plugins.path(), work.path(), &study);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stdout.contains("2 configs × 1 cycle = 2 runs"), "{stdout}");
    assert!(
        stdout.contains("skipping step_uj=lots:") && stdout.contains("study.toml:"),
        "the reason, with where to fix it: {stdout}"
    );
    let doc = read_json(&work.path().join("out/fx/study.json"));
    assert_eq!(doc["skipped"][0]["label"], "step_uj=lots");
    // The fixture steps 1000 or 2000 µJ per read: energy per read recomputed.
    for config in doc["configs"].as_array().unwrap() {
        let run = Path::new(config["runs"][0]["run_dir"].as_str().unwrap());
        let result = read_json(&run.join("result.json"));
        let device = &result["energy"]["devices"][0];
        let step = if config["label"] == "step_uj=1000" {
            1e-3
        } else {
            2e-3
        };
        let expected = (device["samples"].as_f64().unwrap() - 1.0) * step;
        assert!(
            (device["energy_j"].as_f64().unwrap() - expected).abs() < 1e-9,
            "{device}"
        );
        assert_eq!(
            config["metrics"]["energy_total_j"]["mean"]
                .as_f64()
                .unwrap(),
            device["energy_j"].as_f64().unwrap()
        );
    }
}

#[test]
fn consecutive_failures_stop_the_study_and_a_run_time_limit_fails_the_run() {
    let plugins = plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
        wasm_artifact("dataset-jsonl"),
    ]);
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("p.jsonl"), "{\"prompt\": \"hi\"}\n").unwrap();
    // An engine that cannot start: every run fails.
    let text = "[study]\nname = \"broken\"\ncycles = 2\nmax_consecutive_failures = 3\n\n\
        [experiment]\nmodel = \"fake\"\noutput_dir = \"out\"\n\n[measurement]\nbaseline = \"off\"\n\n\
        [plugins.fixture]\n\n[plugins.jsonl]\nfile = \"p.jsonl\"\n\n\
        [plugins.command]\ncommand = [\"/nonexistent/engine\"]\n\n\
        [sweep]\n\"load.max_concurrency\" = [1, 2, 3]\n";
    let study = work.path().join("study.toml");
    std::fs::write(&study, text).unwrap();
    let (code, _, stderr) = run_study(plugins.path(), work.path(), &study);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("3 runs in a row failed ([study].max_consecutive_failures = 3)"),
        "{stderr}"
    );
    let dir = work.path().join("out/broken");
    let all = states(&dir);
    assert_eq!(all.len(), 3, "no run after the breaker: {all:?}");
    assert!(all.iter().all(|s| s["status"] == "failed"), "{all:?}");
    let (_, status, _) = output(
        llem(plugins.path())
            .args(["study", "status", "--json"])
            .arg(&dir),
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["counts"]["failed"], 3);
    assert_eq!(status["counts"]["pending"], 3);

    // A run longer than run_timeout_s is stopped and counted as failed.
    let work = tempfile::tempdir().unwrap();
    let study = fixture_study(
        work.path(),
        "run_timeout_s = 0.5",
        "\"experiment.duration_s\" = [5.0]",
    );
    let started = Instant::now();
    let (code, _, stderr) = run_study(plugins.path(), work.path(), &study);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the limit fired"
    );
    assert_eq!(code, 4, "{stderr}");
    let s = &states(&work.path().join("out/fx"))[0];
    assert_eq!(s["status"], "failed");
    assert!(
        s["reasons"][0]
            .as_str()
            .unwrap()
            .contains("stopped after [study].run_timeout_s = 0.5 s"),
        "{s}"
    );
}
