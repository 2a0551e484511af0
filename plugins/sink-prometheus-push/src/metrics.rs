//! The text exposition format the sink pushes: the run's headline figures as
//! gauges, named like `llem monitor --prometheus`'s families (`llem_` prefix,
//! base units in the name: `_joules`, `_watts`, `_seconds`), and the live
//! power gauge under the exporter's own name, `llem_power_watts`.

use serde_json::Value;
use std::fmt::Write;

/// One headline figure as a gauge: (headline column, metric, extra label,
/// factor from result.json's unit to the metric's, HELP).
pub struct Gauge {
    pub column: &'static str,
    pub metric: &'static str,
    pub label: Option<(&'static str, &'static str)>,
    pub factor: f64,
    pub help: &'static str,
}

const fn gauge(column: &'static str, metric: &'static str, help: &'static str) -> Gauge {
    Gauge {
        column,
        metric,
        label: None,
        factor: 1.0,
        help,
    }
}

const fn labelled(
    column: &'static str,
    metric: &'static str,
    label: (&'static str, &'static str),
    factor: f64,
    help: &'static str,
) -> Gauge {
    Gauge {
        column,
        metric,
        label: Some(label),
        factor,
        help,
    }
}

const MS: f64 = 1e-3;
const TTFT: &str =
    "Time to first token over the measured requests, seconds (`stat`: mean, median, p99).";
const ITL: &str = "Inter-token latency over the measured requests, seconds (`stat`: mean, p99).";
const E2E: &str =
    "End-to-end request latency over the measured requests, seconds (`stat`: mean, p99).";
const REQUESTS: &str = "Requests of the measured window (`outcome`: sent, succeeded, failed).";

/// Every numeric headline figure (`sink_common::HEADLINE`), in its order; a
/// unit test checks none is left out.
pub const GAUGES: &[Gauge] = &[
    gauge(
        "duration_s",
        "llem_run_duration_seconds",
        "Wall-clock duration of the run, seconds.",
    ),
    gauge(
        "energy_total_j",
        "llem_run_energy_joules",
        "Energy of the run's measured window over every measured device, joules.",
    ),
    gauge(
        "energy_baseline_j",
        "llem_run_baseline_energy_joules",
        "Idle (baseline) energy over the same window, joules.",
    ),
    gauge(
        "energy_net_j",
        "llem_run_net_energy_joules",
        "Energy above the idle baseline, joules.",
    ),
    gauge(
        "includes_estimates",
        "llem_run_includes_estimates",
        "1 when a modelled (estimated) source is in the energy, else 0.",
    ),
    labelled(
        "requests_sent",
        "llem_run_requests",
        ("outcome", "sent"),
        1.0,
        REQUESTS,
    ),
    labelled(
        "requests_succeeded",
        "llem_run_requests",
        ("outcome", "succeeded"),
        1.0,
        REQUESTS,
    ),
    labelled(
        "requests_failed",
        "llem_run_requests",
        ("outcome", "failed"),
        1.0,
        REQUESTS,
    ),
    gauge(
        "window_energy_j",
        "llem_run_window_energy_joules",
        "Energy of the inference window, joules.",
    ),
    gauge(
        "energy_per_output_token_j",
        "llem_run_energy_per_output_token_joules",
        "Energy per output token, joules.",
    ),
    gauge(
        "energy_per_output_token_net_j",
        "llem_run_net_energy_per_output_token_joules",
        "Energy above baseline per output token, joules.",
    ),
    gauge(
        "energy_per_request_j",
        "llem_run_energy_per_request_joules",
        "Energy per request, joules.",
    ),
    gauge(
        "average_power_w",
        "llem_run_average_power_watts",
        "Average power over the inference window, watts.",
    ),
    gauge(
        "headline_energy_per_output_token_j",
        "llem_run_headline_energy_per_output_token_joules",
        "The headline energy per output token (basis in llem_run_info's `headline`), joules.",
    ),
    gauge(
        "total_input_tokens",
        "llem_run_input_tokens",
        "Input tokens of the measured requests.",
    ),
    gauge(
        "total_output_tokens",
        "llem_run_output_tokens",
        "Output tokens of the measured requests.",
    ),
    gauge(
        "request_throughput",
        "llem_run_requests_per_second",
        "Request throughput, requests per second.",
    ),
    gauge(
        "output_token_throughput",
        "llem_run_output_tokens_per_second",
        "Output token throughput, tokens per second.",
    ),
    labelled(
        "ttft_mean_ms",
        "llem_run_ttft_seconds",
        ("stat", "mean"),
        MS,
        TTFT,
    ),
    labelled(
        "ttft_median_ms",
        "llem_run_ttft_seconds",
        ("stat", "median"),
        MS,
        TTFT,
    ),
    labelled(
        "ttft_p99_ms",
        "llem_run_ttft_seconds",
        ("stat", "p99"),
        MS,
        TTFT,
    ),
    labelled(
        "tpot_mean_ms",
        "llem_run_tpot_seconds",
        ("stat", "mean"),
        MS,
        "Time per output token after the first, seconds (`stat`: mean).",
    ),
    labelled(
        "itl_mean_ms",
        "llem_run_itl_seconds",
        ("stat", "mean"),
        MS,
        ITL,
    ),
    labelled(
        "itl_p99_ms",
        "llem_run_itl_seconds",
        ("stat", "p99"),
        MS,
        ITL,
    ),
    labelled(
        "e2e_mean_ms",
        "llem_run_e2e_seconds",
        ("stat", "mean"),
        MS,
        E2E,
    ),
    labelled(
        "e2e_p99_ms",
        "llem_run_e2e_seconds",
        ("stat", "p99"),
        MS,
        E2E,
    ),
];

