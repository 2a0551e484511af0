//! The `wasm32-wasip2` Rust target, installed through rustup when missing.

use anyhow::{Context, Result, bail};
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the toolchain of this workspace (rust-toolchain.toml) can build
/// for [`WASM_TARGET`], running `rustup target add` if needed.
pub fn ensure_wasm_target() -> Result<()> {
    let root = crate::cargo::root();
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root)
        .output();
    let output = match listed {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return without_rustup(),
        Err(err) => return Err(err).context("running `rustup target list --installed`"),
    };
    if !output.status.success() {
        bail!(
            "`rustup target list --installed` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("[xtask] the Rust target {WASM_TARGET} is not installed; installing it");
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]).current_dir(root);
    crate::cargo::run(&mut add).with_context(|| format!("installing the Rust target {WASM_TARGET}"))
}

/// Without rustup: accept a toolchain whose sysroot already has the target.
fn without_rustup() -> Result<()> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(crate::cargo::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot {
        let lib = std::path::Path::new(&sysroot)
            .join("lib/rustlib")
            .join(WASM_TARGET);
        if lib.is_dir() {
            return Ok(());
        }
    }
    bail!(
        "`rustup` was not found, and this Rust toolchain has no {WASM_TARGET} target. \
         llem's plugins build as WASM components for {WASM_TARGET}: install rustup \
         (https://rustup.rs), then run `rustup target add {WASM_TARGET}`, or install \
         the target with your distribution's Rust packages."
    )
}
