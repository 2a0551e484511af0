//! `llem::Experiment`: a resolved manifest, run. Opens every plugin with its
//! sandbox, measures, and writes one run directory — including when the run
//! is interrupted or a device fails midway (the result says so).

mod inference;
mod result;
mod results;
mod run_dir;
mod timestamp;

pub use result::*;

use crate::catalog::Catalog;
use crate::clock::monotonic_ns;
use crate::plugin::{PluginFailure, Sandbox};
use crate::sampler::{Sampler, SourceConfig, SourceSeries, WindowMeasurement};
use llem_manifest::{Plan, PluginPlan};
use llem_sdk::{LoadRequest, PlanRequest, PluginKind, ResultDocument, Sample, SampleBatch};
use serde_json::Map;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// The window covering the whole measured run.
const RUN_WINDOW: &str = "run";
/// How often progress is reported while measuring.
const PROGRESS_PERIOD: Duration = Duration::from_millis(100);

/// One source's name, devices and everything sampled from it.
type Collected = (SourceConfig, Vec<llem_sdk::Device>, SourceSeries);

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
    /// Requests finished so far (and how many output tokens the server reported).
    Requests {
        warmup: bool,
        completed: u32,
        total: Option<u32>,
        output_tokens: u64,
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
        connect: grants.connect.clone(),
    }
}

