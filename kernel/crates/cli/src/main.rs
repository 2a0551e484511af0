//! `llem`: a thin command line over the `llem` library. One file per command
//! under `commands/`.

mod commands;
mod input;
mod logging;
mod output;
mod sdk_vendor;
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
    Run(commands::run::Args),
    Monitor(commands::monitor::Args),
    Env(commands::env::Args),
    #[command(subcommand)]
    Plugins(commands::plugins::Command),
    #[command(subcommand)]
    Config(commands::config::Command),
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
    let outcome = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Monitor(args) => commands::monitor::run(args),
        Command::Env(args) => commands::env::run(args),
        Command::Plugins(command) => commands::plugins::run(command),
        Command::Config(command) => commands::config::run(command),
        Command::Completions(args) => commands::completions::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            output::error(&failure.message);
            ExitCode::from(failure.code)
        }
    }
}
