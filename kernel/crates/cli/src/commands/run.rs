//! `llem run [MANIFEST] [--plugins a,b] [--set key=value]…`

use crate::commands::run_display::RunDisplay;
use crate::input::{self, Input};
use crate::output::{CmdResult, Failure, ok};
use llem::experiment::RunStatus;
use llem::{Catalog, Experiment, RunResult};
use llem_sdk::PluginKind;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Every grant, before anything runs: what each sandboxed plugin may touch and
/// which key of the user's granted it (also in manifest.resolved.toml and
/// result.json).
fn print_grants(plan: &llem::manifest::Plan) {
    for grant in plan.plugins.iter().flat_map(|p| &p.grants) {
        ok(&format!(
            "grant: {}",
            llem::plugin::sanitize(&grant.to_string())
        ));
    }
}

/// Run an experiment and write its run directory.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Experiment manifest (TOML). Without one, an embedded default is used.
    manifest: Option<PathBuf>,
    /// Plugins to add, by name: `--plugins vllm,nvml`.
    #[arg(long, value_delimiter = ',')]
    plugins: Vec<String>,
    /// Override a manifest key: `--set vllm.max_num_seqs=64`, `--set experiment.seed=3`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shorthand for `--set experiment.duration_s=…` (seconds).
    #[arg(long)]
    duration: Option<f64>,
    /// Shorthand for `--set experiment.output_dir=…`.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Shorthand for `--set experiment.name=…`.
    #[arg(long)]
    name: Option<String>,
    /// The model: a Hugging Face id (`Qwen/Qwen3-8B`) or a local directory.
    /// Shorthand for `--set experiment.model=…`.
    #[arg(long)]
    model: Option<String>,
    /// A dataset plugin, by name (`--dataset sharegpt --set sharegpt.path=…`).
    /// Without one, a backend runs llem's default workload (see `--dry-run`).
    #[arg(long)]
    dataset: Option<String>,
    /// How many prompts to send. Shorthand for `--set load.num_prompts=…`.
    #[arg(short = 'n', long = "num-prompts")]
    num_prompts: Option<u32>,
    /// Most requests in flight at once. Shorthand for `--set load.max_concurrency=…`.
    #[arg(long = "max-concurrency")]
    max_concurrency: Option<u32>,
    /// Requests per second (Poisson arrivals). Shorthand for `--set load.request_rate=…`.
    #[arg(long = "request-rate")]
    request_rate: Option<f64>,
    /// Print everything the run would do (resolved plan, plugins and their
    /// grants, the engine's command line, the phases, a memory estimate) and
    /// stop before starting anything.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Serve the run's live figures as Prometheus metrics at
    /// `http://[HOST]:PORT/metrics` (`:9400` is 127.0.0.1:9400), labelled with
    /// the run's id and experiment; see docs/prometheus.md.
    #[arg(long, value_name = "[HOST]:PORT")]
    prometheus: Option<String>,
    /// Studies: where the runs go. `local` runs them here, one after the
    /// other; `slurm` submits them as a job array (see docs/slurm.md).
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Studies: resume a study directory whose design changed (runs of both designs then mix).
    #[arg(long = "ignore-design-change")]
    ignore_design_change: bool,
    /// Slurm: the partition (`--partition`).
    #[arg(long = "slurm-partition")]
    slurm_partition: Option<String>,
    /// Slurm: the account to charge (`--account`).
    #[arg(long = "slurm-account")]
    slurm_account: Option<String>,
    /// Slurm: each task's time limit, e.g. `02:00:00` (`--time`).
    #[arg(long = "slurm-time")]
    slurm_time: Option<String>,
    /// Slurm: generic resources per task, e.g. `gpu:1` (`--gres`).
    #[arg(long = "slurm-gres")]
    slurm_gres: Option<String>,
    /// Slurm: CPUs per task (`--cpus-per-task`).
    #[arg(long = "slurm-cpus-per-task")]
    slurm_cpus_per_task: Option<u32>,
    /// Slurm: memory per task, e.g. `64G` (`--mem`).
    #[arg(long = "slurm-mem")]
    slurm_mem: Option<String>,
    /// Slurm: at most this many tasks at once (`--array=…%N`).
    #[arg(long = "slurm-max-parallel")]
    slurm_max_parallel: Option<u32>,
    /// Slurm: an extra `#SBATCH` line, e.g. `--slurm-extra=--qos=high` (repeatable).
    #[arg(long = "slurm-extra", value_name = "SBATCH_OPTION")]
    slurm_extra: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    Local,
    Slurm,
}

