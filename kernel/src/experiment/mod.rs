//! `llem::Experiment`: a resolved manifest, run. A run is one experiment × one
//! cycle, executed as a pipeline of phases over one [`RunState`] (see
//! [`phase`] for the list). Every phase's start and end is recorded; readings
//! stream to the run directory while it runs; whatever stops it — a failure, a
//! signal, a stuck source — the run directory is written and says so.

mod assemble;
pub mod baseline;
mod dry_run;
pub mod environment;
mod figures;
mod inference;
mod kept_engine;
mod memory;
pub mod phase;
mod result;
mod results;
mod run_dir;
mod sink_feed;
mod sinks;
pub mod status;
pub(crate) mod timestamp;
mod workload;

pub use dry_run::{DryRun, PlannedEngine, PlannedPlugin};
pub use kept_engine::{KeptEngine, engine_key};
pub use memory::MemoryReport;
pub use result::*;
pub use workload::WorkloadSummary;

use crate::catalog::Catalog;
use crate::clock::monotonic_ns;
use crate::loadgen::{Phase, RequestRecord};
use crate::plugin::{BackendInstance, EnergyInstance, PluginFailure, Sandbox};
use crate::sampler::{Sampler, SourceConfig, SourceSeries, WindowMeasurement};
use baseline::BaselineSummary;
use environment::Environment;
use llem_manifest::{Plan, PluginPlan};
use llem_sdk::{EnginePlan, LoadRequest, PlanRequest, PluginKind, Prompt};
use phase::{PhaseLog, PhaseName};
use serde_json::Map;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// How often progress is reported while measuring.
const PROGRESS_PERIOD: Duration = Duration::from_millis(100);

/// One source's name, devices and everything sampled from it.
pub(crate) type Collected = (SourceConfig, Vec<llem_sdk::Device>, SourceSeries);

/// What happened, for a progress display.
#[derive(Debug)]
pub enum Event<'a> {
    /// A plugin instance was opened; `detail` describes what it found.
    Opened {
        instance: &'a str,
        kind: PluginKind,
        detail: String,
    },
    /// A problem that does not stop the run.
    Warning(&'a str),
    /// The engine's state, in words (started, waiting, ready, attached).
    Engine(&'a str),
    /// A phase of the run started (`note`: what it will do).
    Phase { name: PhaseName, note: String },
    /// Requests finished so far (and how many output tokens the server reported).
    Requests {
        warmup: bool,
        completed: u32,
        total: Option<u32>,
        output_tokens: u64,
    },
    /// The sampler started: its live figures (a Prometheus exporter reads
    /// them) and the run they belong to.
    Sampling {
        view: crate::sampler::SamplerView,
        run_id: &'a str,
        experiment: &'a str,
    },
    /// Sampling progress.
    Tick {
        elapsed: Duration,
        total: Duration,
        power_w: Option<f64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Plugin(#[from] PluginFailure),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let context = context.into();
    move |source| RunError::Io { context, source }
}

#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub result: RunResult,
}

/// A resolved manifest, ready to run.
pub struct Experiment<'c> {
    plan: Plan,
    catalog: &'c Catalog,
    /// Context handed to streaming sinks with the run (`study`, `config`).
    labels: Vec<(String, String)>,
}

impl std::fmt::Debug for Experiment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Experiment")
            .field("plan", &self.plan)
            .finish()
    }
}

/// `[load].goodput` as SLOs: `ttft_ms`, `tpot_ms`, `e2el_ms` (milliseconds).
fn goodput_slos(
    load: &llem_manifest::Load,
) -> Result<Vec<(crate::loadgen::Metric, f64)>, RunError> {
    load.goodput
        .iter()
        .map(|(key, ms)| {
            let metric = key.strip_suffix("_ms").unwrap_or(key);
            crate::loadgen::parse_slo(&format!("{metric}:{ms}")).map_err(|e| {
                RunError::Invalid(format!(
                    "[load].goodput.{key}: {e} (keys: ttft_ms, tpot_ms, e2el_ms)"
                ))
            })
        })
        .collect()
}

/// The kernel's sandbox for one plugin, from its manifest grants.
pub fn sandbox_for(plugin: &PluginPlan, run_dir: Option<&Path>) -> Sandbox {
    let grants = &plugin.sandbox;
    Sandbox {
        read_dirs: grants.read_dirs.clone(),
        // Sinks write into the run directory unless the manifest names another.
        write_dir: grants.write_dir.clone().or_else(|| {
            (plugin.kind == PluginKind::Sink)
                .then(|| run_dir.map(Path::to_owned))
                .flatten()
        }),
        env: grants.env.clone(),
        memory_bytes: (grants.memory_mib as usize) << 20,
        call_timeout: Duration::from_millis(u64::from(grants.call_timeout_ms)),
        table: Some(format!("plugins.{}", plugin.instance)),
        connect: grants.connect.clone(),
    }
}

/// Energy sources opened, ready for a sampler.
pub type OpenedSources = Vec<(SourceConfig, Box<dyn EnergyInstance>)>;

