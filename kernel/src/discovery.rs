//! Finding plugins: the built-in directory next to the binary,
//! `$LLEM_PLUGIN_PATH`, and explicit paths from the manifest; short names
//! (`nvml` -> `energy-nvml`) and "did you mean" for unknown names.

use llem_sdk::PluginKind;
use std::path::{Path, PathBuf};

/// Extensions of plugin files: WASM components and native libraries.
const EXTENSIONS: &[&str] = &["wasm", "so", "dylib", "dll"];

/// Where a discovered plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `$LLEM_PLUGIN_PATH`.
    PluginPath,
    /// The plugin directory shipped next to the `llem` binary.
    BuiltIn,
    /// A directory given by the caller (tests, embedding applications).
    Extra,
}

/// A plugin file found on the search path (not yet loaded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Discovered {
    /// Full name from the file name: `energy-nvml`.
    pub name: String,
    pub path: PathBuf,
    pub origin: Origin,
}

impl Discovered {
    /// The name without its kind prefix: `nvml` for `energy-nvml`.
    pub fn short_name(&self) -> &str {
        short_name(&self.name)
    }
}

pub fn short_name(full: &str) -> &str {
    PluginKind::ALL
        .iter()
        .find_map(|kind| full.strip_prefix(kind.as_str())?.strip_prefix('-'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(full)
}

/// Plugin name from a file name: `energy-nvml.wasm`, `libenergy_nvml.so` -> `energy-nvml`.
pub fn name_from_file(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if !EXTENSIONS.contains(&ext) {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let stem = if ext == "wasm" {
        stem
    } else {
        stem.strip_prefix("lib").unwrap_or(stem)
    };
    Some(stem.replace('_', "-"))
}

/// The directories searched, in order of precedence.
#[derive(Debug, Clone)]
pub struct SearchPath {
    dirs: Vec<(PathBuf, Origin)>,
}

impl SearchPath {
    /// `$LLEM_PLUGIN_PATH` first (so users can override), then the built-in directory.
    pub fn from_env() -> Self {
        let mut dirs = Vec::new();
        if let Some(paths) = std::env::var_os("LLEM_PLUGIN_PATH") {
            dirs.extend(
                std::env::split_paths(&paths)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| (p, Origin::PluginPath)),
            );
        }
        dirs.extend(builtin_dirs().into_iter().map(|p| (p, Origin::BuiltIn)));
        SearchPath { dirs }
    }

    /// Only these directories (tests, embedding applications).
    pub fn only(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        SearchPath {
            dirs: dirs.into_iter().map(|d| (d, Origin::Extra)).collect(),
        }
    }

    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|(d, _)| d.as_path())
    }

    /// Every plugin file, first occurrence of a name wins; sorted by name.
    pub fn discover(&self) -> Vec<Discovered> {
        let mut found: Vec<Discovered> = Vec::new();
        for (dir, origin) in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths {
                let Some(name) = name_from_file(&path) else {
                    continue;
                };
                if path.is_file() && !found.iter().any(|d| d.name == name) {
                    found.push(Discovered {
                        name,
                        path,
                        origin: origin.clone(),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }
}

/// `<dir of llem>/plugins` (build tree, tarball) and `<dir of llem>/../lib/llem/plugins` (installed).
fn builtin_dirs() -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe().ok().and_then(|exe| {
        let exe = exe.canonicalize().unwrap_or(exe);
        exe.parent().map(Path::to_owned)
    }) else {
        return Vec::new();
    };
    let mut dirs = vec![exe_dir.join("plugins")];
    if let Some(prefix) = exe_dir.parent() {
        dirs.push(prefix.join("lib/llem/plugins"));
    }
    // Test binaries live in target/<profile>/deps; the plugins sit one level up.
    if exe_dir.ends_with("deps")
        && let Some(profile_dir) = exe_dir.parent()
    {
        dirs.push(profile_dir.join("plugins"));
    }
    dirs
}

/// Whether the plugin file at `path` ships with llem: it lies in a built-in
/// plugin directory next to the binary (compared after resolving links), so it
/// is part of llem's own release. Only shipped plugins are chosen without being
/// named (`llem run` without a manifest), and only their `path` defaults are
/// granted; a file dropped on `$LLEM_PLUGIN_PATH` is neither.
pub fn is_shipped(path: &Path) -> bool {
    let Some(dir) = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
    else {
        return false;
    };
    builtin_dirs()
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|d| d == dir)
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Unknown {
        suggestions: Vec<String>,
        available: Vec<String>,
    },
    Ambiguous(Vec<String>),
}

/// Resolve a full or short name among discovered plugins.
pub fn resolve<'a>(name: &str, found: &'a [Discovered]) -> Result<&'a Discovered, NameError> {
    if let Some(exact) = found.iter().find(|d| d.name == name) {
        return Ok(exact);
    }
    let by_short: Vec<&Discovered> = found.iter().filter(|d| d.short_name() == name).collect();
    match by_short.as_slice() {
        [one] => Ok(one),
        [] => Err(NameError::Unknown {
            suggestions: suggest(name, found),
            available: found.iter().map(|d| d.name.clone()).collect(),
        }),
        many => Err(NameError::Ambiguous(
            many.iter().map(|d| d.name.clone()).collect(),
        )),
    }
}