impl Args {
    /// The flags that stand for manifest keys, as `--set` edits (after the
    /// user's own `--set`s, so a flag wins).
    fn sets(&self) -> Vec<String> {
        let mut sets = self.sets.clone();
        if let Some(duration) = self.duration {
            sets.push(format!("experiment.duration_s={duration}"));
        }
        if let Some(output) = &self.output {
            sets.push(format!(
                "experiment.output_dir={}",
                toml_string(&output.display().to_string())
            ));
        }
        if let Some(name) = &self.name {
            sets.push(format!("experiment.name={}", toml_string(name)));
        }
        if let Some(model) = &self.model {
            sets.push(format!("experiment.model={}", toml_string(model)));
        }
        if let Some(n) = self.num_prompts {
            sets.push(format!("load.num_prompts={n}"));
        }
        if let Some(c) = self.max_concurrency {
            sets.push(format!("load.max_concurrency={c}"));
        }
        if let Some(rate) = self.request_rate {
            sets.push(format!("load.request_rate={rate}"));
        }
        sets
    }

    /// `--plugins` plus `--dataset`.
    fn plugins(&self) -> Vec<String> {
        let mut plugins = self.plugins.clone();
        plugins.extend(self.dataset.clone());
        plugins
    }
}

pub fn run(args: Args) -> CmdResult {
    let sets = args.sets();
    if let Some(path) = args
        .manifest
        .as_deref()
        .filter(|p| crate::study_prepare::is_study(p))
    {
        let slurm = (args.executor == Executor::Slurm).then(|| llem::study::slurm::SlurmOptions {
            partition: args.slurm_partition.clone(),
            account: args.slurm_account.clone(),
            time: args.slurm_time.clone(),
            gres: args.slurm_gres.clone(),
            cpus_per_task: args.slurm_cpus_per_task,
            mem: args.slurm_mem.clone(),
            extra: args.slurm_extra.clone(),
            max_parallel: args.slurm_max_parallel,
        });
        if args.prometheus.is_some() {
            return Err(Failure::bad_input(
                "--prometheus serves one experiment's runs; studies do not support it yet (run `llem monitor --prometheus` beside the study instead)",
            ));
        }
        return crate::commands::study_run::run(&crate::commands::study_run::StudyArgs {
            manifest: path,
            plugins: &args.plugins(),
            sets: &sets,
            dry_run: args.dry_run,
            ignore_design_change: args.ignore_design_change,
            slurm,
        });
    }
    if args.executor == Executor::Slurm {
        return Err(Failure::bad_input(
            "--executor slurm runs studies: give a study manifest (one with [sweep], [[experiments]] or [study]; see docs/study.md)",
        ));
    }
    let catalog = Catalog::from_env();
    let mut plugins = args.plugins();
    let resolve = |plugins: &[String]| {
        input::resolve_with_default_workload(
            &Input {
                manifest: args.manifest.as_deref(),
                plugins,
                sets: &sets,
            },
            &catalog,
        )
    };
    let (mut plan, mut workload) = resolve(&plugins)?;
    // The embedded default names no energy source: measure with whatever works here.
    if args.manifest.is_none() && !plan.plugins.iter().any(|p| p.kind == PluginKind::Energy) {
        let chosen = llem::probe::auto_energy_sources(&llem::probe::probe_energy(&catalog, &sets));
        if !chosen.is_empty() {
            ok(&format!(
                "energy sources that work on this machine: {}",
                chosen.join(", ")
            ));
            plugins.extend(chosen);
            (plan, workload) = resolve(&plugins)?;
        }
    }
    if let Some(workload) = &workload {
        ok(&format!(
            "no dataset named (--dataset): {}",
            workload.describe()
        ));
    }
    if args.dry_run {
        return crate::commands::dry_run::print(plan, &catalog);
    }

    print_grants(&plan);

    let exporter = crate::commands::monitor::start_exporter(args.prometheus.as_deref())?;
    let stop = crate::commands::interrupt::install();

    let experiment = Experiment::new(plan, &catalog);
    let cycles = experiment.plan().experiment.cycles.max(1);
    let mut worst = 0u8;
    for cycle in 1..=cycles {
        if cycles > 1 {
            ok(&format!("cycle {cycle} of {cycles}"));
        }
        let code = run_one(&experiment, cycle, &stop, exporter.as_ref())?;
        // The exit code is the worst cycle's; an interrupted cycle ends the series.
        worst = worst.max(code);
        if code == crate::exit::INTERRUPTED {
            break;
        }
    }
    Ok(ExitCode::from(worst))
}

