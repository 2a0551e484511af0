//! Sinks during the run. Each sink is opened when the run starts, on a
//! thread of its own, and told about the run (`begin-run`); the run then
//! hands it readings (as the spool writes them to `timeseries.csv`), phase
//! edges (as the phase log records them) and request records (as requests
//! complete) through a bounded [`lane`] that never blocks the run, and at the
//! end the result document. What each sink got, and what it did not, ends in
//! result.json's `sinks[]` (see `sinks.rs`).
//!
//! A sink cannot hold the run up: producers only ever queue (dropping and
//! counting what does not fit), WASM calls have their deadlines, and at the
//! end the run waits for a sink a bounded time ([`end_wait`]) before it gives
//! up on it and records it failed.

mod lane;
mod worker;

use super::Event;
use super::phase::{EdgeObserver, PhaseName};
use super::sinks::{Delivery, MAX_SAMPLES_PER_BATCH, SinkOutcome};
use crate::plugin::{PluginFailure, Sandbox};
use crate::sampler::ReadingTap;
use lane::{Item, Lane};
use llem_sdk::{Device, PhaseEdge, PhaseEvent, Reading, ResultDocument, SampleBatch};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use worker::Job;

/// How long the end of a run waits for a sink to take the rest and the
/// result: long enough for one call stuck until its deadline and then the
/// result and `finish` at their full deadlines, plus a margin.
pub fn end_wait(sandbox: &Sandbox) -> Duration {
    sandbox.call_timeout.saturating_mul(3) + Duration::from_secs(2)
}

/// The run's side: hands items to every sink's lane. Cheap to clone; empty
/// (and free) when the manifest names no sink.
#[derive(Debug, Clone, Default)]
pub struct SinkFeed {
    lanes: Arc<Vec<Arc<Lane>>>,
}

impl SinkFeed {
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    fn push(&self, item: Item) {
        for lane in self.lanes.iter() {
            lane.push(item.clone());
        }
    }

    /// Rows the spool has just written for one source, in bounded batches.
    pub fn readings(&self, source: &str, devices: &[Device], rows: &[(u64, Reading)]) {
        if self.is_empty() || rows.is_empty() {
            return;
        }
        let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
        for chunk in rows.chunks(MAX_SAMPLES_PER_BATCH) {
            self.push(Item::Samples(Arc::new(SampleBatch {
                source: source.to_owned(),
                devices: ids.clone(),
                samples: chunk
                    .iter()
                    .map(|(t_ns, r)| llem_sdk::Sample {
                        device: r.device,
                        t_ns: *t_ns,
                        energy_uj: r.energy_uj,
                        power_mw: r.power_mw,
                    })
                    .collect(),
            })));
        }
    }

    pub fn phase(&self, name: PhaseName, edge: PhaseEdge, t_ns: u64) {
        if self.is_empty() {
            return;
        }
        self.push(Item::Event(PhaseEvent {
            phase: name.as_str().to_owned(),
            edge,
            t_ns,
        }));
    }

    /// A request that has just completed (or failed, or was cancelled).
    pub fn request(&self, record: &crate::loadgen::RequestRecord) {
        if self.is_empty() {
            return;
        }
        self.push(Item::Request(Arc::new(sink_record(record))));
    }

    /// For the sampler's spool: every reading written, exactly once, in order.
    pub fn reading_tap(&self) -> Option<ReadingTap> {
        let feed = self.clone();
        (!feed.is_empty()).then(|| {
            Box::new(move |s: &str, d: &[Device], r: &[(u64, Reading)]| feed.readings(s, d, r))
                as ReadingTap
        })
    }

    /// For the phase log: every edge, as recorded.
    pub fn edge_observer(&self) -> Option<EdgeObserver> {
        let feed = self.clone();
        (!feed.is_empty())
            .then(|| EdgeObserver::new(move |name, edge, t| feed.phase(name, edge, t)))
    }
}

/// A requests.jsonl record as the sink contract has it (the output text and
/// its length are no part of it).
fn sink_record(r: &crate::loadgen::RequestRecord) -> llem_sdk::RequestRecord {
    llem_sdk::RequestRecord {
        index: r.index,
        prompt_id: r.prompt_id.clone(),
        phase: match r.phase {
            crate::loadgen::Phase::Warmup => "warmup",
            crate::loadgen::Phase::Measured => "measured",
        }
        .to_owned(),
        send_ns: r.send_ns,
        first_token_ns: r.first_token_ns,
        chunk_ns: r.chunk_ns.clone(),
        end_ns: r.end_ns,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        tokens_from_usage: r.tokens_from_usage,
        success: r.success,
        error: r.error.clone(),
    }
}

struct Running {
    instance: String,
    lane: Arc<Lane>,
    thread: Option<JoinHandle<()>>,
    end_wait: Duration,
}

