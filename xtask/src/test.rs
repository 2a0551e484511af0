//! `cargo xtask test [-- <args>]`: `tests/python/setup-venv.sh`, `build`, `fixtures`, then
//! `cargo test --workspace <args>`, then the Python tests (`tests/python`)
//! with the project's venv, `.venv/bin/python -m pytest tests/python -q`,
//! when `.venv` exists (`bash tests/python/setup-venv.sh` makes it; CI does).

use crate::build::{self, Profile};
use crate::{cargo, fixtures};
use anyhow::Result;
use std::process::{Command, ExitCode};

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    // The real-component tests (PyTorch worker, `transformers serve`, the GPU
    // validation's pynvml) need the project's venv: make it (idempotent, ~3 s
    // when it is already there), so this one command passes on a fresh machine.
    let root = cargo::root();
    cargo::run(
        Command::new("bash")
            .arg(root.join("tests/python/setup-venv.sh"))
            .current_dir(root),
    )?;
    build::build(Profile::Debug)?;
    let fixtures = fixtures::build()?;

    let mut test_args = vec!["test".to_string(), "--workspace".into()];
    test_args.extend(fixtures::native_excludes(&fixtures));
    test_args.extend(crate::passthrough(args).iter().cloned());
    cargo::run(&mut cargo::cargo(&test_args)?)?;

    python_tests()?;
    Ok(ExitCode::SUCCESS)
}

/// `pytest tests/python` with `.venv/bin/python`, or a note saying why not.
fn python_tests() -> Result<()> {
    let root = cargo::root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "[xtask] note: skipping the Python tests (tests/python): {} does not exist; \
             create it with `bash tests/python/setup-venv.sh` (CI does)",
            python.display()
        );
        return Ok(());
    }
    let mut pytest = Command::new(python);
    pytest
        .args([
            "-m",
            "pytest",
            "tests/python",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .current_dir(root);
    cargo::run(&mut pytest)
}
