//! The energy–latency trade-off: energy per output token against TTFT p99,
//! ITL p99 (both minimised) and output throughput (maximised), one point per
//! study configuration (mean over cycles) or per run given on its own, the
//! Pareto frontier ([`crate::pareto::frontier`]) connected and highlighted.

use super::{Chart, slug};
use crate::data::Point;
use crate::pareto::{Goal, frontier};
use crate::svg::{Mark, Plot, esc, fmt_sig};
use std::fmt::Write as _;

const FRONTIER: &str = "#d62728";
const DOMINATED: &str = "#8c8c8c";

/// The three horizontal figures: (id, axis label, getter, goal).
type Axis = (&'static str, &'static str, fn(&Point) -> Option<f64>, Goal);

pub const AXES: [Axis; 3] = [
    (
        "ttft",
        "TTFT p99 (ms) — lower is better",
        |p| p.ttft_p99_ms,
        Goal::Minimise,
    ),
    (
        "itl",
        "ITL p99 (ms) — lower is better",
        |p| p.itl_p99_ms,
        Goal::Minimise,
    ),
    (
        "throughput",
        "output throughput (tokens/s) — higher is better",
        |p| p.throughput_tok_s,
        Goal::Maximise,
    ),
];

/// Labels of the points on the frontier for one axis, in frontier order.
#[must_use]
pub fn frontier_labels(points: &[Point], axis: &Axis) -> Vec<String> {
    let (xy, idx) = usable(points, axis);
    frontier(&xy, axis.3)
        .into_iter()
        .map(|i| points[idx[i]].label.clone())
        .collect()
}

fn usable(points: &[Point], axis: &Axis) -> (Vec<(f64, f64)>, Vec<usize>) {
    let mut xy = Vec::new();
    let mut idx = Vec::new();
    for (i, p) in points.iter().enumerate() {
        if let (Some(x), Some(y)) = ((axis.2)(p), p.j_per_token) {
            xy.push((x, y));
            idx.push(i);
        }
    }
    (xy, idx)
}

/// One chart per horizontal figure that at least one point has.
#[must_use]
pub fn charts(points: &[Point]) -> Vec<Chart> {
    let mut out = Vec::new();
    for axis in &AXES {
        let (xy, idx) = usable(points, axis);
        if xy.is_empty() {
            continue;
        }
        let on = frontier(&xy, axis.3);
        let fold = |f: fn(f64, f64) -> f64, init: f64, get: fn(&(f64, f64)) -> f64| {
            xy.iter().map(get).fold(init, f)
        };
        let (x0, x1) = (
            fold(f64::min, f64::INFINITY, |p| p.0),
            fold(f64::max, f64::NEG_INFINITY, |p| p.0),
        );
        let (y0, y1) = (
            fold(f64::min, f64::INFINITY, |p| p.1),
            fold(f64::max, f64::NEG_INFINITY, |p| p.1),
        );
        // Room around the points for their labels.
        let (dx, dy) = (
            (x1 - x0).max(x1.abs() * 0.1) * 0.08,
            (y1 - y0).max(y1.abs() * 0.1) * 0.12,
        );
        let id = slug(&format!("pareto-{}", axis.0), 0);
        let title = format!(
            "Energy–latency trade-off: J/token vs {}",
            axis.1.split(" —").next().unwrap_or(axis.1)
        );
        let mut plot = Plot::new(
            &id,
            &title,
            axis.1,
            "energy per output token (J) — lower is better",
            ((x0 - dx).max(0.0), x1 + dx),
            ((y0 - dy).max(0.0), y1 + dy),
        );
        plot.legend(FRONTIER, Mark::Dot, "Pareto frontier");
        plot.legend(DOMINATED, Mark::Ring, "dominated");
        let line: Vec<(f64, f64)> = on.iter().map(|&i| xy[i]).collect();
        if line.len() > 1 {
            plot.line(&line, FRONTIER, false, "Pareto frontier");
        }
        let mut svg = String::new();
        for (k, &(x, y)) in xy.iter().enumerate() {
            let p = &points[idx[k]];
            let is_on = on.contains(&k);
            let _ = write!(
                svg,
                r##"<circle class="{}" data-label="{}" cx="{:.2}" cy="{:.2}" r="{}" fill="{}" stroke="{}" stroke-width="1.8"><title>{}: {} J/token, {} {}{}</title></circle>"##,
                if is_on { "frontier" } else { "dominated" },
                esc(&p.label),
                plot.px(x),
                plot.py(y),
                if is_on { 6 } else { 5 },
                if is_on { FRONTIER } else { "#ffffff" },
                if is_on { "#ffffff" } else { DOMINATED },
                esc(&p.label),
                fmt_sig(y),
                fmt_sig(x),
                axis.1
                    .split(" (")
                    .nth(1)
                    .and_then(|u| u.split(')').next())
                    .unwrap_or(""),
                if p.runs > 1 {
                    format!(", mean of {} runs", p.runs)
                } else {
                    String::new()
                }
            );
        }
        plot.raw(&svg);
        for (k, &(x, y)) in xy.iter().enumerate() {
            plot.label(x, y, 8.0, -8.0, &points[idx[k]].label);
        }
        out.push(Chart {
            id,
            title,
            caption: format!(
                "One point per study configuration (means over its cycles, study.json) or per run given on its own (result.json); energy per output token is gross, over the measured window. Filled red points are not dominated: no other point is at least as good on both figures and better on one. Frontier: {}.",
                on.iter()
                    .map(|&i| points[idx[i]].label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            svg: plot.finish(),
        });
    }
    out
}
