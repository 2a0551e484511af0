//! `--executor slurm` against a real Slurm: the study's batch script
//! (`llem::study::slurm::sbatch_script`) submitted as a job array, each task
//! writing `state/<N>.json` into the study directory, and Slurm's view of the
//! array (`task_states`) agreeing with `sacct` itself.
//!
//! CI starts a single-node cluster with `tests/slurm/start-slurm.sh` and sets
//! `LLEM_REQUIRE_SLURM=1`; elsewhere, without a reachable Slurm, these tests
//! print why and pass.
//!
//! The array tasks run a stand-in for `llem study run-task` (a shell script,
//! [`task_runner`]) that writes the slot's state file as the real one does.
//! To run the real thing instead, make [`task_runner`] return
//! `llem_integration_tests::llem_bin()` and let [`study_dir`] write a real
//! study (its study.toml and schedule) rather than an empty directory: the
//! script, the submission and the assertions stay as they are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use llem::study::slurm::{self, SlurmOptions, TaskState};

/// Whether a Slurm controller answers; `false` (with the reason printed)
/// means skip, unless `LLEM_REQUIRE_SLURM=1`, where it fails the test.
fn slurm_reachable() -> bool {
    let required = std::env::var("LLEM_REQUIRE_SLURM").is_ok_and(|v| v == "1");
    let why = match Command::new("sinfo")
        .args(["--noheader", "-o", "%T"])
        .output()
    {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!(
            "`sinfo` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("`sinfo` could not run: {e}"),
    };
    assert!(
        !required,
        "LLEM_REQUIRE_SLURM=1 but Slurm is not reachable ({why}); start it with `bash tests/slurm/start-slurm.sh`"
    );
    eprintln!("skipping: no Slurm here ({why}); set LLEM_REQUIRE_SLURM=1 to make this a failure");
    false
}

/// The program each array task runs as `<exe> study run-task <DIR> --task
/// <N>`: for now a stand-in that checks its arguments and writes
/// `state/<N>.json` (complete) the way `llem study run-task` does.
fn task_runner(dir: &Path) -> PathBuf {
    let exe = dir.join("llem stand-in");
    std::fs::write(
        &exe,
        r#"#!/bin/bash
set -euo pipefail
[ "$#" -eq 5 ] && [ "$1" = study ] && [ "$2" = run-task ] && [ "$4" = --task ] || {
    echo "unexpected arguments: $*" >&2; exit 2; }
study=$3 n=$5
[ "$n" = "$SLURM_ARRAY_TASK_ID" ] || { echo "task $n is not SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_ID" >&2; exit 2; }
[ "$PWD" = "$study" ] || { echo "ran in $PWD, not in the study directory" >&2; exit 2; }
mkdir -p "$study/state"
printf '{"index":%d,"state":"complete","run_dir":null,"slurm_job":"%s_%d"}\n' \
    "$n" "$SLURM_ARRAY_JOB_ID" "$n" > "$study/state/$n.json.tmp"
mv "$study/state/$n.json.tmp" "$study/state/$n.json"
echo "task $n done on $(hostname)"
"#,
    )
    .expect("writing the stand-in llem");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the stand-in llem");
    exe
}

/// A study directory whose path has a space and a quote (the batch script
/// must carry it to sbatch and bash intact).
fn study_dir(root: &Path) -> PathBuf {
    let dir = root.join("study 'one'");
    std::fs::create_dir_all(dir.join("state")).expect("creating the study directory");
    dir
}

/// Cancels the array if the test ends before it does.
struct Cancel(String);
impl Drop for Cancel {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(&self.0).status();
    }
}