/// Nearby names, best first: the short form when it is unambiguous.
pub fn suggest(name: &str, found: &[Discovered]) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = Vec::new();
    for d in found {
        for candidate in [d.name.as_str(), d.short_name()] {
            let score = strsim::jaro_winkler(name, candidate);
            if score >= 0.8 {
                scored.push((score, candidate.to_owned()));
            }
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut names: Vec<String> = Vec::new();
    for (_, candidate) in scored {
        if !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    names.truncate(3);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str) -> Discovered {
        Discovered {
            name: name.into(),
            path: PathBuf::from(format!("/p/{name}.wasm")),
            origin: Origin::Extra,
        }
    }

    #[test]
    fn file_names_map_to_plugin_names() {
        assert_eq!(
            name_from_file(Path::new("/x/energy-rapl.wasm")).as_deref(),
            Some("energy-rapl")
        );
        assert_eq!(
            name_from_file(Path::new("/x/libenergy_nvml.so")).as_deref(),
            Some("energy-nvml")
        );
        assert_eq!(
            name_from_file(Path::new("/x/energy-nvml.so")).as_deref(),
            Some("energy-nvml")
        );
        assert_eq!(name_from_file(Path::new("/x/README.md")), None);
    }

    #[test]
    fn short_names_drop_the_kind_prefix() {
        assert_eq!(short_name("energy-nvml"), "nvml");
        assert_eq!(short_name("backend-vllm"), "vllm");
        assert_eq!(short_name("dataset-jsonl"), "jsonl");
        assert_eq!(short_name("my-plugin"), "my-plugin");
        assert_eq!(short_name("energy-"), "energy-");
    }

    #[test]
    fn names_resolve_full_short_and_with_suggestions() {
        let found = vec![
            plugin("energy-nvml"),
            plugin("energy-rapl"),
            plugin("backend-vllm"),
        ];
        assert_eq!(resolve("nvml", &found).unwrap().name, "energy-nvml");
        assert_eq!(resolve("energy-rapl", &found).unwrap().name, "energy-rapl");
        match resolve("nvmll", &found) {
            Err(NameError::Unknown {
                suggestions,
                available,
            }) => {
                assert_eq!(suggestions[0], "nvml");
                assert_eq!(available.len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_short_name_shared_by_two_kinds_is_ambiguous() {
        let found = vec![plugin("dataset-jsonl"), plugin("sink-jsonl")];
        assert_eq!(
            resolve("jsonl", &found),
            Err(NameError::Ambiguous(vec![
                "dataset-jsonl".into(),
                "sink-jsonl".into()
            ]))
        );
    }

    #[test]
    fn earlier_directories_shadow_later_ones() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("energy-x.wasm"), b"a").unwrap();
        std::fs::write(b.path().join("energy-x.wasm"), b"b").unwrap();
        std::fs::write(b.path().join("libsink_y.so"), b"b").unwrap();
        let found = SearchPath::only([a.path().to_owned(), b.path().to_owned()]).discover();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path, a.path().join("energy-x.wasm"));
        assert_eq!(found[1].name, "sink-y");
    }
}
