//! What an inference run adds to the run directory: the summary in
//! `result.json`, one line per request in `requests.jsonl`, and the engine's
//! own metrics in `engine_metrics.jsonl`.

use super::result::InferenceSummary;
use crate::loadgen::{self, Metric, Phase, RequestRecord};
use crate::plugin::BackendInstance;
use crate::sampler::WindowMeasurement;
use std::io::Write;
use std::path::Path;

/// How per-request energy is attributed: each sample interval's energy split
/// across the requests in flight in it, by the tokens each produced in it
/// (`energy_j`); ML.ENERGY's headline J/token × output tokens beside it
/// (`energy_ml_j`).
pub const PER_REQUEST_METHOD: &str = "interval attribution: each sample interval's energy split across the requests in flight by the output tokens each produced in it (first token weighs 1; intervals with requests in flight but no token split equally; intervals with none are unattributed); energy_ml_j = headline J/token x output tokens (ML.ENERGY)";

/// The summary over the measured window: requests, latency, throughput and
/// energy per output token and per request (window energy over the
/// window's output tokens / completed requests).
pub fn inference(
    records: &[RequestRecord],
    window: &WindowMeasurement,
    goodput: &[(Metric, f64)],
) -> InferenceSummary {
    let latency = loadgen::summarize(records, Some((window.start_ns, window.end_ns)), goodput);
    let window_energy = window.total_j();
    let tokens = latency.total_output_tokens;
    let per_token = window_energy
        .filter(|_| tokens > 0)
        .map(|e| e / tokens as f64);
    let per_request = window_energy
        .filter(|_| latency.completed > 0)
        .map(|e| e / f64::from(latency.completed));
    let duration = window.duration_s();
    InferenceSummary {
        requests_sent: records.len() as u32,
        requests_succeeded: records.iter().filter(|r| r.success).count() as u32,
        requests_failed: records.iter().filter(|r| !r.success).count() as u32,
        warmup_requests: records.iter().filter(|r| r.phase == Phase::Warmup).count() as u32,
        window_s: duration,
        window_energy_j: window_energy,
        energy_per_output_token_j: per_token,
        window_energy_net_j: None,
        energy_per_output_token_net_j: None,
        energy_per_request_j: per_request,
        average_power_w: window_energy
            .filter(|_| duration > 0.0)
            .map(|e| e / duration),
        per_request_energy_method: PER_REQUEST_METHOD.into(),
        headline: None,
        headline_energy_per_output_token_j: None,
        steady_state: None,
        attribution: None,
        flops: None,
        carbon: None,
        latency,
    }
}

/// One JSON object per request, with its attributed energy.
pub fn write_requests(
    dir: &Path,
    records: &[RequestRecord],
    energy: &[(Option<f64>, Option<f64>)],
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("requests.jsonl"))?);
    for (record, (energy_j, energy_ml_j)) in records.iter().zip(energy) {
        let mut value = serde_json::to_value(record).map_err(std::io::Error::other)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("energy_j".into(), serde_json::json!(energy_j));
            map.insert("energy_ml_j".into(), serde_json::json!(energy_ml_j));
            map.insert(
                "ttft_ms".into(),
                serde_json::json!(
                    record
                        .first_token_ns
                        .map(|t| t.saturating_sub(record.send_ns) as f64 / 1e6)
                ),
            );
            map.insert(
                "e2el_ms".into(),
                serde_json::json!(record.end_ns.saturating_sub(record.send_ns) as f64 / 1e6),
            );
        }
        writeln!(out, "{value}")?;
    }
    out.flush()
}

/// The engine's Prometheus samples, turned into metrics by its backend plugin.
pub fn parse_metrics(
    backend: &mut dyn BackendInstance,
    samples: &[(u64, String)],
    warnings: &mut Vec<String>,
) -> Vec<(u64, Vec<llem_sdk::Metric>)> {
    let mut parsed = Vec::with_capacity(samples.len());
    for (t_ns, text) in samples {
        match backend.parse_metrics(text) {
            Ok(metrics) => parsed.push((*t_ns, metrics)),
            Err(e) => {
                warnings.push(format!("engine metrics: {e}"));
                break;
            }
        }
    }
    warnings.extend(crate::engine::metrics::take_missing(&mut parsed));
    parsed
}

pub fn write_engine_metrics(
    dir: &Path,
    parsed: &[(u64, Vec<llem_sdk::Metric>)],
) -> std::io::Result<()> {
    if parsed.is_empty() {
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("engine_metrics.jsonl"))?);
    for (t_ns, metrics) in parsed {
        writeln!(
            out,
            "{}",
            serde_json::json!({"t_ns": t_ns, "metrics": metrics})
        )?;
    }
    out.flush()
}
