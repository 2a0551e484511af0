//! `llem env`'s check of the inference stack, per backend: which Python the
//! backend's engine would run with, whether the packages it needs import
//! there (and their versions), what CUDA that Python sees, and the Hugging
//! Face cache; each problem with the exact fix. The energy side is
//! [`crate::probe`].
//!
//! The Python is found the way a run finds it: the backend plans an engine
//! with the user's options, and the interpreter behind the plan's program is
//! taken ([`crate::engine::versions::interpreter`]). The check imports the
//! packages for real (`doctor_probe.py`), so a package that is installed but
//! broken shows up here and not an hour into a sweep.

use crate::catalog::Catalog;
use crate::engine::python::{RunFailure, run_script};
use crate::engine::versions::interpreter;
use crate::experiment::sandbox_for;
use llem_manifest::PluginPlan;
use llem_sdk::PlanRequest;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

const PROBE: &str = include_str!("doctor_probe.py");
const MARKER: &str = "LLEM_DOCTOR ";
/// Importing vLLM or TensorRT-LLM takes tens of seconds on a cold cache.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(180);

/// One package in the backend's Python.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleCheck {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it did not import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What torch in that Python sees of CUDA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaCheck {
    /// The CUDA version torch was built with (`None`: a CPU build).
    pub built_with: Option<String>,
    pub available: bool,
    #[serde(default)]
    pub devices: Vec<CudaDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CudaDevice {
    pub name: String,
    pub memory_bytes: u64,
}

/// What the probe printed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ProbeReport {
    python: String,
    executable: String,
    modules: Vec<ModuleCheck>,
    cuda: Option<CudaCheck>,
}

/// One backend's stack.
#[derive(Debug, Clone, Serialize)]
pub struct BackendCheck {
    /// Short name (`vllm`).
    pub backend: String,
    pub plugin: String,
    /// The interpreter the engine would run with, as the plan names it.
    pub python: Option<PathBuf>,
    /// Its version and resolved executable, when it ran.
    pub python_version: Option<String>,
    pub executable: Option<String>,
    pub modules: Vec<ModuleCheck>,
    pub cuda: Option<CudaCheck>,
    /// Whether everything this backend needs is there.
    pub ok: bool,
    /// Each problem, with its fix.
    pub problems: Vec<String>,
}

impl BackendCheck {
    /// The interpreter in words: `/venv/bin/python (Python 3.11.7)` once it
    /// ran, the path the plan names otherwise.
    pub fn python_label(&self) -> String {
        match (&self.executable, &self.python) {
            (Some(exe), _) => format!(
                "{exe} (Python {})",
                self.python_version.as_deref().unwrap_or("?")
            ),
            (None, Some(p)) => p.display().to_string(),
            (None, None) => "no Python found".into(),
        }
    }
}

/// The packages a shipped backend's engine imports; others: none known.
pub fn required_modules(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "backend-pytorch" => &["torch", "transformers"],
        "backend-vllm" => &["vllm", "torch", "transformers"],
        "backend-trtllm" => &["tensorrt_llm", "torch"],
        _ => &[],
    }
}

/// pip's name for a module, for the fix.
fn pip_name(module: &str) -> &str {
    match module {
        "tensorrt_llm" => "tensorrt-llm",
        other => other,
    }
}

/// Check the backend `plugin` (a resolved plan entry, options filled).
pub fn check_backend(catalog: &Catalog, plugin: &PluginPlan, short: &str) -> BackendCheck {
    check_backends(catalog, &[(short, plugin)])
        .pop()
        .unwrap_or_else(|| BackendCheck::new(short, plugin))
}

