//! Per run: power and cumulative energy of every device over the whole run
//! (timeseries.csv), with the run's phases (result.json `phases`) shaded and
//! named and the measured window highlighted.

use super::{Chart, slug};
use crate::data::Run;
use crate::svg::{Mark, Plot, colour, esc, truncate};
use std::fmt::Write as _;

const MEASURED_FILL: &str = "#fde9b8";
const PHASE_FILLS: [&str; 2] = ["#f3f4f6", "#e8ebef"];

/// Seconds from the run's origin.
fn secs(t_ns: i64, origin: i64) -> f64 {
    (t_ns - origin) as f64 / 1e9
}

/// The power chart and the cumulative energy chart of one run; none when
/// the run has no readings.
#[must_use]
pub fn charts(run: &Run, n: usize) -> Vec<Chart> {
    if run
        .series
        .iter()
        .all(|s| s.power.is_empty() && s.energy.is_empty())
    {
        return Vec::new();
    }
    let origin = run.origin_ns();
    let end = run
        .phases
        .iter()
        .map(|p| p.end_ns)
        .chain(
            run.series
                .iter()
                .filter_map(|s| s.energy.last().map(|p| p.0)),
        )
        .chain(
            run.series
                .iter()
                .filter_map(|s| s.power.last().map(|p| p.0)),
        )
        .max()
        .unwrap_or(origin);
    let x_range = (0.0, secs(end, origin));
    let window = run.window.map_or_else(String::new, |(a, b)| {
        format!(
            " The measured window ({:.1}–{:.1} s) is highlighted.",
            secs(a, origin),
            secs(b, origin)
        )
    });
    let mut out = Vec::new();
    for (kind, unit, pick) in [("Power", "W", 0usize), ("Cumulative energy", "J", 1usize)] {
        let data: Vec<Vec<(f64, f64)>> = run
            .series
            .iter()
            .map(|s| {
                let pts = if pick == 0 { &s.power } else { &s.energy };
                pts.iter().map(|&(t, v)| (secs(t, origin), v)).collect()
            })
            .collect();
        let max = data
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() {
            continue;
        }
        let min = data.iter().flatten().map(|p| p.1).fold(0.0, f64::min);
        let id = slug(&format!("timeline-{kind}"), n);
        let title = format!("{kind} per device — {}", run.label);
        let mut plot = Plot::new(
            &id,
            &title,
            "time since the run started (s)",
            &format!("{} ({unit})", kind.to_lowercase()),
            x_range,
            (min, max + 0.06 * (max - min).max(max.abs())),
        );
        for (i, s) in run.series.iter().enumerate() {
            plot.legend(colour(i), Mark::Line, &format!("{}/{}", s.source, s.device));
        }
        if run.window.is_some() {
            plot.legend(MEASURED_FILL, Mark::Band, "measured window");
        }
        shade_phases(&mut plot, run, origin);
        for (i, (s, pts)) in run.series.iter().zip(&data).enumerate() {
            plot.line(pts, colour(i), false, &format!("{}/{}", s.source, s.device));
        }
        out.push(Chart {
            id,
            title,
            caption: format!(
                "{kind} of each device over the whole run, from timeseries.csv ({}); phases from result.json.{window}{}",
                if pick == 0 {
                    "power_mw where the source reports it, else the change of energy_uj between readings"
                } else {
                    "energy_uj differences since the first reading, or power integrated where there is no counter"
                },
                if pick == 1 {
                    " Energy before and after the measured window is drawn too; result.json's figures cover the window only."
                } else {
                    ""
                }
            ),
            svg: plot.finish(),
        });
    }
    out
}

/// Bands for the phases, labelled at the top when they are wide enough.
fn shade_phases(plot: &mut Plot, run: &Run, origin: i64) {
    let (top, bottom) = (plot.y.r1, plot.y.r0);
    let mut svg = String::new();
    for (i, phase) in run.phases.iter().enumerate() {
        let (x0, x1) = (
            plot.px(secs(phase.start_ns, origin)),
            plot.px(secs(phase.end_ns, origin)),
        );
        let width = (x1 - x0).max(0.5);
        let measured = phase.name == "measured";
        let fill = if measured {
            MEASURED_FILL
        } else {
            PHASE_FILLS[i % 2]
        };
        let _ = write!(
            svg,
            r#"<rect class="phase" x="{:.2}" y="{top:.2}" width="{width:.2}" height="{:.2}" fill="{fill}"><title>{} {:.2} s</title></rect>"#,
            x0,
            bottom - top,
            esc(&phase.name),
            (phase.end_ns - phase.start_ns) as f64 / 1e9
        );
        let fits = (width / 6.5) as usize;
        if fits >= 4 {
            let _ = write!(
                svg,
                r##"<text x="{:.2}" y="{:.2}" font-size="10" fill="{}">{}</text>"##,
                x0 + 3.0,
                top + 12.0 + if i % 2 == 1 && !measured { 12.0 } else { 0.0 },
                if measured { "#8a5a00" } else { "#555" },
                esc(&truncate(&phase.name.replace('_', " "), fits))
            );
        }
    }
    plot.raw(&svg);
}
