//! `Experiment::dry_run`: everything a run would do, checked as a run checks
//! it, with nothing started: no run directory, no engine, no sampling. The
//! same checks back `llem config validate`, so a manifest that validates does
//! not fail at run time on its own configuration.

use super::memory::{self, MemoryReport};
use super::phase::PhaseName;
use super::{Experiment, RunError, sandbox_for};
use crate::plugin::sanitize;
use llem_sdk::{EngineMode, PluginKind};
use serde::Serialize;
use std::path::PathBuf;

/// One plugin instance of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPlugin {
    pub instance: String,
    pub plugin: String,
    pub kind: PluginKind,
    pub location: PathBuf,
    /// What the sandbox grants it, one line each (native plugins: none apply).
    pub grants: Vec<String>,
}

/// The engine the run would start (or attach to).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedEngine {
    pub engine: String,
    pub mode: EngineMode,
    /// `program arg…`, as it would be run (the worker script's path is the run
    /// directory's, made when the run starts).
    pub command_line: String,
    /// The program's path on this machine, or why it would be refused.
    pub program: Result<PathBuf, String>,
    /// `[load].endpoint` when attaching instead of starting.
    pub attached_to: Option<String>,
}

/// What `llem run` would do.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub plugins: Vec<PlannedPlugin>,
    /// Where the model's files are here (`None`: not found; the engine may download it).
    pub model: Option<String>,
    pub engine: Option<PlannedEngine>,
    /// The phases in order, each with what it would do.
    pub phases: Vec<(PhaseName, String)>,
    /// The accelerator memory estimate, or why there is none.
    pub memory: Result<MemoryReport, String>,
    /// The engine's Python stack, as `llem env` checks it (`None`: attached,
    /// or no backend): a Python without torch is found here, not at start-up.
    pub stack: Option<crate::doctor::BackendCheck>,
}

