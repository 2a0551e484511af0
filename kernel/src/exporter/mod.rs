//! A live Prometheus exporter: the sampler's figures as the text exposition
//! format (version 0.0.4), served over HTTP at `/metrics` while `llem monitor`
//! or `llem run` samples (`--prometheus [HOST]:PORT`). See docs/prometheus.md.
//!
//! Families (labels in braces; during a run every series also has `run_id`
//! and `experiment`):
//!
//! - `llem_power_watts{source,device,device_name,kind,estimated}` gauge
//! - `llem_energy_joules_total{…same…}` counter: cumulative since llem began
//!   sampling, by the device's method (counter deltas or power integration)
//! - `llem_telemetry_<name>_<unit>{…same…, plugin labels}` gauges, in base
//!   units (MHz becomes hertz, a fraction `ratio`)
//! - `llem_samples_total{source}`, `llem_missed_ticks_total{source}`,
//!   `llem_source_errors_total{source}` counters, `llem_source_up{source}` gauge
//! - during a run: `llem_run_phase{phase}` (1 for the current phase),
//!   `llem_requests_completed_total`, `llem_output_tokens_total`
//!
//! Device names, ids and telemetry come from plugins: label values are
//! escaped, label and metric names sanitised, so nothing a plugin says can
//! break the page.

mod server;

pub use server::{Exporter, parse_listen};

use crate::experiment::phase::PhaseName;
use crate::sampler::LiveSource;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The content type of the page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every phase `llem_run_phase` reports, in run order; `done` once the run
/// has written its directory.
pub const PHASES: [&str; 10] = [
    "open_sources",
    "idle_baseline",
    "start_engine",
    "warmup",
    "thermal_settle",
    "measured",
    "cooldown",
    "assemble",
    "write",
    "done",
];

/// What the exporter knows about the run under way (`llem run`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunView {
    pub run_id: String,
    pub experiment: String,
    /// One of [`PHASES`]; `None` before the first phase is known.
    pub phase: Option<&'static str>,
    /// Requests finished (succeeded or failed), warm-up included.
    pub requests_completed: u64,
    /// Output tokens the server reported, warm-up included.
    pub output_tokens: u64,
}

impl RunView {
    pub fn set_phase(&mut self, phase: PhaseName) {
        let name = phase.as_str();
        self.phase = PHASES.iter().copied().find(|p| *p == name);
    }
}

/// The highest value each counter series has shown: a counter on the page
/// never goes down, whatever its source does.
#[derive(Debug, Default, Clone)]
pub struct HighWater {
    seen: HashMap<String, f64>,
}

impl HighWater {
    fn clamp(&mut self, key: String, value: f64) -> f64 {
        let slot = self.seen.entry(key).or_insert(value);
        if value > *slot {
            *slot = value;
        }
        *slot
    }
}

