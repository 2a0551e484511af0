//! The load generator (issue #4): an OpenAI-compatible streaming client for
//! `/v1/completions` and `/v1/chat/completions` that sends prompts on a
//! schedule and records, per request, CLOCK_MONOTONIC timestamps of the send,
//! of every streamed chunk carrying text and of the end of the stream — the
//! same clock as the energy sampler, so requests and energy line up without
//! conversion.
//!
//! Scheduling follows `vllm bench serve`: `max_concurrency` caps requests in
//! flight (`--max-concurrency`); `arrival` is closed-loop (as fast as the cap
//! allows: `--request-rate inf`), Poisson (`--request-rate`) or gamma
//! (`--burstiness`); an optional ramp raises the rate from `from_rate` to the
//! target over a duration; warm-up requests (`--num-warmups`) run first, closed
//! loop, and are marked [`Phase::Warmup`]. A request waiting for a free slot
//! is sent when one frees (its send time is then, not its scheduled time).
//!
//! ```no_run
//! # use std::sync::atomic::AtomicBool;
//! # use llem::loadgen::*;
//! # fn prompts() -> Vec<llem_sdk::Prompt> { vec![] }
//! let mut config = LoadConfig::new("http://127.0.0.1:8000/v1", Api::Chat, "Qwen/Qwen3-8B");
//! config.max_concurrency = Some(64);
//! config.arrival = Arrival::Poisson { rate: 20.0 };
//! let records = run_blocking(&config, &prompts(), &AtomicBool::new(false), |_| {})?;
//! let summary = summarize(&records, None, &[(Metric::Ttft, 200.0), (Metric::Tpot, 50.0)]);
//! println!("p99 TTFT {:.1} ms", summary.ttft.p99);
//! # Ok::<(), LoadError>(())
//! ```

mod arrival;
mod chunk;
mod client;
mod decoding;
mod endpoint;
mod http1;
mod sse;
pub mod stamped;
mod summary;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use llem_sdk::{Prompt, PromptBody};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

pub use arrival::ArrivalTimes;
pub use decoding::Decoding;
pub use summary::{Goodput, LatencySummary, Metric, Stats, parse_slo, percentile, summarize};

use crate::clock::monotonic_ns;
use client::Client;
use endpoint::{Endpoint, valid_header};

/// How often the stop flag is looked at. Coarse on purpose: each wake-up costs
/// CPU that lands in what llem measures (see docs/architecture.md, deadlines).
const STOP_POLL: Duration = Duration::from_millis(50);

/// Connections opened before the first request at most (see [`prewarm_count`]).
const MAX_PREWARM: u32 = 4096;

/// Which OpenAI-compatible endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST {base_url}/completions` with `prompt`.
    Completions,
    /// `POST {base_url}/chat/completions` with `messages`.
    Chat,
}

/// When requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// As fast as `max_concurrency` allows (all at once without a cap).
    Closed,
    /// Poisson process, `rate` requests per second.
    Poisson { rate: f64 },
    /// Gamma-distributed gaps with mean 1/`rate`; `burstiness` is the shape:
    /// < 1 burstier than Poisson, 1 Poisson, > 1 more regular, ∞ constant gaps.
    Gamma { rate: f64, burstiness: f64 },
}

/// Raise the arrival rate from `from_rate` to the target over `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ramp {
    Linear { from_rate: f64, duration: Duration },
    Exponential { from_rate: f64, duration: Duration },
}

