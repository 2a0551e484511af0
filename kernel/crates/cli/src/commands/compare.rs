//! `llem compare A B`: two runs, two sets of runs or two configurations of a
//! study, figure by figure: B − A, and with two or more runs a side, the 95 %
//! interval of the difference and whether it is significant (Welch's t-test).

use crate::output::{CmdResult, Failure};
use llem::study::design::Design;
use llem::study::state::{self};
use llem::study::summary::METRICS;
use llem_analysis::compare::Comparison;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Compare two runs, two sets of runs, or two configurations of a study.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run directory, a directory of runs (every result.json under it), or
    /// `STUDY_DIR:CONFIG` (a configuration's id or label).
    a: String,
    /// The same forms as A.
    b: String,
    /// Only this figure (e.g. energy_per_output_token_j); default: all.
    #[arg(long)]
    metric: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CmdResult {
    let a = runs_of(&args.a)?;
    let b = runs_of(&args.b)?;
    let metrics: Vec<&(&str, &str)> = METRICS
        .iter()
        .filter(|(name, _)| args.metric.as_deref().is_none_or(|m| m == *name))
        .collect();
    if metrics.is_empty() {
        let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
        return Err(Failure::bad_input(format!(
            "--metric {}: not a figure llem compares; one of: {}",
            args.metric.unwrap_or_default(),
            names.join(", ")
        )));
    }
    let mut rows = Vec::new();
    for (name, pointer) in metrics {
        let values = |runs: &[Value]| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
                .filter(|v| v.is_finite())
                .collect()
        };
        let (va, vb) = (values(&a), values(&b));
        if va.is_empty() || vb.is_empty() {
            continue;
        }
        rows.push((*name, va.clone(), vb.clone(), Comparison::of(&va, &vb)));
    }
    if args.json {
        let out: Vec<Value> = rows
            .iter()
            .map(|(name, va, vb, c)| {
                serde_json::json!({"metric": name, "a": va, "b": vb, "comparison": c})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "A: {} ({} run(s))\nB: {} ({} run(s))",
        args.a,
        a.len(),
        args.b,
        b.len()
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for (name, va, vb, c) in &rows {
        let (ma, mb) = (mean(va), mean(vb));
        let relative = if ma != 0.0 {
            format!(" ({:+.1} %)", (mb - ma) / ma.abs() * 100.0)
        } else {
            String::new()
        };
        let verdict = match c {
            Some(c) => format!(
                "95 % CI [{:.4}, {:.4}], p = {:.3}: {}",
                c.ci95.low,
                c.ci95.high,
                c.p_value,
                if c.significant {
                    "significant"
                } else {
                    "not significant"
                }
            ),
            None => "needs 2+ runs a side (with spread) for an interval".into(),
        };
        println!(
            "  {name:<36} A {ma:.4}  B {mb:.4}  B−A {:+.4}{relative}  {verdict}",
            mb - ma
        );
    }
    if rows.is_empty() {
        return Err(Failure::bad_input(
            "no figure is present on both sides (are these inference runs?)",
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The result.json documents one side stands for.
fn runs_of(spec: &str) -> Result<Vec<Value>, Failure> {
    if let Some((dir, config)) = spec.rsplit_once(':')
        && Path::new(dir)
            .join(llem::study::design::DESIGN_FILE)
            .is_file()
    {
        return study_config(Path::new(dir), config);
    }
    let path = Path::new(spec);
    if path.join(llem::study::design::DESIGN_FILE).is_file() {
        return Err(Failure::bad_input(format!(
            "{spec} is a study: name one of its configurations, `{spec}:<id or label>` (see `llem study status {spec}`)"
        )));
    }
    let mut files = Vec::new();
    collect_results(path, &mut files, 0);
    if files.is_empty() {
        return Err(Failure::bad_input(format!(
            "{spec}: no result.json here or below (give a run directory, a directory of runs, or STUDY_DIR:CONFIG)"
        )));
    }
    files.sort();
    files.iter().map(|f| read(f)).collect()
}

fn study_config(dir: &Path, config: &str) -> Result<Vec<Value>, Failure> {
    let design = Design::load(dir).map_err(Failure::bad_input)?;
    let Some(index) = design
        .configs
        .iter()
        .position(|c| c.id == config || c.label == config)
    else {
        let known: Vec<String> = design
            .configs
            .iter()
            .map(|c| format!("{} ({})", c.id, c.label))
            .collect();
        return Err(Failure::bad_input(format!(
            "{}: no configuration `{config}`; the study has: {}",
            dir.display(),
            known.join(", ")
        )));
    };
    let mut out = Vec::new();
    for (i, slot) in design.schedule.iter().enumerate() {
        if slot.config != index {
            continue;
        }
        if let Some(s) = state::read(dir, i).map_err(Failure::failed)?
            && s.status.is_done()
            && let Some(run) = s.run_dir
        {
            out.push(read(&run.join("result.json"))?);
        }
    }
    Ok(out)
}

fn collect_results(path: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    let file = path.join("result.json");
    if file.is_file() {
        out.push(file);
        return;
    }
    if depth > 4 {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                collect_results(&e.path(), out, depth + 1);
            }
        }
    }
}

fn read(path: &Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::bad_input(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))
}
