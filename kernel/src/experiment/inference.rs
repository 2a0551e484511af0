//! Running the workload: start the engine a backend planned (or attach to a
//! running server) and wait until it is ready, then send prompts in batches —
//! through the load generator to a server, or through the worker protocol to
//! an offline worker — collecting one record per request. Both modes run the
//! same phases: the warm-up batch(es) first, the measured batch after, so the
//! measured window (opened by the caller around the measured batch) never
//! contains model loading or warm-up.

use super::{Event, RunError};
use crate::engine::metrics::{SCRAPE_PERIOD, Scraper};
use crate::engine::{EngineConfinement, EngineGrants, EngineProcess, http, worker};
use crate::loadgen::{self, Api, Arrival, LoadConfig, Phase, RequestRecord};
use llem_manifest::Load;
use llem_sdk::{EngineMode, EnginePlan, Prompt};
use serde_json::{Map, Value};
use std::collections::HashSet;
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
    /// An offline worker speaking the worker protocol, past `ready`.
    Offline {
        process: EngineProcess,
        session: Option<worker::Session>,
    },
}

impl Engine {
    /// What the engine said about itself (offline workers), if anything.
    pub fn info(&self) -> Option<worker::WorkerInfo> {
        match self {
            Engine::Offline {
                session: Some(s), ..
            } => Some(s.info.clone()),
            _ => None,
        }
    }

    pub fn base_url(&self) -> Option<String> {
        match self {
            Engine::Server { base_url, .. } => Some(base_url.clone()),
            Engine::Offline { .. } => None,
        }
    }

    /// Scrape the server's metrics again (a kept engine, whose scraper the
    /// previous run finished); nothing for offline workers or without a page.
    pub fn resume_scraping(&mut self, plan: &EnginePlan) -> Result<(), String> {
        if let Engine::Server {
            base_url, scraper, ..
        } = self
            && scraper.is_none()
            && let Some(path) = &plan.metrics_path
        {
            let (authority, _) = http::split_url(base_url)?;
            *scraper = Some(
                Scraper::start(authority, path.clone(), SCRAPE_PERIOD)
                    .map_err(|e| format!("cannot start the metrics scraper: {e}"))?,
            );
        }
        Ok(())
    }

