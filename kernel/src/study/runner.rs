//! Running a study's slots: in order, with the gaps, the time limits and the
//! circuit breaker of its design, keeping an engine up between consecutive
//! runs that share it, and recording every slot's state as it goes so that
//! running the study again resumes it (never repeating a finished run).

use super::design::{Design, Slot};
use super::state::{self, SlotState, SlotStatus};
use crate::catalog::Catalog;
use crate::experiment::timestamp::rfc3339;
use crate::experiment::{Event, Experiment, KeptEngine, RunStatus};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// What happened, for a progress display.
#[derive(Debug)]
pub enum StudyEvent<'a> {
    /// A slot finished before (complete or degraded): not run again.
    AlreadyDone { index: usize, status: SlotStatus },
    /// A run starts. `done`/`total` count the study's slots.
    Starting {
        index: usize,
        label: &'a str,
        cycle: u32,
        done: usize,
        total: usize,
        eta: Option<Duration>,
        engine_kept: bool,
    },
    /// Something inside the run.
    Run(Event<'a>),
    Finished {
        index: usize,
        status: SlotStatus,
        run_dir: Option<&'a Path>,
        reasons: &'a [String],
    },
    /// Idling between runs.
    Gap { seconds: f64, between_cycles: bool },
    /// The study stopped before its end, and why.
    Stopped(&'a str),
}

/// How a study invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyOutcome {
    pub ran: usize,
    pub skipped_done: usize,
    /// Slot statuses after this invocation, in schedule order.
    pub statuses: Vec<SlotStatus>,
    /// Why it stopped early (signal, time limit, circuit breaker).
    pub stopped: Option<String>,
}

impl StudyOutcome {
    pub fn all_done(&self) -> bool {
        self.statuses.iter().all(|s| s.is_done())
    }
}

pub struct Runner<'c> {
    design: Design,
    dir: PathBuf,
    catalog: &'c Catalog,
}

impl<'c> Runner<'c> {
    pub fn new(design: Design, dir: PathBuf, catalog: &'c Catalog) -> Self {
        Runner {
            design,
            dir,
            catalog,
        }
    }

    pub fn design(&self) -> &Design {
        &self.design
    }

    /// Every slot's recorded status (`pending` when it never started; a
    /// `running` slot whose process is gone on this host counts as interrupted).
    pub fn statuses(&self) -> Result<Vec<SlotStatus>, String> {
        let host = state::hostname();
        (0..self.design.schedule.len())
            .map(|i| {
                Ok(match state::read(&self.dir, i)? {
                    None => SlotStatus::Pending,
                    Some(s)
                        if s.status == SlotStatus::Running
                            && s.host == host
                            && !state::alive(s.pid) =>
                    {
                        SlotStatus::Interrupted
                    }
                    Some(s) => s.status,
                })
            })
            .collect()
    }

