//! Reading run and study directories into plain structures for the charts.
//! Nothing here draws; nothing in the charts reads files.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything one report shows.
#[derive(Debug, Default)]
pub struct Report {
    /// Runs given directly (not through a study).
    pub runs: Vec<Run>,
    pub studies: Vec<Study>,
    /// Files that could not be read, and other problems (shown in the report).
    pub warnings: Vec<String>,
}

/// One phase of a run (monotonic ns).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// One device's readings from timeseries.csv: (t_ns, power W, cumulative energy J).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSeries {
    pub source: String,
    pub device: String,
    /// Power: from `power_mw` when the source gives it, else from the change
    /// of the energy counter between two readings.
    pub power: Vec<(i64, f64)>,
    /// Energy since the first reading: counter differences (a counter that
    /// goes back is taken as a reset or wrap and contributes nothing), or
    /// the integral of power when the source has no counter.
    pub energy: Vec<(i64, f64)>,
}

/// Latencies of one successful measured request (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub ttft_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
    pub itl_ms: Vec<f64>,
}

/// One run directory.
#[derive(Debug, Clone)]
pub struct Run {
    pub dir: PathBuf,
    pub run_id: String,
    /// The configuration label in a study, else the experiment name.
    pub label: String,
    pub result: Value,
    pub phases: Vec<Phase>,
    pub window: Option<(i64, i64)>,
    pub series: Vec<DeviceSeries>,
    pub requests: Vec<Request>,
}

/// A figure of a configuration across its cycles (from study.json).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub n: usize,
    pub mean: f64,
    pub ci95: Option<(f64, f64)>,
}

/// One configuration of a study.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: String,
    pub label: String,
    /// `key=value` overrides, split at the first `=`.
    pub sets: Vec<(String, String)>,
    pub metrics: BTreeMap<String, Metric>,
    /// Pooled latency percentiles (ms) with their bootstrap interval.
    pub pooled: BTreeMap<String, Metric>,
    pub runs: Vec<Run>,
}

/// One study directory.
#[derive(Debug, Clone)]
pub struct Study {
    pub dir: PathBuf,
    pub name: String,
    pub hash: String,
    pub cycles: u64,
    pub configs: Vec<Config>,
    pub warnings: Vec<String>,
}

impl Run {
    /// A number from result.json by JSON pointer.
    #[must_use]
    pub fn num(&self, pointer: &str) -> Option<f64> {
        self.result
            .pointer(pointer)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite())
    }

    #[must_use]
    pub fn text(&self, pointer: &str) -> Option<&str> {
        self.result.pointer(pointer).and_then(Value::as_str)
    }

    /// The backend that ran (`plugin` of its instance when recorded, else the instance).
    #[must_use]
    pub fn backend(&self) -> Option<String> {
        let instance = self.text("/backend/instance")?;
        let plugin = self
            .result
            .pointer("/environment/plugins")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["instance"] == instance)
                    .and_then(|p| p["plugin"].as_str())
            });
        Some(plugin.unwrap_or(instance).to_owned())
    }

    /// The engine that served the run, as the cross-engine table names it:
    /// the plan's engine and mode (`transformers (offline)`, `vllm
    /// (server)`), so one backend plugin run two ways counts as two engines;
    /// the backend plugin when the plan is not recorded.
    #[must_use]
    pub fn engine(&self) -> Option<String> {
        match (
            self.text("/backend/plan/engine"),
            self.text("/backend/plan/mode"),
        ) {
            (Some(engine), Some(mode)) => Some(format!("{engine} ({mode})")),
            _ => self.backend(),
        }
    }

    /// Start of the run's clock: its first phase, else its first reading.
    #[must_use]
    pub fn origin_ns(&self) -> i64 {
        self.phases
            .iter()
            .map(|p| p.start_ns)
            .chain(
                self.series
                    .iter()
                    .filter_map(|s| s.power.first().map(|p| p.0)),
            )
            .chain(
                self.series
                    .iter()
                    .filter_map(|s| s.energy.first().map(|p| p.0)),
            )
            .min()
            .unwrap_or(0)
    }
}

