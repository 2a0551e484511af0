//! The plugin and fixture crates of the workspace, from their Cargo.toml.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// How a crate is built: a WASM component or a native shared library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Wasm,
    Native,
}

impl Kind {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "wasm" => Some(Kind::Wasm),
            "native" => Some(Kind::Native),
            _ => None,
        }
    }
}

/// One plugin or fixture crate.
#[derive(Debug)]
pub struct Crate {
    /// `[package] name`, as given to `cargo -p`.
    pub package: String,
    /// What cargo produces for it that llem loads: a `cdylib` (always, for
    /// plugins) and, for fixtures, binaries (WASI commands).
    pub outputs: Vec<Output>,
    /// Its Cargo.toml, relative to the workspace root, for messages.
    pub manifest: PathBuf,
    /// How it is built: one kind for plugins, one or both for fixtures.
    pub kinds: Vec<Kind>,
}

impl Crate {
    pub fn builds(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The plugin library cargo writes for `kind`, below `target_dir`, in
    /// `profile_dir` (`debug` or `release`), if it builds one.
    pub fn library(&self, kind: Kind, target_dir: &Path, profile_dir: &str) -> Option<PathBuf> {
        self.outputs
            .iter()
            .find(|o| matches!(o, Output::Cdylib(_)))
            .map(|o| o.path(kind, target_dir, profile_dir))
    }

    /// Every file cargo writes for `kind` that llem may load.
    pub fn artifacts(&self, kind: Kind, target_dir: &Path, profile_dir: &str) -> Vec<PathBuf> {
        self.outputs
            .iter()
            .map(|o| o.path(kind, target_dir, profile_dir))
            .collect()
    }
}

/// One loadable output of a crate.
#[derive(Debug)]
pub enum Output {
    /// A `cdylib`, by crate name (`[lib] name`, else the package name with `_` for `-`).
    Cdylib(String),
    /// A binary, by its name (for `wasm32-wasip2`, a WASI command component).
    Bin(String),
}

impl Output {
    fn path(&self, kind: Kind, target_dir: &Path, profile_dir: &str) -> PathBuf {
        let (dir, file) = match (kind, self) {
            (Kind::Wasm, Output::Cdylib(name) | Output::Bin(name)) => (
                target_dir
                    .join(crate::toolchain::WASM_TARGET)
                    .join(profile_dir),
                format!("{name}.wasm"),
            ),
            (Kind::Native, Output::Cdylib(name)) => (
                target_dir.join(profile_dir),
                format!(
                    "{}{name}{}",
                    std::env::consts::DLL_PREFIX,
                    std::env::consts::DLL_SUFFIX
                ),
            ),
            (Kind::Native, Output::Bin(name)) => (
                target_dir.join(profile_dir),
                format!("{name}{}", std::env::consts::EXE_SUFFIX),
            ),
        };
        dir.join(file)
    }
}

/// `-p <package>` for each crate.
pub fn package_args<'a>(crates: impl IntoIterator<Item = &'a Crate>) -> Vec<String> {
    crates
        .into_iter()
        .flat_map(|c| ["-p".to_string(), c.package.clone()])
        .collect()
}

/// Every `plugins/*/Cargo.toml`; each must say `[package.metadata.llem] build`.
/// `build = "none"` marks a library the plugins share (e.g. `dataset-common`):
/// it is skipped here and built only as their dependency.
pub fn plugins() -> Result<Vec<Crate>> {
    discover("plugins")?
        .into_iter()
        .filter(|(_, doc)| llem_build(doc).and_then(|b| b.as_str()) != Some("none"))
        .map(|(manifest, doc)| {
            let package = package_name(&manifest, &doc)?;
            let Some(lib_name) = cdylib_name(&package, &doc) else {
                bail!(
                    "plugin crate `{package}` ({}) does not build a plugin library; add:\n\n\
                     [lib]\ncrate-type = [\"cdylib\", \"rlib\"]",
                    manifest.display()
                );
            };
            let build = llem_build(&doc);
            let hint = format!(
                "add to {}:\n\n[package.metadata.llem]\nbuild = \"wasm\"   # or \"native\" (\"none\": a shared library, not a plugin)",
                manifest.display()
            );
            let kind = match build {
                None => bail!(
                    "plugin crate `{package}` has no `[package.metadata.llem] build` key; {hint}"
                ),
                Some(value) => value.as_str().and_then(Kind::parse).with_context(|| {
                    format!(
                        "plugin crate `{package}` ({}): `[package.metadata.llem] build` is {value}, \
                         expected \"wasm\", \"native\" or \"none\"",
                        manifest.display()
                    )
                })?,
            };
            Ok(Crate {
                package,
                outputs: vec![Output::Cdylib(lib_name)],
                manifest,
                kinds: vec![kind],
            })
        })
        .collect()
}