/// One cycle: a run directory, a summary, and its status's exit code.
fn run_one(
    experiment: &Experiment<'_>,
    cycle: u32,
    stop: &Arc<AtomicBool>,
    exporter: Option<&llem::exporter::Exporter>,
) -> Result<u8, Failure> {
    let display = RunDisplay::new();
    let outcome = experiment.run_cycle(cycle, stop, |event| {
        if let Some(exporter) = exporter {
            exporter.observe(&event);
        }
        display.show(event)
    });
    display.finish();
    if let Some(exporter) = exporter {
        exporter.run_finished();
    }
    let outcome = outcome.map_err(|e| Failure::failed(e.to_string()))?;
    print_summary(&outcome.result, &outcome.dir);
    if let Some(error) = &outcome.result.error {
        // The summary (stdout) says it too; stderr is where scripts and people look.
        crate::output::error(&format!(
            "{error}
  the run directory keeps what was measured: {}",
            outcome.dir.display()
        ));
    }
    // Documented in docs/result-schema.md: 0 complete, 3 degraded, 4 failed, 130 interrupted.
    Ok(outcome.result.status.exit_code())
}

fn print_inference(i: &llem::experiment::InferenceSummary) {
    let l = &i.latency;
    let warmup = if i.warmup_requests > 0 {
        format!(" ({} warm-up)", i.warmup_requests)
    } else {
        String::new()
    };
    println!(
        "  requests               {} sent · {} ok · {} failed{warmup}",
        i.requests_sent, i.requests_succeeded, i.requests_failed
    );
    let joules = |v: Option<f64>| v.map_or("n/a".to_owned(), |j| format!("{j:.4} J"));
    println!(
        "  energy / output token  {}   (measured window {:.1} s, {})",
        joules(i.energy_per_output_token_j),
        i.window_s,
        joules(i.window_energy_j)
    );
    if let Some(net) = i.energy_per_output_token_net_j {
        println!("  net of idle            {}", joules(Some(net)));
    }
    if let (Some(headline), Some(j)) = (&i.headline, i.headline_energy_per_output_token_j) {
        let which = if headline == "steady_state" {
            "steady state (ML.ENERGY)"
        } else {
            "whole measured window"
        };
        println!("  headline J/token       {}   ({which})", joules(Some(j)));
    }
    if let Some(a) = &i.attribution {
        println!(
            "  per-request energy     interval attribution over {} device(s); {:.4} J idle; sums to the window within {:.0e}",
            a.devices, a.unattributed_j, a.sum_relative_error
        );
    }
    println!(
        "  energy / request       {}",
        joules(i.energy_per_request_j)
    );
    if let Some(w) = i.average_power_w {
        println!("  average power          {w:.1} W");
    }
    println!(
        "  output throughput      {:.1} tok/s · {:.2} req/s   ({} output tokens)",
        l.output_token_throughput, l.request_throughput, l.total_output_tokens
    );
    let ms = |x: f64| {
        if x.is_finite() {
            format!("{x:.1}")
        } else {
            "n/a".into()
        }
    };
    println!(
        "  TTFT p50 / p99         {} / {} ms",
        ms(l.ttft.median),
        ms(l.ttft.p99)
    );
    println!(
        "  ITL  p50 / p99         {} / {} ms",
        ms(l.itl.median),
        ms(l.itl.p99)
    );
    println!("  TPOT mean              {} ms", ms(l.tpot.mean));
    println!(
        "  E2E  p50 / p99         {} / {} ms",
        ms(l.e2e.median),
        ms(l.e2e.p99)
    );
    if let Some(g) = &l.goodput {
        println!(
            "  goodput                {:.1} %  ({:.2} req/s)",
            g.fraction * 100.0,
            g.rate
        );
    }
    if l.missing_token_counts > 0 {
        println!(
            "  {} request(s) without a token count are left out of token figures",
            l.missing_token_counts
        );
    }
}