/// Open every energy source of `plan` (each at its own `sample_interval_ms`,
/// else the experiment's). Shared by `llem run` and `llem monitor`.
pub fn open_energy_sources(
    plan: &Plan,
    catalog: &Catalog,
    run_dir: Option<&Path>,
    interval: Option<Duration>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<OpenedSources, RunError> {
    let mut sources = Vec::new();
    for plugin in plan.plugins.iter().filter(|p| p.kind == PluginKind::Energy) {
        let code = catalog.load_path(&plugin.location)?;
        let source = code.open_energy(&plugin.config, &sandbox_for(plugin, run_dir))?;
        on_event(Event::Opened {
            instance: &plugin.instance,
            kind: PluginKind::Energy,
            detail: describe_devices(source.devices()),
        });
        // A plugin table's own `sample_interval_ms` wins over everything else.
        let interval = match plugin.sample_interval_ms {
            Some(ms) => Duration::from_millis(u64::from(ms)),
            None => interval.unwrap_or(Duration::from_millis(u64::from(
                plan.experiment.sample_interval_ms,
            ))),
        };
        sources.push((
            SourceConfig {
                name: plugin.instance.clone(),
                interval,
                telemetry_interval: Duration::from_secs(1),
            },
            source,
        ));
    }
    Ok(sources)
}

/// The backend's plan and its instance (kept for parsing metrics afterwards).
struct PlannedBackend {
    instance: Box<dyn BackendInstance>,
    /// The plan as the backend returned it, worker script included.
    plan: EnginePlan,
    summary: BackendSummary,
    options: Map<String, serde_json::Value>,
    port: u16,
}

/// Everything a run accumulates, phase by phase.
pub(crate) struct RunState {
    /// Which cycle of the experiment this run is (1-based).
    pub cycle: u32,
    pub dir: PathBuf,
    pub started: SystemTime,
    pub phases: PhaseLog,
    pub warnings: Vec<String>,
    /// Why the run is degraded, noticed while it ran (more are found when assembling).
    pub reasons: Vec<String>,
    /// What stopped the run, when it failed.
    pub error: Option<String>,
    pub interrupted: bool,
    pub environment: Environment,
    pub baseline: Option<BaselineSummary>,
    pub dataset: Option<DatasetSummary>,
    pub measured: Option<WindowMeasurement>,
    pub collected: Vec<Collected>,
    pub records: Vec<RequestRecord>,
    pub engine_info: Option<crate::engine::worker::WorkerInfo>,
    pub engine_metrics: Vec<(u64, String)>,
    pub workload: Option<WorkloadSummary>,
    pub confinement: Option<crate::engine::EngineConfinement>,
    /// Hands readings, phase edges and request records to the sinks as they come.
    pub sinks: sink_feed::SinkFeed,
}

impl RunState {
    fn warn(&mut self, text: String, on_event: &mut dyn FnMut(Event<'_>)) {
        on_event(Event::Warning(&text));
        self.warnings.push(text);
    }
}

/// What `run_phases` hands back for assembling: the sampler (still running)
/// and the backend, whichever got that far.
#[derive(Default)]
struct Live {
    sampler: Option<Sampler>,
    backend: Option<PlannedBackend>,
    engine: Option<inference::Engine>,
    /// An engine handed over by the previous run of a study, not yet taken.
    kept: Option<KeptEngine>,
    /// The run directory the engine was started in, when it was kept from there.
    kept_from: Option<PathBuf>,
}

impl<'c> Experiment<'c> {
    pub fn new(plan: Plan, catalog: &'c Catalog) -> Self {
        Experiment {
            plan,
            catalog,
            labels: Vec::new(),
        }
    }

    /// Context a streaming sink is told with each run (`begin-run`), such as
    /// `study` and `config` for a run of a study; names lower-case ASCII.
    pub fn with_labels(mut self, labels: Vec<(String, String)>) -> Self {
        self.labels = labels;
        self
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn instances(&self, kind: PluginKind) -> impl Iterator<Item = &PluginPlan> {
        self.plan.plugins.iter().filter(move |p| p.kind == kind)
    }

    /// Checks that need no plugin, done before anything starts, so a run
    /// never fails after it measured because of its own configuration.
    fn preflight(&self) -> Result<(), RunError> {
        if self.instances(PluginKind::Energy).next().is_none() {
            return Err(RunError::Invalid(
                "the experiment has no energy source, so there is nothing to measure; add one with `--plugins <name>` or a [plugins.<name>] table (see `llem plugins list`)".into(),
            ));
        }
        goodput_slos(&self.plan.load)?;
        for kind in [PluginKind::Backend, PluginKind::Dataset] {
            let names: Vec<&str> = self.instances(kind).map(|p| p.instance.as_str()).collect();
            if names.len() > 1 {
                return Err(RunError::Invalid(format!(
                    "one experiment runs one {kind}, found {}: [plugins.{}]; keep one (sweeps over {kind}s are a study)",
                    names.len(),
                    names.join("], [plugins.")
                )));
            }
        }
        if self.instances(PluginKind::Backend).next().is_some() {
            if self.instances(PluginKind::Dataset).next().is_none() {
                let backend = self
                    .instances(PluginKind::Backend)
                    .next()
                    .map_or("", |p| p.instance.as_str());
                return Err(RunError::Invalid(format!(
                    "backend `{backend}` has no prompts to run: add a dataset plugin (see `llem plugins list`); `llem run` without one uses the default workload"
                )));
            }
            if self
                .plan
                .experiment
                .model
                .as_deref()
                .unwrap_or("")
                .is_empty()
            {
                return Err(RunError::Invalid(
                    "backend runs need a model: set `experiment.model` (a Hugging Face id or a local directory)".into(),
                ));
            }
            missing_local_model(self.plan.experiment.model.as_deref().unwrap_or(""))?;
        }
        Ok(())
    }

    /// Run to completion or until `stop` is set; the run directory is written
    /// either way, and kept (marked `failed`) when the run fails after it started.
    pub fn run(
        &self,
        stop: &Arc<AtomicBool>,
        on_event: impl FnMut(Event<'_>),
    ) -> Result<RunOutcome, RunError> {
        self.run_cycle(1, stop, on_event)
    }

    /// One cycle of the experiment (1-based): a run directory of its own.
    /// `experiment.cycles` repeats the whole run; the caller loops.
    pub fn run_cycle(
        &self,
        cycle: u32,
        stop: &Arc<AtomicBool>,
        on_event: impl FnMut(Event<'_>),
    ) -> Result<RunOutcome, RunError> {
        self.run_keeping_engine(cycle, stop, None, false, on_event)
            .0
    }

    /// One cycle, in a study: `kept` is the previous run's engine, used when
    /// it serves this plan ([`engine_key`]) and torn down first otherwise;
    /// with `keep_after`, an engine still healthy at the end of a run that
    /// neither failed nor was interrupted is handed back instead of torn
    /// down, for the next run.
    pub fn run_keeping_engine(
        &self,
        cycle: u32,
        stop: &Arc<AtomicBool>,
        kept: Option<KeptEngine>,
        keep_after: bool,
        mut on_event: impl FnMut(Event<'_>),
    ) -> (Result<RunOutcome, RunError>, Option<KeptEngine>) {
        // An engine this run cannot use goes before anything starts (it holds the GPU).
        let kept = kept.filter(|k| k.serves(&self.plan));
        if let Err(e) = self.preflight() {
            return (Err(e), None);
        }
        match self.run_with(cycle, stop, kept, keep_after, &mut on_event) {
            Ok((outcome, kept)) => (Ok(outcome), kept),
            Err(e) => (Err(e), None),
        }
    }

    fn run_with(
        &self,
        cycle: u32,
        stop: &Arc<AtomicBool>,
        kept: Option<KeptEngine>,
        keep_after: bool,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(RunOutcome, Option<KeptEngine>), RunError> {
        let experiment = &self.plan.experiment;
        let started = SystemTime::now();
        let dir = run_dir::create(&experiment.output_dir, &experiment.name, started).map_err(
            io(format!(
                "cannot create a run directory under {}",
                experiment.output_dir.display()
            )),
        )?;
        let resolved = self
            .plan
            .to_toml_string()
            .map_err(|e| RunError::Invalid(format!("cannot render the resolved manifest: {e}")))?;
        std::fs::write(dir.join("manifest.resolved.toml"), resolved)
            .map_err(io("writing manifest.resolved.toml"))?;

        let mut state = RunState {
            cycle,
            dir: dir.clone(),
            started,
            phases: PhaseLog::default(),
            warnings: Vec::new(),
            reasons: Vec::new(),
            error: None,
            interrupted: false,
            environment: environment::collect(&self.plan.plugins),
            baseline: None,
            dataset: None,
            measured: None,
            collected: Vec::new(),
            records: Vec::new(),
            engine_info: None,
            engine_metrics: Vec::new(),
            workload: None,
            confinement: None,
            sinks: sink_feed::SinkFeed::default(),
        };
        // Sinks start with the run: they follow it as it goes.
        let hub = self.start_sinks(&state);
        state.sinks = hub.feed();
        if let Some(observer) = state.sinks.edge_observer() {
            state.phases.observe(observer);
        }
        let mut live = Live {
            kept,
            ..Live::default()
        };
        let outcome = self.run_phases(&mut state, &mut live, stop, &mut on_event);
        if let Err(error) = outcome {
            if live.sampler.is_none() {
                // Failed before measuring anything: leave no half-empty run
                // behind (the sinks are told the run ended without a result).
                hub.finish(None, &mut on_event);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error);
            }
            state.error = Some(error.to_string());
        }
        state.interrupted |= stop.load(Ordering::Relaxed);
        self.finish(state, live, hub, keep_after, &mut on_event)
    }

    /// One delivery thread per sink of the manifest, started now (see
    /// `sink_feed`): each opens its sink and tells it about the run.
    fn start_sinks(&self, state: &RunState) -> sink_feed::SinkHub {
        let experiment = &self.plan.experiment;
        let run = llem_sdk::RunInfo {
            run_id: run_id(&state.dir),
            experiment: experiment.name.clone(),
            model: experiment.model.clone(),
            cycle: state.cycle,
            started_at: timestamp::rfc3339(state.started),
            labels: self.labels.clone(),
        };
        let jobs = self
            .instances(PluginKind::Sink)
            .map(|plugin| {
                let code = self
                    .catalog
                    .load_path(&plugin.location)
                    .map_err(|failure| (plugin.instance.clone(), Box::new(failure)))?;
                Ok(sink_feed::Job {
                    instance: plugin.instance.clone(),
                    plugin: code,
                    config: plugin.config.clone(),
                    sandbox: sandbox_for(plugin, Some(&state.dir)),
                    run: run.clone(),
                })
            })
            .collect();
        sink_feed::SinkHub::start(jobs)
    }

    /// Phases 1–7. Returns early on the first error; `state` and `live` keep
    /// what was reached, for `finish`.
    fn run_phases(
        &self,
        state: &mut RunState,
        live: &mut Live,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), RunError> {
        let experiment = &self.plan.experiment;
        let measurement = &self.plan.measurement;

        // A kept engine brings its plan, what it said about itself and the
        // baseline measured before it started.
        let mut kept_baseline = None;
        if let Some(kept) = live.kept.take() {
            live.backend = Some(kept.backend);
            live.engine = Some(kept.engine);
            live.kept_from = Some(kept.started_in);
            state.engine_info = kept.engine_info;
            state.confinement = kept.confinement;
            state.environment.engine_versions = kept.engine_versions;
            kept_baseline = kept.baseline;
        }

        // 1. Open sources, load prompts, plan the engine.
        state.phases.begin(PhaseName::OpenSources);
        let sources =
            open_energy_sources(&self.plan, self.catalog, Some(&state.dir), None, on_event)?;
        for (config, source) in &sources {
            for d in source.devices() {
                state
                    .environment
                    .devices
                    .insert(format!("{}/{}", config.name, d.id), d.name.clone());
            }
        }
        let prompts = self.load_prompts(state, on_event)?;
        if live.backend.is_none() {
            live.backend = self.plan_backend(&state.dir, on_event)?;
        }
        if live.backend.is_some() {
            state.workload = Some(WorkloadSummary::new(&self.plan.load, &prompts));
        }
        if let Some(b) = &live.backend {
            crate::engine::request_options::refuse_unaccepted(
                &b.plan,
                &crate::loadgen::Decoding::from_load(&self.plan.load),
                &b.summary.instance,
            )
            .map_err(RunError::Invalid)?;
        }
        live.sampler = Some(
            Sampler::start_tapped(sources, Some(&state.dir), state.sinks.reading_tap())
                .map_err(io("starting the sampler threads"))?,
        );
        state.phases.end(PhaseName::OpenSources);
        let sampler = live
            .sampler
            .as_ref()
            .ok_or_else(|| RunError::Invalid("no sampler".into()))?;
        let run_id = run_id(&state.dir);
        on_event(Event::Sampling {
            view: sampler.view(),
            run_id: &run_id,
            experiment: &experiment.name,
        });

        // 2. Idle baseline, before any engine exists; with a kept engine, the
        // one measured before it started.
        if let Some(from) = live
            .kept_from
            .as_ref()
            .filter(|_| measurement.baseline != "off")
        {
            state.phases.begin(PhaseName::IdleBaseline);
            state.baseline = kept_baseline;
            state.phases.note(
                PhaseName::IdleBaseline,
                format!(
                    "not measured: the engine is kept up from {}, whose baseline this is",
                    from.display()
                ),
            );
            state.phases.end(PhaseName::IdleBaseline);
        } else if measurement.baseline != "off" && !stop.load(Ordering::Relaxed) {
            state.phases.begin(PhaseName::IdleBaseline);
            on_event(Event::Phase {
                name: PhaseName::IdleBaseline,
                note: format!("idle baseline ({})", measurement.baseline),
            });
            let mut warnings = Vec::new();
            state.baseline = baseline::run(
                measurement,
                sampler,
                crate::plugin::wasm::default_cache_dir().as_deref(),
                stop,
                &mut |w| warnings.push(w),
            );
            for w in warnings {
                state.warn(w, on_event);
            }
            if let Some(b) = &state.baseline {
                let note = format!("{:?}, {:.1} s of idle", b.origin, b.duration_s).to_lowercase();
                state.phases.note(PhaseName::IdleBaseline, note);
            }
            state.phases.end(PhaseName::IdleBaseline);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }

        match live.backend.as_ref() {
            Some(backend) => {
                // 3. Start the engine and wait until it is ready. A server's
                // software versions are probed first, with its own Python
                // (importing torch must not land in a measured window).
                state.phases.begin(PhaseName::StartEngine);
                on_event(Event::Phase {
                    name: PhaseName::StartEngine,
                    note: "starting the engine".into(),
                });
                let plan = &backend.plan;
                if let (Some(engine), Some(from)) = (live.engine.as_mut(), live.kept_from.as_ref())
                {
                    let note = format!(
                        "kept up from {} (this run changes only load options): not restarted",
                        from.display()
                    );
                    on_event(Event::Engine(&note));
                    if let Err(e) = engine.resume_scraping(plan) {
                        state.warn(format!("engine metrics not scraped: {e}"), on_event);
                    }
                    state.phases.note(PhaseName::StartEngine, note);
                    state.phases.end(PhaseName::StartEngine);
                    self.drive(state, engine, sampler, &prompts, stop, on_event)?;
                    return self.cooldown(stop, state, on_event);
                }
                if plan.mode == llem_sdk::EngineMode::Server && self.plan.load.endpoint.is_none() {
                    match crate::engine::versions::probe(plan, Duration::from_secs(60), stop) {
                        Ok(v) => state.environment.engine_versions = Some(v),
                        Err(e) => state.warn(format!("engine versions: {e}"), on_event),
                    }
                }
                let model = experiment.model.clone().unwrap_or_default();
                let plugin = self
                    .instances(PluginKind::Backend)
                    .next()
                    .ok_or_else(|| RunError::Invalid("no backend".into()))?;
                let grants = crate::engine::EngineGrants::for_backend(plugin, &model);
                let started = inference::start(
                    &backend.plan,
                    &grants,
                    &self.plan.load,
                    &model,
                    &backend.options,
                    &state.dir,
                    backend.port,
                    stop,
                    &mut state.confinement,
                    &mut |e| on_event(e),
                );
                live.engine = match started {
                    Ok(engine) => Some(engine),
                    // Stopped during start-up: an interrupted run, not a failed
                    // one (the engine is torn down already).
                    Err(_) if stop.load(Ordering::Relaxed) => return Ok(()),
                    Err(e) => return Err(e),
                };
                state.phases.end(PhaseName::StartEngine);
                let engine = live
                    .engine
                    .as_mut()
                    .ok_or_else(|| RunError::Invalid("no engine".into()))?;
                state.engine_info = engine.info();
                if let Some(v) = state.engine_info.as_ref().and_then(|i| i.versions.clone()) {
                    state.environment.engine_versions = Some(v);
                }
                self.drive(state, engine, sampler, &prompts, stop, on_event)?;
            }
            None => self.measure_idle_window(state, sampler, stop, on_event),
        }
        self.cooldown(stop, state, on_event)
    }

    /// 7. Cool-down: idle after the window, recorded.
    fn cooldown(
        &self,
        stop: &AtomicBool,
        state: &mut RunState,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), RunError> {
        let measurement = &self.plan.measurement;
        if measurement.cooldown_s > 0.0 && !stop.load(Ordering::Relaxed) {
            state.phases.begin(PhaseName::Cooldown);
            on_event(Event::Phase {
                name: PhaseName::Cooldown,
                note: format!("cool-down ({:.1} s)", measurement.cooldown_s),
            });
            sleep_unless_stopped(Duration::from_secs_f64(measurement.cooldown_s), stop);
            state.phases.end(PhaseName::Cooldown);
        }
        Ok(())
    }

    /// Energy-only run: the measured window is `experiment.duration_s` of sampling.
    fn measure_idle_window(
        &self,
        state: &mut RunState,
        sampler: &Sampler,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let total = Duration::from_secs_f64(self.plan.experiment.duration_s);
        // The phase starts where the window does (a sink is told this time).
        let start = sampler.begin_window(inference::MEASURED_WINDOW);
        state.phases.begin_at(PhaseName::Measured, start);
        on_event(Event::Phase {
            name: PhaseName::Measured,
            note: "measuring".into(),
        });
        loop {
            let elapsed = Duration::from_nanos(monotonic_ns().saturating_sub(start));
            let power_w = sampler
                .live()
                .iter()
                .filter_map(|d| d.power_w)
                .fold(None, |sum: Option<f64>, w| Some(sum.unwrap_or(0.0) + w));
            on_event(Event::Tick {
                elapsed,
                total,
                power_w,
            });
            if elapsed >= total || stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((total - elapsed).min(PROGRESS_PERIOD));
        }
        self.close_measured(state, sampler);
    }

    fn close_measured(&self, state: &mut RunState, sampler: &Sampler) {
        if let Some(window) = sampler.end_window(inference::MEASURED_WINDOW) {
            // The phase is exactly the window.
            if let Some(span) = state
                .phases
                .phases
                .iter_mut()
                .rev()
                .find(|p| p.name == PhaseName::Measured)
            {
                span.start_ns = window.start_ns;
            }
            state.phases.end_at(PhaseName::Measured, window.end_ns);
            state.measured = Some(window);
        }
    }

    /// Phases 4–6 with an engine: warm-up, thermal settle, the measured batch.
    fn drive(
        &self,
        state: &mut RunState,
        engine: &mut inference::Engine,
        sampler: &Sampler,
        prompts: &[Prompt],
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), RunError> {
        let load = &self.plan.load;
        let measurement = &self.plan.measurement;
        let experiment = &self.plan.experiment;
        let model = experiment.model.clone().unwrap_or_default();
        let mut emit = |e: Event<'_>| on_event(e);
        let feed = state.sinks.clone();
        let mut on_record = |r: &RequestRecord| feed.request(r);

        // 4. Warm-up.
        let until_stable = measurement.warmup == "until-stable";
        let fixed = load.warmup_requests;
        if (until_stable || fixed > 0) && !stop.load(Ordering::Relaxed) {
            state.phases.begin(PhaseName::Warmup);
            emit(Event::Phase {
                name: PhaseName::Warmup,
                note: "warm-up".into(),
            });
            let mut warmup: Vec<RequestRecord> = Vec::new();
            let window = measurement.warmup_window.max(2);
            loop {
                let count = if until_stable {
                    window.min(measurement.warmup_max_requests - warmup.len() as u32)
                } else {
                    fixed
                };
                let batch = inference::Batch {
                    phase: Phase::Warmup,
                    prompts,
                    count,
                    first_index: warmup.len() as u32,
                    closed_loop: true,
                };
                let records = inference::run_batch(
                    engine,
                    &batch,
                    load,
                    &model,
                    experiment.seed,
                    stop,
                    &mut || {},
                    &mut on_record,
                    &mut emit,
                )?;
                warmup.extend(records);
                if !until_stable || stop.load(Ordering::Relaxed) {
                    break;
                }
                let cv = inference::latency_cv(&warmup, window as usize);
                if cv.is_some_and(|cv| cv < measurement.warmup_cv) {
                    state.phases.note(
                        PhaseName::Warmup,
                        format!(
                            "{} requests; latency CV {:.3} < {}",
                            warmup.len(),
                            cv.unwrap_or(0.0),
                            measurement.warmup_cv
                        ),
                    );
                    break;
                }
                if warmup.len() as u32 >= measurement.warmup_max_requests {
                    let text = format!(
                        "warm-up did not stabilise: latency CV {} after {} requests (threshold {}); measuring anyway",
                        cv.map_or("n/a".into(), |c| format!("{c:.3}")),
                        warmup.len(),
                        measurement.warmup_cv
                    );
                    state.warn(text, &mut emit);
                    break;
                }
            }
            if !until_stable {
                state
                    .phases
                    .note(PhaseName::Warmup, format!("{} requests", warmup.len()));
            }
            let failed = warmup.iter().filter(|r| !r.success).count();
            if failed > 0 && failed == warmup.len() {
                let first = warmup
                    .iter()
                    .find_map(|r| r.error.clone())
                    .unwrap_or_default();
                state.records = warmup;
                state.phases.end(PhaseName::Warmup);
                return Err(RunError::Invalid(format!(
                    "every warm-up request failed, so nothing was measured; first error: {first}"
                )));
            }
            state.records = warmup;
            state.phases.end(PhaseName::Warmup);
        }

        // 5. Thermal settle: wait (bounded) until power stops drifting.
        if measurement.thermal_settle_max_s > 0.0 && !stop.load(Ordering::Relaxed) {
            state.phases.begin(PhaseName::ThermalSettle);
            emit(Event::Phase {
                name: PhaseName::ThermalSettle,
                note: "thermal settle".into(),
            });
            let note = thermal_settle(sampler, measurement, stop);
            state.phases.note(PhaseName::ThermalSettle, note);
            state.phases.end(PhaseName::ThermalSettle);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }

        // 6. The measured window: opened right before the first measured request.
        let count = load.num_prompts.unwrap_or(prompts.len() as u32);
        let batch = inference::Batch {
            phase: Phase::Measured,
            prompts,
            count,
            first_index: state.records.len() as u32,
            closed_loop: false,
        };
        let mut opened = false;
        let phases = &mut state.phases;
        let outcome = inference::run_batch(
            engine,
            &batch,
            load,
            &model,
            experiment.seed,
            stop,
            &mut || {
                // The phase starts where the window does, as it opens.
                let start = sampler.begin_window(inference::MEASURED_WINDOW);
                phases.begin_at(PhaseName::Measured, start);
                opened = true;
            },
            &mut on_record,
            &mut emit,
        );
        if opened {
            self.close_measured(state, sampler);
        }
        let (metrics, errors) = engine.finish_metrics();
        state.engine_metrics = metrics;
        if !errors.is_empty() {
            state.warn(
                format!("metrics scraping: {}", errors.join("; ")),
                &mut emit,
            );
        }
        if let Some(why) = inference::died(engine) {
            state
                .reasons
                .push("the engine exited during the measured window".into());
            state.warn(why, &mut emit);
        }
        state.records.extend(outcome?);
        Ok(())
    }

    fn load_prompts(
        &self,
        state: &mut RunState,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Vec<Prompt>, RunError> {
        let Some(plugin) = self.instances(PluginKind::Dataset).next() else {
            return Ok(Vec::new());
        };
        let model = self.plan.experiment.model.clone().unwrap_or_default();
        let code = self.catalog.load_path(&plugin.location)?;
        // The model's tokenizer (a local directory's, or the Hugging Face
        // cache's for an id) lets datasets count tokens exactly. Granted
        // read-only, that one file: not the weights beside it.
        let tokenizer = crate::model::locate(&model).and_then(|m| m.file("tokenizer.json"));
        let mut sandbox = sandbox_for(plugin, Some(&state.dir));
        if let Some(file) = &tokenizer {
            sandbox.read_dirs.push(file.clone());
        }
        let mut dataset = code.open_dataset(&plugin.config, &sandbox)?;
        let found_tokenizer = tokenizer.is_some();
        let prompts = dataset
            .load(&LoadRequest {
                model: model.clone(),
                tokenizer_path: tokenizer.map(|p| p.display().to_string()),
                seed: self.plan.experiment.seed,
                limit: self.plan.load.num_prompts,
            })
            .map_err(|mut failure| {
                // A model named by id that is not downloaded yet has no
                // tokenizer here: say where llem looked and how to fix it.
                if !found_tokenizer && !model.is_empty() && !Path::new(&model).exists() {
                    let cache = crate::model::hf_hub_cache()
                        .map_or("no Hugging Face cache".into(), |c| c.display().to_string());
                    failure.hint = Some(format!(
                        "`{model}` is not a local directory nor in the Hugging Face cache ({cache}): \
                         download it first (`huggingface-cli download {model}`), give a local \
                         directory, or set the dataset's `tokenizer`{}",
                        failure.hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default()
                    ));
                }
                failure
            })?;
        on_event(Event::Opened {
            instance: &plugin.instance,
            kind: PluginKind::Dataset,
            detail: format!("{} prompts", prompts.len()),
        });
        if prompts.is_empty() && self.instances(PluginKind::Backend).next().is_some() {
            return Err(RunError::Invalid(format!(
                "dataset `{}` produced no prompts; check its options (`llem plugins inspect {}`)",
                plugin.instance, plugin.full_name
            )));
        }
        state.dataset = Some(DatasetSummary {
            instance: plugin.instance.clone(),
            prompts: prompts.len(),
            prompts_sha256: Some(result::prompts_sha256(&prompts)),
        });
        Ok(prompts)
    }

    fn plan_backend(
        &self,
        dir: &Path,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<PlannedBackend>, RunError> {
        let Some(plugin) = self.instances(PluginKind::Backend).next() else {
            return Ok(None);
        };
        let model = self.plan.experiment.model.clone().unwrap_or_default();
        let code = self.catalog.load_path(&plugin.location)?;
        let mut instance = code.open_backend(&plugin.config, &sandbox_for(plugin, Some(dir)))?;
        let port = crate::engine::free_port().map_err(io("finding a free port for the engine"))?;
        let plan = instance.plan(&PlanRequest {
            model,
            host: "127.0.0.1".into(),
            port,
            run_dir: dir.display().to_string(),
        })?;
        // Refused before anything is announced: an offline worker cannot
        // honour these (nor attach to a server).
        if plan.mode == llem_sdk::EngineMode::Offline {
            inference::refuse_offline_options(&self.plan.load)?;
        }
        let endpoint = self.plan.load.endpoint.as_deref();
        on_event(Event::Opened {
            instance: &plugin.instance,
            kind: PluginKind::Backend,
            detail: inference::describe(&plan, endpoint),
        });
        // The record keeps the plan, not the worker script's text (a whole
        // Python file): where it goes and its hash, when llem writes it.
        let worker_script = endpoint
            .is_none()
            .then(|| crate::engine::WorkerScript::of(&plan, dir))
            .flatten();
        let recorded = EnginePlan {
            worker_script: None,
            ..plan.clone()
        };
        Ok(Some(PlannedBackend {
            instance,
            plan,
            summary: BackendSummary {
                instance: plugin.instance.clone(),
                executed: endpoint.is_none(),
                plan: recorded,
                worker_script,
                engine_info: None,
                base_url: None,
                confinement: None,
                engine_kept_from: None,
            },
            options: plugin.config.clone(),
            port,
        }))
    }

    /// Phases 8–9, whatever happened before: stop sampling (abandoning a stuck
    /// source), tear the engine down, compute the figures, write result.json.
    fn finish(
        &self,
        mut state: RunState,
        mut live: Live,
        hub: sink_feed::SinkHub,
        keep_after: bool,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(RunOutcome, Option<KeptEngine>), RunError> {
        let end_ns = monotonic_ns();
        state.phases.end_open(end_ns);
        if let Some(sampler) = live.sampler.as_ref()
            && state.measured.is_none()
        {
            // The run ended inside the measured window (a signal, a failure).
            if let Some(window) = sampler.end_window(inference::MEASURED_WINDOW) {
                state.measured = Some(window);
            }
        }
        let base_url = live.engine.as_ref().and_then(|e| e.base_url());
        let mut keep = None;
        if let Some(mut engine) = live.engine.take() {
            if state.engine_metrics.is_empty() {
                state.engine_metrics = engine.finish_metrics().0;
            }
            let healthy = state.error.is_none()
                && !state.interrupted
                && inference::died(&mut engine).is_none();
            if keep_after && healthy {
                keep = Some(engine);
            } else {
                // The engine goes before anything slow is written: no process outlives the measurement.
                drop(engine);
            }
        }
        // The baseline as measured, for a run that takes the engine over.
        let baseline = keep.as_ref().and(state.baseline.clone());
        if let Some(sampler) = live.sampler.take() {
            let (collected, spool_errors) = sampler.stop_within(crate::sampler::STOP_GRACE);
            for e in spool_errors {
                state
                    .reasons
                    .push(format!("not every reading reached the disk: {e}"));
            }
            state.collected = collected;
        }
        for (config, _, series) in &state.collected {
            for error in &series.errors {
                let text = format!("`{}`: {error}", config.name);
                on_event(Event::Warning(&text));
                state.warnings.push(text);
            }
        }

        state.phases.begin(PhaseName::Assemble);
        on_event(Event::Phase {
            name: PhaseName::Assemble,
            note: "assembling the results".into(),
        });
        let goodput = goodput_slos(&self.plan.load).unwrap_or_default();
        let mut backend = live.backend.take();
        let mut parsed_metrics = Vec::new();
        if let Some(b) = backend.as_mut() {
            b.summary.engine_info = state.engine_info.clone();
            b.summary.confinement = state.confinement.clone();
            b.summary.base_url = base_url;
            b.summary.engine_kept_from = live.kept_from.as_ref().map(|p| p.display().to_string());
            parsed_metrics = results::parse_metrics(
                b.instance.as_mut(),
                &state.engine_metrics,
                &mut state.warnings,
            );
        }
        if let Some(info) = &state.engine_info {
            state.environment.engine = serde_json::to_value(info).ok();
        }
        let assembled = assemble::assemble(
            &self.plan,
            &mut state,
            backend.as_ref().map(|b| b.summary.clone()),
            &goodput,
        );
        state.phases.end(PhaseName::Assemble);

        // Everything measured goes to disk even if result.json cannot.
        state.phases.begin(PhaseName::Write);
        on_event(Event::Phase {
            name: PhaseName::Write,
            note: "writing the run directory".into(),
        });
        let mut result = assembled.result;
        if !state.records.is_empty()
            && let Err(e) =
                results::write_requests(&state.dir, &state.records, &assembled.per_request)
        {
            result.status_reasons.push(format!("requests.jsonl: {e}"));
        }
        if let Err(e) = results::write_engine_metrics(&state.dir, &parsed_metrics) {
            result.warnings.push(format!("engine_metrics.jsonl: {e}"));
        }
        // result.json is written right after this phase ends (it records it).
        state.phases.end(PhaseName::Write);
        result.phases = state.phases.phases.clone();
        let json = serde_json::to_string_pretty(&result)
            .map_err(|e| RunError::Invalid(format!("cannot encode result.json: {e}")))?;
        // The sinks get the result even if the disk refuses it.
        let written =
            std::fs::write(state.dir.join("result.json"), &json).map_err(io("writing result.json"));
        // The sinks have had the readings (the spool's last rows included:
        // the sampler has stopped), the phase edges and the requests; now the
        // result, and what each got goes into result.json.
        let delivered = hub.finish(
            Some(llem_sdk::ResultDocument {
                schema_version: SCHEMA_VERSION.into(),
                run_id: result.run_id.clone(),
                json,
            }),
            on_event,
        );
        written?;
        if !delivered.is_empty() {
            // result.json again, now saying what each sink got.
            sinks::record(&mut result, delivered);
            let json = serde_json::to_string_pretty(&result)
                .map_err(|e| RunError::Invalid(format!("cannot encode result.json: {e}")))?;
            std::fs::write(state.dir.join("result.json"), &json)
                .map_err(io("writing result.json"))?;
        }
        let kept = match (keep, backend, engine_key(&self.plan)) {
            (Some(engine), Some(backend), Some(key)) => Some(KeptEngine {
                key,
                backend,
                engine,
                engine_info: state.engine_info.clone(),
                confinement: state.confinement.clone(),
                engine_versions: state.environment.engine_versions.clone(),
                baseline,
                started_in: live.kept_from.take().unwrap_or_else(|| state.dir.clone()),
            }),
            _ => None,
        };
        Ok((
            RunOutcome {
                dir: state.dir,
                result,
            },
            kept,
        ))
    }
}

/// Refuse a model that names a local directory that is not there, before
/// anything starts (the engine would fail to load it after a long start-up,
/// or take it for a Hugging Face id). A Hugging Face id is `name` or
/// `org/name`; anything starting with `/`, `.` or `~`, or with more than one
/// `/`, is a path.
fn missing_local_model(model: &str) -> Result<(), RunError> {
    let looks_local = model.starts_with(['/', '.', '~']) || model.matches('/').count() > 1;
    if !looks_local || Path::new(model).exists() {
        return Ok(());
    }
    let tilde = if model.starts_with('~') {
        " (`~` is not expanded: write the full path)"
    } else {
        ""
    };
    Err(RunError::Invalid(format!(
        "experiment.model = \"{model}\": no such local directory{tilde}; give the path of a model directory (with config.json), or a Hugging Face id such as `Qwen/Qwen3-0.6B`"
    )))
}

/// A run's id: its directory's name.
fn run_id(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let end = monotonic_ns() + duration.as_nanos() as u64;
    while monotonic_ns() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until total power over the last 5 s is within `thermal_settle_drift`
/// of the 5 s before, at most `thermal_settle_max_s`. Says how it ended.
fn thermal_settle(
    sampler: &Sampler,
    measurement: &llem_manifest::Measurement,
    stop: &AtomicBool,
) -> String {
    const SPAN: Duration = Duration::from_secs(5);
    let start = monotonic_ns();
    let max = Duration::from_secs_f64(measurement.thermal_settle_max_s);
    let total_energy = || -> Option<f64> {
        let live = sampler.live();
        let figures: Vec<f64> = live.iter().filter_map(|d| d.energy_j).collect();
        (!figures.is_empty()).then(|| figures.iter().sum())
    };
    let mut previous: Option<f64> = None;
    let mut last = (monotonic_ns(), total_energy());
    loop {
        sleep_unless_stopped(SPAN, stop);
        let now = (monotonic_ns(), total_energy());
        let power = match (last.1, now.1) {
            (Some(a), Some(b)) if now.0 > last.0 => Some((b - a) / ((now.0 - last.0) as f64 / 1e9)),
            _ => None,
        };
        let elapsed = Duration::from_nanos(monotonic_ns().saturating_sub(start));
        if let (Some(p0), Some(p1)) = (previous, power)
            && p0 > 0.0
            && ((p1 - p0) / p0).abs() < measurement.thermal_settle_drift
        {
            return format!(
                "settled after {:.1} s ({p0:.1} W → {p1:.1} W)",
                elapsed.as_secs_f64()
            );
        }
        if stop.load(Ordering::Relaxed) || elapsed >= max {
            return format!(
                "not settled after {:.1} s; measuring anyway",
                elapsed.as_secs_f64()
            );
        }
        previous = power;
        last = now;
    }
}

fn describe_devices(devices: &[llem_sdk::Device]) -> String {
    let names: Vec<String> = devices
        .iter()
        .map(|d| {
            let how = if d.has_energy_counter {
                "energy counter"
            } else if d.has_power {
                "power"
            } else {
                "no reading"
            };
            let estimated = if d.estimated { ", estimated" } else { "" };
            format!("{} ({how}{estimated})", d.name)
        })
        .collect();
    format!("{} device(s): {}", devices.len(), names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::missing_local_model;

    #[test]
    fn only_paths_that_are_not_there_are_refused_as_models() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().display().to_string();
        // Hugging Face ids, and a directory that exists, pass.
        for ok in ["Qwen/Qwen3-0.6B", "gpt2", here.as_str()] {
            assert!(missing_local_model(ok).is_ok(), "{ok}");
        }
        for missing in [
            format!("{here}/not-downloaded"),
            "./models/tiny".to_owned(),
            "~/models/tiny".to_owned(),
            "models/org/tiny".to_owned(),
        ] {
            let err = missing_local_model(&missing).unwrap_err().to_string();
            assert!(err.starts_with("experiment.model = "), "{err}");
        }
    }
}
