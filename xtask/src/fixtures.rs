//! `cargo xtask fixtures`: the test fixture plugins, for wasm32-wasip2 and
//! natively (debug). They are never copied into the plugin directory.

use crate::cargo;
use crate::crates::{self, Crate, Kind};
use crate::toolchain::{self, WASM_TARGET};
use anyhow::{Context, Result};
use std::process::ExitCode;

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    crate::no_args("fixtures", args)?;
    build()?;
    Ok(ExitCode::SUCCESS)
}

pub fn build() -> Result<Vec<Crate>> {
    let fixtures = crates::fixtures()?;
    let wasm: Vec<&Crate> = fixtures.iter().filter(|f| f.builds(Kind::Wasm)).collect();
    let native: Vec<&Crate> = fixtures.iter().filter(|f| f.builds(Kind::Native)).collect();

    if !wasm.is_empty() {
        toolchain::ensure_wasm_target()?;
        let mut args = vec!["build".to_string(), "--target".into(), WASM_TARGET.into()];
        args.extend(crates::package_args(wasm.iter().copied()));
        cargo::run(&mut cargo::cargo(&args)?).context("building the WASM test fixtures")?;
    }
    if !native.is_empty() {
        let mut args = vec!["build".to_string()];
        args.extend(crates::package_args(native.iter().copied()));
        cargo::run(&mut cargo::cargo(&args)?).context("building the native test fixtures")?;
    }

    let target = cargo::target_dir()?;
    for fixture in &fixtures {
        for &kind in &fixture.kinds {
            for path in fixture.artifacts(kind, &target, "debug") {
                if !path.is_file() {
                    anyhow::bail!(
                        "fixture `{}` ({}): cargo did not produce {}",
                        fixture.package,
                        fixture.manifest.display(),
                        path.display()
                    );
                }
                println!("fixture: {}", path.display());
            }
        }
    }
    if fixtures.is_empty() {
        println!("fixtures: none under tests/fixtures/plugins/");
    }
    Ok(fixtures)
}

/// `--exclude <package>` for fixtures that do not build natively, for
/// workspace-wide native cargo commands.
pub fn native_excludes(fixtures: &[Crate]) -> Vec<String> {
    fixtures
        .iter()
        .filter(|f| !f.builds(Kind::Native))
        .flat_map(|f| ["--exclude".to_string(), f.package.clone()])
        .collect()
}
