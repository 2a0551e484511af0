//! `cargo xtask build [--release]`: `llem` and its plugins, installed in
//! `target/<profile>/plugins/` next to the binary.

use crate::cargo;
use crate::crates::{self, Crate, Kind};
use crate::toolchain::{self, WASM_TARGET};
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The directory cargo writes this profile's artifacts to.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }

    fn flags(self) -> &'static [&'static str] {
        match self {
            Profile::Debug => &[],
            Profile::Release => &["--release"],
        }
    }
}

pub fn cmd(args: &[String]) -> Result<ExitCode> {
    let mut profile = Profile::Debug;
    for arg in args {
        match arg.as_str() {
            "--release" | "-r" => profile = Profile::Release,
            other => bail!("`cargo xtask build` takes only `--release`, not `{other}`"),
        }
    }
    build(profile)?;
    Ok(ExitCode::SUCCESS)
}

/// Builds everything for `profile`; returns the path of the `llem` binary.
pub fn build(profile: Profile) -> Result<PathBuf> {
    let plugins = crates::plugins()?;
    let wasm: Vec<&Crate> = plugins.iter().filter(|p| p.builds(Kind::Wasm)).collect();
    let native: Vec<&Crate> = plugins.iter().filter(|p| p.builds(Kind::Native)).collect();

    if !wasm.is_empty() {
        toolchain::ensure_wasm_target()?;
    }

    cargo::run(&mut cargo::cargo(
        ["build", "-p", "llem-cli"].iter().chain(profile.flags()),
    )?)
    .context("building llem")?;

    if !wasm.is_empty() {
        let mut args = vec!["build".to_string(), "--target".into(), WASM_TARGET.into()];
        args.extend(profile.flags().iter().map(|f| f.to_string()));
        args.extend(crates::package_args(wasm.iter().copied()));
        cargo::run(&mut cargo::cargo(&args)?).context("building the WASM plugins")?;
    }
    if !native.is_empty() {
        let mut args = vec!["build".to_string()];
        args.extend(profile.flags().iter().map(|f| f.to_string()));
        args.extend(crates::package_args(native.iter().copied()));
        cargo::run(&mut cargo::cargo(&args)?).context("building the native plugins")?;
    }

    let target = cargo::target_dir()?;
    let bin_dir = target.join(profile.dir());
    let llem = bin_dir.join(format!("llem{}", std::env::consts::EXE_SUFFIX));
    let plugin_dir = bin_dir.join("plugins");
    let installed = install(&plugins, &target, profile, &plugin_dir)?;

    println!("llem:    {}", llem.display());
    println!("plugins: {}", plugin_dir.display());
    for path in &installed {
        println!(
            "  {}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    if installed.is_empty() {
        println!("  (none)");
    }
    Ok(llem)
}

/// Copies each plugin's artifact to `<plugin_dir>/<package>.<ext>` and removes
/// plugin files there that no plugin produced any more.
fn install(
    plugins: &[Crate],
    target: &Path,
    profile: Profile,
    plugin_dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(plugin_dir)
        .with_context(|| format!("creating {}", plugin_dir.display()))?;
    let mut installed = Vec::new();
    for plugin in plugins {
        for &kind in &plugin.kinds {
            let Some(from) = plugin.library(kind, target, profile.dir()) else {
                bail!("plugin `{}` builds no library", plugin.package);
            };
            let ext = match kind {
                Kind::Wasm => ".wasm",
                Kind::Native => std::env::consts::DLL_SUFFIX,
            };
            let to = plugin_dir.join(format!("{}{ext}", plugin.package));
            copy(&from, &to).with_context(|| {
                format!(
                    "installing plugin `{}` ({})",
                    plugin.package,
                    plugin.manifest.display()
                )
            })?;
            installed.push(to);
        }
    }
    remove_stale(plugin_dir, &installed)?;
    Ok(installed)
}

/// Copy through a temporary file and a rename, so a running `llem` that has
/// the old library mapped keeps a valid file.
fn copy(from: &Path, to: &Path) -> Result<()> {
    if !from.is_file() {
        bail!("cargo did not produce {}", from.display());
    }
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
    Ok(())
}

/// Removes plugin files (`.wasm`, shared libraries, leftover `.tmp`) that are
/// not in `keep`. Anything else in the directory is left alone.
fn remove_stale(plugin_dir: &Path, keep: &[PathBuf]) -> Result<()> {
    let keep: BTreeSet<&Path> = keep.iter().map(PathBuf::as_path).collect();
    let exts = ["wasm", "so", "dylib", "dll", "tmp"];
    for entry in std::fs::read_dir(plugin_dir)
        .with_context(|| format!("reading {}", plugin_dir.display()))?
    {
        let path = entry
            .with_context(|| format!("reading {}", plugin_dir.display()))?
            .path();
        let is_plugin_file = path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e));
        if is_plugin_file && !keep.contains(path.as_path()) {
            eprintln!("[xtask] removing stale plugin {}", path.display());
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}
