//! The `llem` binary as a user meets it: discovery, inspection, manifest
//! errors, a measured run, Ctrl-C.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    llem, native_artifact, only_run, output, plugin_dir, wasm_artifact, wasm_command,
};
use serde_json::Value;
use std::time::Duration;

fn fixtures() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        native_artifact("dataset-jsonl").with_file_name("libdataset_jsonl.so"),
        wasm_command("not-a-plugin"),
    ])
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = output(llem(dir.path()).arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), format!("llem {}", env!("CARGO_PKG_VERSION")));
    let (code, stdout, _) = output(llem(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for command in ["run", "plugins", "config", "completions"] {
        assert!(stdout.contains(command), "help lists {command}: {stdout}");
    }
}

#[test]
fn plugins_list_shows_each_plugin_its_kind_format_and_failures() {
    let dir = fixtures();
    let (code, stdout, stderr) = output(llem(dir.path()).args(["plugins", "list"]));
    assert_eq!(code, 0, "{stderr}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {stdout}"))
            .to_owned()
    };
    let fixture = line("energy-fixture");
    assert!(
        fixture.contains("energy")
            && fixture.contains("wasm")
            && fixture.contains("LLEM_PLUGIN_PATH"),
        "{fixture}"
    );
    let jsonl = line("dataset-jsonl");
    assert!(
        jsonl.contains("dataset") && jsonl.contains("native"),
        "LLEM_PLUGIN_PATH shadows the built-in copy: {jsonl}"
    );
    assert!(line("not-a-plugin").contains("cannot load"), "{stdout}");
    assert!(stderr.contains("1 plugin(s) failed to load"), "{stderr}");

    let (code, stdout, _) = output(llem(dir.path()).args(["plugins", "list", "--json"]));
    assert_eq!(code, 0);
    let entries: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    let fixture = entries
        .iter()
        .find(|e| e["name"] == "energy-fixture")
        .unwrap();
    assert_eq!(fixture["short_name"], "fixture");
    assert_eq!(fixture["info"]["kind"], "energy");
}