/// Check several backends at once. Backends whose engines run with the same
/// Python share one probe that imports the union of their packages: importing
/// torch and transformers costs seconds of CPU, and `llem env` would
/// otherwise pay it once per backend. Distinct interpreters are probed in
/// parallel. Results come back in the order of `backends`.
pub fn check_backends(catalog: &Catalog, backends: &[(&str, &PluginPlan)]) -> Vec<BackendCheck> {
    let planned: Vec<(BackendCheck, Option<PathBuf>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = backends
            .iter()
            .map(|&(short, plugin)| scope.spawn(move || plan_check(catalog, plugin, short)))
            .collect();
        handles
            .into_iter()
            .zip(backends)
            .map(|(h, &(short, plugin))| {
                h.join()
                    .unwrap_or_else(|_| (BackendCheck::new(short, plugin), None))
            })
            .collect()
    });
    // One module list per interpreter, in first-seen order (no duplicates).
    let mut probes: Vec<(PathBuf, Vec<&'static str>)> = Vec::new();
    for ((_, python), &(_, plugin)) in planned.iter().zip(backends) {
        let Some(python) = python else { continue };
        let index = match probes.iter().position(|(p, _)| p == python) {
            Some(i) => i,
            None => {
                probes.push((python.clone(), Vec::new()));
                probes.len() - 1
            }
        };
        for module in required_modules(&plugin.full_name) {
            if !probes[index].1.contains(module) {
                probes[index].1.push(module);
            }
        }
    }
    let reports: Vec<Result<ProbeReport, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = probes
            .iter()
            .map(|(python, modules)| scope.spawn(move || run_probe(python, modules)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the probe's thread panicked".to_owned()))
            })
            .collect()
    });
    planned
        .into_iter()
        .zip(backends)
        .map(|((check, python), &(short, plugin))| match python {
            None => check,
            Some(python) => {
                let report = probes
                    .iter()
                    .position(|(p, _)| *p == python)
                    .map(|i| &reports[i]);
                match report {
                    Some(report) => {
                        finish_check(check, report, required_modules(&plugin.full_name), short)
                    }
                    None => check,
                }
            }
        })
        .collect()
}

impl BackendCheck {
    fn new(short: &str, plugin: &PluginPlan) -> Self {
        BackendCheck {
            backend: short.to_owned(),
            plugin: plugin.full_name.clone(),
            python: None,
            python_version: None,
            executable: None,
            modules: Vec::new(),
            cuda: None,
            ok: false,
            problems: Vec::new(),
        }
    }
}

/// Plan an engine with the user's options and find its Python; `None` when
/// there is none to probe (the problem is in the check).
fn plan_check(
    catalog: &Catalog,
    plugin: &PluginPlan,
    short: &str,
) -> (BackendCheck, Option<PathBuf>) {
    let mut check = BackendCheck::new(short, plugin);
    let plan = catalog
        .load_path(&plugin.location)
        .map_err(|e| e.to_string())
        .and_then(|code| {
            code.open_backend(&plugin.config, &sandbox_for(plugin, None))
                .map_err(|e| e.to_string())
        })
        .and_then(|mut b| {
            b.plan(&PlanRequest {
                model: "llem-env-check".into(),
                host: "127.0.0.1".into(),
                port: 8000,
                run_dir: std::env::temp_dir().display().to_string(),
            })
            .map_err(|e| e.to_string())
        });
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            check
                .problems
                .push(format!("the backend cannot plan an engine: {e}"));
            return (check, None);
        }
    };
    let python = match interpreter(&plan) {
        Ok(p) => p,
        Err(e) => {
            // The engine's program is missing: say so, and still check the
            // backend's `python` (offline mode's interpreter) for the packages.
            check.problems.push(format!(
                "{e}: install {} so that `{}` is on PATH, or set the option naming it (`llem plugins inspect {}`)",
                plan.engine, plan.program, plugin.full_name
            ));
            match plugin
                .config
                .get("python")
                .and_then(serde_json::Value::as_str)
            {
                Some(p) => PathBuf::from(p),
                None => return (check, None),
            }
        }
    };
    check.python = Some(python.clone());
    (check, Some(python))
}