/// What to send, where, and how fast.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The API root, e.g. `http://127.0.0.1:8000/v1` (plain HTTP only for now).
    pub base_url: String,
    pub api: Api,
    /// The `model` field of each request.
    pub model: String,
    /// Requests in flight at most (`None`: no cap).
    pub max_concurrency: Option<u32>,
    pub arrival: Arrival,
    pub ramp: Option<Ramp>,
    /// Measured requests to send (prompts are cycled). `None`: one pass over
    /// the prompts, or as many as `duration` allows when it is set.
    pub num_requests: Option<u32>,
    /// Stop sending measured requests after this long (those in flight finish).
    pub duration: Option<Duration>,
    /// Warm-up requests, sent first (closed loop, same concurrency cap) and
    /// marked [`Phase::Warmup`]. They cycle the prompts from the first.
    pub warmup_requests: u32,
    /// Seed of the arrival process: the same seed gives the same schedule.
    pub seed: u64,
    /// Limit on one request, from send to the end of its stream.
    pub request_timeout: Duration,
    /// Temperature, top_p, seed, output-token limit and `ignore_eos` of every
    /// request, always sent explicitly (engines' own defaults differ).
    pub decoding: Decoding,
    /// Merged into every request body last (engine-specific sampling options…).
    pub extra_body: Map<String, Value>,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Keep each request's output text in its record even when the server
    /// reported token counts (it is always kept when it did not, so that the
    /// kernel can count tokens with the model's tokenizer).
    pub keep_output_text: bool,
}

impl LoadConfig {
    /// Closed loop, one pass over the prompts, no cap, no warm-up, 10 min
    /// timeout, greedy decoding ([`Decoding::default`]).
    pub fn new(base_url: impl Into<String>, api: Api, model: impl Into<String>) -> Self {
        LoadConfig {
            base_url: base_url.into(),
            api,
            model: model.into(),
            max_concurrency: None,
            arrival: Arrival::Closed,
            ramp: None,
            num_requests: None,
            duration: None,
            warmup_requests: 0,
            seed: 0,
            request_timeout: Duration::from_secs(600),
            decoding: Decoding::default(),
            extra_body: Map::new(),
            api_key: None,
            keep_output_text: false,
        }
    }

    /// Reject impossible or unbounded combinations, naming the field.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |msg: String| Err(LoadError::InvalidConfig(msg));
        Endpoint::parse(&self.base_url, self.api)?;
        if self.max_concurrency == Some(0) {
            return bad("max_concurrency must be at least 1".into());
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        match self.arrival {
            Arrival::Closed => {}
            Arrival::Poisson { rate } | Arrival::Gamma { rate, .. } if !positive(rate) => {
                return bad(format!(
                    "arrival rate must be a positive number of requests/s, not {rate}"
                ));
            }
            Arrival::Gamma { burstiness, .. } if burstiness.is_nan() || burstiness <= 0.0 => {
                return bad(format!("burstiness must be positive, not {burstiness}"));
            }
            _ => {}
        }
        if let Some(
            Ramp::Linear {
                from_rate,
                duration,
            }
            | Ramp::Exponential {
                from_rate,
                duration,
            },
        ) = self.ramp
        {
            if self.arrival == Arrival::Closed {
                return bad("a ramp needs a request rate (Poisson or gamma arrivals)".into());
            }
            if !positive(from_rate) {
                return bad(format!("ramp from_rate must be positive, not {from_rate}"));
            }
            if duration.is_zero() {
                return bad("ramp duration must be more than 0".into());
            }
        }
        if self.arrival == Arrival::Closed
            && self.max_concurrency.is_none()
            && self.num_requests.is_none()
            && self.duration.is_some()
        {
            return bad(
                "closed-loop load for a duration needs max_concurrency (or num_requests): \
                 without either it would send without limit"
                    .into(),
            );
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout must be more than 0".into());
        }
        self.decoding.check().map_err(LoadError::InvalidConfig)?;
        if self.extra_body.contains_key("stream") {
            return bad(
                "extra_body cannot set `stream`: the load generator needs streaming".into(),
            );
        }
        Ok(())
    }
}

/// Warm-up or measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warmup,
    Measured,
}