#[test]
fn plugins_inspect_by_short_name_and_did_you_mean() {
    let dir = fixtures();
    let (code, stdout, _) = output(llem(dir.path()).args(["plugins", "inspect", "fixture"]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("energy-fixture 0.1.0 (energy plugin, WASM component, sandboxed)"),
        "{stdout}"
    );
    assert!(stdout.contains("step_uj"), "{stdout}");
    let (code, _, stderr) = output(llem(dir.path()).args(["plugins", "inspect", "fixtur"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown plugin `fixtur`"), "{stderr}");
    assert!(stderr.contains("did you mean `fixture`?"), "{stderr}");
}

fn validate(manifest: &str) -> (i32, String) {
    let plugins = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("experiment.toml");
    std::fs::write(&path, manifest).unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("config")
            .arg("validate")
            .arg(&path),
    );
    (
        code,
        stderr.replace(&path.display().to_string(), "experiment.toml"),
    )
}

#[test]
fn manifest_errors_name_file_line_column_and_key() {
    let (code, stderr) = validate("[experiment]\nname = \"x\"\n\n[plugins.fixture]\nstep_u = 5\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("experiment.toml:5:1: unknown key `step_u` in [plugins.fixture]"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `step_uj`?"), "{stderr}");

    let (code, stderr) = validate("[experiment]\ncycles = \"three\"\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("experiment.toml:2:10:"), "{stderr}");
    assert!(
        stderr.contains("`experiment.cycles` must be an integer"),
        "{stderr}"
    );

    let (code, stderr) = validate("[plugins.fixtur]\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("experiment.toml:1:"), "{stderr}");
    assert!(stderr.contains("unknown plugin `fixtur`"), "{stderr}");
    assert!(stderr.contains("did you mean `fixture`?"), "{stderr}");

    let (code, stderr) = validate("[plugins.fixture]\ndevices = 2\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("is valid: 1 plugin(s): fixture (energy-fixture)"),
        "{stderr}"
    );
}

#[test]
fn config_default_documents_every_plugin_and_validates() {
    let plugins = fixtures();
    let (code, stdout, _) = output(llem(plugins.path()).args(["config", "default"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("[experiment]"), "{stdout}");
    assert!(stdout.contains("# [plugins.fixture]"), "{stdout}");
    assert!(stdout.contains("step_uj"), "{stdout}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.toml");
    std::fs::write(&path, &stdout).unwrap();
    // As printed it names no energy source: `llem run` would refuse it, and
    // so does validate (issue 9), saying what to add.
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("config")
            .arg("validate")
            .arg(&path),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no energy source"), "{stderr}");
    // With one of its commented plugin tables switched on, it is valid.
    std::fs::write(
        &path,
        stdout.replacen("# [plugins.fixture]", "[plugins.fixture]", 1),
    )
    .unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("config")
            .arg("validate")
            .arg(&path),
    );
    assert_eq!(
        code, 0,
        "the default manifest with an energy source is valid: {stderr}"
    );

    let (code, stdout, _) = output(llem(plugins.path()).args(["config", "schema"]));
    assert_eq!(code, 0);
    let schema: Value = serde_json::from_str(&stdout).unwrap();
    assert!(schema.to_string().contains("step_uj"));
}

#[test]
fn completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = output(llem(dir.path()).args(["completions", "bash"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("_llem()"),
        "{}",
        &stdout[..200.min(stdout.len())]
    );
}

#[test]
fn a_run_writes_a_run_directory_with_exact_counter_energy() {
    let plugins = fixtures();
    let out = tempfile::tempdir().unwrap();
    let data = out.path().join("prompts.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=off",
                "--plugins",
                "fixture,jsonl",
                "--duration",
                "0.5",
                "--name",
                "smoke",
            ])
            .arg("--set")
            .arg(format!("jsonl.file=\"{}\"", data.display()))
            .args([
                "--set",
                "fixture.step_uj=2500",
                "--set",
                "experiment.sample_interval_ms=50",
            ])
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("fixture (energy): 1 device(s)"), "{stderr}");
    assert!(stderr.contains("jsonl (dataset): 3 prompts"), "{stderr}");
    assert!(stdout.contains("results: "), "{stdout}");
    let runs: Vec<_> = std::fs::read_dir(out.path().join("smoke"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    for file in ["result.json", "timeseries.csv", "manifest.resolved.toml"] {
        assert!(run.join(file).exists(), "{file}");
    }
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["status"], "complete");
    assert_eq!(result["dataset"]["prompts"], 3);
    let device = &result["energy"]["devices"][0];
    assert_eq!(device["method"], "counter");
    let samples = device["samples"].as_u64().unwrap();
    assert!(samples >= 5, "about 0.5 s / 50 ms of ticks: {samples}");
    // The fixture's counter steps 2500 µJ per read: (samples − 1) steps between first and last.
    let expected = (samples - 1) as f64 * 2500.0 / 1e6;
    assert!(
        (device["energy_j"].as_f64().unwrap() - expected).abs() < 1e-12,
        "{device}"
    );
    assert_eq!(result["energy"]["total_j"], device["energy_j"]);
    let rows = std::fs::read_to_string(run.join("timeseries.csv")).unwrap();
    // Every read is kept, including any taken just before the window opened.
    let reads = rows.lines().count() as u64 - 1;
    assert!(
        reads >= samples && reads <= samples + 2,
        "{reads} rows for {samples} samples in the window"
    );
    assert!(rows.starts_with("t_ns,source,device,energy_uj,power_mw\n"));
    // The fixture reports a `reads` counter as telemetry once a second.
    let telemetry = std::fs::read_to_string(run.join("telemetry.csv")).unwrap();
    assert!(
        telemetry.starts_with("t_ns,source,device,metric,value,unit\n"),
        "{telemetry}"
    );
    assert!(
        telemetry.contains(",fixture,fixture0,reads,"),
        "{telemetry}"
    );
    let resolved = std::fs::read_to_string(run.join("manifest.resolved.toml")).unwrap();
    assert!(resolved.contains("step_uj = 2500"), "{resolved}");
}

#[test]
fn a_manifest_without_an_energy_source_says_what_to_add() {
    let plugins = fixtures();
    let out = tempfile::tempdir().unwrap();
    let manifest = out.path().join("idle.toml");
    std::fs::write(&manifest, "[experiment]\nname = \"idle\"\n").unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("run")
            .args(["--set", "measurement.baseline=off"])
            .arg(&manifest)
            .arg("--output")
            .arg(out.path()),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("no energy source"), "{stderr}");
    assert!(stderr.contains("--plugins"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from("idle.toml")],
        "no empty run directory left behind"
    );
}

#[test]
fn the_embedded_default_measures_with_what_works_here_and_labels_estimates() {
    // No energy plugin on the plugin path: only the built-in ones next to the
    // binary remain, and on a machine without counters that is the estimate.
    let empty = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        llem(empty.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=off",
                "--duration",
                "0.5",
                "--output",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("energy sources that work on this machine:"),
        "{stderr}"
    );
    let run = std::fs::read_dir(out.path().join("default"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    let devices = result["energy"]["devices"].as_array().unwrap();
    assert!(!devices.is_empty());
    if devices.iter().all(|d| d["estimated"] == true) {
        assert_eq!(result["energy"]["includes_estimates"], true);
        assert!(stdout.contains("(estimated)"), "{stdout}");
        assert!(stdout.contains("includes estimates"), "{stdout}");
        assert_eq!(devices[0]["method"], "power-integration");
    }
    assert!(result["energy"]["total_j"].as_f64().unwrap() >= 0.0);
}

#[test]
fn ctrl_c_keeps_what_was_measured() {
    let plugins = fixtures();
    let out = tempfile::tempdir().unwrap();
    let mut child = llem(plugins.path())
        .args([
            "run",
            "--set",
            "measurement.baseline=off",
            "--plugins",
            "fixture",
            "--duration",
            "60",
            "--name",
            "stopped",
            "--output",
        ])
        .arg(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once readings have reached the disk (they stream while the run goes on).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = std::fs::read_dir(out.path().join("stopped"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|run| std::fs::read_to_string(run.ok()?.path().join("timeseries.csv")).ok())
            .map_or(0, |text| text.lines().count());
        if rows > 6 || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc_kill(child.id() as i32, 2) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let run = std::fs::read_dir(out.path().join("stopped"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["status"], "interrupted");
    let duration = result["duration_s"].as_f64().unwrap();
    assert!(duration > 0.2 && duration < 30.0, "{duration}");
    assert!(result["energy"]["devices"][0]["samples"].as_u64().unwrap() > 3);
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

#[test]
fn env_says_what_works_and_how_to_fix_what_does_not() {
    let plugins = fixtures();
    let (code, stdout, stderr) = output(llem(plugins.path()).arg("env"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("✔ energy-fixture: 1 device(s)"), "{stdout}");
    assert!(
        stdout.contains("fixture0: Fixture device 0 (energy counter)"),
        "{stdout}"
    );
    // Every source that fails here says why and how to fix it (backends are
    // checked in tests/first_run.rs).
    let lines: Vec<&str> = stdout
        .lines()
        .take_while(|l| !l.starts_with("inference backends:"))
        .collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with('✘') {
            assert!(
                lines
                    .get(i + 1)
                    .is_some_and(|next| next.trim_start().starts_with("fix:")),
                "no fix after: {line}\n{stdout}"
            );
        }
    }
    // The fixture works, but it sits on the plugin path, not next to llem:
    // it is used only when named, never chosen for a run that names nothing.
    assert!(
        stdout.contains(
            "✔ energy-fixture: 1 device(s) (not shipped with llem: used only when named)"
        ),
        "{stdout}"
    );
    let auto = stdout
        .lines()
        .find(|l| {
            l.contains("with no manifest measures with:") || l.starts_with("nothing can measure")
        })
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(!auto.contains("fixture"), "{auto}");
    let (code, stdout, _) = output(llem(plugins.path()).args(["env", "--json"]));
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let sources = doc["energy_sources"].as_array().unwrap();
    let fixture = sources
        .iter()
        .find(|s| s["name"] == "energy-fixture")
        .unwrap();
    assert_eq!(fixture["status"], "works");
    for name in [
        "energy-nvml",
        "energy-rapl",
        "energy-amdsmi",
        "energy-cpu-estimate",
    ] {
        assert!(
            sources.iter().any(|s| s["name"] == name),
            "{name} is listed"
        );
    }
}

#[test]
fn monitor_streams_jsonl_with_monotonic_energy() {
    let plugins = fixtures();
    let (code, stdout, stderr) = output(llem(plugins.path()).args([
        "monitor",
        "--plugins",
        "fixture",
        "--set",
        "fixture.step_uj=1000",
        "--format",
        "jsonl",
        "--interval",
        "50ms",
        "--duration",
        "0.5",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        (8..=11).contains(&rows.len()),
        "{} rows:\n{stdout}",
        rows.len()
    );
    let energies: Vec<f64> = rows.iter().filter_map(|r| r["energy_j"].as_f64()).collect();
    assert!(energies.len() >= rows.len() - 1);
    assert!(energies.windows(2).all(|w| w[0] <= w[1]), "{energies:?}");
    // Whole millijoules: the fixture's counter steps 1000 µJ per read.
    assert!(
        energies
            .iter()
            .all(|e| ((e * 1000.0).round() - e * 1000.0).abs() < 1e-9),
        "{energies:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["source"] == "fixture" && r["device"] == "fixture0")
    );
    // `t_ns` is the time of the reading behind `energy_j`: the same reading shown
    // twice has the same time and energy, a newer one a later time.
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (ta, tb) = (a["t_ns"].as_u64().unwrap(), b["t_ns"].as_u64().unwrap());
        assert!(ta <= tb, "{a} then {b}");
        if ta == tb {
            assert_eq!(a["energy_j"], b["energy_j"], "{a} then {b}");
        }
    }
    assert!(stderr.contains("totals over"), "{stderr}");
    let (code, stdout, _) = output(llem(plugins.path()).args([
        "monitor",
        "--plugins",
        "fixture",
        "--format",
        "csv",
        "--interval",
        "100ms",
        "--duration",
        "0.3",
    ]));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("t_s,source,device,power_w,energy_j,method,estimated\n"),
        "{stdout}"
    );
}

#[test]
fn each_energy_source_can_have_its_own_sampling_interval() {
    let plugins = fixtures();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("two.toml");
    std::fs::write(
        &manifest,
        "[experiment]\nname = \"two\"\nduration_s = 1.0\nsample_interval_ms = 100\n\n\
         [plugins.fast]\nplugin = \"fixture\"\nsample_interval_ms = 20\n\n\
         [plugins.slow]\nplugin = \"fixture\"\n",
    )
    .unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("run")
            .args(["--set", "measurement.baseline=off"])
            .arg(&manifest)
            .arg("--output")
            .arg(dir.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let run = std::fs::read_dir(dir.path().join("two"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    let samples = |source: &str| {
        result["energy"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["source"] == source)
            .unwrap()["samples"]
            .as_u64()
            .unwrap()
    };
    assert!(
        (35..=55).contains(&samples("fast")),
        "fast: {}",
        samples("fast")
    );
    assert!(
        (8..=13).contains(&samples("slow")),
        "slow: {}",
        samples("slow")
    );
    let resolved = std::fs::read_to_string(run.join("manifest.resolved.toml")).unwrap();
    assert!(resolved.contains("sample_interval_ms = 20"), "{resolved}");

    std::fs::write(
        &manifest,
        "[plugins.fast]\nplugin = \"fixture\"\nsample_interval_ms = 0\n",
    )
    .unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .arg("config")
            .arg("validate")
            .arg(&manifest),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            ":3:22: `plugins.fast.sample_interval_ms` must be an integer number of milliseconds"
        ),
        "{stderr}"
    );
}

/// Defect: a source stuck inside a call kept the run from finishing. The
/// fixture blocks forever in its 6th read: the run still ends on time, marked
/// degraded, with the readings taken before it streamed to disk.
#[test]
fn a_source_stuck_in_a_call_cannot_hold_the_run() {
    let plugins = fixtures();
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=off",
                "--plugins",
                "fixture",
                "--set",
                "fixture.block_after_reads=5",
                "--set",
                "experiment.sample_interval_ms=50",
                "--duration",
                "2",
                "--name",
                "stuck",
                "--output",
            ])
            .arg(out.path()),
    );
    let took = started.elapsed();
    // 2 s measured + at most 2 s waiting for the window's closing read + 2 s
    // before the stuck thread is abandoned, plus start-up on a loaded machine.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(code, 3, "degraded: {stderr}\n{stdout}");
    let (run, result) = only_run(&out.path().join("stuck"));
    assert_eq!(result["status"], "degraded");
    let reasons = result["status_reasons"].to_string();
    assert!(reasons.contains("fixture"), "{reasons}");
    let rows = std::fs::read_to_string(run.join("timeseries.csv")).unwrap();
    // The 5 reads before it blocked (the sampler's first read included).
    assert_eq!(rows.lines().count() - 1, 5, "{rows}");
}

/// The idle baseline: measured fresh, its per-device power equals the
/// window's energy over its length recomputed from timeseries.csv, and the net
/// figure is gross − baseline power × window length.
#[test]
fn a_fresh_baseline_is_measured_before_the_window_and_subtracted() {
    let plugins = fixtures();
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=fresh",
                "--set",
                "measurement.baseline_s=1",
                "--plugins",
                "fixture",
                "--set",
                "fixture.step_uj=5000",
                "--set",
                "experiment.sample_interval_ms=50",
                "--duration",
                "1",
                "--name",
                "base",
                "--output",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let (run, result) = only_run(&out.path().join("base"));
    let baseline = &result["baseline"];
    assert_eq!(baseline["origin"], "measured");
    let phases = result["phases"].as_array().unwrap();
    let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names[..3],
        ["open_sources", "idle_baseline", "measured"],
        "{names:?}"
    );
    let idle = &phases[1];
    let window_start = result["window"]["start_ns"].as_u64().unwrap();
    assert!(idle["end_ns"].as_u64().unwrap() <= window_start);
    // Recompute the idle power from the raw counter: rows inside the idle phase.
    let rows: Vec<(u64, u64)> = std::fs::read_to_string(run.join("timeseries.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let (i0, i1) = (
        idle["start_ns"].as_u64().unwrap(),
        idle["end_ns"].as_u64().unwrap(),
    );
    let inside: Vec<&(u64, u64)> = rows.iter().filter(|(t, _)| *t >= i0 && *t <= i1).collect();
    let (first, last) = (inside.first().unwrap(), inside.last().unwrap());
    let power = (last.1 - first.1) as f64 / 1e6 / ((last.0 - first.0) as f64 / 1e9);
    let reported = baseline["devices"][0]["power_w"].as_f64().unwrap();
    // The window is cut on fresh reads at its edges, so the two agree within a read's jitter.
    assert!(
        (reported - power).abs() / power < 0.15,
        "baseline {reported} W vs {power} W from the rows"
    );
    let total = result["energy"]["total_j"].as_f64().unwrap();
    let base_j = result["energy"]["baseline_j"].as_f64().unwrap();
    let duration = result["duration_s"].as_f64().unwrap();
    assert!((base_j - reported * duration).abs() < 1e-9);
    assert!((result["energy"]["net_j"].as_f64().unwrap() - (total - base_j)).abs() < 1e-9);
    assert!(result["environment"]["cpu_model"].is_string());
    assert!(result["quality"]["level"].is_string());
}

/// `experiment.cycles` repeats the run: one directory per cycle, numbered.
#[test]
fn cycles_repeat_the_run() {
    let plugins = fixtures();
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(
        llem(plugins.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=off",
                "--plugins",
                "fixture",
                "--set",
                "experiment.cycles=2",
                "--duration",
                "0.3",
                "--name",
                "cyc",
                "--output",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let mut cycles: Vec<u64> = std::fs::read_dir(out.path().join("cyc"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path().join("result.json");
            let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            v["experiment"]["cycle"].as_u64().unwrap()
        })
        .collect();
    cycles.sort_unstable();
    assert_eq!(cycles, [1, 2]);
}
