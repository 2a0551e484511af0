//! The `energy` section of result.json from a measured window: per-device
//! figures, which of them the total adds and why, gaps and coverage.

use crate::experiment::{DeviceEnergy, EnergySummary};
use crate::sampler::{SourceConfig, SourceSeries, WindowMeasurement};
use llem_sdk::Device;

/// The energy summary of `window`, and the warnings it raises (overlapping
/// sources, gaps, dropped readings), to be added to the run's `warnings`.
/// `sources` are the sampler's stopped series, in start order.
pub fn summarize(
    window: &WindowMeasurement,
    sources: &[(SourceConfig, Vec<Device>, SourceSeries)],
) -> (EnergySummary, Vec<String>) {
    let mut warnings = window.warnings.clone();
    let mut devices = Vec::new();
    let mut measured = window.devices.iter();
    let duration = window.duration_s();
    for (config, source_devices, series) in sources {
        for (device, acc) in source_devices.iter().zip(&series.accumulators) {
            let in_window = measured.next();
            let energy_j = in_window.and_then(|w| w.energy_j);
            let covered_s = in_window
                .filter(|_| energy_j.is_some())
                .map(|w| w.covered_s);
            let gaps = in_window.map(|w| w.gaps.clone()).unwrap_or_default();
            if !gaps.is_empty() {
                let first = gaps
                    .first
                    .first()
                    .map(|g| format!("; first: {}", g.reason))
                    .unwrap_or_default();
                warnings.push(format!(
                    "{}/{}: {} reading(s) in the window were not plausible and were not counted as energy{first}",
                    config.name, device.id, gaps.count
                ));
            }
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
                parent: device.parent.clone(),
                in_total: in_window.is_some_and(|w| w.in_total),
                excluded_because: in_window.and_then(|w| w.excluded_because.clone()),
                gaps,
                covered_s,
                coverage: covered_s
                    .filter(|_| duration > 0.0)
                    .map(|c| (c / duration).min(1.0)),
                max_power_w: acc.max_power_w(),
            });
        }
        if !series.source_gaps.is_empty() {
            let first = series
                .source_gaps
                .first
                .first()
                .map(|g| format!("; first: {}", g.reason))
                .unwrap_or_default();
            warnings.push(format!(
                "{}: {} value(s) dropped as invalid{first}",
                config.name, series.source_gaps.count
            ));
        }
    }
    let summary = EnergySummary {
        total_j: window.total_j(),
        total_includes: window.total_includes(),
        baseline_j: None,
        net_j: None,
        includes_estimates: devices
            .iter()
            .any(|d| d.estimated && d.in_total && d.energy_j.is_some()),
        devices,
    };
    (summary, warnings)
}