impl<'c> Experiment<'c> {
    pub fn new(plan: Plan, catalog: &'c Catalog) -> Self {
        Experiment { plan, catalog }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn instances(&self, kind: PluginKind) -> impl Iterator<Item = &PluginPlan> {
        self.plan.plugins.iter().filter(move |p| p.kind == kind)
    }

    /// Run to completion or until `stop` is set; the run directory is written either way.
    pub fn run(
        &self,
        stop: &Arc<AtomicBool>,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<RunOutcome, RunError> {
        let experiment = &self.plan.experiment;
        if self.instances(PluginKind::Energy).next().is_none() {
            return Err(RunError::Invalid(
                "the experiment has no energy source, so there is nothing to measure; add one with `--plugins <name>` or a [plugins.<name>] table (see `llem plugins list`)".into(),
            ));
        }
        let started = SystemTime::now();
        let dir = run_dir::create(&experiment.output_dir, &experiment.name, started).map_err(
            io(format!(
                "cannot create a run directory under {}",
                experiment.output_dir.display()
            )),
        )?;
        let outcome = self.run_in(&dir, started, stop, &mut on_event);
        if outcome.is_err() && !dir.join("result.json").exists() {
            // Failed before measuring anything: leave no half-empty run behind.
            let _ = std::fs::remove_dir_all(&dir);
        }
        outcome
    }

    fn run_in(
        &self,
        dir: &Path,
        started: SystemTime,
        stop: &Arc<AtomicBool>,
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<RunOutcome, RunError> {
        let experiment = &self.plan.experiment;
        let dir = dir.to_owned();
        let resolved = self
            .plan
            .to_toml_string()
            .map_err(|e| RunError::Invalid(format!("cannot render the resolved manifest: {e}")))?;
        std::fs::write(dir.join("manifest.resolved.toml"), resolved)
            .map_err(io("writing manifest.resolved.toml"))?;

        let mut warnings = Vec::new();
        if experiment.cycles > 1 {
            let text = format!(
                "experiment.cycles = {}: repeating cycles is not implemented yet; this run measured one cycle",
                experiment.cycles
            );
            on_event(Event::Warning(&text));
            warnings.push(text);
        }
        let mut sources = Vec::new();
        for plugin in self.instances(PluginKind::Energy) {
            let code = self.catalog.load_path(&plugin.location)?;
            let source = code.open_energy(&plugin.config, &sandbox_for(plugin, Some(&dir)))?;
            let detail = describe_devices(source.devices());
            on_event(Event::Opened {
                instance: &plugin.instance,
                kind: PluginKind::Energy,
                detail,
            });
            sources.push((
                SourceConfig {
                    name: plugin.instance.clone(),
                    interval: Duration::from_millis(u64::from(
                        plugin
                            .sample_interval_ms
                            .unwrap_or(experiment.sample_interval_ms),
                    )),
                    telemetry_interval: Duration::from_secs(1),
                },
                source,
            ));
        }

        let model = experiment.model.clone().unwrap_or_default();
        let (dataset, prompts) = match self.instances(PluginKind::Dataset).next() {
            Some(plugin) => {
                let code = self.catalog.load_path(&plugin.location)?;
                // A local model directory's tokenizer lets datasets count tokens exactly.
                let tokenizer = Path::new(&model).join("tokenizer.json");
                let tokenizer = tokenizer.is_file().then_some(tokenizer);
                let mut sandbox = sandbox_for(plugin, Some(&dir));
                if let Some(dir) = tokenizer.as_deref().and_then(Path::parent) {
                    sandbox.read_dirs.push(dir.to_owned());
                }
                let mut dataset = code.open_dataset(&plugin.config, &sandbox)?;
                let prompts = dataset.load(&LoadRequest {
                    model: model.clone(),
                    tokenizer_path: tokenizer.map(|p| p.display().to_string()),
                    seed: experiment.seed,
                    limit: self.plan.load.num_prompts,
                })?;
                on_event(Event::Opened {
                    instance: &plugin.instance,
                    kind: PluginKind::Dataset,
                    detail: format!("{} prompts", prompts.len()),
                });
                let summary = DatasetSummary {
                    instance: plugin.instance.clone(),
                    prompts: prompts.len(),
                };
                (Some(summary), prompts)
            }
            None => (None, Vec::new()),
        };

        // An engine to drive: planned by the backend, started (or attached to) here.
        let mut engine = None;
        let mut backend = None;
        let mut backend_options = Map::new();
        if let Some(plugin) = self.instances(PluginKind::Backend).next() {
            if prompts.is_empty() {
                return Err(RunError::Invalid(format!(
                    "backend `{}` has no prompts to run: add a dataset plugin (see `llem plugins list`)",
                    plugin.instance
                )));
            }
            if model.is_empty() {
                return Err(RunError::Invalid(
                    "backend runs need a model: set `experiment.model` (a Hugging Face id or a local directory)".into(),
                ));
            }
            let code = self.catalog.load_path(&plugin.location)?;
            let mut instance =
                code.open_backend(&plugin.config, &sandbox_for(plugin, Some(&dir)))?;
            let port =
                crate::engine::free_port().map_err(io("finding a free port for the engine"))?;
            let plan = instance.plan(&PlanRequest {
                model: model.clone(),
                host: "127.0.0.1".into(),
                port,
                run_dir: dir.display().to_string(),
            })?;
            on_event(Event::Opened {
                instance: &plugin.instance,
                kind: PluginKind::Backend,
                detail: format!(
                    "{} ({:?}): {} {}",
                    plan.engine,
                    plan.mode,
                    plan.program,
                    plan.args.join(" ")
                ),
            });
            let grants = crate::engine::EngineGrants::for_backend(plugin, &model);
            let started_engine =
                inference::start(&plan, &grants, &self.plan.load, &dir, port, &mut on_event)?;
            let base_url = match &started_engine {
                inference::Engine::Server { base_url, .. } => Some(base_url.clone()),
                inference::Engine::Offline { .. } => None,
            };
            backend = Some((
                instance,
                BackendSummary {
                    instance: plugin.instance.clone(),
                    executed: self.plan.load.endpoint.is_none(),
                    plan,
                    engine_info: None,
                    base_url,
                    confinement: inference::confinement(&started_engine),
                },
            ));
            backend_options = plugin.config.clone();
            engine = Some(started_engine);
        }

        let total = Duration::from_secs_f64(experiment.duration_s);
        let sampler = Sampler::start(sources).map_err(io("starting the sampler threads"))?;
        sampler.begin_window(RUN_WINDOW);
        let mut interrupted = false;
        let mut incomplete = false;
        let mut driven = None;
        match engine.as_mut() {
            Some(engine) => {
                let outcome = inference::drive(
                    engine,
                    &self.plan.load,
                    &model,
                    &backend_options,
                    &prompts,
                    experiment.seed,
                    stop,
                    &sampler,
                    &mut on_event,
                );
                interrupted = stop.load(Ordering::Relaxed);
                match outcome {
                    Ok(d) => driven = Some(d),
                    Err(e) => {
                        // Keep what was measured: the error becomes a warning and
                        // the run is written, marked incomplete.
                        let text = e.to_string();
                        on_event(Event::Warning(&text));
                        warnings.push(text);
                        incomplete = true;
                    }
                }
                if let Some(why) = inference::died(engine) {
                    on_event(Event::Warning(&why));
                    warnings.push(why);
                    incomplete = true;
                }
            }
            None => loop {
                let elapsed =
                    Duration::from_nanos(monotonic_ns().saturating_sub(sampler.started_ns()));
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
                if elapsed >= total {
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    interrupted = true;
                    break;
                }
                std::thread::sleep((total - elapsed).min(PROGRESS_PERIOD));
            },
        }
        let measured = sampler.end_window(inference::MEASURED_WINDOW);
        let window = sampler.end_window(RUN_WINDOW);
        let collected = sampler.stop();
        // The engine goes before anything slow is written: no process outlives the measurement.
        drop(engine);
        for (config, _, series) in &collected {
            for error in &series.errors {
                let text = format!("`{}`: {error}", config.name);
                on_event(Event::Warning(&text));
                warnings.push(text);
            }
        }
        let window =
            window.ok_or_else(|| RunError::Invalid("the run window was not open".into()))?;

        let mut inference_summary = None;
        let backend = match backend {
            Some((mut instance, mut summary)) => {
                if let Some(driven) = driven {
                    warnings.extend(driven.warnings.iter().cloned());
                    summary.engine_info = driven.worker.clone();
                    let measured = measured.as_ref().unwrap_or(&window);
                    let goodput = goodput_slos(&self.plan.load)?;
                    let (result, per_request) =
                        results::inference(&driven.records, measured, &goodput);
                    results::write_requests(&dir, &driven.records, &per_request)
                        .map_err(io("writing requests.jsonl"))?;
                    let parsed =
                        results::parse_metrics(instance.as_mut(), &driven.metrics, &mut warnings);
                    results::write_engine_metrics(&dir, &parsed)
                        .map_err(io("writing engine_metrics.jsonl"))?;
                    inference_summary = Some(result);
                }
                Some(summary)
            }
            None => None,
        };

        write_timeseries(&dir, &collected).map_err(io("writing timeseries.csv"))?;
        write_telemetry(&dir, &collected).map_err(io("writing telemetry.csv"))?;
        let result = RunResult {
            schema_version: SCHEMA_VERSION.into(),
            run_id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            llem_version: env!("CARGO_PKG_VERSION").into(),
            status: if interrupted {
                RunStatus::Interrupted
            } else if incomplete {
                RunStatus::Incomplete
            } else {
                RunStatus::Complete
            },
            experiment: ExperimentSummary {
                name: experiment.name.clone(),
                model: experiment.model.clone(),
                seed: experiment.seed,
            },
            started_at: timestamp::rfc3339(started),
            duration_s: window.duration_s(),
            energy: energy_summary(&window, &collected),
            sampling: SamplingSummary {
                interval_ms: experiment.sample_interval_ms,
                ticks: collected.iter().map(|(_, _, s)| s.ticks).sum(),
                missed_ticks: collected.iter().map(|(_, _, s)| s.missed_ticks).sum(),
                sampler_cpu_s: collected
                    .iter()
                    .map(|(_, _, s)| s.thread_cpu_ns)
                    .sum::<u64>() as f64
                    / 1e9,
            },
            dataset,
            backend,
            inference: inference_summary,
            warnings,
        };
        let json = serde_json::to_string_pretty(&result)
            .map_err(|e| RunError::Invalid(format!("cannot encode result.json: {e}")))?;
        std::fs::write(dir.join("result.json"), &json).map_err(io("writing result.json"))?;
        self.deliver_to_sinks(&dir, &collected, &result, &json, &mut on_event);
        Ok(RunOutcome { dir, result })
    }

    /// Sinks get the samples and the result. A failing sink is a warning: the
    /// run directory already holds everything.
    fn deliver_to_sinks(
        &self,
        dir: &Path,
        sources: &[Collected],
        result: &RunResult,
        json: &str,
        on_event: &mut impl FnMut(Event<'_>),
    ) {
        for plugin in self.instances(PluginKind::Sink) {
            let delivered = (|| -> Result<(), PluginFailure> {
                let code = self.catalog.load_path(&plugin.location)?;
                let mut sink = code.open_sink(&plugin.config, &sandbox_for(plugin, Some(dir)))?;
                for (config, devices, series) in sources {
                    sink.write_samples(&SampleBatch {
                        source: config.name.clone(),
                        devices: devices.iter().map(|d| d.id.clone()).collect(),
                        samples: series
                            .readings
                            .iter()
                            .map(|(t_ns, r)| Sample {
                                device: r.device,
                                t_ns: *t_ns,
                                energy_uj: r.energy_uj,
                                power_mw: r.power_mw,
                            })
                            .collect(),
                    })?;
                }
                sink.write_result(&ResultDocument {
                    schema_version: SCHEMA_VERSION.into(),
                    run_id: result.run_id.clone(),
                    json: json.to_owned(),
                })?;
                sink.finish()
            })();
            if let Err(error) = delivered {
                let text = error.to_string();
                on_event(Event::Warning(&text));
            }
        }
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

fn energy_summary(window: &WindowMeasurement, sources: &[Collected]) -> EnergySummary {
    let mut devices = Vec::new();
    let mut measured = window.devices.iter();
    let duration = window.duration_s();
    for (config, source_devices, series) in sources {
        for (device, acc) in source_devices.iter().zip(&series.accumulators) {
            let in_window = measured.next();
            let energy_j = in_window.and_then(|w| w.energy_j);
            devices.push(DeviceEnergy {
                source: config.name.clone(),
                device: device.id.clone(),
                name: device.name.clone(),
                kind: device.kind,
                method: acc.method(),
                estimated: device.estimated,
                energy_j,
                average_power_w: energy_j.filter(|_| duration > 0.0).map(|e| e / duration),
                samples: in_window.map_or(0, |w| w.samples),
                counter_wraps: acc.wraps,
                counter_resets: acc.resets,
            });
        }
    }
    let figures: Vec<f64> = devices.iter().filter_map(|d| d.energy_j).collect();
    EnergySummary {
        total_j: (!figures.is_empty()).then(|| figures.iter().sum()),
        includes_estimates: devices.iter().any(|d| d.estimated && d.energy_j.is_some()),
        devices,
    }
}

/// Device telemetry (utilisation, temperature, clocks, throttling…), one row
/// per metric per read; only written when a source offers any.
fn write_telemetry(dir: &Path, sources: &[Collected]) -> std::io::Result<()> {
    if sources
        .iter()
        .all(|(_, _, series)| series.telemetry.is_empty())
    {
        return Ok(());
    }
    let file = std::fs::File::create(dir.join("telemetry.csv"))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "t_ns,source,device,metric,value,unit")?;
    for (config, devices, series) in sources {
        for (t_ns, item) in &series.telemetry {
            let id = devices
                .get(item.device as usize)
                .map_or("?", |d| d.id.as_str());
            for metric in &item.metrics {
                writeln!(
                    out,
                    "{t_ns},{},{id},{},{},{}",
                    config.name, metric.name, metric.value, metric.unit
                )?;
            }
        }
    }
    out.flush()
}

/// Raw readings, one row per device per read: the audit trail behind every figure.
fn write_timeseries(dir: &Path, sources: &[Collected]) -> std::io::Result<()> {
    let file = std::fs::File::create(dir.join("timeseries.csv"))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "t_ns,source,device,energy_uj,power_mw")?;
    for (config, devices, series) in sources {
        for (t_ns, r) in &series.readings {
            let id = devices
                .get(r.device as usize)
                .map_or("?", |d| d.id.as_str());
            let energy = r.energy_uj.map(|v| v.to_string()).unwrap_or_default();
            let power = r.power_mw.map(|v| v.to_string()).unwrap_or_default();
            writeln!(out, "{t_ns},{},{id},{energy},{power}", config.name)?;
        }
    }
    out.flush()
}
