//! `cargo xtask <command>`: build, test, lint and run llem.
//!
//! `.cargo/config.toml` aliases `cargo xtask` to `cargo run --package xtask --`.
//! Every cargo command is printed before it runs. See [`USAGE`].

mod build;
mod cargo;
mod crates;
mod fixtures;
mod lint;
mod run;
mod test;
mod toolchain;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <command> [options]

Commands:
  build [--release]        Build `llem` and every plugin under plugins/*, and copy
                           the plugins to target/<profile>/plugins/ next to `llem`.
                           Each plugin declares how it ships in its Cargo.toml:
                             [package.metadata.llem]
                             build = \"wasm\"      # or \"native\"
  fixtures                 Build the test fixture plugins under tests/fixtures/plugins/*
                           for wasm32-wasip2 and natively (debug). A fixture may limit
                           itself with [package.metadata.llem-fixture] targets = [\"wasm\"].
  test [-- <args>]         `build`, `fixtures`, then `cargo test --workspace <args>`.
  lint                     `cargo fmt --check` and `cargo clippy -D warnings`, natively
                           for the workspace and for wasm32-wasip2 on the WASM plugins
                           and fixtures.
  run [-- <llem args>]     `build --release`, then `target/release/llem run <llem args>`.
  help                     This message.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "build" => build::cmd(rest),
        "fixtures" => fixtures::cmd(rest),
        "test" => test::cmd(rest),
        "lint" => lint::cmd(rest),
        "run" => run::cmd(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprint!("error: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Arguments after an optional leading `--`, passed through verbatim.
fn passthrough(args: &[String]) -> &[String] {
    match args.split_first() {
        Some((first, rest)) if first == "--" => rest,
        _ => args,
    }
}

/// Fails on any argument: for commands that take none.
fn no_args(command: &str, args: &[String]) -> anyhow::Result<()> {
    match args.first() {
        None => Ok(()),
        Some(arg) => anyhow::bail!(
            "`cargo xtask {command}` takes no argument `{arg}`; see `cargo xtask help`"
        ),
    }
}
