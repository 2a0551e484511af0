//! `bench/offline_overhead.py` end to end on the tiny model, CPU: the script a
//! GPU session runs blind through `tests/gpu/run.sh` (issue #12 goal 5) must
//! not rot between lent GPUs. Every arm runs once on a few requests; the
//! script itself refuses a run whose requests.jsonl does not hold exactly the
//! requested tokens, and this test checks what it reports against the run
//! directories' own figures where it can.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    llem_bin, output, plugin_dir, venv_python, wasm_artifact, workspace_root,
};
use serde_json::Value;
use std::process::Command;

#[test]
fn the_offline_overhead_bench_runs_every_arm_and_reports_what_it_measured() {
    let plugins = plugin_dir(&[wasm_artifact("energy-fixture")]);
    let work = tempfile::tempdir().unwrap();
    let json = work.path().join("overhead.json");
    let root = workspace_root();
    let (code, stdout, stderr) = output(
        Command::new(venv_python())
            .arg(root.join("bench/offline_overhead.py"))
            .arg("--llem")
            .arg(llem_bin())
            .arg("--plugins")
            .arg(plugins.path())
            .arg("--python")
            .arg(venv_python())
            .args([
                "--energy", "fixture", "--device", "cpu", "--dtype", "float32",
            ])
            .args(["--sizes", "tiny", "--requests", "8", "--batch-size", "4"])
            .args(["--max-tokens", "8", "--repeat", "1", "--alone", "--json"])
            .arg(&json)
            .env("NO_COLOR", "1")
            .env_remove("LLEM_LOG"),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["energy"], "fixture");
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report:#}");
    let row = &rows[0];
    assert_eq!(row["size"], "tiny");
    assert_eq!(row["device"], "cpu", "{row:#}");
    let bare = row["bare_tokens_per_s"].as_f64().unwrap();
    let llem = row["llem_tokens_per_s"].as_f64().unwrap();
    let alone = row["alone_tokens_per_s"].as_f64().unwrap();
    for (name, value) in [("bare", bare), ("llem", llem), ("alone", alone)] {
        assert!(value > 0.0, "{name} tokens/s {value}\n{row:#}");
    }
    // One run each: the medians are the runs, and the overhead is their ratio.
    assert_eq!(row["bare_runs"][0].as_f64().unwrap(), bare);
    assert_eq!(row["llem_runs"][0].as_f64().unwrap(), llem);
    let overhead = row["overhead_pct"].as_f64().unwrap();
    assert!(
        (overhead - (1.0 - llem / bare) * 100.0).abs() < 1e-9,
        "{overhead} vs {bare} / {llem}"
    );
    // The llem arm's run measured what it says: a run llem itself calls
    // failed is not a figure to compare.
    let status = row["llem_status"][0].as_str().unwrap();
    assert!(
        status == "complete" || status == "degraded",
        "llem's run was {status}\n{row:#}"
    );
    // The table a GPU session pastes into docs/performance.md.
    assert!(
        stdout.contains("| tiny (2×64) |") && stdout.contains("llem's worker alone"),
        "{stdout}"
    );
}
