//! `llem run study.toml`: the study's plan (`--dry-run` stops there), then
//! its runs in the study directory — resumed when the directory holds the
//! same design, refused when it holds another.

use crate::commands::run_display::RunDisplay;
use crate::output::{CmdResult, Failure, ok, warn};
use crate::study_prepare::{self, Prepared};
use llem::Catalog;
use llem::study::design::Design;
use llem::study::runner::{Runner, StudyEvent};
use llem::study::state::SlotStatus;
use llem::study::summary;
use std::path::Path;
use std::process::ExitCode;

pub struct StudyArgs<'a> {
    pub manifest: &'a Path,
    pub plugins: &'a [String],
    pub sets: &'a [String],
    pub dry_run: bool,
    /// Resume a directory whose design hash differs.
    pub ignore_design_change: bool,
    pub slurm: Option<llem::study::slurm::SlurmOptions>,
}

pub fn run(args: &StudyArgs<'_>) -> CmdResult {
    let catalog = Catalog::from_env();
    let Prepared { study, design, dir } =
        study_prepare::prepare(args.manifest, args.plugins, args.sets, &catalog)?;
    let design = match Design::load(&dir) {
        Ok(existing) if existing.hash != design.hash && !args.ignore_design_change => {
            return Err(Failure::bad_input(format!(
                "{} holds study `{}` with design [{}], but {} is now design [{}] (a value, a key, the cycles, the order or the seed changed): \
                 give the study another name ([study].name), move the directory away, or resume it anyway with `--ignore-design-change` (runs of both designs then mix)",
                dir.display(),
                existing.name,
                existing.hash,
                args.manifest.display(),
                design.hash
            )));
        }
        // Resuming: the recorded design (its seed and order) stays.
        Ok(existing) if existing.hash == design.hash => existing,
        Ok(existing) => {
            warn(&format!(
                "resuming {} with a changed design [{}] over [{}] (--ignore-design-change)",
                dir.display(),
                design.hash,
                existing.hash
            ));
            design
        }
        Err(_) => design,
    };
    let mut extra = design.skipped.clone();
    extra.retain(|s| !study.skipped.iter().any(|d| d.label == s.label));
    let extra: Vec<llem_study::Skipped> = extra
        .into_iter()
        .map(|s| llem_study::Skipped {
            label: s.label,
            reason: s.reason,
        })
        .collect();
    let head = llem_study::plan_text(&study, &design.hash, &extra);
    println!("{}", head.trim_end());
    print_schedule(&design, &dir);
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        Failure::failed(format!(
            "cannot create the study directory {}: {e}",
            dir.display()
        ))
    })?;
    design.save(&dir).map_err(Failure::failed)?;
    if let Some(options) = &args.slurm {
        return crate::commands::study::submit(&design, &dir, options);
    }
    run_locally(design, &dir, &catalog)
}

/// The runs in order, which share an engine, what is done already, and the
/// time the gaps alone take.
fn print_schedule(design: &Design, dir: &Path) {
    let sharing = design.engine_sharing();
    let recorded: Vec<Option<llem::study::state::SlotState>> = (0..design.schedule.len())
        .map(|i| llem::study::state::read(dir, i).ok().flatten())
        .collect();
    let runner_states: Vec<Option<SlotStatus>> = recorded
        .iter()
        .map(|s| s.as_ref().map(|s| s.status))
        .collect();
    println!("order ({}, seed {}):", design.order, design.seed);
    for (i, slot) in design.schedule.iter().enumerate() {
        let config = &design.configs[slot.config];
        let engine = match sharing[i] {
            Some(first) => format!("  engine of run {first} kept up"),
            None if config
                .plan
                .plugins
                .iter()
                .any(|p| p.kind == llem_sdk::PluginKind::Backend) =>
            {
                "  starts an engine".into()
            }
            None => String::new(),
        };
        let done = match runner_states[i] {
            Some(s) if s.is_done() => format!("  [{}: not run again]", s.as_str()),
            Some(s) => format!("  [{}]", s.as_str()),
            None => String::new(),
        };
        println!(
            "  {i:>4}  cycle {}  {}{engine}{done}",
            slot.cycle, config.label
        );
    }
    let starts = sharing
        .iter()
        .zip(&design.schedule)
        .filter(|(s, slot)| {
            s.is_none()
                && design.configs[slot.config]
                    .plan
                    .plugins
                    .iter()
                    .any(|p| p.kind == llem_sdk::PluginKind::Backend)
        })
        .count();
    let runs = design.schedule.len();
    let c = &design.controls;
    let gaps = c.gap_s * (runs.saturating_sub(design.cycles as usize)) as f64
        + c.cycle_gap_s * f64::from(design.cycles.saturating_sub(1));
    let per_run: f64 = design
        .configs
        .iter()
        .map(|cfg| {
            let m = &cfg.plan.measurement;
            let baseline = if m.baseline == "off" {
                0.0
            } else {
                m.baseline_s
            };
            baseline + m.cooldown_s
        })
        .sum::<f64>()
        / design.configs.len().max(1) as f64;
    // Runs that ended before (a resumed study) tell how long one takes.
    let walls: Vec<f64> = recorded.iter().flatten().filter_map(|s| s.wall_s).collect();
    let left = runner_states
        .iter()
        .filter(|s| !s.is_some_and(SlotStatus::is_done))
        .count();
    let estimate = if walls.is_empty() {
        format!(
            "at least {} (gaps, baselines and cool-downs; engine start-up and requests come on top: the ETA is shown once the first run ends)",
            human(gaps + per_run * runs as f64)
        )
    } else {
        let mean = walls.iter().sum::<f64>() / walls.len() as f64;
        format!(
            "about {} for the {left} run(s) left ({} per run so far, gaps included)",
            human(mean * left as f64 + gaps * left as f64 / runs.max(1) as f64),
            human(mean)
        )
    };
    println!("engine starts: {starts} for {runs} runs; estimated time: {estimate}");
    println!("study directory: {}", dir.display());
}

