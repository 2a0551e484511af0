//! Running the workload: start the engine a backend planned (or attach to a
//! running server), send the prompts — through the load generator to a server,
//! or through the worker protocol to an offline worker — and collect one
//! record per request. The measured window opens when the measured phase
//! starts (after warm-up) and closes when the last request ends.

use super::{Event, RunError};
use crate::engine::metrics::{SCRAPE_PERIOD, Scraper};
use crate::engine::{EngineConfinement, EngineGrants, EngineProcess, worker};
use crate::loadgen::{self, Api, Arrival, LoadConfig, Phase, RequestRecord};
use crate::sampler::Sampler;
use llem_manifest::Load;
use llem_sdk::{EngineMode, EnginePlan, Prompt};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The window energy per token and per request are measured over.
pub const MEASURED_WINDOW: &str = "measured";

/// An engine ready to take requests.
pub enum Engine {
    /// A server llem started (`_process`, held so it lives exactly as long as
    /// the run and is torn down on drop) or attached to (`None`).
    Server {
        _process: Option<EngineProcess>,
        base_url: String,
        scraper: Option<Scraper>,
    },
    /// An offline worker speaking the worker protocol.
    Offline { process: EngineProcess },
}

/// What driving the workload produced.
pub struct Driven {
    pub records: Vec<RequestRecord>,
    pub worker: Option<worker::WorkerInfo>,
    pub metrics: Vec<(u64, String)>,
    pub warnings: Vec<String>,
}

fn engine_error(e: impl std::fmt::Display) -> RunError {
    RunError::Invalid(format!("engine: {e}"))
}

