//! Studies: energy per output token (gross and net of idle) against each
//! swept axis, and per configuration, with the 95 % confidence interval of
//! the mean over cycles as error bars (study.json `metrics`).

use super::{Chart, slug};
use crate::data::{Config, Metric, Study};
use crate::svg::{Mark, Plot, colour};

const GROSS: &str = "energy_per_output_token_j";
const NET: &str = "energy_per_output_token_net_j";

/// The swept keys of a study: those whose value differs between configurations.
#[must_use]
pub fn axes(study: &Study) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for c in &study.configs {
        for (k, _) in &c.sets {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys.retain(|k| {
        let mut values = study.configs.iter().map(|c| value_of(c, k));
        let first = values.next();
        values.any(|v| Some(v) != first)
    });
    keys
}

fn value_of<'a>(c: &'a Config, key: &str) -> &'a str {
    c.sets
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn bounds(ms: &[Metric]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for m in ms {
        let (a, b) = m.ci95.unwrap_or((m.mean, m.mean));
        lo = lo.min(a).min(m.mean);
        hi = hi.max(b).max(m.mean);
    }
    (lo.min(0.0), hi)
}

/// Charts for one study: one per swept axis (when there are at most four),
/// and one per configuration.
#[must_use]
pub fn charts(study: &Study, n: usize) -> Vec<Chart> {
    let all: Vec<Metric> = study
        .configs
        .iter()
        .flat_map(|c| [c.metrics.get(GROSS), c.metrics.get(NET)])
        .flatten()
        .copied()
        .collect();
    if all.is_empty() {
        return Vec::new();
    }
    let y = bounds(&all);
    let has_net = study.configs.iter().any(|c| c.metrics.contains_key(NET));
    let mut out = Vec::new();
    let keys = axes(study);
    let mut drawn = 0;
    if keys.len() <= 4 {
        for (k, key) in keys.iter().enumerate() {
            // An axis along which no two configurations agree on the other
            // keys (e.g. alternatives that change several keys at once) has
            // no line to draw: the per-configuration chart shows it.
            if keys.len() > 1 && groups(study, key).iter().all(|(_, cs)| cs.len() < 2) {
                continue;
            }
            out.push(axis_chart(study, key, y, has_net, n * 10 + k));
            drawn += 1;
        }
    }
    if drawn != 1 || keys.len() != 1 {
        out.push(per_config(study, y, has_net, n));
    }
    out
}

fn caption(study: &Study) -> String {
    format!(
        "Mean over each configuration's measured cycles (study.json, {} cycle(s) planned) of the energy per output token over the measured window: gross (solid) and net of the idle baseline (dashed, when a baseline was measured). Error bars: 95 % Student-t interval of the mean (absent with one cycle).",
        study.cycles
    )
}

fn draw(plot: &mut Plot, x: f64, m: &Metric, col: &str, net: bool, shift_px: f64, what: &str) {
    let per_px = (plot.x.d1 - plot.x.d0) / (plot.x.r1 - plot.x.r0);
    let x = x + shift_px * per_px;
    if let Some((lo, hi)) = m.ci95 {
        plot.error_bar(x, lo, hi, col);
    }
    let ci = m
        .ci95
        .map_or_else(String::new, |(a, b)| format!(" (95 % CI {a:.4}–{b:.4})"));
    plot.dot(
        x,
        m.mean,
        4.5,
        col,
        !net,
        &format!(
            "{what}: {} {:.4} J/token{ci}, n={}",
            if net { "net" } else { "gross" },
            m.mean,
            m.n
        ),
    );
}

/// Series along `key`: the configurations that agree on every other swept key.
fn groups<'a>(study: &'a Study, key: &str) -> Vec<(String, Vec<&'a Config>)> {
    let others: Vec<String> = axes(study).into_iter().filter(|k| k != key).collect();
    let mut groups: Vec<(String, Vec<&Config>)> = Vec::new();
    for c in &study.configs {
        let name = others
            .iter()
            .map(|k| format!("{k}={}", value_of(c, k)))
            .collect::<Vec<_>>()
            .join(" ");
        match groups.iter_mut().find(|(g, _)| *g == name) {
            Some((_, cs)) => cs.push(c),
            None => groups.push((name, vec![c])),
        }
    }
    groups
}

