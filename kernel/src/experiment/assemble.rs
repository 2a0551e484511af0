//! Phase 8: the figures, computed from the raw data the run kept — the
//! measured window's device energies, the baseline, the request records — and
//! the status that says whether they mean what they say.

use super::result::*;
use super::{Collected, RunState, results, status};
use crate::sampler::WindowMeasurement;
use llem_manifest::Plan;

pub struct Assembled {
    pub result: RunResult,
    /// Each record's attributed energy (same order as the records).
    pub per_request: Vec<Option<f64>>,
}

/// Share of the window a device's readings cover: the span between its first
/// and last reading inside the window, over the window (1.0 for a device read
/// throughout; less for one that stopped or started late).
pub fn coverage(window: &WindowMeasurement, series: &crate::sampler::SourceSeries, device: usize) -> f64 {
    let length = window.end_ns.saturating_sub(window.start_ns);
    if length == 0 {
        return 0.0;
    }
    let Some(track) = series.energy_track.get(device) else {
        return 0.0;
    };
    // The reading the window opened on is at or just before its start.
    let inside = track
        .iter()
        .filter(|(t, _)| *t + 1 >= window.start_ns && *t <= window.end_ns + 1);
    let times: Vec<u64> = inside.map(|(t, _)| *t).collect();
    match (times.first(), times.last()) {
        (Some(first), Some(last)) => {
            let covered = last.min(&window.end_ns).saturating_sub(*first.max(&window.start_ns));
            // Readings within one sampling interval of the edges count as covering them.
            (covered as f64 / length as f64).min(1.0)
        }
        _ => 0.0,
    }
}

pub fn assemble(
    plan: &Plan,
    state: &mut RunState,
    backend: Option<BackendSummary>,
    goodput: &[(crate::loadgen::Metric, f64)],
) -> Assembled {
    let experiment = &plan.experiment;
    let window = state.measured.clone().unwrap_or_else(|| WindowMeasurement {
        name: "measured".into(),
        start_ns: 0,
        end_ns: 0,
        devices: Vec::new(),
    });
    let mut energy = energy_summary(&window, &state.collected);
    let duration = window.duration_s();

    // Baseline: idle power of the devices in the total × the window.
    if let Some(b) = state.baseline.as_mut() {
        let idle: Vec<f64> = energy
            .devices
            .iter()
            .filter(|d| d.energy_j.is_some())
            .filter_map(|d| b.power_of(&d.source, &d.device))
            .collect();
        if !idle.is_empty() {
            let power: f64 = idle.iter().sum();
            b.total_power_w = Some(power);
            energy.baseline_j = Some(power * duration);
            energy.net_j = energy.total_j.map(|t| t - power * duration);
        }
    }

    // Sources that stopped or left gaps make the figures partial.
    let mut reasons = state.reasons.clone();
    for (config, devices, series) in &state.collected {
        if series.gave_up {
            reasons.push(format!("energy source `{}` was lost during the run (see warnings)", config.name));
        }
        if series.abandoned {
            reasons.push(format!("energy source `{}` was stuck in a call and abandoned", config.name));
        }
        if state.measured.is_some() && !series.gave_up {
            for (i, d) in devices.iter().enumerate() {
                let c = coverage(&window, series, i);
                if c < plan.measurement.min_coverage {
                    reasons.push(format!(
                        "`{}/{}` readings cover {:.0} % of the measured window (below [measurement].min_coverage = {:.0} %)",
                        config.name,
                        d.id,
                        c * 100.0,
                        plan.measurement.min_coverage * 100.0
                    ));
                }
            }
        }
    }

    let mut per_request = vec![None; state.records.len()];
    let inference = backend.as_ref().filter(|_| state.measured.is_some()).map(|_| {
        let (mut summary, attributed) = results::inference(&state.records, &window, goodput);
        per_request = attributed;
        if let Some(baseline_j) = energy.baseline_j {
            summary.window_energy_net_j = summary.window_energy_j.map(|e| e - baseline_j);
            let tokens = summary.latency.total_output_tokens;
            summary.energy_per_output_token_net_j = summary
                .window_energy_net_j
                .filter(|_| tokens > 0)
                .map(|e| e / tokens as f64);
        }
        summary
    });

    let (status, status_reasons) = status::decide(&status::Evidence {
        interrupted: state.interrupted,
        error: state.error.as_deref(),
        inference: backend.is_some(),
        records: &state.records,
        total_j: energy.total_j,
        max_failed_fraction: plan.measurement.max_failed_fraction,
        reasons: &reasons,
    });

    let result = RunResult {
        schema_version: SCHEMA_VERSION.into(),
        run_id: state
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        llem_version: env!("CARGO_PKG_VERSION").into(),
        status,
        status_reasons,
        error: state.error.clone(),
        experiment: ExperimentSummary {
            name: experiment.name.clone(),
            model: experiment.model.clone(),
            seed: experiment.seed,
            cycle: 1,
        },
        started_at: super::timestamp::rfc3339(state.started),
        duration_s: duration,
        window: state.measured.as_ref().map(|w| WindowSpan {
            start_ns: w.start_ns,
            end_ns: w.end_ns,
        }),
        phases: Vec::new(),
        energy,
        baseline: state.baseline.clone(),
        sampling: SamplingSummary {
            interval_ms: experiment.sample_interval_ms,
            ticks: state.collected.iter().map(|(_, _, s)| s.ticks).sum(),
            missed_ticks: state.collected.iter().map(|(_, _, s)| s.missed_ticks).sum(),
            sampler_cpu_s: state
                .collected
                .iter()
                .map(|(_, _, s)| s.thread_cpu_ns)
                .sum::<u64>() as f64
                / 1e9,
        },
        dataset: state.dataset.clone(),
        backend,
        inference,
        environment: Some(state.environment.clone()),
        warnings: state.warnings.clone(),
    };
    Assembled {
        result,
        per_request,
    }
}

fn energy_summary(window: &WindowMeasurement, sources: &[Collected]) -> EnergySummary {
    let mut devices = Vec::new();
    let duration = window.duration_s();
    for (config, source_devices, series) in sources {
        for (device, acc) in source_devices.iter().zip(&series.accumulators) {
            let in_window = window
                .devices
                .iter()
                .find(|w| w.source == config.name && w.device == device.id);
            let energy_j = in_window.and_then(|w| w.energy_j);
            devices.push(DeviceEnergy {
                source: config.name.clone(),
                device: device.id.clone(),
                name: device.name.clone(),
                kind: device.kind,
                method: acc.method(),
                estimated: device.estimated,
                energy_j,
                average_power_w: energy_j.filter(|_| duration > 0.0).map(|e| e / duration),
                samples: in_window.map_or(0, |w| w.samples),
                counter_wraps: acc.wraps,
                counter_resets: acc.resets,
            });
        }
    }
    let figures: Vec<f64> = devices.iter().filter_map(|d| d.energy_j).collect();
    EnergySummary {
        total_j: (!figures.is_empty()).then(|| figures.iter().sum()),
        baseline_j: None,
        net_j: None,
        includes_estimates: devices.iter().any(|d| d.estimated && d.energy_j.is_some()),
        devices,
    }
}
