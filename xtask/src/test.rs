//! `cargo xtask test [-- <args>]`: `build`, `fixtures`, then
//! `cargo test --workspace <args>`.

use crate::build::{self, Profile};
use crate::{cargo, fixtures};
use anyhow::Result;
use std::process::ExitCode;

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    build::build(Profile::Debug)?;
    let fixtures = fixtures::build()?;

    let mut test_args = vec!["test".to_string(), "--workspace".into()];
    test_args.extend(fixtures::native_excludes(&fixtures));
    test_args.extend(crate::passthrough(args).iter().cloned());
    cargo::run(&mut cargo::cargo(&test_args)?)?;
    Ok(ExitCode::SUCCESS)
}
