//! The run's raw data → the analysis crate's maths (`llem-analysis`): the
//! steady-state window, per-request energy by interval attribution, FLOPs and
//! MFU, carbon, and the quality verdict. Every figure here is computed from
//! the per-device energy tracks (cumulative joules at each reading) and the
//! request records — the same data written to timeseries.csv and
//! requests.jsonl — over the measured window.

use super::Collected;
use super::result::DeviceEnergy;
use crate::loadgen::{Phase, RequestRecord};
use crate::sampler::WindowMeasurement;
use llem_analysis::attribution::{self, AttributionReport, PrefillWeighting};
use llem_analysis::steady_state::{self, SteadyStateReport};
use llem_analysis::{EnergyInterval, EnergySeries, RequestTiming};
use serde::{Deserialize, Serialize};

/// One device's energy over the measured window as intervals between its own
/// readings: from the reading the window opened on to the one it closed on
/// (`range`, indices into its energy track), so the intervals sum exactly to
/// the device's window figure.
pub fn device_series(range: (usize, usize), track: &[(u64, f64)]) -> Option<EnergySeries> {
    let (first, last) = range;
    if last <= first || last >= track.len() {
        return None;
    }
    let intervals = track[first..=last]
        .windows(2)
        .map(|pair| EnergyInterval {
            start_ns: pair[0].0,
            end_ns: pair[1].0,
            joules: (pair[1].1 - pair[0].1).max(0.0),
        })
        .filter(|i| i.end_ns > i.start_ns)
        .collect();
    EnergySeries::new(intervals).ok()
}

/// The energy series of every device in the total.
pub fn included_series(
    window: &WindowMeasurement,
    collected: &[Collected],
    devices: &[DeviceEnergy],
) -> Vec<EnergySeries> {
    let mut out = Vec::new();
    for (config, source_devices, series) in collected {
        for (i, d) in source_devices.iter().enumerate() {
            let in_total = devices.iter().any(|e| {
                e.source == config.name && e.device == d.id && e.in_total && e.energy_j.is_some()
            });
            if !in_total {
                continue;
            }
            let range = window
                .devices
                .iter()
                .find(|w| w.source == config.name && w.device == d.id)
                .and_then(|w| w.track);
            if let Some(s) = range
                .zip(series.energy_track.get(i))
                .and_then(|(r, t)| device_series(r, t))
            {
                out.push(s);
            }
        }
    }
    out
}

/// A request record as the analysis crate sees it (each token's arrival).
pub fn timing(r: &RequestRecord) -> RequestTiming {
    RequestTiming {
        id: r.index.to_string(),
        send_ns: r.send_ns,
        first_token_ns: r.first_token_ns,
        tokens: RequestTiming::events_from_chunks(&r.chunk_ns, r.output_tokens),
        end_ns: r.end_ns,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        success: r.success,
    }
}

/// Energy over `[a, b]` summed over devices; `None` if any device has no
/// figure there. Each device's series runs from the reading the measured
/// window opened on to the one it closed on, so the window's own edges map to
/// those readings: the whole window gets exactly its own energy, and a
/// sub-window inside it is interpolated between readings.
fn energy_between(series: &[EnergySeries], window: (u64, u64), a: u64, b: u64) -> Option<f64> {
    let mut total = 0.0;
    for s in series {
        let (start, end) = s.span()?;
        let a = if a <= window.0 { start } else { a.max(start) };
        let b = if b >= window.1 { end } else { b.min(end) };
        if b < a {
            return None;
        }
        total += s.energy_between(a, b)?;
    }
    (!series.is_empty()).then_some(total)
}

pub fn steady_state(
    records: &[RequestRecord],
    series: &[EnergySeries],
    window: &WindowMeasurement,
    max_num_seqs: Option<u32>,
    max_concurrency: Option<u32>,
) -> SteadyStateReport {
    let timings: Vec<RequestTiming> = records
        .iter()
        .filter(|r| r.phase == Phase::Measured)
        .map(timing)
        .collect();
    steady_state::analyse(
        &timings,
        max_num_seqs,
        max_concurrency,
        (window.start_ns, window.end_ns),
        |a, b| energy_between(series, (window.start_ns, window.end_ns), a, b),
    )
}

/// Per-request attribution over every device in the total, summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub method: String,
    pub prefill: PrefillWeighting,
    /// Devices whose energy was attributed (each over its own readings).
    pub devices: usize,
    /// Their energy over the measured window, joules.
    pub window_j: f64,
    pub attributed_j: f64,
    /// Energy of intervals with no request in flight.
    pub unattributed_j: f64,
    /// |parts + unattributed − window| / window, checked ≤ 1e-9 at run time.
    pub sum_relative_error: f64,
    /// The J/token behind `energy_ml_j` in requests.jsonl (the headline figure).
    pub ml_energy_j_per_token: Option<f64>,
}

/// Attribute every device's window energy to the measured requests; returns
/// the summary and each record's (attributed J, ML.ENERGY J), in record order.
#[allow(clippy::type_complexity)]
pub fn attribute(
    records: &[RequestRecord],
    series: &[EnergySeries],
    ml_j_per_token: Option<f64>,
) -> Result<(Attribution, Vec<(Option<f64>, Option<f64>)>), llem_analysis::AnalysisError> {
    let measured: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].phase == Phase::Measured)
        .collect();
    let timings: Vec<RequestTiming> = measured.iter().map(|&i| timing(&records[i])).collect();
    let mut per_request = vec![(None, None); records.len()];
    let mut reports: Vec<AttributionReport> = Vec::new();
    for s in series {
        let report = attribution::attribute(
            s,
            &timings,
            PrefillWeighting::OutputTokensOnly,
            ml_j_per_token,
        )?;
        report.check_sum()?;
        reports.push(report);
    }
    let window_j: f64 = reports.iter().map(|r| r.window_j).sum();
    let unattributed_j: f64 = reports.iter().map(|r| r.unattributed_j).sum();
    let mut parts = 0.0;
    for (k, &i) in measured.iter().enumerate() {
        let joules: f64 = reports.iter().map(|r| r.requests[k].attributed_j).sum();
        parts += joules;
        let ml = reports.first().and_then(|r| r.requests[k].ml_energy_j);
        per_request[i] = (
            if reports.is_empty() {
                None
            } else {
                Some(joules)
            },
            ml,
        );
    }
    let error = if window_j > 0.0 {
        (parts + unattributed_j - window_j).abs() / window_j
    } else {
        (parts + unattributed_j - window_j).abs()
    };
    if error > attribution::SUM_TOLERANCE {
        return Err(llem_analysis::AnalysisError::Input(format!(
            "per-request energies over all devices add up to {} J, the window holds {window_j} J",
            parts + unattributed_j
        )));
    }
    let method = reports.first().map_or_else(
        || "interval attribution (no device energy)".to_owned(),
        |r| r.method.clone(),
    );
    Ok((
        Attribution {
            method,
            prefill: PrefillWeighting::OutputTokensOnly,
            devices: reports.len(),
            window_j,
            attributed_j: parts,
            unattributed_j,
            sum_relative_error: error,
            ml_energy_j_per_token: ml_j_per_token,
        },
        per_request,
    ))
}
