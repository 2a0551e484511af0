//! Running a study on Slurm: one job array, one array task per slot of the
//! study's schedule. Slurm does the placing; llem only writes the batch
//! script, submits it with `sbatch --array=<slots>` and reads Slurm's view of
//! the array back from `sacct` (and `squeue` for what `sacct` does not know
//! yet).
//!
//! Each array task runs `"<llem>" study run-task "<STUDY_DIR>" --task
//! $SLURM_ARRAY_TASK_ID`, which writes `state/<N>.json` in the (shared) study
//! directory; Slurm's own logs of task N go to `slurm/<jobid>_<N>.out`.
//! Resubmission submits the slots that are not complete yet: the `--array`
//! list names them (`--array=0,2,5%4`), so the script itself never changes.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::{Deserialize, Serialize};

/// Where the batch script lives inside the study directory.
pub const SCRIPT_PATH: &str = "slurm/submit.sbatch";
/// The directory, inside the study directory, for the script and Slurm's
/// per-task output files.
pub const SLURM_DIR: &str = "slurm";

/// What `--executor slurm` asks Slurm for, per array task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmOptions {
    /// `--partition`; the cluster's default partition when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--time`, in any form sbatch accepts (`30`, `1:00:00`, `1-00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--gres`, e.g. `gpu:1` or `gpu:a100:2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. `32G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Raw `#SBATCH` lines, written as given (`--qos=high` or
    /// `#SBATCH --qos=high`: the `#SBATCH ` prefix is added when missing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// At most this many array tasks at once (`--array=...%N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
}

/// Slurm's state of one array task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// The array index: the study's slot.
    pub task: usize,
    /// Slurm's state word: `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`,
    /// `CANCELLED`, `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`, ...
    /// (`CANCELLED by 0` is reported as `CANCELLED`).
    pub state: String,
    /// The batch script's exit code (the first half of sacct's `3:0`) once
    /// the task has ended; `None` before, and where only squeue knows it.
    pub exit_code: Option<i32>,
    /// Seconds the task ran (sacct's `ElapsedRaw`); `None` where unknown.
    pub elapsed_s: Option<f64>,
}