fn run_locally(design: Design, dir: &Path, catalog: &Catalog) -> CmdResult {
    // One executor per study directory: two would run the same slots twice.
    let lock_path = dir.join(".executor.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Failure::failed(format!("cannot open {}: {e}", lock_path.display())))?;
    if lock.try_lock().is_err() {
        return Err(Failure::bad_input(format!(
            "another llem is running the study in {} (it holds {}); wait for it, or stop it with Ctrl-C and run this again to resume",
            dir.display(),
            lock_path.display()
        )));
    }
    let stop = crate::commands::interrupt::install();
    let runner = Runner::new(design, dir.to_owned(), catalog);
    let mut display: Option<RunDisplay> = None;
    let outcome = runner.run_all(&stop, &mut |event| match event {
        StudyEvent::AlreadyDone { .. } => {}
        StudyEvent::Starting {
            index,
            label,
            cycle,
            done,
            total,
            eta,
            engine_kept,
        } => {
            let eta = eta
                .map(|d| format!(" · ETA {}", human(d.as_secs_f64())))
                .unwrap_or_default();
            let kept = if engine_kept {
                " · engine kept up"
            } else {
                ""
            };
            ok(&format!(
                "study: run {index} ({done}/{total} done{eta}) · {label} · cycle {cycle}{kept}"
            ));
            display = Some(RunDisplay::new());
        }
        StudyEvent::Run(e) => {
            if let Some(d) = &display {
                d.show(e);
            }
        }
        StudyEvent::Finished {
            index,
            status,
            run_dir,
            reasons,
        } => {
            if let Some(d) = display.take() {
                d.finish();
            }
            say_finished(index, status, run_dir, reasons);
            if let Err(e) = summary::write(runner.design(), dir) {
                warn(&format!("study.json: {e}"));
            }
        }
        StudyEvent::Gap {
            seconds,
            between_cycles,
        } => {
            let what = if between_cycles {
                "between cycles"
            } else {
                "between runs"
            };
            ok(&format!("idle {seconds:.0} s {what}"));
        }
        StudyEvent::Stopped(why) => warn(&format!("study stopped: {why}")),
    });
    let outcome = outcome.map_err(Failure::failed)?;
    let path = summary::write(runner.design(), dir).map_err(Failure::failed)?;
    print_table(runner.design(), dir);
    println!("study: {}", path.display());
    if outcome.stopped.is_some() && !outcome.all_done() {
        let code = if stop.load(std::sync::atomic::Ordering::Relaxed) {
            crate::exit::INTERRUPTED
        } else {
            crate::exit::FAILURE
        };
        ok("run the same command again to resume: finished runs are not repeated");
        return Ok(ExitCode::from(code));
    }
    let worst = outcome
        .statuses
        .iter()
        .map(|s| match s {
            SlotStatus::Complete => 0,
            SlotStatus::Degraded => 3,
            _ => 4,
        })
        .max()
        .unwrap_or(0);
    Ok(ExitCode::from(worst))
}

/// How a run of the study ended, with where it is and, when it is not
/// complete, why.
pub fn say_finished(index: usize, status: SlotStatus, run_dir: Option<&Path>, reasons: &[String]) {
    let place = run_dir
        .map(|d| format!(" → {}", d.display()))
        .unwrap_or_default();
    let text = format!("run {index}: {}{place}", status.as_str());
    if status == SlotStatus::Complete {
        ok(&text);
    } else {
        warn(&format!("{text}: {}", reasons.join("; ")));
    }
}

/// One line per configuration: the headline figures, mean ± 95 % half-width.
pub fn print_table(design: &Design, dir: &Path) {
    let Ok(doc) = summary::build(design, dir) else {
        return;
    };
    let width = doc
        .configs
        .iter()
        .map(|c| c.label.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<width$}  {:>5}  {:>22}  {:>22}  {:>18}",
        "config", "runs", "J / output token", "output tok/s", "TTFT p50 ms"
    );
    for c in &doc.configs {
        let cell = |name: &str, digits: usize| match c.metrics.get(name) {
            Some(s) => match s.ci95 {
                Some(ci) => format!("{:.digits$} ± {:.digits$}", s.mean, ci.half_width()),
                None => format!("{:.digits$}", s.mean),
            },
            None => "n/a".into(),
        };
        println!(
            "{:<width$}  {:>5}  {:>22}  {:>22}  {:>18}",
            c.label,
            c.measured_runs,
            cell(summary::HEADLINE, 4),
            cell("output_token_throughput_tok_s", 1),
            cell("ttft_p50_ms", 1),
        );
    }
    for w in &doc.warnings {
        warn(w);
    }
}

pub fn human(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{:.1} h", s as f64 / 3600.0),
    }
}