pub fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

pub fn print_summary(result: &RunResult, dir: &std::path::Path) {
    let status = match result.status {
        RunStatus::Complete => String::new(),
        RunStatus::Interrupted => "  (INTERRUPTED: partial)".to_owned(),
        RunStatus::Degraded => "  (DEGRADED: see below)".to_owned(),
        RunStatus::Failed => "  (FAILED: see below)".to_owned(),
    };
    println!(
        "{} · {:.1} s · {} device(s){status}",
        result.experiment.name,
        result.duration_s,
        result.energy.devices.len()
    );
    let width = result
        .energy
        .devices
        .iter()
        .map(|d| d.source.len() + d.device.len() + 1)
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "  {:<width$}  {:>12}  {:>10}  method",
        "device", "energy", "avg power"
    );
    for d in &result.energy.devices {
        let energy = d.energy_j.map_or("n/a".to_owned(), |j| format!("{j:.3} J"));
        let power = d
            .average_power_w
            .map_or("n/a".to_owned(), |w| format!("{w:.2} W"));
        let method = serde_json::to_value(d.method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let estimated = if d.estimated { " (estimated)" } else { "" };
        // Why a figure is not added (nested in a counted parent, an estimate
        // beside a counter), and readings that became gaps rather than energy.
        let excluded = match (&d.excluded_because, d.energy_j) {
            (Some(why), Some(_)) => format!("  not in total: {why}"),
            _ => String::new(),
        };
        let gaps = if d.gaps.is_empty() {
            String::new()
        } else {
            format!(
                "  {} gap(s){}",
                d.gaps.count,
                d.coverage
                    .map(|c| format!(", {:.1} % of the window covered", c * 100.0))
                    .unwrap_or_default()
            )
        };
        println!(
            "  {:<width$}  {energy:>12}  {power:>10}  {method}{estimated}{excluded}{gaps}",
            format!("{}/{}", d.source, d.device)
        );
    }
    match result.energy.total_j {
        Some(total) => println!(
            "  {:<width$}  {:>12}{}",
            "total",
            format!("{total:.3} J"),
            if result.energy.includes_estimates {
                "  (includes estimates)"
            } else {
                ""
            }
        ),
        None => println!("  no device produced an energy figure (see warnings in result.json)"),
    }
    if let Some(b) = &result.baseline {
        let origin = serde_json::to_value(b.origin)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let power = b
            .total_power_w
            .map_or("n/a".to_owned(), |w| format!("{w:.2} W"));
        println!(
            "  idle baseline          {power} ({origin}, {:.1} s of idle, measured {})",
            b.duration_s, b.measured_at
        );
        if let (Some(base), Some(net)) = (result.energy.baseline_j, result.energy.net_j) {
            println!(
                "  gross / idle / net     {:.3} J / {base:.3} J / {net:.3} J",
                result.energy.total_j.unwrap_or(0.0)
            );
        }
    }
    if let Some(inference) = &result.inference {
        print_inference(inference);
    }
    if let Some(q) = &result.quality {
        let level = serde_json::to_value(q.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let reasons: Vec<&str> = q.reasons.iter().map(|c| c.message.as_str()).collect();
        if reasons.is_empty() {
            println!("  quality                {level}");
        } else {
            println!("  quality                {level}: {}", reasons.join("; "));
        }
    }
    for reason in &result.status_reasons {
        println!(
            "  {}: {reason}",
            serde_json::to_value(&result.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
    }
    if result.sampling.missed_ticks > 0 {
        println!(
            "  {} of {} sampling ticks missed",
            result.sampling.missed_ticks,
            result.sampling.ticks + result.sampling.missed_ticks
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    println!("results: {}/  ({})", dir.display(), files.join(", "));
}