impl TaskState {
    /// Whether Slurm is done with the task (it will not run again unless
    /// resubmitted).
    pub fn is_finished(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "REQUEUED"
                | "RESIZING"
                | "SUSPENDED"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUE_FED"
                | "REQUEUE_HOLD"
                | "RESV_DEL_HOLD"
                | "SIGNALING"
                | "STAGE_OUT"
                | "STOPPED"
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "{tool} not found: --executor slurm needs Slurm's client tools (sbatch, sacct, squeue) on PATH"
    )]
    NotFound { tool: &'static str },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` answered {output:?}, which is not a job id")]
    BadJobId { command: String, output: String },
    #[error("nothing to submit: every slot of the study is already done")]
    NoTasks,
    #[error("{what} {value:?} cannot be written into a batch script: {why}")]
    Unrepresentable {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The batch script for a study: `#SBATCH` options from `opts`, Slurm's
/// output at `<study_dir>/slurm/%A_%a.out`, and one `llem study run-task`
/// per array task. The `--array` list is not in the script: [`submit`]
/// passes it, so resubmission reuses the same script.
///
/// Paths are quoted for both sbatch (which reads `#SBATCH` arguments with
/// single or double quotes) and bash; a path that neither can carry (a
/// newline, or both kinds of quote in the study directory) is an error, as
/// is a study directory with a backslash (Slurm then takes the output
/// pattern literally).
pub fn sbatch_script(
    opts: &SlurmOptions,
    llem_exe: &Path,
    study_dir: &Path,
    job_name: &str,
) -> Result<String, SlurmError> {
    let exe = utf8("the llem executable", llem_exe)?;
    let dir = utf8("the study directory", study_dir)?;
    no_newline("the llem executable", exe)?;
    no_newline("the study directory", dir)?;
    if dir.contains('\\') {
        return Err(SlurmError::Unrepresentable {
            what: "the study directory",
            value: dir.to_owned(),
            why: "Slurm does not expand %A/%a in an output path with a backslash",
        });
    }
    // `%` is Slurm's pattern character in --output: a literal one is `%%`.
    let output = format!(
        "{}/{SLURM_DIR}/%A_%a.out",
        dir.trim_end_matches('/').replace('%', "%%")
    );
    let output = sbatch_quote("the study directory", &output)?;
    let chdir = sbatch_quote("the study directory", dir)?;

    let mut s = String::from("#!/bin/bash\n");
    s.push_str("# Written by llem for --executor slurm: one array task per slot of the\n");
    s.push_str("# study's schedule; sbatch's --array names the slots to run.\n");
    fn directive(s: &mut String, option: &'static str, value: &str) -> Result<(), SlurmError> {
        no_newline("an sbatch option", value)?;
        let _ = writeln!(s, "#SBATCH --{option}={}", sbatch_quote(option, value)?);
        Ok(())
    }
    directive(&mut s, "job-name", &job_name_of(job_name))?;
    // An already quoted value: written as is.
    let _ = writeln!(s, "#SBATCH --output={output}");
    let _ = writeln!(s, "#SBATCH --error={output}");
    // Tasks run in the study directory, not wherever sbatch was called.
    let _ = writeln!(s, "#SBATCH --chdir={chdir}");
    directive(&mut s, "ntasks", "1")?;
    if let Some(v) = &opts.partition {
        directive(&mut s, "partition", v)?;
    }
    if let Some(v) = &opts.account {
        directive(&mut s, "account", v)?;
    }
    if let Some(v) = &opts.time {
        directive(&mut s, "time", v)?;
    }
    if let Some(v) = &opts.gres {
        directive(&mut s, "gres", v)?;
    }
    if let Some(v) = opts.cpus_per_task {
        directive(&mut s, "cpus-per-task", &v.to_string())?;
    }
    if let Some(v) = &opts.mem {
        directive(&mut s, "mem", v)?;
    }
    for line in &opts.extra {
        no_newline("an extra #SBATCH line", line)?;
        let line = line.trim();
        if line.starts_with("#SBATCH") {
            let _ = writeln!(s, "{line}");
        } else {
            let _ = writeln!(s, "#SBATCH {line}");
        }
    }
    s.push_str("set -euo pipefail\n");
    let _ = writeln!(
        s,
        "exec {} study run-task {} --task \"$SLURM_ARRAY_TASK_ID\"",
        bash_quote(exe),
        bash_quote(dir)
    );
    Ok(s)
}

/// Write the batch script to `<study_dir>/slurm/submit.sbatch` (creating
/// `slurm/`, where Slurm writes each task's output: it must exist before a
/// task starts) and return its path.
pub fn write_script(study_dir: &Path, script: &str) -> Result<PathBuf, SlurmError> {
    let dir = study_dir.join(SLURM_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| SlurmError::Io {
        path: dir.clone(),
        source,
    })?;
    let path = study_dir.join(SCRIPT_PATH);
    std::fs::write(&path, script).map_err(|source| SlurmError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// `--array`'s value for these slots: runs of consecutive slots as ranges,
/// then `%N` for `max_parallel` (`[0,1,2,5]`, `Some(4)` → `0-2,5%4`).
pub fn array_spec(tasks: &[usize], max_parallel: Option<u32>) -> String {
    let mut sorted = tasks.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            end = sorted[i + 1];
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    let mut spec = parts.join(",");
    if let Some(n) = max_parallel {
        let _ = write!(spec, "%{n}");
    }
    spec
}

/// Submit the batch script as an array of `tasks` (the study's slots still to
/// run) with `sbatch --parsable --array=...`; returns the array's job id.
pub fn submit(
    script: &Path,
    tasks: &[usize],
    max_parallel: Option<u32>,
) -> Result<String, SlurmError> {
    if tasks.is_empty() {
        return Err(SlurmError::NoTasks);
    }
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable")
        .arg(format!("--array={}", array_spec(tasks, max_parallel)))
        .arg(script);
    let (command, out) = run("sbatch", &mut cmd)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `--parsable`: "<jobid>" or "<jobid>;<cluster>".
    let id = stdout.trim().split(';').next().unwrap_or_default().trim();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlurmError::BadJobId {
            command,
            output: stdout.trim().to_owned(),
        });
    }
    Ok(id.to_owned())
}

/// Slurm's state of each task of the array `job_id`, by task: `sacct`'s
/// record, with `squeue`'s current view for tasks `sacct` does not know yet
/// or still shows as pending or running (the controller is ahead of the
/// accounting database for a few seconds). On a cluster without accounting
/// (`sacct` fails) `squeue` alone answers, which knows unfinished tasks
/// only; when it knows none either, sacct's error is returned.
pub fn task_states(job_id: &str) -> Result<Vec<TaskState>, SlurmError> {
    let mut cmd = Command::new("sacct");
    cmd.args(["--parsable2", "--noheader", "-j", job_id])
        .args(["-o", "JobID,State,ExitCode,ElapsedRaw"]);
    let sacct = run("sacct", &mut cmd).map(|(_, out)| parse_sacct(job_id, &lossy(&out.stdout)));

    let mut cmd = Command::new("squeue");
    cmd.args(["--noheader", "--array", "-j", job_id, "-o", "%i|%T"]);
    let squeue = match run("squeue", &mut cmd) {
        Ok((_, out)) => Ok(parse_squeue(job_id, &lossy(&out.stdout))),
        // squeue exits 1 ("Invalid job id specified") for a job it no longer
        // holds: nothing pending or running.
        Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    };
    match (sacct, squeue) {
        (Ok(a), Ok(q)) => Ok(merge(a, q)),
        // squeue failing: sacct is the record.
        (Ok(a), Err(_)) => Ok(a),
        // No accounting on this cluster: what squeue knows, if anything.
        (Err(_), Ok(q)) if !q.is_empty() => Ok(merge(Vec::new(), q)),
        (Err(e), _) => Err(e),
    }
}

/// Parse `sacct --parsable2 --noheader -o JobID,State,ExitCode,ElapsedRaw`
/// for the array `job_id`: array task lines (`123_4`), pending ranges
/// (`123_[5-7,9%2]`) expanded; job steps (`123_4.batch`, `.extern`, `.0`)
/// and other jobs' lines left out.
pub fn parse_sacct(job_id: &str, out: &str) -> Vec<TaskState> {
    let mut tasks = Vec::new();
    for line in out.lines() {
        let mut fields = line.split('|');
        let (Some(id), Some(state)) = (fields.next(), fields.next()) else {
            continue;
        };
        let exit_code = fields
            .next()
            .and_then(|e| e.split(':').next())
            .and_then(|e| e.trim().parse().ok());
        let elapsed_s = fields
            .next()
            .and_then(|e| e.trim().parse::<u64>().ok())
            .map(|s| s as f64);
        for task in array_tasks(job_id, id) {
            let mut t = TaskState {
                task,
                state: state_word(state),
                exit_code,
                elapsed_s,
            };
            // sacct prints 0:0 for tasks that have not ended.
            if !t.is_finished() {
                t.exit_code = None;
            }
            tasks.push(t);
        }
    }
    tasks
}

/// Parse `squeue --noheader --array -j <job> -o '%i|%T'` (one line per task,
/// `123_4|RUNNING`; a pending range `123_[5-7]` is expanded too).
pub fn parse_squeue(job_id: &str, out: &str) -> Vec<TaskState> {
    let mut tasks = Vec::new();
    for line in out.lines() {
        let Some((id, state)) = line.split_once('|') else {
            continue;
        };
        for task in array_tasks(job_id, id.trim()) {
            tasks.push(TaskState {
                task,
                state: state_word(state),
                exit_code: None,
                elapsed_s: None,
            });
        }
    }
    tasks
}

/// One state per task: sacct's, unless sacct lacks the task or still has it
/// unfinished while squeue knows it (then squeue's, fresher); sorted by
/// task.
fn merge(sacct: Vec<TaskState>, squeue: Vec<TaskState>) -> Vec<TaskState> {
    let mut by_task = std::collections::BTreeMap::new();
    for t in sacct {
        // A task listed both in a pending range and on its own line (a
        // moment after it started): the individual line wins.
        match by_task.get(&t.task) {
            Some(TaskState { state, .. }) if state != "PENDING" && t.state == "PENDING" => {}
            _ => {
                by_task.insert(t.task, t);
            }
        }
    }
    for q in squeue {
        match by_task.get(&q.task) {
            Some(a) if a.is_finished() => {}
            Some(a) => {
                let merged = TaskState {
                    state: q.state,
                    ..a.clone()
                };
                by_task.insert(q.task, merged);
            }
            None => {
                by_task.insert(q.task, q);
            }
        }
    }
    by_task.into_values().collect()
}

/// The array indices a JobID field names for the array `job_id`: `123_4` →
/// [4]; `123_[0-3,7%2]` → [0,1,2,3,7]; steps and other jobs → [].
fn array_tasks(job_id: &str, id: &str) -> Vec<usize> {
    let Some(rest) = id.strip_prefix(job_id).and_then(|r| r.strip_prefix('_')) else {
        return Vec::new();
    };
    if let Some(list) = rest.strip_prefix('[') {
        let Some(list) = list.strip_suffix(']') else {
            return Vec::new();
        };
        let list = list.split('%').next().unwrap_or_default();
        let mut tasks = Vec::new();
        for part in list.split(',') {
            // `0-9:2`: a step.
            let (range, step) = match part.split_once(':') {
                Some((r, s)) => (r, s.parse().unwrap_or(1).max(1)),
                None => (part, 1),
            };
            match range.split_once('-') {
                Some((a, b)) => {
                    if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                        tasks.extend((a..=b).step_by(step));
                    }
                }
                None => tasks.extend(range.parse::<usize>().ok()),
            }
        }
        tasks
    } else {
        rest.parse().into_iter().collect()
    }
}

/// `CANCELLED by 0` → `CANCELLED`.
fn state_word(state: &str) -> String {
    state
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run a Slurm client tool; its output when it exits 0.
fn run(tool: &'static str, cmd: &mut Command) -> Result<(String, Output), SlurmError> {
    let command = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SlurmError::NotFound { tool }),
        Err(source) => return Err(SlurmError::Spawn { command, source }),
    };
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command,
            status: out.status.to_string(),
            stderr: lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok((command, out))
}

