//! Software versions of the engine's environment, for the run's environment
//! record: Python, torch, transformers, vLLM, TensorRT-LLM, the CUDA version
//! torch was built with, and the CUDA devices by name.
//!
//! Offline workers send them in their `ready` line (`versions`). For a server
//! engine the kernel runs [`PROBE`] (the workers' protocol module, whose
//! `software_versions` builds that line, with `versions_probe.py` appended to
//! print it) with the Python that runs the server — the plan's
//! program when it is a Python, else the interpreter named by its `#!` line
//! (`vllm` and `trtllm-serve` are console scripts) — and the plan's
//! environment. Run it before the engine starts: it imports torch, which must
//! not land in a measured window.

use super::python::{RunFailure, run_script};
use llem_sdk::EnginePlan;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The probe script: prints one JSON object of versions. The offline
/// workers' own protocol module (plugins/backend-common, see its lib.rs) with
/// a `__main__` appended: one `software_versions` for both modes.
pub const PROBE: &str = concat!(
    include_str!("../../../plugins/backend-common/worker_protocol.py"),
    include_str!("versions_probe.py")
);

/// Versions of what runs the model. Every field is optional: what could not
/// be read is absent, never guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftwareVersions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vllm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorrt_llm: Option<String>,
    /// The CUDA version torch was built with (`torch.version.cuda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<String>,
    /// CUDA devices torch sees, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// The Python interpreter that runs `plan`'s program: the program itself when
/// its name starts with `python`, else the interpreter of its `#!` line.
pub fn interpreter(plan: &EnginePlan) -> Result<PathBuf, String> {
    let program = Path::new(&plan.program);
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("python") {
        return Ok(program.to_owned());
    }
    let path = find_program(program).ok_or_else(|| {
        format!(
            "cannot find `{}` to tell which Python runs it",
            plan.program
        )
    })?;
    let mut first = String::new();
    std::io::BufReader::new(
        std::fs::File::open(&path).map_err(|e| format!("reading {}: {e}", path.display()))?,
    )
    .take(512)
    .read_line(&mut first)
    .map_err(|e| format!("reading {}: {e}", path.display()))?;
    shebang_python(&first).ok_or_else(|| {
        format!(
            "{} is not a Python script (no `#!…python` line)",
            path.display()
        )
    })
}

/// `#!/path/python3` → that path; `#!/usr/bin/env python3` → `python3`.
fn shebang_python(line: &str) -> Option<PathBuf> {
    let mut words = line.strip_prefix("#!")?.split_whitespace();
    let first = words.next()?;
    let candidate = if Path::new(first).file_name()? == "env" {
        words.find(|w| !w.starts_with('-'))?
    } else {
        first
    };
    Path::new(candidate)
        .file_name()?
        .to_string_lossy()
        .starts_with("python")
        .then(|| PathBuf::from(candidate))
}

fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Run [`PROBE`] with the Python behind `plan` and the plan's environment.
/// Killed after `timeout` (importing torch takes seconds) or once `stop` is
/// set (Ctrl-C during start-up acts at once).
pub fn probe(
    plan: &EnginePlan,
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<SoftwareVersions, String> {
    let python = interpreter(plan)?;
    let ran =
        run_script(&python, PROBE, &[], &plan.env, timeout, Some(stop)).map_err(|f| match f {
            RunFailure::Spawn(e) => format!("cannot run {}: {e}", python.display()),
            RunFailure::Wait(e) => format!("waiting for {}: {e}", python.display()),
            RunFailure::Stopped => "stopped".into(),
            RunFailure::TimedOut => format!(
                "{} did not answer within {} s",
                python.display(),
                timeout.as_secs()
            ),
        })?;
    if !ran.status.success() {
        return Err(format!("{} exited with {}", python.display(), ran.status));
    }
    let out = ran.stdout;
    serde_json::from_str(out.trim()).map_err(|e| format!("the probe printed no versions ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::EngineMode;
    use std::process::Command;
    use std::time::Instant;

    fn plan(program: &str) -> EnginePlan {
        crate::engine::test_plan(EngineMode::Server, "x", program, &[])
    }

    #[test]
    fn shebangs() {
        assert_eq!(
            shebang_python("#!/opt/venv/bin/python3.11\n"),
            Some(PathBuf::from("/opt/venv/bin/python3.11"))
        );
        assert_eq!(
            shebang_python("#!/usr/bin/env -S python3 -u\n"),
            Some(PathBuf::from("python3"))
        );
        assert_eq!(shebang_python("#!/bin/sh\n"), None);
        assert_eq!(shebang_python("import sys\n"), None);
    }

    #[test]
    fn a_console_script_names_its_python() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("vllm");
        std::fs::write(&script, "#!/srv/env/bin/python3\nimport sys\n").unwrap();
        let found = interpreter(&plan(&script.display().to_string())).unwrap();
        assert_eq!(found, PathBuf::from("/srv/env/bin/python3"));
        assert_eq!(
            interpreter(&plan("/usr/bin/python3")).unwrap(),
            PathBuf::from("/usr/bin/python3")
        );
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = interpreter(&plan(&script.display().to_string())).unwrap_err();
        assert!(err.contains("not a Python script"), "{err}");
    }

    #[test]
    fn the_probe_reports_the_interpreters_own_version() {
        let Ok(out) = Command::new("python3")
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
        else {
            eprintln!("no python3 on PATH: skipped");
            return;
        };
        let want = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let got = probe(
            &plan("python3"),
            Duration::from_secs(60),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(got.python.as_deref(), Some(want.as_str()));
    }

    #[test]
    fn a_hung_probe_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        // A "python" that never answers.
        let fake = dir.path().join("python3");
        std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
        let mut perms = std::fs::metadata(&fake).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&fake, perms).unwrap();
        let started = Instant::now();
        let err = probe(
            &plan(&fake.display().to_string()),
            Duration::from_millis(300),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
