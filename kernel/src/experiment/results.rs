//! What an inference run adds to the run directory: the summary in
//! `result.json`, one line per request in `requests.jsonl`, and the engine's
//! own metrics in `engine_metrics.jsonl`.

use super::result::InferenceSummary;
use crate::loadgen::{self, Metric, Phase, RequestRecord};
use crate::plugin::BackendInstance;
use crate::sampler::WindowMeasurement;
use std::io::Write;
use std::path::Path;

/// How per-request energy is attributed (ML.ENERGY's method): the window's
/// energy per output token times the request's output tokens.
pub const PER_REQUEST_METHOD: &str = "window energy per output token x output tokens (ML.ENERGY)";

/// The summary, and each record's attributed energy (same order as `records`).
pub fn inference(
    records: &[RequestRecord],
    window: &WindowMeasurement,
    goodput: &[(Metric, f64)],
) -> (InferenceSummary, Vec<Option<f64>>) {
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
    let attributed = records
        .iter()
        .map(|r| {
            let measured_ok = r.phase == Phase::Measured && r.success;
            per_token
                .zip(r.output_tokens.filter(|_| measured_ok))
                .map(|(j, n)| j * f64::from(n))
        })
        .collect();
    let summary = InferenceSummary {
        requests_sent: records.len() as u32,
        requests_succeeded: records.iter().filter(|r| r.success).count() as u32,
        requests_failed: records.iter().filter(|r| !r.success).count() as u32,
        warmup_requests: records.iter().filter(|r| r.phase == Phase::Warmup).count() as u32,
        window_s: duration,
        window_energy_j: window_energy,
        energy_per_output_token_j: per_token,
        energy_per_request_j: per_request,
        average_power_w: window_energy
            .filter(|_| duration > 0.0)
            .map(|e| e / duration),
        per_request_energy_method: PER_REQUEST_METHOD.into(),
        latency,
    };
    (summary, attributed)
}

/// One JSON object per request, with its attributed energy.
pub fn write_requests(
    dir: &Path,
    records: &[RequestRecord],
    energy: &[Option<f64>],
) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("requests.jsonl"))?);
    for (record, energy_j) in records.iter().zip(energy) {
        let mut value = serde_json::to_value(record).map_err(std::io::Error::other)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("energy_j".into(), serde_json::json!(energy_j));
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