/// One request as the client saw it. Times are CLOCK_MONOTONIC ns
/// ([`crate::clock::monotonic_ns`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Send order over the whole run, warm-up included (0, 1, …).
    pub index: u32,
    pub prompt_id: String,
    pub phase: Phase,
    /// Just before the connection is taken from the pool (or opened) and the
    /// request written (in one write), as `vllm bench serve` starts its clock.
    pub send_ns: u64,
    /// Arrival of the first chunk carrying text.
    pub first_token_ns: Option<u64>,
    /// Arrival of every chunk carrying text: when the kernel received the
    /// bytes (the socket's receive timestamp, so not delayed by the client
    /// waiting for a CPU), else when the read returned. Chunks that arrived
    /// in one read share the time of its latest packet.
    pub chunk_ns: Vec<u64>,
    /// Arrival of `data: [DONE]` (or the end of the body); for a failure, when
    /// it was noticed.
    pub end_ns: u64,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    /// The token counts are the server's `usage`.
    pub tokens_from_usage: bool,
    /// Bytes (UTF-8) of output text received.
    pub output_text_len: usize,
    /// The output text, kept when the server gave no token counts (or when
    /// [`LoadConfig::keep_output_text`] is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_text: Option<String>,
    pub success: bool,
    /// Why it failed: connection, HTTP status and body excerpt, stream error,
    /// malformed stream, timeout, or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RequestRecord {
    /// A request about to be sent: nothing measured yet, not (yet) a success.
    pub fn pending(index: u32, prompt_id: String, phase: Phase) -> Self {
        RequestRecord {
            index,
            prompt_id,
            phase,
            send_ns: 0,
            first_token_ns: None,
            chunk_ns: Vec::new(),
            end_ns: 0,
            input_tokens: None,
            output_tokens: None,
            tokens_from_usage: false,
            output_text_len: 0,
            output_text: None,
            success: false,
            error: None,
        }
    }
}

/// Passed to the progress callback after every send and every completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    pub phase: Option<Phase>,
    /// Requests this phase will send, when known.
    pub total: Option<u32>,
    pub sent: u32,
    pub completed: u32,
    pub failed: u32,
    pub in_flight: u32,
    /// Output tokens reported by the server so far this phase.
    pub output_tokens: u64,
}

/// Why a run could not start (failures of single requests are in their records).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load configuration: {0}")]
    InvalidConfig(String),
    #[error("no prompts to send")]
    NoPrompts,
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// One request, rendered once: the HTTP head and the JSON body, written in
/// one piece when sent.
fn render(
    config: &LoadConfig,
    endpoint: &Endpoint,
    auth: Option<&str>,
    prompt: &Prompt,
) -> Result<Bytes, LoadError> {
    let body = request_body(config, prompt)?;
    Ok(http1::render_request(
        &endpoint.path,
        &endpoint.authority,
        auth,
        &body,
    ))
}

/// Connections to open before the first request ([`Client::prewarm`]): as
/// many as can be in flight at once, when that is known (a cap, or a closed
/// loop's whole count); none for open-loop arrivals without a cap.
fn prewarm_count(config: &LoadConfig, prompts: usize) -> usize {
    let requests = match (config.num_requests, config.duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(u32::try_from(prompts).unwrap_or(u32::MAX)),
    };
    let most = requests.map(|n| n.max(config.warmup_requests));
    let in_flight = match (config.max_concurrency, most) {
        (Some(cap), Some(n)) => cap.min(n),
        (Some(cap), None) => cap,
        (None, Some(n)) if config.arrival == Arrival::Closed => n,
        (None, _) => 0,
    };
    in_flight.min(MAX_PREWARM) as usize
}

