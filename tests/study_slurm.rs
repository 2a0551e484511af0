//! `llem run study.toml --executor slurm` against a real single-node Slurm
//! (`tests/slurm/start-slurm.sh`; CI starts it and sets LLEM_REQUIRE_SLURM=1):
//! a 4-run study goes in as one job array whose tasks run the real
//! `llem study run-task`, each writing into the shared study directory; the
//! results merge into study.json; `llem study status` agrees with `sacct`
//! asked directly; submitting again runs nothing twice.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, output, plugin_dir, wasm_artifact};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether Slurm answers; fails instead of skipping under LLEM_REQUIRE_SLURM=1.
fn slurm_here() -> bool {
    let ok = Command::new("sinfo")
        .arg("--noheader")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("LLEM_REQUIRE_SLURM").as_deref() != Ok("1"),
            "LLEM_REQUIRE_SLURM=1 but `sinfo` fails: start Slurm with `bash tests/slurm/start-slurm.sh`"
        );
        eprintln!(
            "skipping: no Slurm here (`sinfo` fails); LLEM_REQUIRE_SLURM=1 makes this a failure"
        );
    }
    ok
}

/// `sacct`'s own word on each array task of `job`: task → state.
fn sacct(job: &str) -> Vec<(u64, String)> {
    let out = Command::new("sacct")
        .args([
            "-X",
            "--parsable2",
            "--noheader",
            "-j",
            job,
            "-o",
            "JobID,State",
        ])
        .output()
        .unwrap();
    let mut rows: Vec<(u64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, state) = l.split_once('|')?;
            let task = id.strip_prefix(&format!("{job}_"))?.parse().ok()?;
            Some((task, state.to_owned()))
        })
        .collect();
    rows.sort();
    rows
}

fn status(plugins: &Path, dir: &Path) -> Value {
    let (code, stdout, stderr) = output(llem(plugins).args(["study", "status", "--json"]).arg(dir));
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn a_study_runs_as_a_slurm_array_merges_and_status_agrees_with_sacct() {
    if !slurm_here() {
        return;
    }
    let plugins = plugin_dir(&[wasm_artifact("energy-fixture")]);
    let work = tempfile::tempdir().unwrap();
    let text = "[study]\nname = \"on-slurm\"\ncycles = 2\n\n\
        [experiment]\nduration_s = 0.3\nsample_interval_ms = 20\noutput_dir = \"out\"\n\n\
        [measurement]\nbaseline = \"off\"\n\n[plugins.fixture]\n\n\
        [sweep]\n\"fixture.step_uj\" = [1000, 3000]\n";
    let study = work.path().join("study.toml");
    std::fs::write(&study, text).unwrap();
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .current_dir(work.path())
            .args(["run", "--executor", "slurm", "--slurm-time", "00:05:00"])
            .arg(&study),
    );
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    assert!(stderr.contains("submitted job "), "{stderr}");
    assert!(stderr.contains("4 of 4 runs as an array (0-3)"), "{stderr}");
    let dir = work.path().join("out/on-slurm");
    let submissions: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("slurm.json")).unwrap()).unwrap();
    let job = submissions["submissions"][0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Wait until every task ran and Slurm's accounting has them.
    let started = Instant::now();
    let (status, from_sacct) = loop {
        let s = status(plugins.path(), &dir);
        let from_sacct = sacct(&job);
        let finished = from_sacct.len() == 4
            && from_sacct
                .iter()
                .all(|(_, st)| st != "PENDING" && st != "RUNNING");
        // Both views settle: sacct lags the controller by a few seconds, and
        // llem's status reads it at its own moment.
        let status_has_states = s["slots"]
            .as_array()
            .is_some_and(|slots| slots.iter().all(|slot| slot["slurm_state"].is_string()));
        if s["counts"]["complete"] == 4 && finished && status_has_states {
            break (s, from_sacct);
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the array did not finish: {s}\nsacct: {from_sacct:?}\nlogs: {:?}",
            std::fs::read_dir(dir.join("slurm"))
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // llem study status says what sacct says, task by task.
    for (task, state) in &from_sacct {
        assert_eq!(state, "COMPLETED", "task {task}");
        let slot = &status["slots"][*task as usize];
        assert_eq!(slot["slurm_state"].as_str(), Some(state.as_str()), "{slot}");
        assert_eq!(
            slot["slurm_job"].as_str(),
            Some(format!("{job}_{task}").as_str())
        );
        assert_eq!(slot["status"], "complete");
    }
    // Each task recorded itself, and the merge holds all four runs.
    for i in 0..4 {
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("state/{i:04}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            state["slurm_job"].as_str(),
            Some(format!("{job}_{i}").as_str())
        );
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("study.json")).unwrap()).unwrap();
    assert_eq!(doc["runs"]["complete"], 4, "{doc}");
    for config in doc["configs"].as_array().unwrap() {
        assert_eq!(config["measured_runs"], 2, "{config}");
    }

    // Submitting again: nothing is left to run, nothing is submitted.
    let (code, stdout, stderr) = output(
        llem(plugins.path())
            .current_dir(work.path())
            .args(["run", "--executor", "slurm"])
            .arg(&study),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("nothing to submit"), "{stderr}\n{stdout}");
}