/// Read every directory: a run directory (has result.json), a study
/// directory (has design.json or study.json), or a directory holding either
/// (searched three levels deep).
pub fn gather(dirs: &[PathBuf]) -> Report {
    let mut report = Report::default();
    for dir in dirs {
        if !dir.is_dir() {
            report
                .warnings
                .push(format!("{}: not a directory", dir.display()));
            continue;
        }
        let before = report.runs.len() + report.studies.len();
        walk(dir, 0, &mut report);
        if report.runs.len() + report.studies.len() == before {
            report.warnings.push(format!(
                "{}: no run directory (result.json) or study directory (study.json) found",
                dir.display()
            ));
        }
    }
    report
}

fn walk(dir: &Path, depth: usize, report: &mut Report) {
    if dir.join("study.json").is_file() {
        match read_study(dir) {
            Ok(study) => report.studies.push(study),
            Err(e) => report.warnings.push(e),
        }
        return;
    }
    if dir.join("result.json").is_file() {
        match read_run(dir, None) {
            Ok(run) => report.runs.push(run),
            Err(e) => report.warnings.push(e),
        }
        return;
    }
    if depth >= 3 {
        return;
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    children.sort();
    for child in children {
        walk(&child, depth + 1, report);
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read one run directory; `label` names it (a study's configuration).
pub fn read_run(dir: &Path, label: Option<&str>) -> Result<Run, String> {
    let result = read_json(&dir.join("result.json"))?;
    let run_id = result["run_id"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let label = label
        .map(str::to_owned)
        .or_else(|| {
            result
                .pointer("/experiment/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| run_id.clone());
    let phases = result["phases"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(Phase {
                        name: p["name"].as_str()?.to_owned(),
                        start_ns: p["start_ns"].as_i64()?,
                        end_ns: p["end_ns"].as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let window = match (
        result.pointer("/window/start_ns").and_then(Value::as_i64),
        result.pointer("/window/end_ns").and_then(Value::as_i64),
    ) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let series = std::fs::read_to_string(dir.join("timeseries.csv"))
        .map(|t| parse_timeseries(&t))
        .unwrap_or_default();
    let requests = std::fs::read_to_string(dir.join("requests.jsonl"))
        .map(|t| parse_requests(&t))
        .unwrap_or_default();
    Ok(Run {
        dir: dir.to_owned(),
        run_id,
        label,
        result,
        phases,
        window,
        series,
        requests,
    })
}

/// A raw reading: t_ns, energy_uj, power_mw.
type Row = (i64, Option<f64>, Option<f64>);

/// timeseries.csv (`t_ns,source,device,energy_uj,power_mw`, empty cells for
/// what a source does not give) into one series per device, in order of
/// first appearance. Unparseable rows are skipped.
#[must_use]
pub fn parse_timeseries(text: &str) -> Vec<DeviceSeries> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(_) => return Vec::new(),
    };
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(t), Some(src), Some(dev)) = (col("t_ns"), col("source"), col("device")) else {
        return Vec::new();
    };
    let (e_col, p_col) = (col("energy_uj"), col("power_mw"));
    // Per device: raw (t, energy_uj, power_mw).
    let mut order: Vec<(String, String)> = Vec::new();
    let mut raw: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for record in reader.records().flatten() {
        let Some(t_ns) = record.get(t).and_then(|v| v.trim().parse::<i64>().ok()) else {
            continue;
        };
        let num = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let key = (
            record.get(src).unwrap_or_default().to_owned(),
            record.get(dev).unwrap_or_default().to_owned(),
        );
        if !raw.contains_key(&key) {
            order.push(key.clone());
        }
        raw.entry(key)
            .or_default()
            .push((t_ns, num(e_col), num(p_col)));
    }
    order
        .into_iter()
        .filter_map(|key| {
            let mut rows = raw.remove(&key)?;
            rows.sort_by_key(|r| r.0);
            Some(device_series(key.0, key.1, &rows))
        })
        .collect()
}

fn device_series(source: String, device: String, rows: &[Row]) -> DeviceSeries {
    let has_counter = rows.iter().filter(|r| r.1.is_some()).count() >= 2;
    let mut power = Vec::new();
    let mut energy = Vec::new();
    if has_counter {
        let mut total = 0.0;
        let mut last: Option<(i64, f64)> = None;
        for &(t, e, p) in rows {
            let Some(e) = e else { continue };
            if let Some((t0, e0)) = last {
                let d = e - e0;
                if d >= 0.0 {
                    total += d / 1e6;
                    if p.is_none() && t > t0 {
                        power.push((t, d / 1e6 / ((t - t0) as f64 / 1e9)));
                    }
                }
            } else {
                energy.push((t, 0.0));
            }
            if last.is_some() {
                energy.push((t, total));
            }
            if let Some(p) = p {
                power.push((t, p / 1e3));
            }
            last = Some((t, e));
        }
    } else {
        let mut total = 0.0;
        let mut last: Option<(i64, f64)> = None;
        for &(t, _, p) in rows {
            let Some(p) = p.map(|p| p / 1e3) else {
                continue;
            };
            power.push((t, p));
            if let Some((t0, p0)) = last {
                total += 0.5 * (p + p0) * ((t - t0) as f64 / 1e9);
            }
            energy.push((t, total));
            last = Some((t, p));
        }
    }
    DeviceSeries {
        source,
        device,
        power,
        energy,
    }
}

/// The successful measured requests of requests.jsonl.
#[must_use]
pub fn parse_requests(text: &str) -> Vec<Request> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|r| r["phase"] == "measured" && r["success"] == true)
        .map(|r| {
            let chunks: Vec<i64> = r["chunk_ns"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            Request {
                ttft_ms: r["ttft_ms"].as_f64(),
                e2el_ms: r["e2el_ms"].as_f64(),
                itl_ms: chunks
                    .windows(2)
                    .map(|w| (w[1] - w[0]) as f64 / 1e6)
                    .collect(),
            }
        })
        .collect()
}

fn metric(v: &Value) -> Option<Metric> {
    let mean = v["mean"].as_f64().or_else(|| v["value"].as_f64())?;
    let ci95 = match (
        v.pointer("/ci95/low").and_then(Value::as_f64),
        v.pointer("/ci95/high").and_then(Value::as_f64),
    ) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let n = v["n"]
        .as_u64()
        .or_else(|| v["requests"].as_u64())
        .unwrap_or(0) as usize;
    Some(Metric { n, mean, ci95 })
}

/// A study's run directory as recorded (absolute, or relative to the study),
/// else found by name under the study directory (a study moved elsewhere).
fn locate_run(study: &Path, recorded: &Path) -> Option<PathBuf> {
    if recorded.join("result.json").is_file() {
        return Some(recorded.to_owned());
    }
    let joined = study.join(recorded);
    if joined.join("result.json").is_file() {
        return Some(joined);
    }
    let name = recorded.file_name()?;
    let runs = study.join("runs");
    let mut stack = vec![(runs, 0)];
    while let Some((dir, depth)) = stack.pop() {
        let candidate = dir.join(name);
        if candidate.join("result.json").is_file() {
            return Some(candidate);
        }
        if depth < 3 {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    None
}

/// Read a study directory (study.json and its measured runs).
pub fn read_study(dir: &Path) -> Result<Study, String> {
    let doc = read_json(&dir.join("study.json"))?;
    let mut warnings: Vec<String> = doc["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut configs = Vec::new();
    for c in doc["configs"].as_array().into_iter().flatten() {
        let label = c["label"].as_str().unwrap_or_default().to_owned();
        let sets = c["sets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.trim().to_owned(), v.trim().to_owned()),
                None => (s.to_owned(), String::new()),
            })
            .collect();
        let read_metrics = |key: &str| -> BTreeMap<String, Metric> {
            c[key]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), metric(v)?)))
                .collect()
        };
        let mut runs = Vec::new();
        for r in c["runs"].as_array().into_iter().flatten() {
            let status = r["status"].as_str().unwrap_or_default();
            if status != "complete" && status != "degraded" {
                continue;
            }
            let Some(recorded) = r["run_dir"].as_str() else {
                continue;
            };
            match locate_run(dir, Path::new(recorded)) {
                Some(run_dir) => match read_run(&run_dir, Some(&label)) {
                    Ok(run) => runs.push(run),
                    Err(e) => warnings.push(e),
                },
                None => warnings.push(format!("{recorded}: run directory not found")),
            }
        }
        configs.push(Config {
            id: c["id"].as_str().unwrap_or_default().to_owned(),
            label,
            sets,
            metrics: read_metrics("metrics"),
            pooled: read_metrics("pooled"),
            runs,
        });
    }
    Ok(Study {
        dir: dir.to_owned(),
        name: doc["name"].as_str().unwrap_or_default().to_owned(),
        hash: doc["hash"].as_str().unwrap_or_default().to_owned(),
        cycles: doc["cycles"].as_u64().unwrap_or(0),
        configs,
        warnings,
    })
}

/// A point of the energy–latency plane: one configuration of a study (mean
/// over its cycles) or one run given on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    /// Gross J per output token over the measured window.
    pub j_per_token: Option<f64>,
    pub j_per_token_net: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub itl_p99_ms: Option<f64>,
    pub throughput_tok_s: Option<f64>,
    pub runs: usize,
    pub backend: Option<String>,
}

impl Report {
    /// One point per study configuration and per run given on its own.
    /// Labels are prefixed by the study name when there are several sources.
    #[must_use]
    pub fn points(&self) -> Vec<Point> {
        let prefix = self.studies.len() + usize::from(!self.runs.is_empty()) > 1;
        let mut out = Vec::new();
        for s in &self.studies {
            for c in &s.configs {
                let m = |k: &str| c.metrics.get(k).map(|m| m.mean);
                out.push(Point {
                    label: if prefix {
                        format!("{}: {}", s.name, c.label)
                    } else {
                        c.label.clone()
                    },
                    j_per_token: m("energy_per_output_token_j"),
                    j_per_token_net: m("energy_per_output_token_net_j"),
                    ttft_p99_ms: m("ttft_p99_ms"),
                    itl_p99_ms: m("itl_p99_ms"),
                    throughput_tok_s: m("output_token_throughput_tok_s"),
                    runs: c.runs.len(),
                    backend: c.runs.first().and_then(Run::backend),
                });
            }
        }
        for r in &self.runs {
            out.push(Point {
                label: r.label.clone(),
                j_per_token: r.num("/inference/energy_per_output_token_j"),
                j_per_token_net: r.num("/inference/energy_per_output_token_net_j"),
                ttft_p99_ms: r.num("/inference/latency/ttft/p99"),
                itl_p99_ms: r.num("/inference/latency/itl/p99"),
                throughput_tok_s: r.num("/inference/latency/output_token_throughput"),
                runs: 1,
                backend: r.backend(),
            });
        }
        out
    }

    /// Every run, those of studies included, with the label to show.
    #[must_use]
    pub fn all_runs(&self) -> Vec<&Run> {
        self.studies
            .iter()
            .flat_map(|s| s.configs.iter().flat_map(|c| c.runs.iter()))
            .chain(self.runs.iter())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_cumulative_energy_and_power() {
        let csv = "t_ns,source,device,energy_uj,power_mw\n\
                   0,fx,d0,1000000,\n\
                   1000000000,fx,d0,3000000,\n\
                   2000000000,fx,d0,500000,\n\
                   3000000000,fx,d0,1500000,\n\
                   0,nv,gpu0,,100000\n\
                   1000000000,nv,gpu0,,300000\n";
        let s = parse_timeseries(csv);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].source.as_str(), s[0].device.as_str()), ("fx", "d0"));
        // 2 J, then a reset (nothing), then 1 J.
        assert_eq!(
            s[0].energy,
            [
                (0, 0.0),
                (1_000_000_000, 2.0),
                (2_000_000_000, 2.0),
                (3_000_000_000, 3.0)
            ]
        );
        assert_eq!(s[0].power, [(1_000_000_000, 2.0), (3_000_000_000, 1.0)]);
        // Power only: trapezoid, 100 W and 300 W over 1 s: 200 J.
        assert_eq!(s[1].power, [(0, 100.0), (1_000_000_000, 300.0)]);
        assert_eq!(s[1].energy, [(0, 0.0), (1_000_000_000, 200.0)]);
    }

    #[test]
    fn only_successful_measured_requests_count() {
        let text = r#"{"phase":"warmup","success":true,"ttft_ms":1.0,"e2el_ms":2.0,"chunk_ns":[1,2]}
{"phase":"measured","success":false,"ttft_ms":1.0,"e2el_ms":2.0,"chunk_ns":[]}
{"phase":"measured","success":true,"ttft_ms":3.0,"e2el_ms":9.0,"chunk_ns":[1000000,3000000,6000000]}
not json"#;
        let r = parse_requests(text);
        assert_eq!(
            r,
            [Request {
                ttft_ms: Some(3.0),
                e2el_ms: Some(9.0),
                itl_ms: vec![2.0, 3.0]
            }]
        );
    }
}