fn utf8<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, SlurmError> {
    path.to_str().ok_or_else(|| SlurmError::Unrepresentable {
        what,
        value: path.to_string_lossy().into_owned(),
        why: "not UTF-8",
    })
}

fn no_newline(what: &'static str, value: &str) -> Result<(), SlurmError> {
    if value.contains(['\n', '\r']) {
        return Err(SlurmError::Unrepresentable {
            what,
            value: value.to_owned(),
            why: "it contains a line break",
        });
    }
    Ok(())
}

/// Quote an `#SBATCH` argument for sbatch, which keeps quoted text together
/// and drops the quotes (no escapes): bare when it needs nothing, else in
/// double quotes, else (it has a double quote) in single quotes.
fn sbatch_quote(what: &'static str, value: &str) -> Result<String, SlurmError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:,%=+@".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        Ok(value.to_owned())
    } else if !value.contains('"') {
        Ok(format!("\"{value}\""))
    } else if !value.contains('\'') {
        Ok(format!("'{value}'"))
    } else {
        Err(SlurmError::Unrepresentable {
            what,
            value: value.to_owned(),
            why: "sbatch cannot read an #SBATCH argument with both ' and \"",
        })
    }
}

/// Single-quote for bash: `it's` → `'it'\''s'`.
fn bash_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// A job name sbatch and squeue show well: printable, no quotes, no blanks.
fn job_name_of(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "llem-study".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a real single-node Slurm 22.05.8 (Debian 12, slurmdbd +
    // MariaDB as tests/slurm/start-slurm.sh sets it up):
    // `sbatch --array=0-3,7%2 --wrap 'sleep 2; [ $SLURM_ARRAY_TASK_ID != 2 ] || exit 3'`.

    /// `sacct --parsable2 --noheader -j 5 -o JobID,State,ExitCode,ElapsedRaw`
    /// while tasks 0 and 1 had finished and 2 and 3 were starting.
    const SACCT_PARTIAL: &str = "\
5_0|COMPLETED|0:0|2
5_0.batch|COMPLETED|0:0|2
5_1|COMPLETED|0:0|2
5_1.batch|COMPLETED|0:0|2
5_[2-3,7%2]|PENDING|0:0|0
";
    /// `squeue --noheader --array -j 5 -o '%i|%T'` at the same moment.
    const SQUEUE_PARTIAL: &str = "\
5_7|PENDING
5_3|RUNNING
5_2|RUNNING
";
    /// The same sacct once the array had ended (task 2 exits 3).
    const SACCT_DONE: &str = "\
5_0|COMPLETED|0:0|2
5_0.batch|COMPLETED|0:0|2
5_1|COMPLETED|0:0|2
5_1.batch|COMPLETED|0:0|2
5_2|FAILED|3:0|2
5_2.batch|FAILED|3:0|2
5_3|COMPLETED|0:0|2
5_3.batch|COMPLETED|0:0|2
5_7|COMPLETED|0:0|2
5_7.batch|COMPLETED|0:0|2
";
    /// `sbatch --array=0-5%2 --wrap 'sleep 30'`, `scancel 10_1`, `scancel
    /// 10_4` (pending: sacct never lists it), then sacct.
    const SACCT_CANCELLED: &str = "\
10_0|RUNNING|0:0|4
10_0.batch|RUNNING|0:0|4
10_1|CANCELLED by 0|0:0|2
10_1.batch|CANCELLED|0:15|2
10_2|RUNNING|0:0|2
10_2.batch|RUNNING|0:0|2
10_[3,5%2]|PENDING|0:0|0
";
    /// `squeue --noheader --array -j 10 -o '%i|%T'` two seconds after
    /// submission, before sacct knew any task (sacct printed nothing).
    const SQUEUE_EARLY: &str = "\
10_2|PENDING
10_3|PENDING
10_4|PENDING
10_5|PENDING
10_1|RUNNING
10_0|RUNNING
";

    fn states(v: &[TaskState]) -> Vec<(usize, &str, Option<i32>)> {
        v.iter()
            .map(|t| (t.task, t.state.as_str(), t.exit_code))
            .collect()
    }

    #[test]
    fn sacct_tasks_steps_dropped_pending_range_expanded() {
        let t = parse_sacct("5", SACCT_PARTIAL);
        assert_eq!(
            states(&t),
            [
                (0, "COMPLETED", Some(0)),
                (1, "COMPLETED", Some(0)),
                (2, "PENDING", None),
                (3, "PENDING", None),
                (7, "PENDING", None),
            ]
        );
        assert_eq!(t[0].elapsed_s, Some(2.0));
    }

    #[test]
    fn sacct_exit_code_and_cancelled_by() {
        let t = parse_sacct("5", SACCT_DONE);
        assert_eq!(t.len(), 5);
        assert_eq!(states(&t)[2], (2, "FAILED", Some(3)));
        let t = parse_sacct("10", SACCT_CANCELLED);
        assert_eq!(
            states(&t),
            [
                (0, "RUNNING", None),
                (1, "CANCELLED", Some(0)),
                (2, "RUNNING", None),
                (3, "PENDING", None),
                (5, "PENDING", None),
            ]
        );
    }

    #[test]
    fn other_jobs_and_garbage_ignored() {
        let out = "51_0|COMPLETED|0:0|1\n5|COMPLETED|0:0|1\n\nnonsense\n5_x|FAILED|1:0|\n";
        assert!(parse_sacct("5", out).is_empty());
        assert!(parse_squeue("5", out).is_empty());
    }

    #[test]
    fn squeue_fills_in_and_freshens_sacct() {
        let merged = merge(
            parse_sacct("5", SACCT_PARTIAL),
            parse_squeue("5", SQUEUE_PARTIAL),
        );
        assert_eq!(
            states(&merged),
            [
                (0, "COMPLETED", Some(0)),
                (1, "COMPLETED", Some(0)),
                (2, "RUNNING", None),
                (3, "RUNNING", None),
                (7, "PENDING", None),
            ]
        );
        // Before sacct knows anything, squeue alone answers.
        let merged = merge(Vec::new(), parse_squeue("10", SQUEUE_EARLY));
        assert_eq!(
            merged.iter().map(|t| t.task).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(merged[0].state, "RUNNING");
        assert_eq!(merged[0].exit_code, None);
        // A finished task in sacct is not overridden.
        let merged = merge(
            parse_sacct("5", SACCT_DONE),
            parse_squeue("5", SQUEUE_PARTIAL),
        );
        assert!(merged.iter().all(TaskState::is_finished));
    }

    #[test]
    fn pending_range_forms() {
        assert_eq!(
            array_tasks("7", "7_[0-2,5,9-11%3]"),
            [0, 1, 2, 5, 9, 10, 11]
        );
        assert_eq!(array_tasks("7", "7_[0-6:3]"), [0, 3, 6]);
        assert_eq!(array_tasks("7", "7_12"), [12]);
        assert!(array_tasks("7", "7_12.batch").is_empty());
        assert!(array_tasks("7", "7_12.extern").is_empty());
        assert!(array_tasks("7", "7_[1-3").is_empty());
    }

    #[test]
    fn array_spec_compacts_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[5, 0, 2], Some(4)), "0,2,5%4");
        assert_eq!(array_spec(&[0, 1, 2, 5, 7, 8], Some(2)), "0-2,5,7-8%2");
        assert_eq!(array_spec(&[3], None), "3");
    }

    #[test]
    fn submit_without_tasks_is_refused() {
        assert!(matches!(
            submit(Path::new("x.sbatch"), &[], None),
            Err(SlurmError::NoTasks)
        ));
    }

    #[test]
    fn script_with_every_option() {
        let opts = SlurmOptions {
            partition: Some("gpu".into()),
            account: Some("proj-42".into()),
            time: Some("1:00:00".into()),
            gres: Some("gpu:1".into()),
            cpus_per_task: Some(8),
            mem: Some("32G".into()),
            extra: vec!["--qos=high".into(), "#SBATCH --exclusive".into()],
            max_parallel: Some(2),
        };
        let s = sbatch_script(
            &opts,
            Path::new("/opt/llem/bin/llem"),
            Path::new("/scratch/studies/s1"),
            "llem study s1",
        )
        .unwrap();
        assert_eq!(
            s,
            "#!/bin/bash
# Written by llem for --executor slurm: one array task per slot of the
# study's schedule; sbatch's --array names the slots to run.
#SBATCH --job-name=llem_study_s1
#SBATCH --output=/scratch/studies/s1/slurm/%A_%a.out
#SBATCH --error=/scratch/studies/s1/slurm/%A_%a.out
#SBATCH --chdir=/scratch/studies/s1
#SBATCH --ntasks=1
#SBATCH --partition=gpu
#SBATCH --account=proj-42
#SBATCH --time=1:00:00
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --qos=high
#SBATCH --exclusive
set -euo pipefail
exec '/opt/llem/bin/llem' study run-task '/scratch/studies/s1' --task \"$SLURM_ARRAY_TASK_ID\"
"
        );
    }

    #[test]
    fn script_quotes_awkward_paths() {
        let s = sbatch_script(
            &SlurmOptions::default(),
            Path::new("/opt/my llem/it's/llem"),
            Path::new("/data/my study's 100%/"),
            "s",
        )
        .unwrap();
        assert!(s.contains("#SBATCH --output=\"/data/my study's 100%%/slurm/%A_%a.out\"\n"));
        assert!(s.contains("#SBATCH --chdir=\"/data/my study's 100%/\"\n"));
        assert!(s.contains(
            "exec '/opt/my llem/it'\\''s/llem' study run-task '/data/my study'\\''s 100%/' --task"
        ));
        // A double quote: single quotes for sbatch.
        let s = sbatch_script(
            &SlurmOptions::default(),
            Path::new("/bin/llem"),
            Path::new("/data/a \"b\""),
            "s",
        )
        .unwrap();
        assert!(s.contains("#SBATCH --output='/data/a \"b\"/slurm/%A_%a.out'\n"));
        // Both: refused, as are line breaks and backslashes.
        for dir in ["/data/'\"", "/data/a\nb", "/data/a\\b"] {
            let e = sbatch_script(
                &SlurmOptions::default(),
                Path::new("/bin/llem"),
                Path::new(dir),
                "s",
            );
            assert!(
                matches!(e, Err(SlurmError::Unrepresentable { .. })),
                "{dir:?}"
            );
        }
        let opts = SlurmOptions {
            extra: vec!["--qos=a\n#SBATCH --b".into()],
            ..SlurmOptions::default()
        };
        assert!(sbatch_script(&opts, Path::new("/bin/llem"), Path::new("/d"), "s").is_err());
    }

    #[test]
    fn script_runs_under_bash_with_the_task_id() {
        // The generated exec line, run by bash with a stand-in llem that
        // prints its arguments: the paths arrive intact.
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("fake 'llem'");
        std::fs::write(&exe, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let study = dir.path().join("my study 'x'");
        let s = sbatch_script(&SlurmOptions::default(), &exe, &study, "s").unwrap();
        let out = Command::new("bash")
            .arg("-c")
            .arg(&s)
            .env("SLURM_ARRAY_TASK_ID", "3")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("study\nrun-task\n{}\n--task\n3\n", study.display())
        );
    }

    #[test]
    fn missing_sbatch_names_the_tool() {
        let mut cmd = Command::new("sbatch-that-does-not-exist-llem");
        let e = run("sbatch", &mut cmd).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sbatch not found: --executor slurm needs Slurm's client tools (sbatch, sacct, squeue) on PATH"
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'sbatch: error: invalid partition' >&2; exit 1"]);
        let e = run("sbatch", &mut cmd).unwrap_err().to_string();
        assert!(
            e.contains("sh -c") && e.contains("invalid partition"),
            "{e}"
        );
    }
}
