//! Paths of the workspace and running commands, printed first.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the parent of `xtask/`). `cargo run` sets
/// `$CARGO_MANIFEST_DIR` at run time; the compile-time value is the fallback
/// (it goes stale when a checkout is moved along with its `target/`).
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        match manifest_dir.parent() {
            Some(root) => root.to_path_buf(),
            None => manifest_dir,
        }
    })
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                Ok(dir)
            } else {
                Ok(std::env::current_dir()
                    .context("reading the current directory")?
                    .join(dir))
            }
        }
        _ => Ok(root().join("target")),
    }
}

/// `cargo` (the one that runs xtask, from `$CARGO`) with `args`, in the workspace root.
pub fn cargo<I, S>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root());
    // A relative $CARGO_TARGET_DIR means the caller's directory, not the root.
    cmd.env("CARGO_TARGET_DIR", target_dir()?);
    Ok(cmd)
}

/// A command line for display, with `$CARGO` shown as `cargo`.
pub fn display(cmd: &Command) -> String {
    let program = cmd.get_program().to_string_lossy();
    let program = if std::env::var_os("CARGO").is_some_and(|c| c == cmd.get_program()) {
        "cargo".into()
    } else {
        program
    };
    let mut line = program.into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            line.push_str(&format!("{arg:?}"));
        } else {
            line.push_str(&arg);
        }
    }
    line
}

/// Prints `cmd`, runs it with inherited stdio and returns its exit code
/// (`None` when killed by a signal).
pub fn status(cmd: &mut Command) -> Result<Option<i32>> {
    let line = display(cmd);
    eprintln!("[xtask] $ {line}");
    let started = std::time::Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    // Each step's time in the log, so CI time can be attributed (the goal is
    // under 25 minutes; docs/performance.md).
    eprintln!(
        "[xtask] {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        line.chars().take(100).collect::<String>()
    );
    Ok(status.code())
}

/// Prints and runs `cmd`; fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    match status(cmd)? {
        Some(0) => Ok(()),
        Some(code) => bail!("`{line}` failed with exit code {code}"),
        None => bail!("`{line}` was killed by a signal"),
    }
}