/// The JSON body of one request.
fn request_body(config: &LoadConfig, prompt: &Prompt) -> Result<Bytes, LoadError> {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(config.model.clone()));
    match (&prompt.body, config.api) {
        (PromptBody::Text(text), Api::Completions) => {
            body.insert("prompt".into(), Value::String(text.clone()));
        }
        (PromptBody::Text(text), Api::Chat) => {
            body.insert(
                "messages".into(),
                json!([{ "role": "user", "content": text }]),
            );
        }
        (PromptBody::Chat(messages), Api::Chat) => {
            let messages = messages
                .iter()
                .map(|m| json!({ "role": m.role, "content": m.content }))
                .collect();
            body.insert("messages".into(), Value::Array(messages));
        }
        (PromptBody::Chat(_), Api::Completions) => {
            return Err(LoadError::InvalidConfig(format!(
                "prompt `{}` is a chat conversation, which the completions API cannot take: \
                 use the chat API",
                prompt.id
            )));
        }
    }
    // Every engine gets the same decoding: nothing left to its defaults.
    config.decoding.request_fields(prompt, &mut body);
    body.insert("stream".into(), Value::Bool(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    for (key, value) in &config.extra_body {
        body.insert(key.clone(), value.clone());
    }
    serde_json::to_vec(&Value::Object(body))
        .map(Bytes::from)
        .map_err(|e| LoadError::InvalidConfig(format!("request body: {e}")))
}

async fn resolve(endpoint: &Endpoint) -> Result<SocketAddr, LoadError> {
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, endpoint.port));
    }
    let resolve_error = |source| LoadError::Resolve {
        host: endpoint.host.clone(),
        source,
    };
    let mut addrs = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(resolve_error)?;
    addrs.next().ok_or_else(|| {
        resolve_error(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ))
    })
}

struct Shared {
    client: Client,
    timeout: Duration,
    keep_text: bool,
}

/// Run the load: warm-up, then the measured requests. Needs a tokio runtime
/// with I/O and time enabled ([`run_blocking`] makes one).
///
/// Setting `stop` stops sending and cancels the requests in flight (their
/// records say `cancelled`); what was recorded is returned. Records are in
/// send order.
pub async fn run(
    config: &LoadConfig,
    prompts: &[Prompt],
    stop: &AtomicBool,
    on_progress: impl FnMut(&Progress),
) -> Result<Vec<RequestRecord>, LoadError> {
    run_observed(config, prompts, stop, || {}, on_progress, |_| {}).await
}

/// [`run`], also calling `on_ready` once, when the connections are open and
/// the first request is about to be sent (a measured window opens there, so
/// that it holds no connection set-up), and handing each record to
/// `on_record` as its request completes (fails, or is cancelled), in
/// completion order.
pub async fn run_observed(
    config: &LoadConfig,
    prompts: &[Prompt],
    stop: &AtomicBool,
    on_ready: impl FnOnce(),
    mut on_progress: impl FnMut(&Progress),
    mut on_record: impl FnMut(&RequestRecord),
) -> Result<Vec<RequestRecord>, LoadError> {
    config.validate()?;
    if prompts.is_empty() {
        return Err(LoadError::NoPrompts);
    }
    let endpoint = Endpoint::parse(&config.base_url, config.api)?;
    let auth = config
        .api_key
        .as_deref()
        .map(|key| {
            valid_header(&format!("Bearer {key}")).ok_or_else(|| {
                LoadError::InvalidConfig("api_key is not a valid header value".into())
            })
        })
        .transpose()?;
    let bodies = prompts
        .iter()
        .map(|p| render(config, &endpoint, auth.as_deref(), p))
        .collect::<Result<Vec<_>, _>>()?;
    let addr = resolve(&endpoint).await?;
    let shared = Arc::new(Shared {
        client: Client::new(addr),
        timeout: config.request_timeout,
        keep_text: config.keep_output_text,
    });
    shared
        .client
        .prewarm(prewarm_count(config, prompts.len()))
        .await;
    on_ready();
    let (cancel, _) = watch::channel(false);
    let mut ctx = PhaseContext {
        shared: &shared,
        prompts,
        bodies: &bodies,
        stop,
        cancel: &cancel,
        records: Vec::new(),
        next_index: 0,
    };

    let warmup = config.warmup_requests;
    let mut stopped = false;
    if warmup > 0 {
        stopped = ctx
            .run_phase(
                PhaseLoad {
                    phase: Phase::Warmup,
                    count: Some(warmup),
                    duration: None,
                    concurrency: Some(config.max_concurrency.unwrap_or(warmup).min(warmup)),
                    arrivals: ArrivalTimes::new(Arrival::Closed, None, config.seed),
                },
                &mut on_progress,
                &mut on_record,
            )
            .await;
    }
    if !stopped {
        let count = match (config.num_requests, config.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(u32::try_from(prompts.len()).unwrap_or(u32::MAX)),
        };
        ctx.run_phase(
            PhaseLoad {
                phase: Phase::Measured,
                count,
                duration: config.duration,
                concurrency: config.max_concurrency,
                arrivals: ArrivalTimes::new(config.arrival, config.ramp, config.seed),
            },
            &mut on_progress,
            &mut on_record,
        )
        .await;
    }
    let mut records = ctx.records;
    records.sort_by_key(|r| r.index);
    Ok(records)
}