/// `[package.metadata.llem] build`, if present.
fn llem_build(doc: &toml::Table) -> Option<&toml::Value> {
    doc.get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("llem"))
        .and_then(|l| l.get("build"))
}

fn fixture_targets(doc: &toml::Table) -> Option<&toml::Value> {
    doc.get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("llem-fixture"))
        .and_then(|l| l.get("targets"))
}

/// Every `tests/fixtures/plugins/*/Cargo.toml`, built both ways unless
/// `[package.metadata.llem-fixture] targets` says otherwise; plus the
/// first-party plugins that opt in with that same table (e.g. the SDK's worked
/// example, which the tests build both ways).
pub fn fixtures() -> Result<Vec<Crate>> {
    let mut found = discover("tests/fixtures/plugins")?;
    found.extend(
        discover("plugins")?
            .into_iter()
            .filter(|(_, doc)| fixture_targets(doc).is_some()),
    );
    found
        .into_iter()
        .map(|(manifest, doc)| {
            let package = package_name(&manifest, &doc)?;
            let mut outputs: Vec<Output> =
                cdylib_name(&package, &doc).map(Output::Cdylib).into_iter().collect();
            outputs.extend(bin_names(&manifest, &package, &doc).into_iter().map(Output::Bin));
            if outputs.is_empty() {
                bail!(
                    "fixture crate `{package}` ({}) builds neither a `cdylib` nor a binary",
                    manifest.display()
                );
            }
            let kinds = match fixture_targets(&doc) {
                None => vec![Kind::Wasm, Kind::Native],
                Some(value) => {
                    let kinds: Option<Vec<Kind>> = value.as_array().and_then(|items| {
                        items.iter().map(|v| v.as_str().and_then(Kind::parse)).collect()
                    });
                    match kinds {
                        Some(kinds) if !kinds.is_empty() => kinds,
                        _ => bail!(
                            "fixture crate `{package}` ({}): `[package.metadata.llem-fixture] targets` \
                             is {value}, expected a non-empty list of \"wasm\" and/or \"native\"",
                            manifest.display()
                        ),
                    }
                }
            };
            Ok(Crate { package, outputs, manifest, kinds })
        })
        .collect()
}

/// The parsed `<dir>/*/Cargo.toml` files, sorted by path.
fn discover(dir: &str) -> Result<Vec<(PathBuf, toml::Table)>> {
    let root = crate::cargo::root();
    let abs = root.join(dir);
    if !abs.is_dir() {
        return Ok(Vec::new());
    }
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(&abs).with_context(|| format!("reading {}", abs.display()))? {
        let entry = entry.with_context(|| format!("reading {}", abs.display()))?;
        let manifest = entry.path().join("Cargo.toml");
        if manifest.is_file() {
            manifests.push(manifest);
        }
    }
    manifests.sort();
    manifests
        .into_iter()
        .map(|manifest| {
            let text = std::fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let rel = manifest
                .strip_prefix(root)
                .unwrap_or(&manifest)
                .to_path_buf();
            let doc: toml::Table = text
                .parse()
                .with_context(|| format!("parsing {}", rel.display()))?;
            Ok((rel, doc))
        })
        .collect()
}

fn package_name(manifest: &Path, doc: &toml::Table) -> Result<String> {
    Ok(doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .with_context(|| format!("{}: no `[package] name`", manifest.display()))?
        .to_string())
}

/// The library's crate name, if its `crate-type` includes `cdylib`.
fn cdylib_name(package: &str, doc: &toml::Table) -> Option<String> {
    let lib = doc.get("lib")?;
    let cdylib = lib
        .get("crate-type")
        .and_then(|t| t.as_array())
        .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("cdylib")));
    cdylib.then(|| {
        lib.get("name")
            .and_then(|n| n.as_str())
            .map_or_else(|| package.replace('-', "_"), str::to_string)
    })
}

/// The binaries: each `[[bin]] name`, else the package name if `src/main.rs` exists.
fn bin_names(manifest: &Path, package: &str, doc: &toml::Table) -> Vec<String> {
    if let Some(bins) = doc.get("bin").and_then(|b| b.as_array()) {
        return bins
            .iter()
            .filter_map(|b| b.get("name").and_then(|n| n.as_str()))
            .map(str::to_string)
            .collect();
    }
    let dir = crate::cargo::root().join(manifest.parent().unwrap_or(Path::new("")));
    if dir.join("src/main.rs").is_file() {
        vec![package.to_string()]
    } else {
        Vec::new()
    }
}
