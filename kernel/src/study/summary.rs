//! `study.json`: a study directory merged into one document — every slot's
//! state and run directory, and per configuration, statistics across its
//! cycles of the figures each run's result.json holds (mean, sd, CV, 95 %
//! Student-t interval, outliers), bootstrap intervals of the latency
//! percentiles over the pooled requests of its runs (requests.jsonl), and
//! warnings when intervals are too wide to tell configurations apart.
//!
//! Rebuilt from the files every time (after each run, by `llem study merge`,
//! by each Slurm task), so it never disagrees with the run directories.

use super::design::Design;
use super::state::{self, SlotStatus};
use llem_analysis::bootstrap::bootstrap_ci;
use llem_analysis::cycles::{Interval, Summary, outliers, quantile, separable};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STUDY_FILE: &str = "study.json";
pub const SCHEMA_VERSION: &str = "1";

/// Bootstrap resamples for the percentile intervals.
const RESAMPLES: usize = 1000;

/// The figures summarised across cycles: (name in study.json, JSON pointer in result.json).
pub const METRICS: &[(&str, &str)] = &[
    (
        "energy_per_output_token_j",
        "/inference/energy_per_output_token_j",
    ),
    (
        "energy_per_output_token_net_j",
        "/inference/energy_per_output_token_net_j",
    ),
    (
        "headline_energy_per_output_token_j",
        "/inference/headline_energy_per_output_token_j",
    ),
    ("energy_per_request_j", "/inference/energy_per_request_j"),
    (
        "output_token_throughput_tok_s",
        "/inference/latency/output_token_throughput",
    ),
    (
        "request_throughput_req_s",
        "/inference/latency/request_throughput",
    ),
    ("ttft_p50_ms", "/inference/latency/ttft/median"),
    ("ttft_p99_ms", "/inference/latency/ttft/p99"),
    ("itl_p50_ms", "/inference/latency/itl/median"),
    ("itl_p99_ms", "/inference/latency/itl/p99"),
    ("average_power_w", "/inference/average_power_w"),
    ("energy_total_j", "/energy/total_j"),
    ("window_s", "/duration_s"),
];

/// The figure configurations are told apart by (warnings when they cannot be).
pub const HEADLINE: &str = "energy_per_output_token_j";

