//! `cargo xtask run [-- <llem args>]`: `build --release`, then
//! `target/release/llem run <llem args>`, exiting with llem's exit code.

use crate::build::{self, Profile};
use crate::cargo;
use anyhow::Result;
use std::process::{Command, ExitCode};

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    let llem_path = build::build(Profile::Release)?;
    let mut llem = Command::new(&llem_path);
    llem.arg("run").args(crate::passthrough(args));
    Ok(match cargo::status(&mut llem)? {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("[xtask] llem was killed by a signal");
            ExitCode::FAILURE
        }
    })
}
