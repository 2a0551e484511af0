//! Latency and throughput figures from request records, defined as
//! `vllm bench serve` defines them:
//!
//! - **TTFT**: first chunk carrying text − send.
//! - **ITL**: gaps between successive chunks carrying text, pooled over requests.
//! - **TPOT**: (E2E − TTFT) / (output tokens − 1), for requests with more than
//!   one output token (and a known count).
//! - **E2E**: end of the stream − send.
//! - Percentiles interpolate linearly between order statistics (numpy's default).
//! - **Goodput**: requests meeting every SLO (`ttft`, `tpot`, `e2el`, in ms) per
//!   second; a request with one output token has TPOT 0 for this test.
//!
//! Only successful, measured (not warm-up) requests enter the statistics.

use serde::{Deserialize, Serialize};

use super::{Phase, RequestRecord};

/// A metric an SLO can be set on (`--goodput ttft:200 tpot:50 e2el:2000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Ttft,
    Tpot,
    E2el,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Tpot => "tpot",
            Metric::E2el => "e2el",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ttft" => Ok(Metric::Ttft),
            "tpot" => Ok(Metric::Tpot),
            "e2el" | "e2e" => Ok(Metric::E2el),
            other => Err(format!(
                "unknown goodput metric `{other}`: use ttft, tpot or e2el"
            )),
        }
    }
}

/// Parse one `--goodput` item, `METRIC:MS` (e.g. `ttft:200`).
pub fn parse_slo(item: &str) -> Result<(Metric, f64), String> {
    let (metric, ms) = item
        .split_once(':')
        .ok_or_else(|| format!("`{item}`: expected METRIC:MILLISECONDS, e.g. ttft:200"))?;
    let metric: Metric = metric.trim().parse()?;
    let ms: f64 = ms
        .trim()
        .parse()
        .map_err(|_| format!("`{item}`: `{ms}` is not a number of milliseconds"))?;
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(format!(
            "`{item}`: the SLO must be a non-negative number of ms"
        ));
    }
    Ok((metric, ms))
}

/// Distribution of one latency, in milliseconds. With no data (`count` 0)
/// every figure is NaN, which serializes as `null`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Stats {
    /// Statistics of `values` (any order; sorted in place).
    pub fn of(values: &mut [f64]) -> Stats {
        if values.is_empty() {
            return Stats {
                mean: f64::NAN,
                median: f64::NAN,
                p90: f64::NAN,
                p95: f64::NAN,
                p99: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                count: 0,
            };
        }
        values.sort_by(f64::total_cmp);
        Stats {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            median: percentile(values, 50.0),
            p90: percentile(values, 90.0),
            p95: percentile(values, 95.0),
            p99: percentile(values, 99.0),
            min: values[0],
            max: values[values.len() - 1],
            count: values.len(),
        }
    }
}

/// Percentile `p` (0–100) of sorted, non-empty `sorted`, interpolating
/// linearly between order statistics (numpy's default, which vLLM uses).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Requests that met every SLO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    pub slo: Vec<(Metric, f64)>,
    /// Requests meeting every SLO.
    pub good: u32,
    /// `good` / every measured request in scope (failed ones count as not good).
    pub fraction: f64,
    /// `good` per second of the scope's duration (vLLM's `request_goodput`).
    pub rate: f64,
}

/// What [`summarize`] returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub ttft: Stats,
    pub itl: Stats,
    pub tpot: Stats,
    pub e2e: Stats,
    /// Successful measured requests in scope.
    pub completed: u32,
    /// Failed measured requests in scope.
    pub failed: u32,
    /// Seconds the figures below are per: the window, or first send → last end.
    pub duration_s: f64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_token_throughput: f64,
    /// Output tokens of the successful requests (only those with a known count).
    pub total_output_tokens: u64,
    /// Input tokens of the successful requests with a known count.
    pub total_input_tokens: u64,
    /// Successful requests without an output token count (neither the server's
    /// usage nor the kernel's tokenizer gave one): left out of the token totals
    /// and of TPOT.
    pub missing_token_counts: u32,
    pub goodput: Option<Goodput>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Summarize measured records.