/// The page for the sampler's current figures (and the run's, if any).
pub fn render(sources: &[LiveSource], run: Option<&RunView>, high: &mut HighWater) -> String {
    let mut page = Page::default();
    let run_labels: Vec<(&str, &str)> = run
        .map(|r| {
            vec![
                ("run_id", r.run_id.as_str()),
                ("experiment", r.experiment.as_str()),
            ]
        })
        .unwrap_or_default();

    page.family(
        "llem_build_info",
        "gauge",
        "llem's version; always 1.",
        &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );

    let devices: Vec<(Vec<(&str, &str)>, &crate::sampler::LiveSourceDevice)> = sources
        .iter()
        .flat_map(|s| {
            s.devices.iter().map(|d| {
                let mut labels = vec![
                    ("source", s.name.as_str()),
                    ("device", d.info.id.as_str()),
                    ("device_name", d.info.name.as_str()),
                    ("kind", kind_name(d.info.kind)),
                    ("estimated", if d.info.estimated { "true" } else { "false" }),
                ];
                labels.extend(run_labels.iter().copied());
                (labels, d)
            })
        })
        .collect();

    let power: Vec<_> = devices
        .iter()
        .filter_map(|(labels, d)| d.live.power_w.map(|w| (labels.clone(), w)))
        .collect();
    page.family(
        "llem_power_watts",
        "gauge",
        "Latest power of the device, watts (the source's reading, or the rate of its energy counter).",
        &power,
    );

    let energy: Vec<_> = devices
        .iter()
        .filter_map(|(labels, d)| {
            let joules = d.live.energy_j?;
            Some((
                labels.clone(),
                high.clamp(series_key("energy", labels), joules),
            ))
        })
        .collect();
    page.family(
        "llem_energy_joules_total",
        "counter",
        "Energy of the device since llem began sampling it, joules (counter deltas, or integrated power where the device has no counter).",
        &energy,
    );

    // Telemetry: one gauge family per sanitised name and unit, in the order first seen.
    let mut telemetry: Vec<TelemetryFamily> = Vec::new();
    for (labels, d) in &devices {
        for metric in &d.telemetry {
            let (family, value) = telemetry_family(&metric.name, &metric.unit, metric.value);
            let mut all: Vec<(String, String)> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            for (key, value) in &metric.labels {
                let mut key = label_name(key);
                if all.iter().any(|(k, _)| *k == key) {
                    key = format!("metric_{key}");
                }
                if !all.iter().any(|(k, _)| *k == key) {
                    all.push((key, value.clone()));
                }
            }
            let index = match telemetry.iter().position(|f| f.name == family) {
                Some(i) => i,
                None => {
                    let help = format!(
                        "Telemetry `{}` ({}) reported by the energy source, as the latest value.",
                        metric.name,
                        if metric.unit.is_empty() {
                            "no unit"
                        } else {
                            metric.unit.as_str()
                        }
                    );
                    telemetry.push(TelemetryFamily {
                        name: family,
                        help,
                        samples: Vec::new(),
                    });
                    telemetry.len() - 1
                }
            };
            let samples = &mut telemetry[index].samples;
            // Two names that sanitise alike must not make a duplicate series.
            if !samples.iter().any(|(l, _)| *l == all) {
                samples.push((all, value));
            }
        }
    }
    for TelemetryFamily {
        name: family,
        help,
        samples,
    } in &telemetry
    {
        let samples: Vec<(Vec<(&str, &str)>, f64)> = samples
            .iter()
            .map(|(labels, v)| {
                (
                    labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect(),
                    *v,
                )
            })
            .collect();
        page.family(family, "gauge", help, &samples);
    }

    let per_source = |value: &dyn Fn(&LiveSource) -> f64| -> Vec<(Vec<(&str, &str)>, f64)> {
        sources
            .iter()
            .map(|s| {
                let mut labels = vec![("source", s.name.as_str())];
                labels.extend(run_labels.iter().copied());
                (labels, value(s))
            })
            .collect()
    };
    page.family(
        "llem_samples_total",
        "counter",
        "Sampling ticks of the source (reads on their deadline).",
        &per_source(&|s| s.ticks as f64),
    );
    page.family(
        "llem_missed_ticks_total",
        "counter",
        "Sampling ticks skipped because a read overran its slot.",
        &per_source(&|s| s.missed_ticks as f64),
    );
    page.family(
        "llem_source_errors_total",
        "counter",
        "Failed reads of the source.",
        &per_source(&|s| s.errors as f64),
    );
    page.family(
        "llem_source_up",
        "gauge",
        "1 while the source is read; 0 once llem gave up on it after repeated failures.",
        &per_source(&|s| if s.gave_up { 0.0 } else { 1.0 }),
    );

    if let Some(run) = run {
        let phases: Vec<_> = PHASES
            .iter()
            .map(|p| {
                let mut labels = run_labels.clone();
                labels.push(("phase", p));
                (labels, if run.phase == Some(*p) { 1.0 } else { 0.0 })
            })
            .collect();
        page.family(
            "llem_run_phase",
            "gauge",
            "1 for the phase the run is in, 0 for the others.",
            &phases,
        );
        let requests = high.clamp(
            series_key("requests", &run_labels),
            run.requests_completed as f64,
        );
        page.family(
            "llem_requests_completed_total",
            "counter",
            "Requests finished in the run (succeeded or failed), warm-up included.",
            &[(run_labels.clone(), requests)],
        );
        let tokens = high.clamp(series_key("tokens", &run_labels), run.output_tokens as f64);
        page.family(
            "llem_output_tokens_total",
            "counter",
            "Output tokens the server reported in the run, warm-up included.",
            &[(run_labels.clone(), tokens)],
        );
    }
    page.text
}

