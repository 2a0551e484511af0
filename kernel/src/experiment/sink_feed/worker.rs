//! One sink's thread: open the sink, tell it about the run, then deliver what
//! its lane holds on a modest cadence (every [`DELIVERY_PERIOD`], or sooner
//! when a full call's worth is waiting), in bounded calls, and at the end the
//! result and `finish`. The first failed call ends delivery to that sink.

use super::lane::{Item, Kind, Lane, Next};
use crate::experiment::sinks::{
    MAX_CHUNK_STAMPS_PER_BATCH, MAX_EVENTS_PER_BATCH, MAX_REQUESTS_PER_BATCH, MAX_SAMPLES_PER_BATCH,
};
use crate::plugin::{CallResult, Plugin, Sandbox, SinkInstance};
use llem_sdk::{PhaseEvent, RunInfo, SampleBatch, Wanted};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a sink is handed what has accumulated. A second keeps the
/// sink's CPU during a measured window to a few short calls a second, and
/// still shows a run as it goes.
pub const DELIVERY_PERIOD: Duration = Duration::from_secs(1);

/// Everything a sink's thread needs, owned.
pub struct Job {
    pub instance: String,
    pub plugin: Plugin,
    pub config: Map<String, Value>,
    pub sandbox: Sandbox,
    pub run: RunInfo,
}

pub fn spawn(job: Job, lane: Arc<Lane>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("llem-sink-{}", job.instance))
        .spawn(move || run(job, &lane))
}

fn run(job: Job, lane: &Lane) {
    let opened = job
        .plugin
        .open_sink(&job.config, &job.sandbox)
        .and_then(|mut sink| {
            let wanted = if sink.streams() {
                sink.begin_run(&job.run)?
            } else {
                Wanted::NOTHING
            };
            Ok((sink, wanted))
        });
    let (mut sink, wanted) = match opened {
        Ok(opened) => opened,
        Err(failure) => {
            lane.set_wanted(Wanted::NOTHING);
            lane.fail(failure.to_string());
            wait_for_end(lane);
            return;
        }
    };
    tracing::debug!(
        sink = %job.instance,
        streams = sink.streams(),
        events = wanted.phase_events,
        requests = wanted.requests,
        "sink opened"
    );
    lane.set_wanted(wanted);
    if let Err(failure) = deliver(sink.as_mut(), lane) {
        lane.fail(failure.to_string());
        wait_for_end(lane);
    }
}

/// Until the run ends (a failed sink's lane keeps nothing).
fn wait_for_end(lane: &Lane) {
    loop {
        if let Next::End(_) = lane.next(Instant::now() + Duration::from_secs(3600)) {
            return;
        }
    }
}

fn deliver(sink: &mut dyn SinkInstance, lane: &Lane) -> CallResult<()> {
    let mut pending = Pending::default();
    let mut due = Instant::now() + DELIVERY_PERIOD;
    loop {
        match lane.next(due) {
            Next::Item(item) => {
                let kind = item.kind();
                pending.add(item);
                if pending.full(kind) {
                    pending.deliver(sink, lane)?;
                }
            }
            Next::Idle => {
                pending.deliver(sink, lane)?;
                due = Instant::now() + DELIVERY_PERIOD;
            }
            Next::End(result) => {
                pending.deliver(sink, lane)?;
                if let Some(document) = result {
                    sink.write_result(&document)?;
                    lane.result_delivered();
                }
                return sink.finish();
            }
        }
    }
}

/// What the lane handed over and the sink has not been given yet.
#[derive(Default)]
struct Pending {
    samples: Vec<Arc<SampleBatch>>,
    readings: usize,
    events: Vec<PhaseEvent>,
    requests: Vec<Arc<llem_sdk::RequestRecord>>,
    stamps: usize,
}

impl Pending {
    fn add(&mut self, item: Item) {
        match item {
            Item::Samples(batch) => {
                self.readings += batch.samples.len();
                self.samples.push(batch);
            }
            Item::Event(event) => self.events.push(event),
            Item::Request(record) => {
                self.stamps += record.chunk_ns.len();
                self.requests.push(record);
            }
        }
    }

    fn full(&self, kind: Kind) -> bool {
        match kind {
            Kind::Readings => self.readings >= MAX_SAMPLES_PER_BATCH,
            Kind::Events => self.events.len() >= MAX_EVENTS_PER_BATCH,
            Kind::Requests => {
                self.requests.len() >= MAX_REQUESTS_PER_BATCH
                    || self.stamps >= MAX_CHUNK_STAMPS_PER_BATCH
            }
        }
    }

