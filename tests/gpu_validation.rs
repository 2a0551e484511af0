//! `tests/gpu` end to end on this machine, no GPU: `bundle.sh` packs the
//! debug `llem` and `energy-nvml`; `run.sh` runs `validate.py` against a fake
//! libnvidia-ml whose energy counter follows the clock
//! (`tests/fixtures/c/fake_nvml_timed.c`, read by llem's plugin and by the
//! real pynvml alike) and a stand-in torch whose "products" raise the fake
//! GPU's power (`tests/fixtures/gpu/torch`). Checks exit codes and
//! `results.json` on the success path and on each failure path.
//!
//! Needs `cargo xtask build` (debug `llem` and `libenergy_nvml.so`), a C
//! compiler, binutils, and the venv of `tests/python/setup-venv.sh` (which
//! has nvidia-ml-py).

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{build_c_library, llem_bin, output, workspace_root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Watts of the fake GPU, idle and loaded (the stand-in torch's defaults).
const IDLE_W: f64 = 70.0;
const LOADED_W: f64 = 700.0;
/// The fake counter's refresh period: short, so that the counter's own
/// quantisation (one refresh of energy at each edge) stays well inside the
/// 0.5 % goal on these short windows (2 ms × 70 W over 3 s is 0.07 %).
const REFRESH_MS: f64 = 2.0;

fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash tests/python/setup-venv.sh` (CI does)",
        python.display()
    );
    let probe = Command::new(&python)
        .args(["-c", "import pynvml"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{} cannot import pynvml (nvidia-ml-py): run `bash tests/python/setup-venv.sh`",
        python.display()
    );
    python
}

/// The bundle, made once per test process by bundle.sh from the debug build,
/// in the target directory (a static's temporary directory would never be
/// removed; bundle.sh replaces this one on every run).
fn bundle() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let target = llem_bin()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_owned();
        let path = target.join("gpu-bundle-test");
        let (code, stdout, stderr) = output(
            Command::new("bash")
                .arg(workspace_root().join("tests/gpu/bundle.sh"))
                .args(["--profile", "debug", "--no-build", "--no-zeus", "--out"])
                .arg(&path)
                .env("CARGO_TARGET_DIR", &target)
                // A debug binary is far bigger than the release one the limit is for.
                .env("LIMIT_MIB", "1024"),
        );
        assert_eq!(code, 0, "bundle.sh failed:\n{stdout}\n{stderr}");
        // It says how big the bundle is, against the device tool's limit.
        assert!(
            stdout.contains("MiB") && stdout.contains("the device tool carries 64 MiB"),
            "{stdout}"
        );
        path
    })
}

struct Run {
    code: i32,
    log: String,
    results: Value,
    _dir: tempfile::TempDir,
}

/// `run.sh ARGS` with the fakes in place; `tweak` adjusts the command.
fn run_sh(args: &[&str], tweak: impl FnOnce(&mut Command, &Path)) -> Run {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let root = workspace_root();
    let libs = dir.path().join("lib");
    std::fs::create_dir_all(&libs).unwrap();
    build_c_library("fake_nvml_timed.c", "libnvidia-ml.so.1", &libs);
    // `python3` on PATH is the venv's (pynvml), then the stand-in nvidia-smi.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // A wrapper, not a symlink: Python finds its venv (pyvenv.cfg) from the
    // path it was started by, so a link elsewhere would lose the venv's pynvml.
    let wrapper = bin.join("python3");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", python.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        root.join("tests/fixtures/gpu/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut pythonpath = root.join("tests/fixtures/gpu").display().to_string();
    if let Ok(more) = std::env::var("PYTHONPATH") {
        pythonpath = format!("{pythonpath}:{more}");
    }
    let schedule = dir.path().join("power-schedule.txt");
    std::fs::write(&schedule, "").unwrap();
    let out = dir.path().join("out");
    let mut command = Command::new("bash");
    command
        .arg(root.join("tests/gpu/run.sh"))
        .args(args)
        .env("PATH", path)
        .env("PYTHONPATH", pythonpath)
        .env("LD_LIBRARY_PATH", &libs)
        .env("FAKE_NVML_SCHEDULE", &schedule)
        .env("FAKE_NVML_REFRESH_MS", REFRESH_MS.to_string())
        .env("OUT", &out)
        .env("LLEM_GPU_BUNDLE", bundle())
        .env("LLEM_CACHE_DIR", dir.path().join("cache"))
        // The offline-overhead step needs the real torch, which the stand-in
        // replaces here; tests/bench_offline.rs runs its script on the CPU.
        .env("GPU_OFFLINE", "0")
        .env_remove("LLEM_LOG");
    tweak(&mut command, dir.path());
    let (code, stdout, stderr) = output(&mut command);
    let log = format!("{stdout}\n{stderr}");
    let text = std::fs::read_to_string(out.join("results.json"))
        .unwrap_or_else(|e| panic!("no results.json ({e}); exit {code}:\n{log}"));
    let results = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Run {
        code,
        log,
        results,
        _dir: dir,
    }
}

/// Short phases: the chain, not the figures of a real GPU.
const SHORT: &[&str] = &[
    "--idle-s",
    "3",
    "--warmup-s",
    "1",
    "--load-s",
    "4",
    "--settle-s",
    "0.5",
    "--pad-s",
    "1",
    "--refresh-probe-s",
    "1",
    "--interval",
    "50ms",
    "--size",
    "64",
    "--batch",
    "4",
];

#[test]
fn the_bundle_holds_only_what_runs_on_the_gpu_machine() {
    let mut files: Vec<String> = walk(bundle())
        .iter()
        .map(|p| p.strip_prefix(bundle()).unwrap().display().to_string())
        .collect();
    files.sort();
    // energy-nvml for the validation; the backend and dataset the
    // offline-overhead step runs (README: "The offline-overhead step").
    assert_eq!(
        files,
        [
            "MANIFEST.txt",
            "llem",
            "plugins/backend-pytorch.wasm",
            "plugins/dataset-jsonl.wasm",
            "plugins/energy-nvml.so"
        ]
    );
    let manifest = std::fs::read_to_string(bundle().join("MANIFEST.txt")).unwrap();
    assert!(manifest.contains("profile debug"), "{manifest}");
    assert!(manifest.contains("./plugins/energy-nvml.so"), "{manifest}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_full_run_on_the_fakes_agrees_with_nvml_on_both_windows() {
    let run = run_sh(SHORT, |_, _| {});
    let r = &run.results;
    // Zeus is not bundled (--no-zeus): llem within the goal of NVML, Zeus half unchecked.
    assert_eq!(run.code, 3, "{}\n{r:#}", run.log);
    assert_eq!(r["exit_status"], 3);
    let windows = r["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2, "{r:#}");
    for (w, name, watts) in [
        (&windows[0], "idle", IDLE_W),
        (&windows[1], "loaded", LOADED_W),
    ] {
        assert_eq!(w["name"], name);
        let seconds = w["duration_s"].as_f64().unwrap();
        let nvml = w["nvml_j"].as_f64().unwrap();
        // The fake's power, integrated independently: watts × window length.
        let expected = watts * seconds;
        assert!(
            (nvml - expected).abs() <= 0.01 * expected,
            "{name}: NVML {nvml} J, fake power gives {expected} J"
        );
        // Steady power on both sides of each edge: llem's interpolated edges
        // agree with the counter on the idle window too (it was +1 to +11 %
        // with a power step right after its end edge).
        let pct = w["llem_vs_nvml_pct"].as_f64().unwrap();
        assert!(pct.abs() <= 0.5, "{name}: llem vs NVML {pct} %\n{w:#}");
    }
    // The counter's refresh period, measured from distinct values read in a tight loop.
    let refresh = &r["refresh"];
    let median = refresh["median_ms"].as_f64().unwrap();
    assert!(
        (median - REFRESH_MS).abs() <= 1.0,
        "refresh median {median} ms, the fake refreshes every {REFRESH_MS} ms: {refresh}"
    );
    assert_eq!(r["meta"]["pad_s"], 1.0);
    // The `llem run` phases hook is marked as not run yet (TODO in validate.py).
    assert_eq!(r["llem_run"]["status"], "not run");
    assert!(run.log.contains("validate.py exited 3"), "{}", run.log);
    assert!(
        run.log
            .contains("offline-overhead step skipped (GPU_OFFLINE=0)"),
        "{}",
        run.log
    );
}

#[test]
fn without_the_nvml_library_the_run_exits_2_with_results() {
    let run = run_sh(SHORT, |c, _| {
        c.env("LD_LIBRARY_PATH", "/nonexistent");
    });
    assert_eq!(run.code, 2, "{}", run.log);
    assert_eq!(run.results["exit_status"], 2);
    let error = run.results["error"].as_str().unwrap();
    assert!(error.contains("NVML is not usable"), "{error}");
    assert!(!run.log.contains("Traceback"), "{}", run.log);
}

#[test]
fn a_run_that_cannot_fit_its_budget_exits_4_with_results() {
    let run = run_sh(SHORT, |c, _| {
        c.env("GPU_DEADLINE_S", "5");
    });
    assert_eq!(run.code, 4, "{}", run.log);
    assert_eq!(run.results["exit_status"], 4);
    let error = run.results["error"].as_str().unwrap();
    assert!(
        error.contains("out of time") && error.contains("5 s budget"),
        "{error}"
    );
}

#[test]
fn a_machine_without_a_gpu_exits_2_with_results() {
    let run = run_sh(SHORT, |c, _| {
        c.env("FAKE_NVIDIA_SMI_FAIL", "1");
    });
    assert_eq!(run.code, 2, "{}", run.log);
    assert_eq!(run.results["exit_status"], 2);
    assert!(
        run.results["error"]
            .as_str()
            .unwrap()
            .contains("nvidia-smi failed")
    );
}

#[test]
fn llem_without_a_figure_for_the_gpu_exits_2_with_results() {
    // A bundle whose plugin directory lacks energy-nvml: llem monitor has no
    // source. (A copy, not a link: llem also looks for plugins next to its
    // resolved path.)
    let run = run_sh(SHORT, |c, dir| {
        let empty = dir.join("empty-bundle");
        std::fs::create_dir_all(empty.join("plugins")).unwrap();
        std::fs::copy(bundle().join("llem"), empty.join("llem")).unwrap();
        c.env("LLEM_GPU_BUNDLE", &empty);
    });
    assert_eq!(run.code, 2, "{}", run.log);
    let error = run.results["error"].as_str().unwrap();
    assert!(error.contains("llem monitor"), "{error}");
}
