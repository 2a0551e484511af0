//! `llem report DIR…`: run and study directories into one self-contained HTML
//! page (inline SVG charts; see docs/report.md) and a terminal summary. The
//! data and the drawing are in the `llem-report` crate.

use crate::output::{CmdResult, Failure};
use std::path::PathBuf;
use std::process::ExitCode;

/// Build a report (one HTML file) from run and study directories.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories, study directories, or directories holding them.
    #[arg(required = true, value_name = "RUN_OR_STUDY_DIR")]
    dirs: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short, long, default_value = "report.html")]
    output: PathBuf,
    /// Print the terminal summary only; write no HTML.
    #[arg(long)]
    terminal: bool,
}

pub fn run(args: Args) -> CmdResult {
    let report = llem_report::gather(&args.dirs);
    for warning in &report.warnings {
        crate::output::warn(warning);
    }
    if report.runs.is_empty() && report.studies.is_empty() {
        return Err(Failure::bad_input(
            "nothing to report: give run directories (with result.json) or study directories (with study.json)",
        ));
    }
    if !args.terminal {
        let sources: Vec<String> = args.dirs.iter().map(|d| d.display().to_string()).collect();
        let html = llem_report::html::render(&report, &sources, env!("CARGO_PKG_VERSION"));
        std::fs::write(&args.output, html)
            .map_err(|e| Failure::failed(format!("cannot write {}: {e}", args.output.display())))?;
    }
    print!("{}", llem_report::terminal::summary(&report));
    if !args.terminal {
        println!("report: {}", args.output.display());
    }
    Ok(ExitCode::SUCCESS)
}
