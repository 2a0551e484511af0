//! `llem`: a thin command line over the `llem` library. One file per command
//! under `commands/`.

mod commands;
mod input;
mod logging;
mod output;
mod sdk_vendor;
mod study_prepare;
mod templates;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Measure the energy, latency and throughput of LLM inference on your own hardware.
#[derive(Debug, Parser)]
#[command(name = "llem", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `LLEM_LOG` takes a tracing filter too.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // Boxed: its many flags make it far larger than the other commands.
    Run(Box<commands::run::Args>),
    Monitor(commands::monitor::Args),
    Env(commands::env::Args),
    /// List, inspect and create plugins.
    #[command(subcommand)]
    Plugins(commands::plugins::Command),
    /// Write, check and describe experiment manifests.
    #[command(subcommand)]
    Config(commands::config::Command),
    /// Follow, run one slot of, and merge a study directory.
    #[command(subcommand)]
    Study(commands::study::Command),
    Compare(commands::compare::Args),
    Report(commands::report::Args),
    Completions(commands::completions::Args),
}

/// Exit codes: 0 success, 1 failure while running, 2 bad input (manifest,
/// flags, plugin names), 130 interrupted (Ctrl-C) with results written.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    quiet_broken_pipe();
    // A closed stdout (`llem plugins list | head`) makes `println!` panic:
    // unwinding runs every destructor (engines are torn down), then llem
    // exits 0 like any Unix filter whose reader went away. SIGPIPE stays
    // ignored: with its default action, writing to a dead engine's pipe
    // would kill llem before it could tear the engine down.
    let outcome = std::panic::catch_unwind(|| match cli.command {
        Command::Run(args) => commands::run::run(*args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Env(args) => commands::env::run(args),
        Command::Plugins(command) => commands::plugins::run(command),
        Command::Config(command) => commands::config::run(command),
        Command::Study(command) => commands::study::run(command),
        Command::Compare(args) => commands::compare::run(args),
        Command::Report(args) => commands::report::run(args),
        Command::Completions(args) => commands::completions::run(args),
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(payload) if is_broken_pipe(panic_text(payload.as_ref())) => return ExitCode::SUCCESS,
        Err(payload) => std::panic::resume_unwind(payload),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            output::error(&failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("")
}

/// `println!`'s panic when the reader of stdout has gone (EPIPE).
fn is_broken_pipe(text: &str) -> bool {
    text.starts_with("failed printing to std") && text.contains("(os error 32)")
}

/// No panic message for a closed pipe; every other panic reports as usual.
fn quiet_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe(panic_text(info.payload())) {
            report(info);
        }
    }));
}