/// [`run`] on a runtime of its own (one thread: the caller's), for sync callers.
pub fn run_blocking(
    config: &LoadConfig,
    prompts: &[Prompt],
    stop: &AtomicBool,
    on_progress: impl FnMut(&Progress),
) -> Result<Vec<RequestRecord>, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(run(config, prompts, stop, on_progress))
}

/// [`run_observed`] on a runtime of its own, for sync callers.
pub fn run_blocking_observed(
    config: &LoadConfig,
    prompts: &[Prompt],
    stop: &AtomicBool,
    on_ready: impl FnOnce(),
    on_progress: impl FnMut(&Progress),
    on_record: impl FnMut(&RequestRecord),
) -> Result<Vec<RequestRecord>, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(run_observed(
        config,
        prompts,
        stop,
        on_ready,
        on_progress,
        on_record,
    ))
}

struct PhaseContext<'a> {
    shared: &'a Arc<Shared>,
    prompts: &'a [Prompt],
    bodies: &'a [Bytes],
    stop: &'a AtomicBool,
    cancel: &'a watch::Sender<bool>,
    records: Vec<RequestRecord>,
    next_index: u32,
}

async fn acquire(semaphore: &Option<Arc<Semaphore>>) -> Option<OwnedSemaphorePermit> {
    match semaphore {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// What one phase sends: how many requests (or for how long), how many at
/// once, and when.
struct PhaseLoad {
    phase: Phase,
    count: Option<u32>,
    duration: Option<Duration>,
    concurrency: Option<u32>,
    arrivals: ArrivalTimes,
}

impl PhaseContext<'_> {
    /// Send one phase's requests and collect their records; true if `stop` was set.
    async fn run_phase(
        &mut self,
        load: PhaseLoad,
        on_progress: &mut impl FnMut(&Progress),
        on_record: &mut impl FnMut(&RequestRecord),
    ) -> bool {
        let PhaseLoad {
            phase,
            count,
            duration,
            concurrency,
            mut arrivals,
        } = load;
        let semaphore = concurrency.map(|c| Arc::new(Semaphore::new(c as usize)));
        let mut tasks: JoinSet<RequestRecord> = JoinSet::new();
        // Which request each task is, should one ever panic.
        let mut running: HashMap<tokio::task::Id, (u32, usize, u64)> = HashMap::new();
        let mut progress = Progress {
            phase: Some(phase),
            total: count,
            ..Progress::default()
        };

        let start = Instant::now();
        let far = start + Duration::from_secs(86_400 * 365);
        let deadline = tokio::time::sleep_until(duration.map_or(far, |d| start + d));
        tokio::pin!(deadline);
        let offset = |ns: u64| start + Duration::from_nanos(ns);
        let mut next_at = offset(arrivals.next().unwrap_or(0));
        let next_sleep = tokio::time::sleep_until(next_at);
        tokio::pin!(next_sleep);
        let mut due = false;
        let mut sent = 0u32;
        let mut sending = count != Some(0);
        let mut stopped = false;
        let mut stop_poll = tokio::time::interval(STOP_POLL);
        stop_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);

        loop {
            if sending && count.is_some_and(|c| sent >= c) {
                sending = false;
            }
            if !sending && tasks.is_empty() {
                break;
            }
            if sending && !due && next_at <= Instant::now() {
                due = true;
            }
            tokio::select! {
                biased;
                _ = stop_poll.tick() => {
                    if self.stop.load(Ordering::Relaxed) && !stopped {
                        stopped = true;
                        sending = false;
                        self.cancel.send_replace(true);
                    }
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let record = match joined {
                        Ok((id, record)) => {
                            running.remove(&id);
                            record
                        }
                        Err(e) => {
                            let (index, prompt, send_ns) =
                                running.remove(&e.id()).unwrap_or((u32::MAX, 0, 0));
                            let mut record = self.new_record(index, prompt, phase);
                            record.send_ns = send_ns;
                            record.end_ns = monotonic_ns();
                            record.error = Some(format!("request task failed: {e}"));
                            record
                        }
                    };
                    progress.in_flight -= 1;
                    if record.success {
                        progress.completed += 1;
                    } else {
                        progress.failed += 1;
                    }
                    progress.output_tokens += u64::from(record.output_tokens.unwrap_or(0));
                    on_record(&record);
                    self.records.push(record);
                    on_progress(&progress);
                }
                _ = &mut deadline, if sending && duration.is_some() => {
                    sending = false;
                }
                permit = acquire(&semaphore), if sending && due => {
                    let prompt = sent as usize % self.prompts.len();
                    let index = self.next_index;
                    self.next_index += 1;
                    let record = self.new_record(index, prompt, phase);
                    let task = request_task(
                        self.shared.clone(),
                        self.bodies[prompt].clone(),
                        record,
                        permit,
                        self.cancel.subscribe(),
                    );
                    let handle = tasks.spawn(task);
                    running.insert(handle.id(), (index, prompt, monotonic_ns()));
                    sent += 1;
                    progress.sent += 1;
                    progress.in_flight += 1;
                    on_progress(&progress);
                    due = false;
                    next_at = offset(arrivals.next().unwrap_or(0));
                    next_sleep.as_mut().reset(next_at);
                }
                _ = &mut next_sleep, if sending && !due => {
                    due = true;
                }
            }
        }
        stopped
    }

    fn new_record(&self, index: u32, prompt: usize, phase: Phase) -> RequestRecord {
        let prompt_id = self
            .prompts
            .get(prompt)
            .map(|p| p.id.clone())
            .unwrap_or_default();
        RequestRecord::pending(index, prompt_id, phase)
    }
}