/// The headline columns that go into `llem_run_info`'s labels instead.
pub const INFO_LABELS: &[&str] = &[
    "model",
    "cycle",
    "status",
    "headline",
    "quality",
    "started_at",
];

/// A label value as the text format wants it: `\`, `"` and line feeds escaped.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Text exposition of families: each `(metric, help, [(labels, value)])`.
#[derive(Default)]
pub struct Exposition {
    text: String,
    last: Option<&'static str>,
}

impl Exposition {
    /// One sample; `# HELP`/`# TYPE` go before the first of its family (a
    /// family's samples must be contiguous).
    pub fn sample(
        &mut self,
        metric: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        if self.last != Some(metric) {
            let _ = writeln!(self.text, "# HELP {metric} {help}");
            let _ = writeln!(self.text, "# TYPE {metric} gauge");
            self.last = Some(metric);
        }
        self.text.push_str(metric);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.text, "{{{}}}", pairs.join(","));
        }
        // Rust prints the shortest text that reads back as the same f64.
        let _ = writeln!(self.text, " {value}");
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

fn figure_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run's figures: `llem_run_info` and one gauge per figure the run has
/// (a figure it does not have is left out, never pushed as 0). Every series
/// carries `experiment`, as the exporter's do; `run_id` comes from the
/// grouping key.
pub fn result_exposition(result: &Value, experiment: &str) -> String {
    let figures: Vec<(&str, Option<&Value>)> = sink_common::headline(result).collect();
    let figure = |column: &str| {
        figures
            .iter()
            .find(|(name, _)| *name == column)
            .and_then(|(_, v)| *v)
    };
    let mut out = Exposition::default();
    let info: Vec<(String, String)> = INFO_LABELS
        .iter()
        .map(|l| {
            (
                l.to_string(),
                figure(l).map(figure_text).unwrap_or_default(),
            )
        })
        .collect();
    let mut labels: Vec<(&str, &str)> = vec![("experiment", experiment)];
    labels.extend(info.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    out.sample(
        "llem_run_info",
        "The run's description; always 1 (labels: model, cycle, status, headline basis, quality verdict, start time).",
        &labels,
        1.0,
    );
    for g in GAUGES {
        let value = match figure(g.column) {
            Some(Value::Bool(b)) => f64::from(u8::from(*b)),
            Some(v) => match v.as_f64() {
                Some(x) => x * g.factor,
                None => continue,
            },
            None => continue,
        };
        let mut labels = vec![("experiment", experiment)];
        labels.extend(g.label);
        out.sample(g.metric, g.help, &labels, value);
    }
    out.into_text()
}

/// Live power: `llem_power_watts{source, device, experiment}`, the
/// exporter's family.
pub fn power_exposition<'a>(
    experiment: &str,
    power: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
) -> String {
    let mut out = Exposition::default();
    for (source, device, watts) in power {
        out.sample(
            "llem_power_watts",
            "Latest power of the device, watts (the source's reading, or the rate of its energy counter).",
            &[("source", source), ("device", device), ("experiment", experiment)],
            watts,
        );
    }
    out.into_text()
}