    /// Engine metrics scraped so far, and scraping errors (server mode).
    pub fn finish_metrics(&mut self) -> (Vec<(u64, String)>, Vec<String>) {
        match self {
            Engine::Server { scraper, .. } => {
                scraper.take().map(Scraper::finish).unwrap_or_default()
            }
            Engine::Offline { .. } => Default::default(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Engine::Offline { session, .. } = self
            && let Some(session) = session.take()
        {
            session.shutdown();
        }
    }
}

fn engine_error(e: impl std::fmt::Display) -> RunError {
    RunError::Invalid(format!("engine: {e}"))
}

/// A start-up failure, with a hint when the engine's Python is the wrong one:
/// it cannot import a module (`ModuleNotFoundError: No module named 'torch'`)
/// or does not exist. `options` are the backend's; the hint names its
/// `python` option when it has one (`pytorch.python = "…"`).
fn start_failure(
    what: &str,
    error: impl std::fmt::Display,
    plan: &EnginePlan,
    grants: &EngineGrants,
    options: &Map<String, Value>,
) -> RunError {
    let text = error.to_string();
    let instance = &grants.instance;
    let missing_module = text.split("No module named ").nth(1).and_then(|rest| {
        rest.trim_start_matches(['\'', '"'])
            .split(['\'', '"', ' ', '\n'])
            .next()
            .filter(|m| !m.is_empty())
    });
    let python = options.get("python").and_then(Value::as_str);
    let not_found = text.starts_with("cannot start") && text.contains("No such file");
    let problem = match (missing_module, not_found) {
        (Some(module), _) => Some(format!(
            "the engine's Python (`{}`) cannot import `{module}`",
            python.unwrap_or(&plan.program)
        )),
        (None, true) if python == Some(plan.program.as_str()) => {
            Some(format!("there is no Python `{}`", plan.program))
        }
        _ => None,
    };
    let hint = match (problem, python) {
        (Some(problem), Some(_)) => format!(
            "\n  hint: {problem}: set `{instance}.python` to the interpreter of the environment that has the engine installed, e.g. `python = \"/path/to/venv/bin/python\"` in [plugins.{instance}] or `--set {instance}.python=/path/to/venv/bin/python`"
        ),
        (Some(problem), None) => {
            format!("\n  hint: {problem}: install it into the environment the engine runs in")
        }
        (None, _) => String::new(),
    };
    RunError::Invalid(format!("{what}: {text}{hint}"))
}

/// Load options an offline worker cannot honour, refused by key before anything starts.
pub fn refuse_offline_options(load: &Load) -> Result<(), RunError> {
    if load.request_rate.is_some() {
        return Err(RunError::Invalid(
            "[load].request_rate: an offline worker takes every request as soon as `max_concurrency` allows (no arrival process); remove `request_rate`, or run the backend in server mode (`mode = \"server\"`) to measure an arrival rate".into(),
        ));
    }
    if load.endpoint.is_some() {
        return Err(RunError::Invalid(
            "[load].endpoint: attaching to a server needs a server-mode backend; the backend planned an offline worker".into(),
        ));
    }
    Ok(())
}

/// One line saying what runs the workload: the server llem attaches to
/// (`endpoint`), or the engine the plan starts, its mode and command.
pub fn describe(plan: &EnginePlan, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(url) => format!(
            "{}: attached to {} (a running server; llem starts nothing)",
            plan.engine,
            url.trim_end_matches('/')
        ),
        None => {
            let mode = match plan.mode {
                EngineMode::Server => "server",
                EngineMode::Offline => "offline worker",
            };
            format!(
                "{} ({mode}): {} {}",
                plan.engine,
                plan.program,
                plan.args.join(" ")
            )
        }
    }
}

/// The attached server's Prometheus page, scraped as a started engine's is:
/// the plan's `metrics_path` on the endpoint's host and port, when the server
/// answers it. A server without one is said, and is no error.
fn attached_scraper(
    base_url: &str,
    metrics_path: Option<&str>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Option<Scraper>, RunError> {
    let Some(path) = metrics_path else {
        on_event(Event::Engine(
            "the backend names no metrics page for this engine: engine metrics not scraped",
        ));
        return Ok(None);
    };
    let authority = match http::split_url(base_url) {
        Ok((authority, _)) => authority,
        Err(e) => {
            on_event(Event::Warning(&format!("engine metrics not scraped: {e}")));
            return Ok(None);
        }
    };
    let url = format!("http://{authority}{path}");
    match http::get(&authority, path, Duration::from_secs(2)) {
        Ok(response) if response.status == 200 => {
            let scraper = Scraper::start(authority, path.to_owned(), SCRAPE_PERIOD)
                .map_err(|e| engine_error(format!("cannot start the metrics scraper: {e}")))?;
            on_event(Event::Engine(&format!(
                "scraping the server's metrics at {url}"
            )));
            Ok(Some(scraper))
        }
        answer => {
            let why = match answer {
                Ok(response) => format!("HTTP {}", response.status),
                Err(e) => e.to_string(),
            };
            on_event(Event::Warning(&format!(
                "the attached server has no metrics page at {url} ({why}): engine metrics not scraped"
            )));
            Ok(None)
        }
    }
}

/// Start the planned engine and wait until it can take requests (server:
/// healthy; offline: the worker loaded its model and said `ready`). With
/// `[load].endpoint`, attach to that server instead: nothing is started.
#[allow(clippy::too_many_arguments)]
pub fn start(
    plan: &EnginePlan,
    grants: &EngineGrants,
    load: &Load,
    model: &str,
    options: &Map<String, Value>,
    run_dir: &Path,
    port: u16,
    stop: &AtomicBool,
    confinement: &mut Option<EngineConfinement>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Engine, RunError> {
    let ready_timeout = Duration::from_secs(u64::from(plan.ready_timeout_s.max(1)));
    if let Some(endpoint) = &load.endpoint {
        let base_url = endpoint.trim_end_matches('/').to_owned();
        let note = format!("attached to the server at {base_url} (not started by llem)");
        on_event(Event::Engine(&note));
        let scraper = attached_scraper(&base_url, plan.metrics_path.as_deref(), on_event)?;
        return Ok(Engine::Server {
            _process: None,
            base_url,
            scraper,
        });
    }
    match plan.mode {
        EngineMode::Server => {
            let mut process = EngineProcess::spawn(plan, grants, run_dir, false)
                .map_err(|e| start_failure("engine", e, plan, grants, options))?;
            announce_confinement(&process, on_event);
            // Recorded as soon as the engine exists: also for one that never gets ready.
            *confinement = Some(process.confinement().clone());
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
                .wait_healthy(&base_url, health, ready_timeout, stop)
                .map_err(|e| start_failure("engine", e, plan, grants, options))?;
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
            let mut process = EngineProcess::spawn(plan, grants, run_dir, true)
                .map_err(|e| start_failure("engine", e, plan, grants, options))?;
            announce_confinement(&process, on_event);
            // Recorded as soon as the engine exists: also for one that never gets ready.
            *confinement = Some(process.confinement().clone());
            let note = format!(
                "started worker `{} {}` (pid {}, logs: {}); waiting up to {} s for it to load the model",
                plan.program,
                plan.args.join(" "),
                process.pid(),
                process.log_path().display(),
                ready_timeout.as_secs()
            );
            on_event(Event::Engine(&note));
            let decoding = loadgen::Decoding::from_load(load);
            let session = worker::Session::start(
                &mut process,
                model,
                options,
                &decoding,
                ready_timeout,
                stop,
            )
            .map_err(|e| start_failure("worker", e, plan, grants, options))?;
            let ready = format!(
                "worker ready: {} {} on {}",
                session.info.engine, session.info.engine_version, session.info.device
            );
            on_event(Event::Engine(&ready));
            Ok(Engine::Offline {
                process,
                session: Some(session),
            })
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

/// `Some(why)` if an engine llem started has exited (it should run until torn down).
pub fn died(engine: &mut Engine) -> Option<String> {
    let process = match engine {
        Engine::Server {
            _process: Some(p), ..
        } => p,
        Engine::Offline { process, .. } => process,
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

/// The load generator's configuration from `[load]`, for one batch.
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
    // Warm-up is a batch of its own (see `run_batch`).
    config.warmup_requests = 0;
    config.seed = seed;
    config.request_timeout = Duration::from_secs_f64(load.request_timeout_s);
    config.decoding = loadgen::Decoding::from_load(load);
    config
        .validate()
        .map_err(|e| RunError::Invalid(format!("[load]: {e}")))?;
    Ok(config)
}

/// One batch of requests: `count` prompts (cycling through `prompts`),
/// labelled `phase`, numbered from `first_index`.
pub struct Batch<'a> {
    pub phase: Phase,
    pub prompts: &'a [Prompt],
    pub count: u32,
    pub first_index: u32,
    /// Warm-up batches run closed-loop at the configured concurrency, whatever
    /// the measured arrival process.
    pub closed_loop: bool,
}

/// Send one batch and collect its records. `on_first_send` runs once, right
/// before the first request goes out (the measured window opens there).
#[allow(clippy::too_many_arguments)]
pub fn run_batch(
    engine: &mut Engine,
    batch: &Batch<'_>,
    load: &Load,
    model: &str,
    seed: u64,
    stop: &AtomicBool,
    on_first_send: &mut dyn FnMut(),
    on_record: &mut dyn FnMut(&RequestRecord),
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<Vec<RequestRecord>, RunError> {
    let warmup = batch.phase == Phase::Warmup;
    // Each record goes to `on_record` once, as it completes, numbered as the
    // run numbers it (the batch's phase, indices after the earlier batches);
    // those never completed (cancelled, the worker gone) after the batch.
    let mut reported: HashSet<u32> = HashSet::new();
    let mut report = |mut record: RequestRecord| {
        record.phase = batch.phase;
        record.index += batch.first_index;
        reported.insert(record.index);
        on_record(&record);
    };
    let mut records = match engine {
        Engine::Server { base_url, .. } => {
            let mut config = load_config(load, base_url, model, seed)?;
            config.num_requests = Some(batch.count);
            if batch.closed_loop {
                config.arrival = Arrival::Closed;
            }
            // The window opens once the client's connections are open and
            // its requests rendered, right before the first one is written.
            loadgen::run_blocking_observed(
                &config,
                batch.prompts,
                stop,
                on_first_send,
                |progress| {
                    on_event(Event::Requests {
                        warmup,
                        completed: progress.completed + progress.failed,
                        total: progress.total,
                        output_tokens: progress.output_tokens,
                    });
                },
                |record| report(record.clone()),
            )
            .map_err(|e| RunError::Invalid(format!("load generator: {e}")))?
        }
        Engine::Offline { process, session } => {
            let session = session
                .as_mut()
                .ok_or_else(|| RunError::Invalid("worker: the session has ended".into()))?;
            let prompts: Vec<Prompt> = batch
                .prompts
                .iter()
                .cycle()
                .take(batch.count as usize)
                .cloned()
                .collect();
            let submit = worker::Submit {
                decoding: loadgen::Decoding::from_load(load),
                max_concurrency: load.max_concurrency,
            };
            on_first_send();
            let total = prompts.len() as u32;
            let records = session
                .run(process, &prompts, &submit, stop, |done, _, finished| {
                    report(
                        finished
                            .record
                            .clone()
                            .into_request_record(finished.position),
                    );
                    on_event(Event::Requests {
                        warmup,
                        completed: done as u32,
                        total: Some(total),
                        output_tokens: 0,
                    })
                })
                .map_err(|e| RunError::Invalid(format!("worker: {e}")))?;
            records
                .into_iter()
                .enumerate()
                .map(|(i, r)| r.into_request_record(i))
                .collect()
        }
    };
    for r in &mut records {
        r.phase = batch.phase;
        r.index += batch.first_index;
    }
    for r in records.iter().filter(|r| !reported.contains(&r.index)) {
        on_record(r);
    }
    Ok(records)
}

/// Coefficient of variation (std / mean) of the end-to-end latency of the
/// last `window` successful records; `None` with fewer.
pub fn latency_cv(records: &[RequestRecord], window: usize) -> Option<f64> {
    let e2e: Vec<f64> = records
        .iter()
        .filter(|r| r.success)
        .map(|r| r.end_ns.saturating_sub(r.send_ns) as f64)
        .collect();
    let window = window.max(2);
    if e2e.len() < window {
        return None;
    }
    llem_analysis::stats::coefficient_of_variation(&e2e[e2e.len() - window..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(send: u64, end: u64) -> RequestRecord {
        RequestRecord {
            index: 0,
            prompt_id: String::new(),
            phase: Phase::Warmup,
            send_ns: send,
            first_token_ns: None,
            chunk_ns: vec![],
            end_ns: end,
            input_tokens: None,
            output_tokens: None,
            tokens_from_usage: false,
            output_text_len: 0,
            output_text: None,
            success: true,
            error: None,
        }
    }

    #[test]
    fn latency_cv_is_sample_std_over_mean_of_the_last_window() {
        // Latencies 100, 300 then 200, 200, 260 (last 3): mean 220,
        // sample var ((−20)² + (−20)² + 40²)/2 = 1200, std 34.641, cv 0.157459.
        let records: Vec<_> = [100, 300, 200, 200, 260]
            .iter()
            .map(|&l| record(0, l))
            .collect();
        let cv = latency_cv(&records, 3).unwrap();
        assert!((cv - 34.641_016_151 / 220.0).abs() < 1e-9, "{cv}");
        assert_eq!(latency_cv(&records[..2], 3), None);
    }
}