#[derive(Debug, Clone, Serialize)]
pub struct StudyDocument {
    pub schema_version: &'static str,
    pub name: String,
    pub hash: String,
    pub order: String,
    pub seed: u64,
    pub cycles: u32,
    /// Slots by status.
    pub runs: BTreeMap<String, usize>,
    pub configs: Vec<ConfigSummary>,
    pub skipped: Vec<super::design::Skipped>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConfigSummary {
    pub id: String,
    pub label: String,
    pub sets: Vec<String>,
    pub runs: Vec<RunEntry>,
    /// Runs whose figures enter the statistics (complete and degraded).
    pub measured_runs: usize,
    /// Per figure, across the measured runs.
    pub metrics: BTreeMap<String, Summary>,
    /// Per figure, the schedule indices of runs whose value is an outlier
    /// (modified z-score above 3.5).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outliers: BTreeMap<String, Vec<usize>>,
    /// Latency percentiles over the pooled measured requests of every
    /// measured run, with a 95 % percentile-bootstrap interval (resampling
    /// requests; seeded by the study's seed).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pooled: BTreeMap<String, Pooled>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    pub index: usize,
    pub cycle: u32,
    pub status: SlotStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_kept_from: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pooled {
    pub requests: usize,
    pub value: f64,
    pub ci95: Option<Interval>,
}

/// Merge the study directory into a [`StudyDocument`].
pub fn build(design: &Design, dir: &Path) -> Result<StudyDocument, String> {
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    let mut configs: Vec<ConfigSummary> = design
        .configs
        .iter()
        .map(|c| ConfigSummary {
            id: c.id.clone(),
            label: c.label.clone(),
            sets: c.sets.clone(),
            runs: Vec::new(),
            measured_runs: 0,
            metrics: BTreeMap::new(),
            outliers: BTreeMap::new(),
            pooled: BTreeMap::new(),
        })
        .collect();
    let mut warnings = Vec::new();
    // Per config: (schedule index, result.json, run dir) of each measured run.
    let mut measured: Vec<Vec<(usize, Value, PathBuf)>> = vec![Vec::new(); design.configs.len()];
    for (index, slot) in design.schedule.iter().enumerate() {
        let st = state::read(dir, index)?;
        let status = st.as_ref().map_or(SlotStatus::Pending, |s| s.status);
        *runs.entry(status.as_str().to_owned()).or_default() += 1;
        let run_dir = st.as_ref().and_then(|s| s.run_dir.clone());
        if status.is_done()
            && let Some(run_dir) = &run_dir
        {
            match read_json(&run_dir.join("result.json")) {
                Ok(result) => measured[slot.config].push((index, result, run_dir.clone())),
                Err(e) => warnings.push(e),
            }
        }
        configs[slot.config].runs.push(RunEntry {
            index,
            cycle: slot.cycle,
            status,
            run_dir,
            engine_kept_from: st.as_ref().and_then(|s| s.engine_kept_from.clone()),
            reasons: st.map(|s| s.reasons).unwrap_or_default(),
        });
    }
    for (config, runs) in configs.iter_mut().zip(&measured) {
        config.measured_runs = runs.len();
        for (name, pointer) in METRICS {
            let values: Vec<f64> = runs
                .iter()
                .map(|(_, r, _)| {
                    r.pointer(pointer)
                        .and_then(Value::as_f64)
                        .unwrap_or(f64::NAN)
                })
                .collect();
            if let Some(summary) = Summary::of(&values) {
                let flagged: Vec<usize> = outliers(&values).iter().map(|i| runs[*i].0).collect();
                if !flagged.is_empty() {
                    config.outliers.insert((*name).to_owned(), flagged);
                }
                config.metrics.insert((*name).to_owned(), summary);
            }
        }
        let (ttft, itl) = pooled_latencies(runs.iter().map(|(_, _, d)| d.as_path()), &mut warnings);
        for (name, values, q) in [
            ("ttft_p50_ms", &ttft, 0.5),
            ("ttft_p99_ms", &ttft, 0.99),
            ("itl_p50_ms", &itl, 0.5),
            ("itl_p99_ms", &itl, 0.99),
        ] {
            if values.len() >= 2 {
                config.pooled.insert(
                    name.to_owned(),
                    Pooled {
                        requests: values.len(),
                        value: quantile(values, q),
                        ci95: bootstrap_ci(
                            values,
                            |xs| quantile(xs, q),
                            RESAMPLES,
                            design.seed,
                            0.95,
                        ),
                    },
                );
            }
        }
    }
    let headline: Vec<(&str, &Summary)> = configs
        .iter()
        .filter_map(|c| c.metrics.get(HEADLINE).map(|s| (c.label.as_str(), s)))
        .collect();
    if headline.len() > 1 || headline.iter().any(|(_, s)| s.n > 1) {
        warnings.extend(separable(&headline));
    }
    Ok(StudyDocument {
        schema_version: SCHEMA_VERSION,
        name: design.name.clone(),
        hash: design.hash.clone(),
        order: design.order.clone(),
        seed: design.seed,
        cycles: design.cycles,
        runs,
        configs,
        skipped: design.skipped.clone(),
        warnings,
    })
}

/// Build and write study.json; returns its path.
pub fn write(design: &Design, dir: &Path) -> Result<PathBuf, String> {
    let document = build(design, dir)?;
    let json = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    let path = dir.join(STUDY_FILE);
    state::write_atomically(&path, &json)?;
    Ok(path)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// TTFT and inter-token latencies (ms) of every successful measured request
/// in the runs' requests.jsonl files.
fn pooled_latencies<'a>(
    dirs: impl Iterator<Item = &'a Path>,
    warnings: &mut Vec<String>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut ttft, mut itl) = (Vec::new(), Vec::new());
    for dir in dirs {
        let path = dir.join("requests.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let Ok(r) = serde_json::from_str::<Value>(line) else {
                warnings.push(format!(
                    "{}:{}: not a JSON request record",
                    path.display(),
                    n + 1
                ));
                continue;
            };
            if r["phase"] != "measured" || r["success"] != true {
                continue;
            }
            if let Some(t) = r["ttft_ms"].as_f64() {
                ttft.push(t);
            }
            let chunks: Vec<u64> = r["chunk_ns"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            itl.extend(
                chunks
                    .windows(2)
                    .map(|w| w[1].saturating_sub(w[0]) as f64 / 1e6),
            );
        }
    }
    (ttft, itl)
}