/// Fill `check` from the probe of its Python, keeping only the packages this
/// backend needs (the probe may have imported others' too).
fn finish_check(
    mut check: BackendCheck,
    report: &Result<ProbeReport, String>,
    required: &[&str],
    short: &str,
) -> BackendCheck {
    match report {
        Err(e) => check.problems.push(format!(
            "{e}: set `{short}.python` to an interpreter that runs (`--set {short}.python=/path/to/venv/bin/python`)"
        )),
        Ok(report) => {
            let modules: Vec<ModuleCheck> = required
                .iter()
                .filter_map(|name| report.modules.iter().find(|m| m.name == *name).cloned())
                .collect();
            for m in &modules {
                if m.error.is_some() {
                    check.problems.push(format!(
                        "`{}` does not import in {}: install it there (`{} -m pip install {}`), or set `{short}.python` to a Python that has it",
                        m.name,
                        report.executable,
                        report.executable,
                        pip_name(&m.name)
                    ));
                }
            }
            check.python_version = Some(report.python.clone());
            check.executable = Some(report.executable.clone());
            check.modules = modules;
            check.cuda = report.cuda.clone();
        }
    }
    check.ok = check.problems.is_empty();
    check
}

/// Run the probe with `python`, importing `modules`; killed after [`PROBE_TIMEOUT`].
fn run_probe(python: &std::path::Path, modules: &[&str]) -> Result<ProbeReport, String> {
    let env = [("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned())];
    let ran =
        run_script(python, PROBE, modules, &env, PROBE_TIMEOUT, None).map_err(|f| match f {
            RunFailure::Spawn(e) => format!("cannot run {}: {e}", python.display()),
            RunFailure::Wait(e) => format!("waiting for {}: {e}", python.display()),
            RunFailure::TimedOut | RunFailure::Stopped => format!(
                "{} did not finish importing {} within {} s",
                python.display(),
                modules.join(", "),
                PROBE_TIMEOUT.as_secs()
            ),
        })?;
    let (status, stdout, stderr) = (ran.status, ran.stdout, ran.stderr);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            format!(
                "{} ran but gave no answer ({status}){}",
                python.display(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": {}",
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    )
                }
            )
        })?;
    serde_json::from_str(line)
        .map_err(|e| format!("{}: unreadable probe answer: {e}", python.display()))
}

/// The Hugging Face cache: where, and which models it holds.
#[derive(Debug, Clone, Serialize)]
pub struct HfCacheCheck {
    pub path: Option<PathBuf>,
    pub exists: bool,
    /// Repository ids with a snapshot (`Qwen/Qwen3-8B`).
    pub models: Vec<String>,
}

pub fn check_hf_cache() -> HfCacheCheck {
    let path = crate::model::hf_hub_cache();
    let mut models = Vec::new();
    let exists = path.as_ref().is_some_and(|p| p.is_dir());
    if let Some(dir) = path.as_ref().filter(|_| exists)
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(repo) = name.strip_prefix("models--")
                && e.path().join("snapshots").is_dir()
            {
                models.push(repo.replacen("--", "/", 1));
            }
        }
    }
    models.sort();
    HfCacheCheck {
        path,
        exists,
        models,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reports_a_missing_module_with_its_error() {
        let report = run_probe(
            std::path::Path::new("python3"),
            &["json", "llem_no_such_module"],
        )
        .expect("python3 runs the probe");
        assert_eq!(report.modules[0].name, "json");
        assert_eq!(report.modules[0].error, None);
        let missing = &report.modules[1];
        assert!(
            missing
                .error
                .as_deref()
                .is_some_and(|e| e.contains("ModuleNotFoundError")),
            "{missing:?}"
        );
    }

    #[test]
    fn a_program_that_is_not_python_gives_no_answer() {
        let err = run_probe(std::path::Path::new("/bin/true"), &[]).unwrap_err();
        assert!(err.contains("gave no answer"), "{err}");
    }
}
