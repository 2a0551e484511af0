//! Phase 8: the figures, computed from the raw data the run kept — the
//! measured window's device energies, the baseline, the request records — and
//! the status that says whether they mean what they say.

use super::result::*;
use super::{Collected, RunState, figures, results, status};
use crate::sampler::WindowMeasurement;
use llem_manifest::Plan;

pub struct Assembled {
    pub result: RunResult,
    /// Each record's (attributed J, ML.ENERGY J), in record order.
    pub per_request: Vec<(Option<f64>, Option<f64>)>,
}

#[allow(clippy::too_many_lines)]
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
        warnings: Vec::new(),
    });
    let (mut energy, energy_warnings) = crate::energy::summarize(&window, &state.collected);
    state.warnings.extend(energy_warnings);
    let duration = window.duration_s();

    // Baseline: idle power of the devices in the total × the window.
    if let Some(b) = state.baseline.as_mut() {
        let idle: Vec<f64> = energy
            .devices
            .iter()
            .filter(|d| d.in_total && d.energy_j.is_some())
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
    for (config, _, series) in &state.collected {
        if series.gave_up {
            reasons.push(format!(
                "energy source `{}` was lost during the run (see warnings)",
                config.name
            ));
        }
        if series.abandoned {
            reasons.push(format!(
                "energy source `{}` was stuck in a call and abandoned",
                config.name
            ));
        }
    }
    if state.measured.is_some() {
        for d in energy.devices.iter().filter(|d| d.in_total) {
            let c = d.coverage.unwrap_or(0.0);
            if c < plan.measurement.min_coverage {
                reasons.push(format!(
                    "`{}/{}` readings account for {:.0} % of the measured window (below [measurement].min_coverage = {:.0} %)",
                    d.source,
                    d.device,
                    c * 100.0,
                    plan.measurement.min_coverage * 100.0
                ));
            }
            if d.gaps.count > 0 {
                reasons.push(format!(
                    "`{}/{}`: {} implausible reading(s) became gaps, not energy",
                    d.source, d.device, d.gaps.count
                ));
            }
        }
    }

    let mut per_request = vec![(None, None); state.records.len()];
    let inference = backend
        .as_ref()
        .filter(|_| state.measured.is_some())
        .map(|b| {
            let mut summary = results::inference(&state.records, &window, goodput);
            if let Some(baseline_j) = energy.baseline_j {
                summary.window_energy_net_j = summary.window_energy_j.map(|e| e - baseline_j);
                let tokens = summary.latency.total_output_tokens;
                summary.energy_per_output_token_net_j = summary
                    .window_energy_net_j
                    .filter(|_| tokens > 0)
                    .map(|e| e / tokens as f64);
            }
            let series = figures::included_series(&window, &state.collected, &energy.devices);
            let batch_limit = ["max_num_seqs", "max_batch_size"]
                .iter()
                .find_map(|k| {
                    b.plan
                        .args
                        .iter()
                        .position(|a| a == &format!("--{}", k.replace('_', "-")))
                        .and_then(|i| b.plan.args.get(i + 1))
                        .and_then(|v| v.parse::<u32>().ok())
                })
                .or_else(|| {
                    backend_option_u32(
                        &plan.plugins,
                        &b.instance,
                        &["max_num_seqs", "max_batch_size"],
                    )
                });
            let steady = figures::steady_state(
                &state.records,
                &series,
                &window,
                batch_limit.filter(|_| b.plan.mode == llem_sdk::EngineMode::Server),
                plan.load.max_concurrency,
            );
            summary.headline = Some(
                match steady.headline {
                    llem_analysis::steady_state::Headline::SteadyState => "steady_state",
                    llem_analysis::steady_state::Headline::MeasuredWindow => "measured_window",
                }
                .into(),
            );
            summary.headline_energy_per_output_token_j = steady.headline_j_per_token;
            match figures::attribute(&state.records, &series, steady.headline_j_per_token) {
                Ok((attribution, parts)) => {
                    per_request = parts;
                    summary.attribution = Some(attribution);
                }
                Err(e) => reasons.push(format!("per-request energy could not be attributed: {e}")),
            }
            summary.steady_state = Some(steady);
            summary.flops = flops(plan, &state.records, &window, &energy);
            summary.carbon = plan.measurement.grid_gco2_per_kwh.and_then(|grid| {
                llem_analysis::carbon::emissions(
                    energy.total_j?,
                    summary.latency.total_output_tokens,
                    llem_analysis::carbon::CarbonSettings {
                        grid_gco2e_per_kwh: grid,
                        pue: plan.measurement.pue,
                    },
                )
                .ok()
            });
            summary
        });
    let quality = state.measured.as_ref().map(|w| {
        quality(
            w,
            &state.collected,
            &energy,
            state.baseline.as_ref(),
            &state.dir,
        )
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
            cycle: state.cycle,
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
        workload: state.workload.clone(),
        backend,
        inference,
        quality,
        environment: Some(state.environment.clone()),
        grants: plan.plugins.iter().flat_map(|p| p.grants.clone()).collect(),
        warnings: state.warnings.clone(),
        sinks: Vec::new(),
    };
    Assembled {
        result,
        per_request,
    }
}

fn backend_option_u32(
    plugins: &[llem_manifest::PluginPlan],
    instance: &str,
    keys: &[&str],
) -> Option<u32> {
    let plugin = plugins.iter().find(|p| p.instance == instance)?;
    keys.iter()
        .find_map(|k| plugin.config.get(*k)?.as_u64())
        .and_then(|v| u32::try_from(v).ok())
}

/// FLOPs of the measured, successful requests from the model's config.json
/// (a local model directory or the Hugging Face cache); `None` when there is none or it is not understood.
fn flops(
    plan: &Plan,
    records: &[crate::loadgen::RequestRecord],
    window: &WindowMeasurement,
    energy: &EnergySummary,
) -> Option<Flops> {
    let model = plan.experiment.model.as_deref()?;
    let config = crate::model::config_json(model)?;
    let shape = llem_analysis::flops::ModelShape::from_hf_config(&config).ok()?;
    let pairs: Vec<(u64, u64)> = records
        .iter()
        .filter(|r| r.phase == crate::loadgen::Phase::Measured && r.success)
        .filter_map(|r| Some((u64::from(r.input_tokens?), u64::from(r.output_tokens?))))
        .collect();
    let total = shape.run_flops(&pairs);
    let output: u64 = pairs.iter().map(|p| p.1).sum();
    let gpus: Vec<&DeviceEnergy> = energy
        .devices
        .iter()
        .filter(|d| d.kind == llem_sdk::DeviceKind::Gpu && d.energy_j.is_some())
        .collect();
    let efficiency = llem_analysis::flops::efficiency(
        total.total,
        window.duration_s(),
        energy.total_j,
        gpus.first().map(|d| d.name.as_str()),
        gpus.len() as u32,
    );
    Some(Flops {
        parameters: shape.parameters().total,
        prefill_flops: total.prefill,
        decode_flops: total.decode,
        flops_per_output_token: (output > 0).then(|| total.decode / output as f64),
        efficiency,
    })
}

/// The verdict's inputs from the run: each device's sampling over the window
/// and the telemetry rows of the window (read back from telemetry.csv).
fn quality(
    window: &WindowMeasurement,
    collected: &[Collected],
    energy: &EnergySummary,
    baseline: Option<&super::baseline::BaselineSummary>,
    dir: &std::path::Path,
) -> Quality {
    use llem_analysis::verdict::{
        DeviceSampling, EnergyMethod as M, TelemetrySeries, VerdictInputs,
    };
    let window_s = window.duration_s();
    let mut devices = Vec::new();
    for (config, source_devices, series) in collected {
        for (i, d) in source_devices.iter().enumerate() {
            // The verdict judges the devices whose energy makes the total.
            let Some(e) = energy
                .devices
                .iter()
                .find(|e| e.source == config.name && e.device == d.id && e.in_total)
            else {
                continue;
            };
            let method = if d.estimated {
                M::Estimated
            } else if e.method == crate::energy::EnergyMethod::PowerIntegration {
                M::Integrated
            } else {
                M::Counter
            };
            // The counter's refresh period, from the track: the median time
            // between changes of the cumulative value.
            let refresh = series
                .energy_track
                .get(i)
                .and_then(|t| refresh_period_s(t, window));
            devices.push(DeviceSampling {
                device: format!("{}/{}", config.name, d.id),
                method,
                energy_j: e.energy_j,
                readings: e.samples,
                refresh_period_s: refresh,
                // Slow sources (Redfish BMCs) declare their refresh here.
                declared_refresh_s: (d.has_power && d.power_average_window_ms > 0)
                    .then(|| f64::from(d.power_average_window_ms) / 1e3),
                window_s,
                covered_s: e.covered_s.unwrap_or(0.0),
                gaps: u32::try_from(e.gaps.count).unwrap_or(u32::MAX),
                resets: e.counter_resets,
                ticks: series.ticks,
                missed_ticks: series.missed_ticks,
            });
        }
    }
    let mut telemetry: Vec<TelemetrySeries> = Vec::new();
    if let Ok(mut reader) = csv::Reader::from_path(dir.join(crate::sampler::TELEMETRY_FILE)) {
        for row in reader.records().flatten() {
            let (Some(t), Some(source), Some(device), Some(metric), Some(value)) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
            else {
                continue;
            };
            let (Ok(t), Ok(value)) = (t.parse::<u64>(), value.parse::<f64>()) else {
                continue;
            };
            if t < window.start_ns || t > window.end_ns {
                continue;
            }
            let device = format!("{source}/{device}");
            match telemetry
                .iter_mut()
                .find(|s| s.device == device && s.metric == metric)
            {
                Some(s) => s.points.push((t, value)),
                None => telemetry.push(TelemetrySeries {
                    device,
                    metric: metric.to_owned(),
                    points: vec![(t, value)],
                }),
            }
        }
    }
    llem_analysis::verdict::judge(&VerdictInputs {
        devices,
        telemetry,
        baseline_drift: baseline
            .and_then(|b| b.spot_check.as_ref())
            .map(|c| c.drift),
    })
}

/// Median time between changes of a cumulative track inside the window, s.
fn refresh_period_s(track: &[(u64, f64)], window: &WindowMeasurement) -> Option<f64> {
    let mut changes: Vec<u64> = Vec::new();
    let mut last: Option<(u64, f64)> = None;
    for &(t, v) in track
        .iter()
        .filter(|(t, _)| *t >= window.start_ns && *t <= window.end_ns)
    {
        if let Some((_, lv)) = last
            && v == lv
        {
            continue;
        }
        last = Some((t, v));
        changes.push(t);
    }
    let mut gaps: Vec<u64> = changes.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2] as f64 / 1e9)
}