/// `sacct`'s own record of the array's tasks: `(task, state, exit code)`
/// from `sacct -X` (allocations only: no `.batch` steps), sorted.
fn sacct_direct(job: &str) -> Vec<(usize, String, String)> {
    let out = Command::new("sacct")
        .args(["-X", "--parsable2", "--noheader", "-j", job])
        .args(["-o", "JobID,State,ExitCode"])
        .output()
        .expect("running sacct");
    assert!(out.status.success(), "sacct: {out:?}");
    let mut rows: Vec<_> = String::from_utf8(out.stdout)
        .expect("sacct output is UTF-8")
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let task = f[0]
                .strip_prefix(&format!("{job}_"))
                .and_then(|t| t.parse().ok())
                .unwrap_or(usize::MAX);
            (task, f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    rows.sort();
    rows
}

/// Submit `tasks` of a fresh study and wait (at most 120 s) until both
/// `task_states` and `sacct` see every one of them finished.
fn run_array(
    tasks: &[usize],
    max_parallel: Option<u32>,
) -> (tempfile::TempDir, PathBuf, String, Vec<TaskState>) {
    let root = tempfile::tempdir().expect("temp dir");
    let study = study_dir(root.path());
    let exe = task_runner(root.path());
    let opts = SlurmOptions {
        time: Some("5".into()),
        max_parallel,
        // Any extra line reaches sbatch as written.
        extra: vec!["--comment=llem-slurm-test".into()],
        ..SlurmOptions::default()
    };
    let script =
        slurm::sbatch_script(&opts, &exe, &study, "llem-test-study").expect("sbatch_script");
    let script = slurm::write_script(&study, &script).expect("write_script");
    let job = slurm::submit(&script, tasks, max_parallel).expect("sbatch");
    let cancel = Cancel(job.clone());

    let deadline = Instant::now() + Duration::from_secs(120);
    let states = loop {
        let states = slurm::task_states(&job).expect("task_states");
        let sacct = sacct_direct(&job);
        if states.len() == tasks.len()
            && states.iter().all(TaskState::is_finished)
            && sacct.len() == tasks.len()
            && sacct
                .iter()
                .all(|(_, s, _)| s != "PENDING" && s != "RUNNING")
        {
            break states;
        }
        assert!(
            Instant::now() < deadline,
            "array {job} not finished after 120 s: task_states {states:?}, sacct {sacct:?}, slurm/: {:?}",
            std::fs::read_dir(study.join("slurm"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    std::mem::forget(cancel);
    (root, study, job, states)
}

/// Every task of `tasks` completed: its state file, its Slurm output file,
/// and `task_states` saying what `sacct` says.
fn assert_completed(study: &Path, job: &str, tasks: &[usize], states: &[TaskState]) {
    for &n in tasks {
        let log = study.join(format!("slurm/{job}_{n}.out"));
        let log =
            std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let path = study.join(format!("state/{n}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; task output: {log}", path.display()));
        let state: serde_json::Value = serde_json::from_str(&text).expect("state file is JSON");
        assert_eq!(state["index"], n, "{text}");
        assert_eq!(state["state"], "complete", "{text}");
        assert_eq!(state["slurm_job"], format!("{job}_{n}"), "{text}");
        assert!(log.contains(&format!("task {n} done")), "{log}");
    }
    assert_eq!(
        states
            .iter()
            .map(|t| (t.task, t.state.as_str(), t.exit_code))
            .collect::<Vec<_>>(),
        tasks
            .iter()
            .map(|&n| (n, "COMPLETED", Some(0)))
            .collect::<Vec<_>>()
    );
    assert!(states.iter().all(|t| t.elapsed_s.is_some()), "{states:?}");
    // `sacct` itself, read here without llem's parser.
    let direct = sacct_direct(job);
    assert_eq!(
        direct,
        tasks
            .iter()
            .map(|&n| (n, "COMPLETED".to_owned(), "0:0".to_owned()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_four_task_array_completes_and_sacct_agrees() {
    if !slurm_reachable() {
        return;
    }
    let tasks = [0, 1, 2, 3];
    let (_root, study, job, states) = run_array(&tasks, None);
    assert_completed(&study, &job, &tasks, &states);
    // Only the slots asked for ran.
    let mut files: Vec<_> = std::fs::read_dir(study.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["0.json", "1.json", "2.json", "3.json"]);
}

#[test]
fn a_resubmission_runs_only_the_slots_named() {
    if !slurm_reachable() {
        return;
    }
    // Slots 1 and 4 done before: the array is `--array=0,2-3,5%2`.
    let tasks = [0, 2, 3, 5];
    let (_root, study, job, states) = run_array(&tasks, Some(2));
    assert_completed(&study, &job, &tasks, &states);
    assert!(!study.join("state/1.json").exists());
    assert!(!study.join("state/4.json").exists());
}