    /// Run every slot not yet done, in schedule order, until the end, a
    /// signal (`stop`), the study's time limit or its circuit breaker.
    pub fn run_all(
        &self,
        stop: &Arc<AtomicBool>,
        on_event: &mut dyn FnMut(StudyEvent<'_>),
    ) -> Result<StudyOutcome, String> {
        let controls = &self.design.controls;
        let began = Instant::now();
        let deadline = controls
            .timeout_s
            .map(|s| began + Duration::from_secs_f64(s));
        let mut statuses = self.statuses()?;
        let total = statuses.len();
        let todo: Vec<usize> = (0..total).filter(|i| !statuses[*i].is_done()).collect();
        for (i, s) in statuses.iter().enumerate() {
            if s.is_done() {
                on_event(StudyEvent::AlreadyDone {
                    index: i,
                    status: *s,
                });
            }
        }
        let keys = self.design.engine_keys();
        let mut kept: Option<KeptEngine> = None;
        let mut failures_in_a_row = 0u32;
        let mut stopped = None;
        let mut ran = 0usize;
        let mut run_walls: Vec<f64> = Vec::new();
        for (position, &index) in todo.iter().enumerate() {
            if stop.load(Ordering::Relaxed) {
                stopped = Some("stopped by a signal".to_owned());
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped = Some(format!(
                    "the study's time limit ([study].timeout_s = {} s) was reached",
                    controls.timeout_s.unwrap_or(0.0)
                ));
                break;
            }
            let slot = self.design.schedule[index];
            let next = todo.get(position + 1).map(|n| self.design.schedule[*n]);
            let keep_after = next
                .is_some_and(|n| keys[n.config].is_some() && keys[n.config] == keys[slot.config]);
            let done = statuses.iter().filter(|s| s.is_done()).count();
            let eta = eta(&run_walls, total - done, controls);
            on_event(StudyEvent::Starting {
                index,
                label: &self.design.configs[slot.config].label,
                cycle: slot.cycle,
                done,
                total,
                eta,
                engine_kept: kept
                    .as_ref()
                    .is_some_and(|k| k.serves(&self.design.configs[slot.config].plan)),
            });
            let started = Instant::now();
            let (status, next_kept) =
                self.run_slot(index, stop, kept.take(), keep_after, deadline, on_event)?;
            kept = next_kept;
            run_walls.push(started.elapsed().as_secs_f64());
            statuses[index] = status;
            ran += 1;
            match status {
                SlotStatus::Failed => failures_in_a_row += 1,
                SlotStatus::Interrupted => {
                    stopped = Some(if stop.load(Ordering::Relaxed) {
                        "stopped by a signal".to_owned()
                    } else {
                        format!(
                            "the study's time limit ([study].timeout_s = {} s) was reached",
                            controls.timeout_s.unwrap_or(0.0)
                        )
                    });
                    break;
                }
                _ => failures_in_a_row = 0,
            }
            if controls.max_consecutive_failures > 0
                && failures_in_a_row >= controls.max_consecutive_failures
            {
                stopped = Some(format!(
                    "{failures_in_a_row} runs in a row failed ([study].max_consecutive_failures = {}): stopping the study; see the last run's result.json",
                    controls.max_consecutive_failures
                ));
                break;
            }
            if let Some(next) = next {
                let between_cycles = next.cycle != slot.cycle;
                let gap = if between_cycles {
                    controls.cycle_gap_s
                } else {
                    controls.gap_s
                };
                if gap > 0.0 {
                    on_event(StudyEvent::Gap {
                        seconds: gap,
                        between_cycles,
                    });
                    sleep_unless(Duration::from_secs_f64(gap), stop, deadline);
                }
            }
        }
        // A kept engine goes as soon as nothing will use it.
        drop(kept);
        if let Some(why) = &stopped {
            on_event(StudyEvent::Stopped(why));
        }
        Ok(StudyOutcome {
            ran,
            skipped_done: total - todo.len(),
            statuses,
            stopped,
        })
    }

    /// Run slot `index` alone (a Slurm array task): no engine is kept.
    pub fn run_one(
        &self,
        index: usize,
        stop: &Arc<AtomicBool>,
        on_event: &mut dyn FnMut(StudyEvent<'_>),
    ) -> Result<SlotStatus, String> {
        if index >= self.design.schedule.len() {
            return Err(format!(
                "the study has {} runs (0 to {}); there is no run {index}",
                self.design.schedule.len(),
                self.design.schedule.len().saturating_sub(1)
            ));
        }
        if let Some(s) = state::read(&self.dir, index)?
            && s.status.is_done()
        {
            on_event(StudyEvent::AlreadyDone {
                index,
                status: s.status,
            });
            return Ok(s.status);
        }
        let slot = self.design.schedule[index];
        on_event(StudyEvent::Starting {
            index,
            label: &self.design.configs[slot.config].label,
            cycle: slot.cycle,
            done: 0,
            total: 1,
            eta: None,
            engine_kept: false,
        });
        let deadline = self
            .design
            .controls
            .timeout_s
            .map(|s| Instant::now() + Duration::from_secs_f64(s));
        Ok(self
            .run_slot(index, stop, None, false, deadline, on_event)?
            .0)
    }

    /// One slot: its state file says `running` while it runs and its outcome after.
    fn run_slot(
        &self,
        index: usize,
        stop: &Arc<AtomicBool>,
        kept: Option<KeptEngine>,
        keep_after: bool,
        deadline: Option<Instant>,
        on_event: &mut dyn FnMut(StudyEvent<'_>),
    ) -> Result<(SlotStatus, Option<KeptEngine>), String> {
        let slot: Slot = self.design.schedule[index];
        let previous = state::read(&self.dir, index)?;
        let mut record = SlotState {
            index,
            config: slot.config,
            cycle: slot.cycle,
            status: SlotStatus::Running,
            run_dir: None,
            started_at: Some(rfc3339(SystemTime::now())),
            ended_at: None,
            wall_s: None,
            reasons: Vec::new(),
            host: state::hostname(),
            pid: std::process::id(),
            slurm_job: slurm_task(),
            engine_kept_from: kept.as_ref().map(|k| k.started_in().display().to_string()),
            attempts: previous.map_or(0, |p| p.attempts) + 1,
        };
        state::write(&self.dir, &record)?;

        let mut plan = self.design.configs[slot.config].plan.clone();
        plan.experiment.output_dir = self.dir.join("runs");
        plan.experiment.name = self.design.run_name(index);
        // A streaming sink is told which study and configuration the run is of.
        let experiment = Experiment::new(plan, self.catalog).with_labels(vec![
            ("study".to_owned(), self.design.name.clone()),
            (
                "config".to_owned(),
                self.design.configs[slot.config].id.clone(),
            ),
        ]);

        // The run's own stop: the study's signal, its time limit or the run's.
        let run_stop = Arc::new(AtomicBool::new(false));
        let run_deadline = self
            .design
            .controls
            .run_timeout_s
            .map(|s| Instant::now() + Duration::from_secs_f64(s));
        let timed_out = Arc::new(AtomicBool::new(false));
        let finished = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (stop, run_stop, timed_out, finished) = (
                stop.clone(),
                run_stop.clone(),
                timed_out.clone(),
                finished.clone(),
            );
            std::thread::spawn(move || {
                while !finished.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if run_deadline.is_some_and(|d| now >= d) {
                        timed_out.store(true, Ordering::SeqCst);
                        run_stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
                        run_stop.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let started = Instant::now();
        let (outcome, kept) =
            experiment.run_keeping_engine(slot.cycle, &run_stop, kept, keep_after, |event| {
                on_event(StudyEvent::Run(event))
            });
        finished.store(true, Ordering::SeqCst);
        let _ = watcher.join();

        record.wall_s = Some(started.elapsed().as_secs_f64());
        record.ended_at = Some(rfc3339(SystemTime::now()));
        record.status = match &outcome {
            Ok(o) => {
                record.run_dir = Some(o.dir.clone());
                record.reasons = o.result.status_reasons.clone();
                match o.result.status {
                    RunStatus::Complete => SlotStatus::Complete,
                    RunStatus::Degraded => SlotStatus::Degraded,
                    RunStatus::Failed => SlotStatus::Failed,
                    RunStatus::Interrupted => SlotStatus::Interrupted,
                }
            }
            Err(e) => {
                record.reasons = vec![e.to_string()];
                SlotStatus::Failed
            }
        };
        if timed_out.load(Ordering::SeqCst) {
            record.status = SlotStatus::Failed;
            record.reasons.insert(
                0,
                format!(
                    "stopped after [study].run_timeout_s = {} s",
                    self.design.controls.run_timeout_s.unwrap_or(0.0)
                ),
            );
        }
        state::write(&self.dir, &record)?;
        on_event(StudyEvent::Finished {
            index,
            status: record.status,
            run_dir: record.run_dir.as_deref(),
            reasons: &record.reasons,
        });
        Ok((record.status, kept))
    }
}

/// `<job>_<task>` of the Slurm array task this process runs in, if any.
fn slurm_task() -> Option<String> {
    let job = std::env::var("SLURM_ARRAY_JOB_ID").ok()?;
    let task = std::env::var("SLURM_ARRAY_TASK_ID").ok()?;
    Some(format!("{job}_{task}"))
}

/// Remaining time: the mean wall time of the runs so far × the runs left,
/// plus the gaps between them; `None` before the first run ends.
fn eta(walls: &[f64], left: usize, controls: &super::design::Controls) -> Option<Duration> {
    if walls.is_empty() || left == 0 {
        return None;
    }
    let mean = walls.iter().sum::<f64>() / walls.len() as f64;
    let secs = mean * left as f64 + controls.gap_s * left.saturating_sub(1) as f64;
    Some(Duration::from_secs_f64(secs.max(0.0)))
}

fn sleep_unless(duration: Duration, stop: &AtomicBool, deadline: Option<Instant>) {
    let end = Instant::now() + duration;
    while Instant::now() < end
        && !stop.load(Ordering::Relaxed)
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
}