/// One telemetry gauge family: its name, HELP text and samples.
struct TelemetryFamily {
    name: String,
    help: String,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

#[derive(Default)]
struct Page {
    text: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (key, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{key}=\"{}\"", escape_label_value(value));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {}", format_value(*value));
        }
    }
}

fn series_key(family: &str, labels: &[(&str, &str)]) -> String {
    let mut key = family.to_owned();
    for (k, v) in labels {
        let _ = write!(key, "\u{0}{k}\u{0}{v}");
    }
    key
}

fn kind_name(kind: llem_sdk::DeviceKind) -> &'static str {
    use llem_sdk::DeviceKind::*;
    match kind {
        Gpu => "gpu",
        CpuPackage => "cpu-package",
        CpuCore => "cpu-core",
        CpuUncore => "cpu-uncore",
        Dram => "dram",
        Psys => "psys",
        Accelerator => "accelerator",
        System => "system",
        Other => "other",
    }
}

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: `\` and line feeds escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

/// `[a-z0-9_]`, not starting with a digit, runs of `_` collapsed, no
/// leading or trailing `_`; `unnamed` if nothing is left.
fn sanitise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        return "unnamed".into();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name from a plugin's label key (never `__…`, which Prometheus reserves).
fn label_name(key: &str) -> String {
    let name = sanitise(key).trim_start_matches('_').to_owned();
    if name.is_empty() {
        "label".into()
    } else if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("l{name}")
    } else {
        name
    }
}

/// The family name and value of a telemetry metric: in base units, the unit
/// at the end of the name (`sm_clock` in MHz: `llem_telemetry_sm_clock_hertz`,
/// ×1e6). Dimensionless units (`count`, `bitmask`, none) add no suffix.
pub fn telemetry_family(name: &str, unit: &str, value: f64) -> (String, f64) {
    let (suffix, scale): (Option<String>, f64) = match unit.trim() {
        "" | "count" | "bitmask" | "flag" | "bool" | "boolean" | "1" => (None, 1.0),
        "fraction" | "ratio" => (Some("ratio".into()), 1.0),
        "%" | "percent" | "pct" => (Some("ratio".into()), 0.01),
        "W" | "watt" | "watts" => (Some("watts".into()), 1.0),
        "mW" => (Some("watts".into()), 1e-3),
        "uW" | "µW" => (Some("watts".into()), 1e-6),
        "J" | "joule" | "joules" => (Some("joules".into()), 1.0),
        "mJ" => (Some("joules".into()), 1e-3),
        "uJ" | "µJ" => (Some("joules".into()), 1e-6),
        "Hz" | "hertz" => (Some("hertz".into()), 1.0),
        "kHz" => (Some("hertz".into()), 1e3),
        "MHz" => (Some("hertz".into()), 1e6),
        "GHz" => (Some("hertz".into()), 1e9),
        "B" | "byte" | "bytes" => (Some("bytes".into()), 1.0),
        "KiB" => (Some("bytes".into()), 1024.0),
        "MiB" => (Some("bytes".into()), 1024.0 * 1024.0),
        "GiB" => (Some("bytes".into()), 1024.0 * 1024.0 * 1024.0),
        "kB" | "KB" => (Some("bytes".into()), 1e3),
        "MB" => (Some("bytes".into()), 1e6),
        "GB" => (Some("bytes".into()), 1e9),
        "s" | "second" | "seconds" => (Some("seconds".into()), 1.0),
        "ms" => (Some("seconds".into()), 1e-3),
        "us" | "µs" => (Some("seconds".into()), 1e-6),
        "ns" => (Some("seconds".into()), 1e-9),
        "C" | "°C" | "celsius" => (Some("celsius".into()), 1.0),
        "V" | "volt" | "volts" => (Some("volts".into()), 1.0),
        "mV" => (Some("volts".into()), 1e-3),
        "A" | "ampere" | "amperes" => (Some("amperes".into()), 1.0),
        "mA" => (Some("amperes".into()), 1e-3),
        "rpm" | "RPM" => (Some("rpm".into()), 1.0),
        other => (Some(sanitise(other)), 1.0),
    };
    let mut family = format!("llem_telemetry_{}", sanitise(name));
    if let Some(suffix) = suffix
        && !family.ends_with(&format!("_{suffix}"))
    {
        family.push('_');
        family.push_str(&suffix);
    }
    (family, value * scale)
}

#[cfg(test)]
mod tests;
