//! The optional `llem:plugin-ext/sink-stream` export of a WASM sink:
//! conversions from the SDK's types to the generated ones. The probe lives
//! with the sink instance (`instance.rs`), like `energy-topology`'s.

use super::bindings::stream as wst;
use llem_sdk as sdk;

pub fn run_info(r: &sdk::RunInfo) -> wst::RunInfo {
    wst::RunInfo {
        run_id: r.run_id.clone(),
        experiment: r.experiment.clone(),
        model: r.model.clone(),
        cycle: r.cycle,
        started_at: r.started_at.clone(),
        labels: r.labels.clone(),
    }
}

pub fn wanted(w: wst::Wanted) -> sdk::Wanted {
    sdk::Wanted {
        phase_events: w.contains(wst::Wanted::PHASE_EVENTS),
        requests: w.contains(wst::Wanted::REQUESTS),
    }
}

pub fn phase_events(events: &[sdk::PhaseEvent]) -> Vec<wst::PhaseEvent> {
    events
        .iter()
        .map(|e| wst::PhaseEvent {
            phase: e.phase.clone(),
            edge: match e.edge {
                sdk::PhaseEdge::Start => wst::PhaseEdge::Start,
                sdk::PhaseEdge::End => wst::PhaseEdge::End,
            },
            t_ns: e.t_ns,
        })
        .collect()
}

pub fn request_records(records: &[sdk::RequestRecord]) -> Vec<wst::RequestRecord> {
    records
        .iter()
        .map(|r| wst::RequestRecord {
            index: r.index,
            prompt_id: r.prompt_id.clone(),
            phase: r.phase.clone(),
            send_ns: r.send_ns,
            first_token_ns: r.first_token_ns,
            chunk_ns: r.chunk_ns.clone(),
            end_ns: r.end_ns,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            tokens_from_usage: r.tokens_from_usage,
            success: r.success,
            error: r.error.clone(),
        })
        .collect()
}