    /// Everything pending, in bounded calls: events first (they say where the
    /// run is), then requests, then readings.
    fn deliver(&mut self, sink: &mut dyn SinkInstance, lane: &Lane) -> CallResult<()> {
        for chunk in std::mem::take(&mut self.events).chunks(MAX_EVENTS_PER_BATCH) {
            sink.write_events(chunk)?;
            lane.delivered(Kind::Events, chunk.len() as u64);
        }
        self.stamps = 0;
        for batch in request_batches(std::mem::take(&mut self.requests)) {
            sink.write_requests(&batch)?;
            lane.delivered(Kind::Requests, batch.len() as u64);
        }
        self.readings = 0;
        for batch in merge_samples(std::mem::take(&mut self.samples)) {
            sink.write_samples(&batch)?;
            lane.delivered(Kind::Readings, batch.samples.len() as u64);
        }
        Ok(())
    }
}

/// Records in completion order, cut so a call holds at most
/// `MAX_REQUESTS_PER_BATCH` records and `MAX_CHUNK_STAMPS_PER_BATCH` chunk
/// stamps (a record with more goes alone).
fn request_batches(
    records: Vec<Arc<llem_sdk::RequestRecord>>,
) -> Vec<Vec<llem_sdk::RequestRecord>> {
    let mut out = Vec::new();
    let mut batch: Vec<llem_sdk::RequestRecord> = Vec::new();
    let mut stamps = 0;
    for record in records {
        let n = record.chunk_ns.len();
        if !batch.is_empty()
            && (batch.len() >= MAX_REQUESTS_PER_BATCH || stamps + n > MAX_CHUNK_STAMPS_PER_BATCH)
        {
            out.push(std::mem::take(&mut batch));
            stamps = 0;
        }
        stamps += n;
        batch.push((*record).clone());
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// Consecutive batches of one source joined, up to `MAX_SAMPLES_PER_BATCH`
/// readings a call; order within each source kept.
fn merge_samples(batches: Vec<Arc<SampleBatch>>) -> Vec<SampleBatch> {
    let mut out: Vec<SampleBatch> = Vec::new();
    for batch in batches {
        match out.last_mut() {
            Some(last)
                if last.source == batch.source
                    && last.devices == batch.devices
                    && last.samples.len() + batch.samples.len() <= MAX_SAMPLES_PER_BATCH =>
            {
                last.samples.extend_from_slice(&batch.samples);
            }
            _ => out.push((*batch).clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u32, stamps: usize) -> Arc<llem_sdk::RequestRecord> {
        Arc::new(llem_sdk::RequestRecord {
            index,
            prompt_id: format!("p{index}"),
            phase: "measured".into(),
            send_ns: 1,
            first_token_ns: None,
            chunk_ns: vec![7; stamps],
            end_ns: 2,
            input_tokens: None,
            output_tokens: None,
            tokens_from_usage: false,
            success: true,
            error: None,
        })
    }

    #[test]
    fn request_batches_respect_both_bounds_and_keep_order() {
        let mut records: Vec<_> = (0..2_500).map(|i| record(i, 1)).collect();
        records.push(record(2_500, MAX_CHUNK_STAMPS_PER_BATCH + 5)); // alone
        records.push(record(2_501, 3));
        let batches = request_batches(records);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1_000, 1_000, 500, 1, 1]);
        let order: Vec<u32> = batches.iter().flatten().map(|r| r.index).collect();
        assert_eq!(order, (0..2_502).collect::<Vec<_>>());
    }

    #[test]
    fn samples_merge_per_source_up_to_the_bound() {
        let batch = |source: &str, from: u64, n: u64| {
            Arc::new(SampleBatch {
                source: source.into(),
                devices: vec!["0".into()],
                samples: (from..from + n)
                    .map(|t| llem_sdk::Sample {
                        device: 0,
                        t_ns: t,
                        energy_uj: None,
                        power_mw: Some(t),
                    })
                    .collect(),
            })
        };
        let merged = merge_samples(vec![
            batch("a", 0, 6_000),
            batch("a", 6_000, 4_000),
            batch("a", 10_000, 1),
            batch("b", 0, 2),
            batch("a", 10_001, 2),
        ]);
        let shape: Vec<(&str, usize)> = merged
            .iter()
            .map(|b| (b.source.as_str(), b.samples.len()))
            .collect();
        assert_eq!(shape, [("a", 10_000), ("a", 1), ("b", 2), ("a", 2)]);
        let a: Vec<u64> = merged
            .iter()
            .filter(|b| b.source == "a")
            .flat_map(|b| b.samples.iter().map(|s| s.t_ns))
            .collect();
        assert_eq!(a, (0..10_003).collect::<Vec<_>>());
    }
}
