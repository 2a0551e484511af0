//! What each sink was given, recorded in result.json (`sinks`): a sink the
//! user asked for that lost data makes the run `degraded`, never silently.

use super::result::{RunResult, RunStatus};
use serde::{Deserialize, Serialize};

/// Most samples handed to a sink in one `write-samples` call: a long run's
/// readings go in bounded batches, never as one unbounded list.
pub const MAX_SAMPLES_PER_BATCH: usize = 10_000;

/// One sink instance's delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkOutcome {
    /// The manifest instance (`[plugins.<instance>]`).
    pub instance: String,
    /// Items the sink accepted: readings, plus 1 for the result document.
    pub delivered: u64,
    /// Items it never got because a call failed (or it could not be opened).
    pub dropped: u64,
    /// The failure, as the kernel reported it; absent when all went well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Add the outcomes to `result`; a failed sink degrades a complete run and
/// adds its reason (a failed or interrupted run keeps its status).
pub fn record(result: &mut RunResult, outcomes: Vec<SinkOutcome>) {
    for outcome in &outcomes {
        let Some(error) = &outcome.error else {
            continue;
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

/// `batches` split so no call carries more than `MAX_SAMPLES_PER_BATCH`
/// samples (a source with none still gets its one, empty batch).
pub fn bounded(batches: Vec<llem_sdk::SampleBatch>) -> Vec<llem_sdk::SampleBatch> {
    let mut out = Vec::new();
    for batch in batches {
        if batch.samples.len() <= MAX_SAMPLES_PER_BATCH {
            out.push(batch);
            continue;
        }
        for chunk in batch.samples.chunks(MAX_SAMPLES_PER_BATCH) {
            out.push(llem_sdk::SampleBatch {
                source: batch.source.clone(),
                devices: batch.devices.clone(),
                samples: chunk.to_vec(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_splits_long_batches_and_keeps_order() {
        let sample = |t| llem_sdk::Sample {
            device: 0,
            t_ns: t,
            energy_uj: Some(t),
            power_mw: None,
        };
        let n = MAX_SAMPLES_PER_BATCH as u64 * 2 + 3;
        let batches = bounded(vec![
            llem_sdk::SampleBatch {
                source: "a".into(),
                devices: vec!["0".into()],
                samples: (0..n).map(sample).collect(),
            },
            llem_sdk::SampleBatch {
                source: "b".into(),
                devices: vec!["0".into()],
                samples: Vec::new(),
            },
        ]);
        let sizes: Vec<usize> = batches.iter().map(|b| b.samples.len()).collect();
        assert_eq!(sizes, [MAX_SAMPLES_PER_BATCH, MAX_SAMPLES_PER_BATCH, 3, 0]);
        let times: Vec<u64> = batches
            .iter()
            .filter(|b| b.source == "a")
            .flat_map(|b| b.samples.iter().map(|s| s.t_ns))
            .collect();
        assert_eq!(times, (0..n).collect::<Vec<_>>());
    }
}