/// Every sink of a run, from its start to its end.
#[derive(Default)]
pub struct SinkHub {
    sinks: Vec<Running>,
    feed: SinkFeed,
}

impl std::fmt::Debug for SinkHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkHub")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl SinkHub {
    /// Start one thread per sink (each opens its sink and calls `begin-run`);
    /// a sink whose plugin could not be loaded is recorded failed at once.
    pub fn start(jobs: Vec<Result<Job, (String, Box<PluginFailure>)>>) -> SinkHub {
        let mut sinks = Vec::with_capacity(jobs.len());
        for job in jobs {
            let lane = Arc::new(Lane::default());
            let (instance, thread, end_wait) = match job {
                Ok(job) => {
                    let instance = job.instance.clone();
                    let wait = end_wait(&job.sandbox);
                    match worker::spawn(job, lane.clone()) {
                        Ok(thread) => (instance, Some(thread), wait),
                        Err(e) => {
                            lane.fail(format!(
                                "sink `{instance}`: cannot start its delivery thread: {e}"
                            ));
                            (instance, None, wait)
                        }
                    }
                }
                Err((instance, failure)) => {
                    lane.fail(failure.to_string());
                    (instance, None, Duration::ZERO)
                }
            };
            sinks.push(Running {
                instance,
                lane,
                thread,
                end_wait,
            });
        }
        let feed = SinkFeed {
            lanes: Arc::new(sinks.iter().map(|s| s.lane.clone()).collect()),
        };
        SinkHub { sinks, feed }
    }

    pub fn feed(&self) -> SinkFeed {
        self.feed.clone()
    }

    /// Hand every sink the result (`None`: the run ended without one), wait
    /// for them — at most each one's [`end_wait`], all at once — and say what
    /// each got. A sink's failure is warned about through `on_event`.
    pub fn finish(
        mut self,
        result: Option<ResultDocument>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Vec<SinkOutcome> {
        let sinks = std::mem::take(&mut self.sinks);
        for sink in &sinks {
            sink.lane.end(result.clone());
        }
        let started = Instant::now();
        let mut outcomes = Vec::with_capacity(sinks.len());
        for mut sink in sinks {
            if let Some(thread) = sink.thread.take() {
                let deadline = started + sink.end_wait;
                while !thread.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if thread.is_finished() {
                    if thread.join().is_err() {
                        sink.lane.fail(format!(
                            "sink `{}`: its delivery thread panicked",
                            sink.instance
                        ));
                    }
                } else {
                    // Left behind, inside a call: what it delivered so far stands.
                    tracing::warn!(sink = %sink.instance, "sink did not finish in time; abandoned");
                    sink.lane.fail(format!(
                        "sink `{}` did not finish within {:.1} s after the run (a call did not return) and was abandoned",
                        sink.instance,
                        sink.end_wait.as_secs_f64()
                    ));
                }
            }
            outcomes.push(outcome(&sink.instance, &sink.lane, on_event));
        }
        outcomes
    }
}

/// A run that ends by an early return (an error past the point of no
/// return) still lets its sinks end: they get no result, and their threads
/// leave instead of waiting for one forever.
impl Drop for SinkHub {
    fn drop(&mut self) {
        for sink in &self.sinks {
            sink.lane.end(None);
        }
    }
}

/// One sink's counts as result.json records them.
fn outcome(instance: &str, lane: &Lane, on_event: &mut dyn FnMut(Event<'_>)) -> SinkOutcome {
    let (wanted, tally, error) = lane.report();
    let kind = |k: usize| Delivery {
        delivered: tally.delivered[k],
        dropped: tally.offered[k].saturating_sub(tally.delivered[k]),
    };
    let readings = kind(0);
    let events = wanted.filter(|w| w.phase_events).map(|_| kind(1));
    let requests = wanted.filter(|w| w.requests).map(|_| kind(2));
    let result_dropped = u64::from(tally.result_offered && !tally.result_delivered);
    let parts = [Some(readings), events, requests];
    let delivered = parts.iter().flatten().map(|d| d.delivered).sum::<u64>()
        + u64::from(tally.result_delivered);
    let dropped = parts.iter().flatten().map(|d| d.dropped).sum::<u64>() + result_dropped;
    let overflowed: u64 = tally.overflowed.iter().sum();
    let error = error.or_else(|| {
        (overflowed > 0).then(|| {
            format!(
                "sink `{instance}` could not keep up: {overflowed} item(s) dropped because its queue was full (llem never waits for a sink during a run)"
            )
        })
    });
    let error = error.map(|text| {
        on_event(Event::Warning(&text));
        text.lines().next().unwrap_or_default().to_owned()
    });
    SinkOutcome {
        instance: instance.to_owned(),
        delivered,
        dropped,
        readings,
        events,
        requests,
        error,
    }
}