impl Experiment<'_> {
    /// Check and describe the run without starting anything (see the module
    /// documentation). Errors are those `run` would stop with before measuring.
    pub fn dry_run(&self) -> Result<DryRun, RunError> {
        self.describe_run(true)
    }

    /// The dry run's checks and plan without probing the engine's Python
    /// (`stack` is `None`): what `llem config validate` needs, fast.
    pub fn check(&self) -> Result<DryRun, RunError> {
        self.describe_run(false)
    }

    fn describe_run(&self, probe_stack: bool) -> Result<DryRun, RunError> {
        self.preflight()?;
        let plan = &self.plan;
        let plugins = plan
            .plugins
            .iter()
            .map(|p| PlannedPlugin {
                instance: p.instance.clone(),
                plugin: p.full_name.clone(),
                kind: p.kind,
                location: p.location.clone(),
                grants: p
                    .grants
                    .iter()
                    .map(|g| sanitize(&g.to_string()).into_owned())
                    .collect(),
            })
            .collect();
        let model_name = plan.experiment.model.clone().unwrap_or_default();
        let model = crate::model::locate(&model_name);

        // The engine plan, from the backend itself: its own option checks run here.
        let would_be_dir = plan
            .experiment
            .output_dir
            .join(format!("{}-<time>", plan.experiment.name));
        let mut engine = None;
        let mut backend_options = None;
        if let Some(backend) = self.plan_backend(&would_be_dir, &mut |_| {})? {
            let p = &backend.summary.plan;
            if p.mode == EngineMode::Offline {
                super::inference::refuse_offline_options(&plan.load)?;
            }
            let plugin = self
                .instances(PluginKind::Backend)
                .next()
                .ok_or_else(|| RunError::Invalid("no backend".into()))?;
            let grants = crate::engine::EngineGrants::for_backend(plugin, &model_name);
            let attached_to = plan.load.endpoint.clone();
            engine = Some(PlannedEngine {
                engine: p.engine.clone(),
                mode: p.mode,
                command_line: sanitize(&format!("{} {}", p.program, p.args.join(" "))).into_owned(),
                program: if attached_to.is_some() {
                    Ok(PathBuf::new())
                } else {
                    crate::engine::policy::check_program(&p.program, &grants)
                },
                attached_to,
            });
            backend_options = Some(backend.options.clone());
        }

        let memory = match (&backend_options, &model) {
            (None, _) => Err("no backend: nothing to load".to_owned()),
            (Some(_), None) => Err(format!(
                "`{model_name}` is neither a local directory nor in the Hugging Face cache ({}): no config.json to estimate from",
                crate::model::hf_hub_cache()
                    .map_or("no cache directory".into(), |c| c.display().to_string())
            )),
            (Some(options), Some(location)) => match location.file("config.json") {
                None => Err(format!("{} has no config.json", location.dir().display())),
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|text| {
                        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
                    })
                    .and_then(|config| memory::report(&config, options, self.gpu_memory())),
            },
        };

        let stack = match (&engine, self.instances(PluginKind::Backend).next()) {
            (Some(e), Some(plugin)) if probe_stack && e.attached_to.is_none() => {
                Some(crate::doctor::check_backend(
                    self.catalog,
                    plugin,
                    crate::discovery::short_name(&plugin.full_name),
                ))
            }
            _ => None,
        };

        Ok(DryRun {
            stack,
            plugins,
            model: model.as_ref().map(crate::model::ModelLocation::describe),
            phases: self.planned_phases(engine.as_ref()),
            engine,
            memory,
        })
    }

    /// Each GPU's memory, from the energy sources' telemetry (`memory_total`).
    /// Sources that cannot be opened here simply give none.
    fn gpu_memory(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for plugin in self.instances(PluginKind::Energy) {
            let Ok(code) = self.catalog.load_path(&plugin.location) else {
                continue;
            };
            let Ok(mut source) = code.open_energy(&plugin.config, &sandbox_for(plugin, None))
            else {
                continue;
            };
            let devices = source.devices().to_vec();
            let Ok(telemetry) = source.telemetry() else {
                continue;
            };
            for t in telemetry {
                let Some(device) = devices.get(t.device as usize) else {
                    continue;
                };
                if device.kind != llem_sdk::DeviceKind::Gpu {
                    continue;
                }
                if let Some(m) = t.metrics.iter().find(|m| m.name == "memory_total") {
                    out.push((
                        format!("{}/{} {}", plugin.instance, device.id, device.name),
                        m.value as u64,
                    ));
                }
            }
        }
        out
    }

    fn planned_phases(&self, engine: Option<&PlannedEngine>) -> Vec<(PhaseName, String)> {
        let m = &self.plan.measurement;
        let load = &self.plan.load;
        let mut phases = vec![(
            PhaseName::OpenSources,
            format!(
                "open {} energy source(s), load the prompts, plan the engine",
                self.instances(PluginKind::Energy).count()
            ),
        )];
        if m.baseline != "off" {
            phases.push((
                PhaseName::IdleBaseline,
                format!(
                    "idle baseline ({}, {} s when measured)",
                    m.baseline, m.baseline_s
                ),
            ));
        }
        match engine {
            None => phases.push((
                PhaseName::Measured,
                format!("sample for {} s", self.plan.experiment.duration_s),
            )),
            Some(e) => {
                phases.push((
                    PhaseName::StartEngine,
                    match &e.attached_to {
                        Some(url) => format!("attach to {url}"),
                        None => format!("start {} ({:?}) and wait until ready", e.engine, e.mode)
                            .to_lowercase(),
                    },
                ));
                if m.warmup == "until-stable" {
                    phases.push((
                        PhaseName::Warmup,
                        format!(
                            "batches of {} until latency CV < {} (at most {} requests)",
                            m.warmup_window, m.warmup_cv, m.warmup_max_requests
                        ),
                    ));
                } else if load.warmup_requests > 0 {
                    phases.push((
                        PhaseName::Warmup,
                        format!(
                            "{} requests, excluded from every figure",
                            load.warmup_requests
                        ),
                    ));
                }
                if m.thermal_settle_max_s > 0.0 {
                    phases.push((
                        PhaseName::ThermalSettle,
                        format!(
                            "up to {} s until power drifts < {}",
                            m.thermal_settle_max_s, m.thermal_settle_drift
                        ),
                    ));
                }
                let count = load
                    .num_prompts
                    .map_or("every prompt".into(), |n| format!("{n} prompts"));
                let pacing = match (load.request_rate, load.max_concurrency) {
                    (Some(r), Some(c)) => format!("{r} requests/s, at most {c} in flight"),
                    (Some(r), None) => format!("{r} requests/s"),
                    (None, Some(c)) => format!("at most {c} in flight"),
                    (None, None) => "all at once".into(),
                };
                phases.push((PhaseName::Measured, format!("{count}, {pacing}")));
            }
        }
        if m.cooldown_s > 0.0 {
            phases.push((PhaseName::Cooldown, format!("{} s of idle", m.cooldown_s)));
        }
        phases.push((PhaseName::Assemble, "figures from the raw data".into()));
        phases.push((PhaseName::Write, "result.json and the run directory".into()));
        phases
    }
}