fn axis_chart(study: &Study, key: &str, y: (f64, f64), has_net: bool, n: usize) -> Chart {
    let values: Vec<&str> = study.configs.iter().map(|c| value_of(c, key)).collect();
    let numeric: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
    let mut levels: Vec<String> = Vec::new();
    for v in &values {
        if !levels.iter().any(|l| l == v) {
            levels.push((*v).to_owned());
        }
    }
    let x_of = |c: &Config| -> f64 {
        let v = value_of(c, key);
        match &numeric {
            Some(_) => v.parse().unwrap_or(f64::NAN),
            None => levels.iter().position(|l| l == v).unwrap_or(0) as f64,
        }
    };
    let id = slug(&format!("axis-{key}"), n);
    let title = format!("Energy per output token vs {key} — {}", study.name);
    let x_range = match &numeric {
        Some(xs) => {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = (hi - lo).max(hi.abs() * 0.1) * 0.05;
            (lo - pad, hi + pad)
        }
        None => (0.0, levels.len().saturating_sub(1) as f64),
    };
    let mut plot = Plot::new(&id, &title, key, "energy per output token (J)", x_range, y);
    if numeric.is_none() {
        plot = plot.with_categories(&levels);
    }
    let groups = groups(study, key);
    for (i, (name, _)) in groups.iter().enumerate() {
        let lead = if name.is_empty() {
            String::new()
        } else {
            format!("{name} ")
        };
        plot.legend(colour(i), Mark::Line, &format!("{lead}gross"));
        if has_net {
            plot.legend(colour(i), Mark::Dashed, &format!("{lead}net of idle"));
        }
    }
    for (i, (_, cs)) in groups.iter().enumerate() {
        let mut cs = cs.clone();
        cs.sort_by(|a, b| x_of(a).total_cmp(&x_of(b)));
        for (metric, net, shift) in [(GROSS, false, -4.0), (NET, true, 4.0)] {
            let pts: Vec<(f64, &Metric, &str)> = cs
                .iter()
                .filter_map(|c| Some((x_of(c), c.metrics.get(metric)?, c.label.as_str())))
                .filter(|p| p.0.is_finite())
                .collect();
            let per_px = (plot.x.d1 - plot.x.d0) / (plot.x.r1 - plot.x.r0);
            let line: Vec<(f64, f64)> = pts
                .iter()
                .map(|(x, m, _)| (x + shift * per_px, m.mean))
                .collect();
            if line.len() > 1 {
                plot.line(&line, colour(i), net, if net { "net" } else { "gross" });
            }
            for (x, m, label) in pts {
                draw(&mut plot, x, m, colour(i), net, shift, label);
            }
        }
    }
    Chart {
        id,
        title,
        caption: caption(study),
        svg: plot.finish(),
    }
}

fn per_config(study: &Study, y: (f64, f64), has_net: bool, n: usize) -> Chart {
    let labels: Vec<String> = study.configs.iter().map(|c| c.label.clone()).collect();
    let id = slug("per-config", n);
    let title = format!("Energy per output token per configuration — {}", study.name);
    let mut plot = Plot::new(
        &id,
        &title,
        "configuration",
        "energy per output token (J)",
        (0.0, labels.len().saturating_sub(1) as f64),
        y,
    )
    .with_categories(&labels);
    plot.legend(colour(0), Mark::Dot, "gross");
    if has_net {
        plot.legend(colour(1), Mark::Ring, "net of idle");
    }
    for (i, c) in study.configs.iter().enumerate() {
        if let Some(m) = c.metrics.get(GROSS) {
            draw(&mut plot, i as f64, m, colour(0), false, -5.0, &c.label);
        }
        if let Some(m) = c.metrics.get(NET) {
            draw(&mut plot, i as f64, m, colour(1), true, 5.0, &c.label);
        }
    }
    Chart {
        id,
        title,
        caption: caption(study),
        svg: plot.finish(),
    }
}
