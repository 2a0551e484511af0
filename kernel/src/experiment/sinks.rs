//! What each sink was given, recorded in result.json (`sinks`): a sink the
//! user asked for that lost data makes the run `degraded`, never silently.

use super::result::{RunResult, RunStatus};
use serde::{Deserialize, Serialize};

/// Most samples handed to a sink in one `write-samples` call: a long run's
/// readings go in bounded batches, never as one unbounded list.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;
/// Most request records in one `write-requests` call.
pub const MAX_REQUESTS_PER_BATCH: usize = 1_000;
/// Most chunk timestamps (all records together) in one `write-requests` call;
/// a single record with more goes alone.
pub const MAX_CHUNK_STAMPS_PER_BATCH: usize = 100_000;
/// Most phase events in one `write-events` call.
pub const MAX_EVENTS_PER_BATCH: usize = 1_000;

/// What one kind of item came to for one sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Items the sink accepted.
    pub delivered: u64,
    /// Items it was meant to get and did not: its queue was full (it could
    /// not keep up), a call failed, or it was abandoned at the end.
    pub dropped: u64,
}

/// One sink instance's delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkOutcome {
    /// The manifest instance (`[plugins.<instance>]`).
    pub instance: String,
    /// Items the sink accepted: readings, phase events, request records, plus
    /// 1 for the result document.
    pub delivered: u64,
    /// Items it never got (see [`Delivery::dropped`]), the result included.
    pub dropped: u64,
    /// Readings (`write-samples`).
    #[serde(default)]
    pub readings: Delivery,
    /// Phase events; absent when the sink did not ask for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Delivery>,
    /// Request records; absent when the sink did not ask for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Delivery>,
    /// The failure, as the kernel reported it; absent when all went well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Add the outcomes to `result`; a sink that failed or dropped anything
/// degrades a complete run and adds its reason (a failed or interrupted run
/// keeps its status).
pub fn record(result: &mut RunResult, outcomes: Vec<SinkOutcome>) {
    for outcome in &outcomes {
        let error = match &outcome.error {
            Some(error) => error.clone(),
            None if outcome.dropped > 0 => "items were dropped".to_owned(),
            None => continue,
        };
        if result.status == RunStatus::Complete {
            result.status = RunStatus::Degraded;
        }
        result.status_reasons.push(format!(
            "sink `{}` failed ({} item(s) not delivered): {error}",
            outcome.instance, outcome.dropped
        ));
    }
    result.sinks = outcomes;
}
