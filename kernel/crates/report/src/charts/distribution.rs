//! Latency distributions: empirical CDFs of TTFT, inter-token latency and
//! end-to-end latency over the successful requests of the measured phase
//! (requests.jsonl), one line per study configuration (its runs pooled) or
//! per run given on its own.

use super::{Chart, slug};
use crate::data::{Report, Request};
use crate::svg::{Mark, Plot, colour};

/// At most this many steps per line (quantiles of larger samples).
const MAX_STEPS: usize = 400;

/// The points of an empirical CDF as a step line: for sorted values
/// v1 ≤ … ≤ vn, (v_i, (i−1)/n) → (v_i, i/n).
#[must_use]
pub fn ecdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return Vec::new();
    }
    let stride = n.div_ceil(MAX_STEPS).max(1);
    let mut out = Vec::with_capacity(2 * n.min(MAX_STEPS) + 2);
    let mut prev = 0.0;
    let mut i = 0;
    while i < n {
        let j = (i + stride).min(n);
        let x = v[j - 1];
        out.push((x, prev));
        prev = j as f64 / n as f64;
        out.push((x, prev));
        i = j;
    }
    out
}

type Pick = fn(&Request) -> Vec<f64>;

/// One ECDF line: label, steps, number of values.
type Line = (String, Vec<(f64, f64)>, usize);

/// The three ECDF charts (those with data).
#[must_use]
pub fn charts(report: &Report) -> Vec<Chart> {
    // (label, requests) per line.
    let mut groups: Vec<(String, Vec<&Request>)> = Vec::new();
    let prefix = report.studies.len() + usize::from(!report.runs.is_empty()) > 1;
    for s in &report.studies {
        for c in &s.configs {
            let label = if prefix {
                format!("{}: {}", s.name, c.label)
            } else {
                c.label.clone()
            };
            groups.push((
                label,
                c.runs.iter().flat_map(|r| r.requests.iter()).collect(),
            ));
        }
    }
    for r in &report.runs {
        groups.push((r.label.clone(), r.requests.iter().collect()));
    }
    let metrics: [(&str, &str, Pick); 3] = [
        ("ttft", "Time to first token", |r| {
            r.ttft_ms.into_iter().collect()
        }),
        ("itl", "Inter-token latency", |r| r.itl_ms.clone()),
        ("e2e", "End-to-end latency", |r| {
            r.e2el_ms.into_iter().collect()
        }),
    ];
    let mut out = Vec::new();
    for (key, name, pick) in metrics {
        let lines: Vec<Line> = groups
            .iter()
            .map(|(label, reqs)| {
                let values: Vec<f64> = reqs.iter().flat_map(|r| pick(r)).collect();
                (label.clone(), ecdf(&values), values.len())
            })
            .filter(|(_, pts, _)| !pts.is_empty())
            .collect();
        if lines.is_empty() {
            continue;
        }
        let lo = lines
            .iter()
            .flat_map(|l| &l.1)
            .map(|p| p.0)
            .fold(f64::INFINITY, f64::min);
        let hi = lines
            .iter()
            .flat_map(|l| &l.1)
            .map(|p| p.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let id = slug(&format!("ecdf-{key}"), 0);
        let title = format!("{name}: empirical CDF");
        let mut plot = Plot::new(
            &id,
            &title,
            &format!("{} (ms)", name.to_lowercase()),
            "fraction of requests",
            (lo.min(0.0), hi),
            (0.0, 1.0),
        );
        for (i, (label, _, count)) in lines.iter().enumerate() {
            plot.legend(colour(i), Mark::Line, &format!("{label} (n={count})"));
        }
        for (i, (label, pts, _)) in lines.iter().enumerate() {
            plot.line(pts, colour(i), false, label);
        }
        out.push(Chart {
            id,
            title,
            caption: format!(
                "{name} of every successful request of the measured phase (requests.jsonl{}); a study configuration pools the requests of its runs. A point (x, y): a fraction y of the {} took at most x ms.",
                if key == "itl" {
                    ": gaps between consecutive chunk_ns"
                } else if key == "ttft" {
                    ": ttft_ms"
                } else {
                    ": e2el_ms"
                },
                if key == "itl" { "gaps" } else { "requests" }
            ),
            svg: plot.finish(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecdf_steps_at_each_value() {
        assert_eq!(
            ecdf(&[3.0, 1.0, 2.0, f64::NAN]),
            [
                (1.0, 0.0),
                (1.0, 1.0 / 3.0),
                (2.0, 1.0 / 3.0),
                (2.0, 2.0 / 3.0),
                (3.0, 2.0 / 3.0),
                (3.0, 1.0)
            ]
        );
        assert!(ecdf(&[]).is_empty());
        let big: Vec<f64> = (0..10_000).map(f64::from).collect();
        let e = ecdf(&big);
        assert!(e.len() <= 2 * MAX_STEPS + 2);
        assert_eq!(e.last(), Some(&(9999.0, 1.0)));
    }
}
