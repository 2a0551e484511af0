//! `cargo xtask lint`: rustfmt and clippy (native workspace, and wasm32-wasip2
//! for the WASM plugins and fixtures). Runs every check, then fails if any did.

use crate::crates::{self, Crate, Kind};
use crate::toolchain::{self, WASM_TARGET};
use crate::{cargo, fixtures};
use anyhow::{Result, bail};
use std::process::ExitCode;

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    crate::no_args("lint", args)?;
    let plugins = crates::plugins()?;
    let fixtures = crates::fixtures()?;
    let mut failed = Vec::new();

    let mut check = |what: &str, args: Vec<String>| -> Result<()> {
        if let Err(err) = cargo::run(&mut cargo::cargo(&args)?) {
            eprintln!("[xtask] {what}: {err:#}");
            failed.push(what.to_string());
        }
        Ok(())
    };

    check("rustfmt", strings(&["fmt", "--all", "--", "--check"]))?;

    let mut native = strings(&["clippy", "--workspace", "--all-targets"]);
    native.extend(fixtures::native_excludes(&fixtures));
    native.extend(strings(&["--", "-D", "warnings"]));
    check("clippy", native)?;

    let wasm: Vec<&Crate> = plugins
        .iter()
        .chain(&fixtures)
        .filter(|c| c.builds(Kind::Wasm))
        .collect();
    if !wasm.is_empty() {
        toolchain::ensure_wasm_target()?;
        let mut args = strings(&["clippy", "--target", WASM_TARGET]);
        args.extend(crates::package_args(wasm));
        args.extend(strings(&["--", "-D", "warnings"]));
        check("clippy (wasm32-wasip2)", args)?;
    }

    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    eprintln!("[xtask] lint: all checks passed");
    Ok(ExitCode::SUCCESS)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}
