//! What a backend's engine may be: a plan is untrusted input (a WASM backend
//! wrote it), so the kernel decides which program runs and which environment
//! it gets from the user's words alone — the manifest and llem's own
//! allow-lists — never from the plan.
//!
//! * **Programs**: each first-party backend's documented programs (vLLM:
//!   `vllm`, `python3`, `python`; TensorRT-LLM: `trtllm-serve`, …; PyTorch:
//!   `transformers`, …), the program paths the user wrote in that backend's
//!   program options (`python`, `*_executable`), and whatever
//!   `[plugins.X.sandbox] programs` lists. A bare name is looked up on llem's
//!   own `PATH` (never the plan's); a path must be named exactly.
//! * **Environment**: built from nothing. Inherited from llem only names on
//!   [`INHERITED`] (or granted by `engine_env`), minus anything that looks like
//!   a secret; the plan may set only names on [`PLAN_SETTABLE`] (never `PATH`,
//!   `LD_*`, `HOME`, `PYTHONPATH`…) or granted ones. Everything else is dropped
//!   and the run says so.

use llem_manifest::PluginPlan;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Host variables an engine inherits (a trailing `*` is a prefix).
pub const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYENV_ROOT",
    "PYENV_VERSION",
    "XDG_CACHE_HOME",
    "CUDA_*",
    "NVIDIA_*",
    "NCCL_*",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HF_*",
    "VLLM_*",
    "TRTLLM_*",
    "TLLM_*",
    "TORCH_*",
    "PYTORCH_*",
    "TRANSFORMERS_*",
    "TRITON_*",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
];

/// Variables a plan may set itself. Not the ones that decide what code runs or
/// where it is found (`PATH`, `LD_*`, `PYTHONPATH`, `HOME`…).
pub const PLAN_SETTABLE: &[&str] = &[
    "CUDA_*",
    "NCCL_*",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HF_*",
    "VLLM_*",
    "TRTLLM_*",
    "TLLM_*",
    "TORCH_*",
    "PYTORCH_*",
    "TRANSFORMERS_*",
    "TRITON_*",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "PYTHONUNBUFFERED",
    "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING",
];

/// Name parts that mark a credential: never passed unless `engine_env` names it.
const SECRET_MARKS: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "API_KEY"];

/// Options of first-party backends that name a program (the user's words
/// when they differ from the plugin's declared default).
const PROGRAM_OPTIONS: &[&str] = &[
    "python",
    "vllm_executable",
    "trtllm_serve_executable",
    "transformers_executable",
];

/// The documented programs of llem's own backends, by plugin name.
pub fn documented_programs(backend: &str) -> &'static [&'static str] {
    match backend {
        "backend-vllm" => &["vllm", "python3", "python"],
        "backend-trtllm" => &["trtllm-serve", "python3", "python"],
        "backend-pytorch" => &["transformers", "python3", "python"],
        _ => &[],
    }
}

/// Whether the engine's file access is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfinementMode {
    /// Landlock where the kernel supports it (a notice where it does not).
    Landlock,
    /// `confinement = "none"`: files unconfined (programs and environment still checked).
    None,
}

/// What the user granted a backend's engine. Built from the manifest and the
/// experiment only; the plan is checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineGrants {
    /// The `[plugins.<instance>]` table, for messages.
    pub instance: String,
    /// Bare program names (looked up on PATH) or exact paths.
    pub programs: Vec<String>,
    /// Extra environment names the engine may inherit or the plan may set.
    pub env: Vec<String>,
    /// Extra readable paths (the model directory, `engine_read`).
    pub read: Vec<PathBuf>,
    /// Extra writable directories (`engine_write`).
    pub write: Vec<PathBuf>,
    pub mode: ConfinementMode,
}

impl EngineGrants {
    /// The grants for `plugin`'s engine running `model`.
    pub fn for_backend(plugin: &PluginPlan, model: &str) -> EngineGrants {
        let sandbox = &plugin.sandbox;
        let mut programs: Vec<String> = documented_programs(&plugin.full_name)
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        let mut env = sandbox.engine_env.clone();
        if !documented_programs(&plugin.full_name).is_empty() {
            programs.extend(user_programs(plugin));
            // A first-party backend's `env` table is the user's words too.
            if let Some(Value::Object(table)) = plugin.config.get("env") {
                env.extend(table.keys().cloned());
            }
        }
        programs.extend(sandbox.programs.iter().cloned());
        let mut read = sandbox.engine_read.clone();
        let model = Path::new(model);
        if !model.as_os_str().is_empty() && model.is_dir() {
            read.push(model.to_owned());
        }
        EngineGrants {
            instance: plugin.instance.clone(),
            programs,
            env,
            read,
            write: sandbox.engine_write.clone(),
            mode: if sandbox.confinement == "none" {
                ConfinementMode::None
            } else {
                ConfinementMode::Landlock
            },
        }
    }

    /// Grants allowing exactly `programs` (tests, library users).
    pub fn allowing(instance: &str, programs: &[&str]) -> EngineGrants {
        EngineGrants {
            instance: instance.to_owned(),
            programs: programs.iter().map(|p| (*p).to_owned()).collect(),
            env: Vec::new(),
            read: Vec::new(),
            write: Vec::new(),
            mode: ConfinementMode::Landlock,
        }
    }
}

/// Program options of a first-party backend whose value is not the plugin's
/// declared default (a default is the plugin's word, not the user's).
fn user_programs(plugin: &PluginPlan) -> Vec<String> {
    PROGRAM_OPTIONS
        .iter()
        .filter_map(|name| {
            let value = plugin.config.get(*name)?.as_str()?;
            let default = plugin
                .info
                .options
                .iter()
                .find(|o| o.name == *name)
                .and_then(|o| o.default.as_ref())
                .and_then(Value::as_str);
            (default != Some(value)).then(|| value.to_owned())
        })
        .collect()
}

