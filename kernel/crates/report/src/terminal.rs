//! The terminal summary: the figures of the report's summary table as text.

use crate::charts::pareto::{AXES, frontier_labels};
use crate::data::Report;
use crate::svg::fmt_sig;
use std::fmt::Write as _;

/// Control characters removed: run strings are untrusted and must not drive
/// the terminal.
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), fmt_sig)
}

/// One table: a line per study configuration or run, then the frontiers.
#[must_use]
pub fn summary(report: &Report) -> String {
    let points = report.points();
    let mut out = String::new();
    if points.is_empty() {
        out.push_str("nothing to report\n");
        return out;
    }
    let header = [
        "configuration / run",
        "J/token",
        "net J/tok",
        "TTFT p99 ms",
        "ITL p99 ms",
        "tok/s",
        "runs",
    ];
    let rows: Vec<[String; 7]> = points
        .iter()
        .map(|p| {
            [
                crate::svg::truncate(&clean(&p.label), 40),
                cell(p.j_per_token),
                cell(p.j_per_token_net),
                cell(p.ttft_p99_ms),
                cell(p.itl_p99_ms),
                cell(p.throughput_tok_s),
                p.runs.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            if i == 0 {
                let _ = write!(l, "{c}{}", " ".repeat(pad));
            } else {
                let _ = write!(l, "  {}{c}", " ".repeat(pad));
            }
        }
        l.trim_end().to_owned()
    };
    out.push_str(&line(&header.map(str::to_owned)));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    for axis in &AXES {
        let on = frontier_labels(&points, axis);
        if !on.is_empty() {
            let _ = writeln!(
                out,
                "Pareto frontier (J/token vs {}): {}",
                axis.0,
                on.iter().map(|l| clean(l)).collect::<Vec<_>>().join(", ")
            );
        }
    }
    for row in crate::html::engine_rows(report) {
        let _ = writeln!(
            out,
            "engine {} on {}: {} J/token, TTFT p99 {} ms, {} tok/s ({} run(s))",
            clean(&row.engine),
            clean(&row.dataset),
            cell(row.j_per_token),
            cell(row.ttft_p99_ms),
            cell(row.throughput_tok_s),
            row.runs
        );
    }
    for run in report.all_runs() {
        if let Some(level) = run.text("/quality/level")
            && level != "good"
        {
            let _ = writeln!(
                out,
                "quality {}: {} ({})",
                clean(level),
                clean(&run.label),
                clean(&run.run_id)
            );
        }
    }
    out
}
