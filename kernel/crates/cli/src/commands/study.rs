//! `llem study status|run-task|merge DIR`, and the Slurm submission of
//! `llem run study.toml --executor slurm`.

use crate::output::{CmdResult, Failure, ok, warn};
use llem::Catalog;
use llem::study::design::Design;
use llem::study::runner::{Runner, StudyEvent};
use llem::study::slurm::{self, SlurmOptions, TaskState};
use llem::study::state::{self, SlotStatus};
use llem::study::summary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Follow and merge a study directory.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show where every run of a study stands (and what Slurm says of its tasks).
    Status {
        /// The study directory (`<output_dir>/<study name>`).
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one slot of a study's schedule (what each Slurm array task runs).
    RunTask {
        dir: PathBuf,
        /// The slot, 0-based (`$SLURM_ARRAY_TASK_ID`).
        #[arg(long)]
        task: usize,
    },
    /// Rebuild study.json from the study directory.
    Merge { dir: PathBuf },
}

pub fn run(command: Command) -> CmdResult {
    match command {
        Command::Status { dir, json } => status(&dir, json),
        Command::RunTask { dir, task } => run_task(&dir, task),
        Command::Merge { dir } => {
            let design = Design::load(&dir).map_err(Failure::bad_input)?;
            let path = summary::write(&design, &dir).map_err(Failure::failed)?;
            crate::commands::study_run::print_table(&design, &dir);
            println!("study: {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `slurm.json`: every submission of the study, newest last.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Submissions {
    submissions: Vec<Submission>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Submission {
    job_id: String,
    tasks: Vec<usize>,
    submitted_at: String,
    script: PathBuf,
}

const SUBMISSIONS: &str = "slurm.json";

fn submissions(dir: &Path) -> Submissions {
    std::fs::read_to_string(dir.join(SUBMISSIONS))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Submit the slots not yet done as one job array.
pub fn submit(design: &Design, dir: &Path, options: &SlurmOptions) -> CmdResult {
    let pending: Vec<usize> = (0..design.schedule.len())
        .filter(|i| {
            !state::read(dir, *i)
                .ok()
                .flatten()
                .is_some_and(|s| s.status.is_done())
        })
        .collect();
    if pending.is_empty() {
        ok("every run of the study is done: nothing to submit");
        let path = summary::write(design, dir).map_err(Failure::failed)?;
        println!("study: {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe()
        .map_err(|e| Failure::failed(format!("cannot find llem's own executable: {e}")))?;
    let dir =
        std::path::absolute(dir).map_err(|e| Failure::failed(format!("{}: {e}", dir.display())))?;
    let script = slurm::sbatch_script(options, &exe, &dir, &design.name)
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    let path = slurm::write_script(&dir, &script).map_err(|e| Failure::failed(e.to_string()))?;
    let job = slurm::submit(&path, &pending, options.max_parallel)
        .map_err(|e| Failure::failed(e.to_string()))?;
    let mut all = submissions(&dir);
    all.submissions.push(Submission {
        job_id: job.clone(),
        tasks: pending.clone(),
        submitted_at: llem::study::state::now_rfc3339(),
        script: path,
    });
    let json = serde_json::to_string_pretty(&all).map_err(|e| Failure::failed(e.to_string()))?;
    state::write_atomically(&dir.join(SUBMISSIONS), &json).map_err(Failure::failed)?;
    ok(&format!(
        "submitted job {job}: {} of {} runs as an array ({})",
        pending.len(),
        design.schedule.len(),
        slurm::array_spec(&pending, options.max_parallel)
    ));
    println!(
        "follow it with: llem study status {}\nresults merge into {}/study.json as tasks finish; submit again to run what did not finish",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_task(dir: &Path, task: usize) -> CmdResult {
    let design = Design::load(dir).map_err(Failure::bad_input)?;
    let catalog = Catalog::from_env();
    let stop = crate::commands::interrupt::install();
    let runner = Runner::new(design, dir.to_owned(), &catalog);
    let display = crate::commands::run_display::RunDisplay::new();
    let status = runner
        .run_one(task, &stop, &mut |event| match event {
            StudyEvent::Run(e) => display.show(e),
            StudyEvent::AlreadyDone { index, status } => {
                ok(&format!(
                    "run {index} is {} already: not run again",
                    status.as_str()
                ));
            }
            StudyEvent::Starting {
                index,
                label,
                cycle,
                ..
            } => ok(&format!("study: run {index} · {label} · cycle {cycle}")),
            StudyEvent::Finished {
                index,
                status,
                run_dir,
                reasons,
            } => {
                display.finish();
                crate::commands::study_run::say_finished(index, status, run_dir, reasons);
            }
            StudyEvent::Gap { .. } | StudyEvent::Stopped(_) => {}
        })
        .map_err(Failure::bad_input)?;
    // Every task merges what is there; the last one to end leaves it complete.
    if let Err(e) = merge_locked(runner.design(), dir) {
        warn(&format!("study.json: {e}"));
    }
    Ok(ExitCode::from(match status {
        SlotStatus::Complete => 0,
        SlotStatus::Degraded => 3,
        SlotStatus::Interrupted => crate::exit::INTERRUPTED,
        _ => 4,
    }))
}

/// Rebuild study.json under an exclusive lock, so two tasks ending together
/// cannot leave the older view of the directory behind.
fn merge_locked(design: &Design, dir: &Path) -> Result<PathBuf, String> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".study.lock"))
        .map_err(|e| format!("cannot open the study lock: {e}"))?;
    lock.lock()
        .map_err(|e| format!("cannot lock the study directory: {e}"))?;
    let written = summary::write(design, dir);
    let _ = lock.unlock();
    written
}

#[derive(Serialize)]
struct StatusRow {
    index: usize,
    config: String,
    cycle: u32,
    status: SlotStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    slurm_job: Option<String>,
    /// What `sacct` (or `squeue`) says of the slot's latest array task.
    #[serde(skip_serializing_if = "Option::is_none")]
    slurm_state: Option<String>,
}

fn status(dir: &Path, json: bool) -> CmdResult {
    let design = Design::load(dir).map_err(Failure::bad_input)?;
    let subs = submissions(dir);
    // The latest submission that holds each slot, and Slurm's word on it.
    let mut slurm_states: BTreeMap<usize, (String, TaskState)> = BTreeMap::new();
    let mut slurm_errors = Vec::new();
    for sub in &subs.submissions {
        match slurm::task_states(&sub.job_id) {
            Ok(states) => {
                for t in states.into_iter().filter(|t| sub.tasks.contains(&t.task)) {
                    slurm_states.insert(t.task, (sub.job_id.clone(), t));
                }
            }
            Err(e) => slurm_errors.push(format!("job {}: {e}", sub.job_id)),
        }
    }
    let mut rows = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, slot) in design.schedule.iter().enumerate() {
        let st = state::read(dir, index).map_err(Failure::failed)?;
        let status = match &st {
            None => SlotStatus::Pending,
            Some(s)
                if s.status == SlotStatus::Running
                    && s.host == state::hostname()
                    && !state::alive(s.pid) =>
            {
                SlotStatus::Interrupted
            }
            Some(s) => s.status,
        };
        *counts.entry(status.as_str()).or_default() += 1;
        let slurm = slurm_states.get(&index);
        rows.push(StatusRow {
            index,
            config: design.configs[slot.config].label.clone(),
            cycle: slot.cycle,
            status,
            run_dir: st.as_ref().and_then(|s| s.run_dir.clone()),
            slurm_job: slurm
                .map(|(job, t)| format!("{job}_{}", t.task))
                .or_else(|| st.as_ref().and_then(|s| s.slurm_job.clone())),
            slurm_state: slurm.map(|(_, t)| t.state.clone()),
        });
    }
    if json {
        let value = serde_json::json!({
            "name": design.name,
            "hash": design.hash,
            "runs": rows.len(),
            "counts": counts,
            "slots": rows,
            "slurm_errors": slurm_errors,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "Study {} [{}]: {} runs · {}",
        design.name,
        design.hash,
        rows.len(),
        summary.join(" · ")
    );
    let width = rows
        .iter()
        .map(|r| r.config.len())
        .max()
        .unwrap_or(6)
        .max(6);
    for r in &rows {
        let slurm = match (&r.slurm_job, &r.slurm_state) {
            (Some(job), Some(s)) => format!("  slurm {job}: {s}"),
            (Some(job), None) => format!("  slurm {job}"),
            _ => String::new(),
        };
        println!(
            "  {:>4}  cycle {}  {:<width$}  {:<11}{slurm}",
            r.index,
            r.cycle,
            r.config,
            r.status.as_str()
        );
    }
    for e in &slurm_errors {
        warn(e);
    }
    Ok(ExitCode::SUCCESS)
}