/// The executable to start for `program`, if the grants allow it.
pub fn check_program(program: &str, grants: &EngineGrants) -> Result<PathBuf, String> {
    let refuse = || {
        format!(
            "the plan of [plugins.{0}] runs `{program}`, which is not a program this backend may run (allowed: {1}); if you trust it, add it to `programs` in [plugins.{0}.sandbox]",
            grants.instance,
            if grants.programs.is_empty() {
                "none".to_owned()
            } else {
                grants.programs.join(", ")
            }
        )
    };
    if program.is_empty() {
        return Err(refuse());
    }
    if !program.contains('/') {
        if !grants.programs.iter().any(|p| p == program) {
            return Err(refuse());
        }
        // llem's PATH, not one the plan could set. Not found: the name as
        // given, so starting it fails with the usual "not found" error.
        let path = std::env::var_os("PATH").unwrap_or_default();
        return Ok(std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
            .unwrap_or_else(|| PathBuf::from(program)));
    }
    let wanted = Path::new(program);
    let same = |granted: &String| {
        granted.contains('/')
            && (Path::new(granted) == wanted
                || matches!(
                    (Path::new(granted).canonicalize(), wanted.canonicalize()),
                    (Ok(a), Ok(b)) if a == b
                ))
    };
    if !wanted.is_absolute() || !grants.programs.iter().any(same) {
        return Err(refuse());
    }
    Ok(wanted.to_owned())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn matches(patterns: &[&str], name: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => *p == name,
    })
}

fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKS.iter().any(|m| upper.contains(m))
}

/// The engine's environment, and the names that were left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineEnv {
    pub vars: Vec<(String, String)>,
    /// Plan entries refused (named in the run's warnings).
    pub dropped: Vec<String>,
}

/// Build the environment from `host` (llem's own) and the plan's entries.
pub fn engine_env(
    host: impl IntoIterator<Item = (String, String)>,
    plan_env: &[(String, String)],
    grants: &EngineGrants,
) -> EngineEnv {
    let granted = |name: &str| grants.env.iter().any(|g| g == name);
    let mut vars: Vec<(String, String)> = host
        .into_iter()
        .filter(|(name, _)| granted(name) || (matches(INHERITED, name) && !looks_secret(name)))
        .collect();
    let mut dropped = Vec::new();
    for (name, value) in plan_env {
        if granted(name) || (matches(PLAN_SETTABLE, name) && !looks_secret(name)) {
            vars.retain(|(n, _)| n != name);
            vars.push((name.clone(), value.clone()));
        } else if !dropped.contains(name) {
            dropped.push(name.clone());
        }
    }
    vars.sort();
    EngineEnv { vars, dropped }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn only_allowed_programs_run_and_bare_names_use_llems_path() {
        let grants = EngineGrants::allowing("b", &["sh", "/usr/bin/env"]);
        let sh = check_program("sh", &grants).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(
            check_program("/usr/bin/env", &grants).unwrap(),
            PathBuf::from("/usr/bin/env")
        );
        for refused in ["bash", "/bin/bash", "./sh", "/tmp/sh", "", "../sh"] {
            let err = check_program(refused, &grants).unwrap_err();
            assert!(err.contains("[plugins.b.sandbox]"), "{refused}: {err}");
        }
        let err = check_program("sh", &EngineGrants::allowing("b", &[])).unwrap_err();
        assert!(err.contains("allowed: none"), "{err}");
    }

    #[test]
    fn a_bare_grant_does_not_allow_a_path_with_that_name() {
        let grants = EngineGrants::allowing("b", &["python3"]);
        assert!(check_program("/tmp/evil/python3", &grants).is_err());
    }

    #[test]
    fn the_environment_is_an_allow_list_without_secrets() {
        let host = pairs(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/home/u"),
            ("SECRET", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("HF_TOKEN", "hf_x"),
            ("HF_HOME", "/hf"),
            ("CUDA_VISIBLE_DEVICES", "0"),
            ("LD_PRELOAD", "/evil.so"),
            ("LC_ALL", "C"),
        ]);
        let plan = pairs(&[
            ("PATH", "/tmp/evil"),
            ("LD_PRELOAD", "/evil.so"),
            ("VLLM_LOGGING_LEVEL", "INFO"),
            ("CUDA_VISIBLE_DEVICES", "1"),
            ("PYTHONPATH", "/tmp/evil"),
        ]);
        let env = engine_env(host, &plan, &EngineGrants::allowing("b", &[]));
        assert_eq!(
            env.vars,
            pairs(&[
                ("CUDA_VISIBLE_DEVICES", "1"),
                ("HF_HOME", "/hf"),
                ("HOME", "/home/u"),
                ("LC_ALL", "C"),
                ("PATH", "/usr/bin"),
                ("VLLM_LOGGING_LEVEL", "INFO"),
            ])
        );
        assert_eq!(env.dropped, ["PATH", "LD_PRELOAD", "PYTHONPATH"]);
    }

    #[test]
    fn granted_names_pass_both_ways() {
        let mut grants = EngineGrants::allowing("b", &[]);
        grants.env = vec!["HF_TOKEN".into(), "MY_FLAG".into()];
        let env = engine_env(
            pairs(&[("HF_TOKEN", "hf_x"), ("OTHER", "no")]),
            &pairs(&[("MY_FLAG", "1")]),
            &grants,
        );
        assert_eq!(env.vars, pairs(&[("HF_TOKEN", "hf_x"), ("MY_FLAG", "1")]));
        assert!(env.dropped.is_empty());
    }
}