/// Start the planned engine and wait until it can take requests.
pub fn start(
    plan: &EnginePlan,
    grants: &EngineGrants,
    load: &Load,
    run_dir: &Path,
    port: u16,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Engine, RunError> {
    let ready_timeout = Duration::from_secs(u64::from(plan.ready_timeout_s.max(1)));
    if let Some(endpoint) = &load.endpoint {
        let base_url = endpoint.trim_end_matches('/').to_owned();
        let note = format!("attached to the server at {base_url} (not started by llem)");
        on_event(Event::Engine(&note));
        return Ok(Engine::Server {
            _process: None,
            base_url,
            scraper: None,
        });
    }
    match plan.mode {
        EngineMode::Server => {
            let mut process =
                EngineProcess::spawn(plan, grants, run_dir, false).map_err(engine_error)?;
            announce_confinement(&process, on_event);
            let authority = format!("127.0.0.1:{port}");
            let base_url = format!(
                "http://{authority}{}",
                plan.api_base_path.as_deref().unwrap_or("/v1")
            );
            let health = plan.health_path.as_deref().unwrap_or("/health");
            let waiting = format!(
                "started `{} {}` (pid {}, logs: {}); waiting up to {} s for {health}",
                plan.program,
                plan.args.join(" "),
                process.pid(),
                process.log_path().display(),
                ready_timeout.as_secs()
            );
            on_event(Event::Engine(&waiting));
            process
                .wait_healthy(&base_url, health, ready_timeout)
                .map_err(engine_error)?;
            let scraper = match &plan.metrics_path {
                Some(path) => Some(
                    Scraper::start(authority, path.clone(), SCRAPE_PERIOD).map_err(|e| {
                        engine_error(format!("cannot start the metrics scraper: {e}"))
                    })?,
                ),
                None => None,
            };
            on_event(Event::Engine(&format!("ready at {base_url}")));
            Ok(Engine::Server {
                _process: Some(process),
                base_url,
                scraper,
            })
        }
        EngineMode::Offline => {
            let process =
                EngineProcess::spawn(plan, grants, run_dir, true).map_err(engine_error)?;
            announce_confinement(&process, on_event);
            let note = format!(
                "started worker `{} {}` (pid {}, logs: {})",
                plan.program,
                plan.args.join(" "),
                process.pid(),
                process.log_path().display()
            );
            on_event(Event::Engine(&note));
            Ok(Engine::Offline { process })
        }
    }
}

/// Say how the engine is confined; a missing confinement or refused
/// environment entries are warnings.
fn announce_confinement(process: &EngineProcess, on_event: &mut impl FnMut(Event<'_>)) {
    let c = process.confinement();
    if c.notice.is_some() {
        on_event(Event::Warning(&c.describe()));
    } else {
        on_event(Event::Engine(&c.describe()));
    }
    if !c.env_dropped.is_empty() {
        let text = format!(
            "the plan's environment entries {} were not passed to the engine (not on llem's allow-list; grant them with `engine_env` in the backend's sandbox table)",
            c.env_dropped.join(", ")
        );
        on_event(Event::Warning(&text));
    }
}

/// The confinement the engine llem started runs under (`None` when attached).
pub fn confinement(engine: &Engine) -> Option<EngineConfinement> {
    match engine {
        Engine::Server {
            _process: Some(p), ..
        } => Some(p.confinement().clone()),
        Engine::Offline { process } => Some(process.confinement().clone()),
        Engine::Server { _process: None, .. } => None,
    }
}

/// `Some(why)` if an engine llem started has exited (it should run until torn down).
pub fn died(engine: &mut Engine) -> Option<String> {
    let process = match engine {
        Engine::Server {
            _process: Some(p), ..
        } => p,
        Engine::Offline { process } => process,
        Engine::Server { _process: None, .. } => return None,
    };
    process.exited().map(|status| {
        format!(
            "the engine exited during the run ({status}); last lines of {}:\n{}",
            process.log_path().display(),
            process.log_tail()
        )
    })
}

/// The load generator's configuration from `[load]`.
pub fn load_config(
    load: &Load,
    base_url: &str,
    model: &str,
    seed: u64,
) -> Result<LoadConfig, RunError> {
    let api = match load.api.as_str() {
        "chat" => Api::Chat,
        _ => Api::Completions,
    };
    let mut config = LoadConfig::new(base_url, api, model);
    config.max_concurrency = load.max_concurrency;
    config.arrival = match load.request_rate {
        None => Arrival::Closed,
        Some(rate) if (load.burstiness - 1.0).abs() < f64::EPSILON => Arrival::Poisson { rate },
        Some(rate) => Arrival::Gamma {
            rate,
            burstiness: load.burstiness,
        },
    };
    config.num_requests = load.num_prompts;
    config.warmup_requests = load.warmup_requests;
    config.seed = seed;
    config.request_timeout = Duration::from_secs_f64(load.request_timeout_s);
    config.ignore_eos = load.ignore_eos;
    config
        .validate()
        .map_err(|e| RunError::Invalid(format!("[load]: {e}")))?;
    Ok(config)
}

/// Send every prompt and collect the records. Opens the measured window on
/// `sampler` when the measured phase starts.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    engine: &mut Engine,
    load: &Load,
    model: &str,
    backend_options: &Map<String, Value>,
    prompts: &[Prompt],
    seed: u64,
    stop: &AtomicBool,
    sampler: &Sampler,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Driven, RunError> {
    match engine {
        Engine::Server {
            base_url, scraper, ..
        } => {
            let config = load_config(load, base_url, model, seed)?;
            let mut window_open = false;
            let records = loadgen::run_blocking(&config, prompts, stop, |progress| {
                if progress.phase == Some(Phase::Measured) && !window_open {
                    sampler.begin_window(MEASURED_WINDOW);
                    window_open = true;
                }
                on_event(Event::Requests {
                    warmup: progress.phase == Some(Phase::Warmup),
                    completed: progress.completed + progress.failed,
                    total: progress.total,
                    output_tokens: progress.output_tokens,
                });
            })
            .map_err(|e| RunError::Invalid(format!("load generator: {e}")))?;
            if !window_open {
                sampler.begin_window(MEASURED_WINDOW);
            }
            let (metrics, errors) = scraper.take().map(Scraper::finish).unwrap_or_default();
            let warnings = if errors.is_empty() {
                Vec::new()
            } else {
                vec![format!("metrics scraping: {}", errors.join("; "))]
            };
            Ok(Driven {
                records,
                worker: None,
                metrics,
                warnings,
            })
        }
        Engine::Offline { process } => {
            let ready = Duration::from_secs(600);
            let prompts: Vec<Prompt> = match load.num_prompts {
                Some(n) => prompts.iter().take(n as usize).cloned().collect(),
                None => prompts.to_vec(),
            };
            sampler.begin_window(MEASURED_WINDOW);
            let total = prompts.len() as u32;
            let job = worker::Job {
                model,
                options: backend_options,
                prompts: &prompts,
                ignore_eos: load.ignore_eos,
                ready_timeout: ready,
            };
            let (info, records) = worker::run(process, job, stop, |done, _| {
                on_event(Event::Requests {
                    warmup: false,
                    completed: done as u32,
                    total: Some(total),
                    output_tokens: 0,
                })
            })
            .map_err(|e| RunError::Invalid(format!("worker: {e}")))?;
            let records = records
                .into_iter()
                .enumerate()
                .map(|(i, r)| worker_record(i, r))
                .collect();
            Ok(Driven {
                records,
                worker: Some(info),
                metrics: Vec::new(),
                warnings: Vec::new(),
            })
        }
    }
}

/// A worker's record in the load generator's shape, so both modes report alike.
fn worker_record(index: usize, r: worker::WorkerRecord) -> RequestRecord {
    let end_ns = r.end_ns.unwrap_or(r.send_ns);
    RequestRecord {
        index: index as u32,
        prompt_id: r.prompt_id,
        phase: Phase::Measured,
        send_ns: r.send_ns,
        first_token_ns: r.first_token_ns,
        // One timestamp per token: a chunk of n tokens contributes n equal times,
        // so inter-token gaps inside a chunk read as 0, as they arrived together.
        chunk_ns: r
            .chunks
            .iter()
            .flat_map(|&(t, n)| std::iter::repeat_n(t, n.max(1) as usize))
            .collect(),
        end_ns,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        tokens_from_usage: r.output_tokens.is_some(),
        output_text_len: 0,
        output_text: None,
        success: r.error.is_none(),
        error: r.error,
    }
}