async fn request_task(
    shared: Arc<Shared>,
    request: Bytes,
    mut rec: RequestRecord,
    permit: Option<OwnedSemaphorePermit>,
    mut cancel: watch::Receiver<bool>,
) -> RequestRecord {
    let mut text = String::new();
    let outcome = tokio::select! {
        // Polled first, so the send time is taken before a cancellation is seen.
        biased;
        result = tokio::time::timeout(
            shared.timeout,
            shared.client.exchange(&request, &mut rec, &mut text),
        ) => match result {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {:.3} s", shared.timeout.as_secs_f64())),
        },
        _ = cancel.wait_for(|&cancelled| cancelled) => Err("cancelled".to_owned()),
    };
    drop(permit);
    let now = monotonic_ns();
    if rec.send_ns == 0 {
        rec.send_ns = now;
    }
    if rec.end_ns == 0 {
        rec.end_ns = now;
    }
    rec.output_text_len = text.len();
    if !rec.tokens_from_usage || shared.keep_text {
        rec.output_text = Some(text);
    }
    match outcome {
        Ok(()) => rec.success = true,
        Err(error) => rec.error = Some(error),
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(body: PromptBody, max: Option<u32>) -> Prompt {
        Prompt {
            id: "p1".into(),
            body,
            input_tokens: None,
            max_output_tokens: max,
        }
    }

    #[test]
    fn bodies() {
        let mut config = LoadConfig::new("http://127.0.0.1:1/v1", Api::Completions, "m");
        config.decoding.ignore_eos = true;
        config.extra_body.insert("temperature".into(), json!(0.5));
        let body = request_body(&config, &prompt(PromptBody::Text("hi".into()), Some(7))).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"model": "m", "prompt": "hi", "max_tokens": 7, "stream": true,
                   "stream_options": {"include_usage": true}, "ignore_eos": true,
                   "temperature": 0.5, "top_p": 1.0})
        );
        config.api = Api::Chat;
        config.decoding.ignore_eos = false;
        config.extra_body.clear();
        let body = request_body(&config, &prompt(PromptBody::Text("hi".into()), None)).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["messages"], json!([{"role": "user", "content": "hi"}]));
        // Decoding is explicit even when nothing was asked: greedy, 256 tokens.
        assert_eq!(
            (&v["max_tokens"], &v["temperature"], &v["top_p"]),
            (&json!(256), &json!(0.0), &json!(1.0))
        );
        assert!(v.get("ignore_eos").is_none() && v.get("seed").is_none());
        config.decoding = Decoding {
            temperature: 0.8,
            top_p: 0.95,
            seed: Some(7),
            max_tokens: 64,
            ignore_eos: false,
        };
        let body = request_body(&config, &prompt(PromptBody::Text("hi".into()), None)).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (&v["max_tokens"], &v["temperature"], &v["top_p"], &v["seed"]),
            (&json!(64), &json!(0.8), &json!(0.95), &json!(7))
        );
        let chat = PromptBody::Chat(vec![llem_sdk::ChatMessage {
            role: "system".into(),
            content: "be brief".into(),
        }]);
        config.api = Api::Completions;
        assert!(request_body(&config, &prompt(chat, None)).is_err());
    }

    #[test]
    fn prewarm_opens_what_can_be_in_flight() {
        let mut c = LoadConfig::new("http://127.0.0.1:1/v1", Api::Chat, "m");
        assert_eq!(prewarm_count(&c, 10), 10); // closed loop, no cap: all at once
        c.max_concurrency = Some(4);
        assert_eq!(prewarm_count(&c, 10), 4);
        c.num_requests = Some(2);
        c.warmup_requests = 3;
        assert_eq!(prewarm_count(&c, 10), 3);
        c.max_concurrency = None;
        c.arrival = Arrival::Poisson { rate: 5.0 };
        assert_eq!(prewarm_count(&c, 10), 0); // open loop: unknown
        c.max_concurrency = Some(100_000);
        c.num_requests = None;
        c.duration = Some(Duration::from_secs(1));
        assert_eq!(prewarm_count(&c, 10), MAX_PREWARM as usize);
    }

    #[test]
    fn validation() {
        let ok = LoadConfig::new("http://127.0.0.1:1/v1", Api::Chat, "m");
        assert!(ok.validate().is_ok());
        let check = |f: &dyn Fn(&mut LoadConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate()
        };
        assert!(check(&|c| c.max_concurrency = Some(0)).is_err());
        assert!(check(&|c| c.arrival = Arrival::Poisson { rate: 0.0 }).is_err());
        assert!(
            check(&|c| c.arrival = Arrival::Gamma {
                rate: 1.0,
                burstiness: 0.0
            })
            .is_err()
        );
        assert!(
            check(&|c| c.arrival = Arrival::Gamma {
                rate: 1.0,
                burstiness: f64::INFINITY
            })
            .is_ok()
        );
        assert!(
            check(&|c| c.ramp = Some(Ramp::Linear {
                from_rate: 1.0,
                duration: Duration::from_secs(1)
            }))
            .is_err()
        );
        assert!(check(&|c| c.duration = Some(Duration::from_secs(1))).is_err());
        assert!(
            check(&|c| {
                c.duration = Some(Duration::from_secs(1));
                c.max_concurrency = Some(4)
            })
            .is_ok()
        );
        assert!(
            check(&|c| {
                c.extra_body.insert("stream".into(), json!(false));
            })
            .is_err()
        );
        assert!(check(&|c| c.base_url = "https://x/v1".into()).is_err());
        assert!(check(&|c| c.decoding.top_p = 0.0).is_err());
        assert!(check(&|c| c.decoding.temperature = -1.0).is_err());
    }
}