///
/// With `window = Some((start_ns, end_ns))` (the steady-state window) only
/// requests that ran entirely inside it enter the latency figures and the
/// request counts; output tokens are those generated inside the window (each
/// request's count apportioned over its text chunks by timestamp), per
/// second of the window. Without a window, the scope is every measured
/// request and the duration runs from the first send to the last end.
pub fn summarize(
    records: &[RequestRecord],
    window: Option<(u64, u64)>,
    goodput: &[(Metric, f64)],
) -> LatencySummary {
    let measured = records.iter().filter(|r| r.phase == Phase::Measured);
    let (scope, duration_s): (Vec<&RequestRecord>, f64) = match window {
        Some((start, end)) => (
            measured
                .filter(|r| r.send_ns >= start && r.end_ns <= end)
                .collect(),
            end.saturating_sub(start) as f64 / 1e9,
        ),
        None => {
            let scope: Vec<&RequestRecord> = measured.collect();
            let first = scope.iter().map(|r| r.send_ns).min().unwrap_or(0);
            let last = scope.iter().map(|r| r.end_ns).max().unwrap_or(0);
            (scope, last.saturating_sub(first) as f64 / 1e9)
        }
    };

    let mut ttft = Vec::new();
    let mut itl = Vec::new();
    let mut tpot = Vec::new();
    let mut e2e = Vec::new();
    let mut completed = 0u32;
    let mut failed = 0u32;
    let mut total_output_tokens = 0u64;
    let mut total_input_tokens = 0u64;
    let mut missing_token_counts = 0u32;
    let mut good = 0u32;

    for r in &scope {
        if !r.success {
            failed += 1;
            continue;
        }
        completed += 1;
        let Some(first) = r.first_token_ns else {
            continue;
        };
        let ttft_ms = ms(first.saturating_sub(r.send_ns));
        let e2e_ms = ms(r.end_ns.saturating_sub(r.send_ns));
        ttft.push(ttft_ms);
        e2e.push(e2e_ms);
        itl.extend(r.chunk_ns.windows(2).map(|w| ms(w[1].saturating_sub(w[0]))));
        total_input_tokens += u64::from(r.input_tokens.unwrap_or(0));
        let request_tpot = match r.output_tokens {
            Some(n) => {
                total_output_tokens += u64::from(n);
                if n > 1 {
                    // From the request's own first and last token, subtracted
                    // as integers: exact whatever the clock's epoch.
                    let t = ms(r.end_ns.saturating_sub(first)) / f64::from(n - 1);
                    tpot.push(t);
                    Some(t)
                } else {
                    Some(0.0)
                }
            }
            None => {
                missing_token_counts += 1;
                None
            }
        };
        let meets = |metric: Metric, slo: f64| match metric {
            Metric::Ttft => ttft_ms <= slo,
            Metric::E2el => e2e_ms <= slo,
            // Without a token count TPOT is unknown: the request does not count as good.
            Metric::Tpot => request_tpot.is_some_and(|t| t <= slo),
        };
        if !goodput.is_empty() && goodput.iter().all(|&(m, slo)| meets(m, slo)) {
            good += 1;
        }
    }

    if let Some((start, end)) = window {
        // Tokens generated inside the window, by every measured request
        // overlapping it (not only those entirely inside).
        total_output_tokens = 0;
        for r in records
            .iter()
            .filter(|r| r.phase == Phase::Measured && r.success)
        {
            let (Some(n), false) = (r.output_tokens, r.chunk_ns.is_empty()) else {
                continue;
            };
            let inside = r
                .chunk_ns
                .iter()
                .filter(|&&t| t >= start && t <= end)
                .count();
            total_output_tokens +=
                (f64::from(n) * inside as f64 / r.chunk_ns.len() as f64).round() as u64;
        }
    }

    let per_s = |x: f64| {
        if duration_s > 0.0 {
            x / duration_s
        } else {
            0.0
        }
    };
    let in_scope = completed + failed;
    LatencySummary {
        ttft: Stats::of(&mut ttft),
        itl: Stats::of(&mut itl),
        tpot: Stats::of(&mut tpot),
        e2e: Stats::of(&mut e2e),
        completed,
        failed,
        duration_s,
        request_throughput: per_s(f64::from(completed)),
        output_token_throughput: per_s(total_output_tokens as f64),
        total_output_tokens,
        total_input_tokens,
        missing_token_counts,
        goodput: (!goodput.is_empty()).then(|| Goodput {
            slo: goodput.to_vec(),
            good,
            fraction: if in_scope > 0 {
                f64::from(good) / f64::from(in_scope)
            } else {
                0.0
            },
            rate: per_s(f64::from(good)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_percentiles() {
        // numpy.percentile([1, 2, 3, 4], [50, 90, 99]) = [2.5, 3.7, 3.97]
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&xs, 50.0), 2.5);
        assert!((percentile(&xs, 90.0) - 3.7).abs() < 1e-12);
        assert!((percentile(&xs, 99.0) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }

    #[test]
    fn slo_parsing() {
        assert_eq!(parse_slo("ttft:200"), Ok((Metric::Ttft, 200.0)));
        assert_eq!(parse_slo("E2E:1500.5"), Ok((Metric::E2el, 1500.5)));
        assert!(parse_slo("itl:5").is_err());
        assert!(parse_slo("tpot").is_err());
        assert!(parse_slo("tpot:-1").is_err());
    }
}
