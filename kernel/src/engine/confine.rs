//! Landlock confinement of engine processes (unprivileged, Linux ≥ 5.13).
//!
//! An engine may write only to the run directory, a private temporary
//! directory (its `TMPDIR`), `/dev/shm`, the named model caches (Hugging Face,
//! vLLM, torch, FlashInfer, Triton, CUDA's) and what `engine_write` grants; it
//! may read and execute system paths (`/usr`, `/lib*`, `/bin`, `/sbin`,
//! `/etc`, `/opt`, `/proc`, `/sys`, `/run`), its own program's prefix (the venv
//! or conda environment it lives in), the model directory and what
//! `engine_read` grants; it may read, write and ioctl device files in `/dev`
//! (`/dev/nvidia*`) but create none. Everything else — the rest of the user's
//! home above all — is refused by the kernel, for the engine and every process
//! it starts.
//!
//! How: the ruleset is built in the parent (allocation, file opens, errors
//! with context), and the child only calls `prctl(PR_SET_NO_NEW_PRIVS)` and
//! `landlock_restrict_self(fd)` between fork and exec: two raw system calls,
//! async-signal-safe, nothing allocated after fork.

use super::policy::{ConfinementMode, EngineEnv, EngineGrants};
use landlock::{
    ABI, Access, AccessFs, BitFlags, Ruleset, RulesetAttr, RulesetCreatedAttr, path_beneath_rules,
};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Readable and executable system paths (those that exist).
const SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/proc",
    "/sys", "/run",
];

/// The rights the ruleset handles: everything this llem knows of files
/// (older kernels get what they support: best effort, reported as the ABI).
const HANDLED_ABI: ABI = ABI::V5;

/// What confinement an engine ran under, recorded in `result.json`
/// (`backend.confinement`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfinement {
    /// `landlock`, `none` (`confinement = "none"`), or `unavailable` (this
    /// Linux has no Landlock: programs and environment checked, files not).
    pub mode: String,
    /// The Landlock ABI version the kernel answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock_abi: Option<u32>,
    /// The executable that was started.
    pub program: PathBuf,
    /// Readable (and executable) paths; empty when not confined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<PathBuf>,
    /// Writable paths; empty when not confined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<PathBuf>,
    /// Names of the environment variables the engine received.
    pub env: Vec<String>,
    /// Plan entries refused (not allow-listed, not granted by `engine_env`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_dropped: Vec<String>,
    /// Why the engine is not confined, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl EngineConfinement {
    /// One line for the terminal.
    pub fn describe(&self) -> String {
        match (&self.notice, self.landlock_abi) {
            (Some(notice), _) => notice.clone(),
            (None, Some(abi)) => format!(
                "engine confined with Landlock (ABI {abi}): writes only to {}",
                join(&self.write)
            ),
            (None, None) => format!("engine confinement: {}", self.mode),
        }
    }
}

fn join(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Landlock ABI version this kernel supports, `None` without Landlock.
pub fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: no ruleset, size 0, version flag.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).ok().filter(|v| *v >= 1)
}

/// A confinement ready to apply to one engine command.
#[derive(Debug)]
pub struct Prepared {
    ruleset: Option<OwnedFd>,
    /// The engine's private `TMPDIR`, removed when the engine is gone.
    pub temp: Option<tempfile::TempDir>,
    pub report: EngineConfinement,
}

/// Build the confinement for `program` run in `run_dir` under `grants`.
pub fn prepare(
    grants: &EngineGrants,
    run_dir: &Path,
    program: &Path,
    env: &EngineEnv,
) -> Result<Prepared, String> {
    let mut report = EngineConfinement {
        mode: "none".into(),
        landlock_abi: None,
        program: program.to_owned(),
        read: Vec::new(),
        write: Vec::new(),
        env: env.vars.iter().map(|(n, _)| n.clone()).collect(),
        env_dropped: env.dropped.clone(),
        notice: None,
    };
    if grants.mode == ConfinementMode::None {
        report.notice = Some(format!(
            "engine not confined: `confinement = \"none\"` in [plugins.{}.sandbox] (programs and environment are still checked)",
            grants.instance
        ));
        return Ok(Prepared {
            ruleset: None,
            temp: None,
            report,
        });
    }
    let Some(abi) = landlock_abi() else {
        report.mode = "unavailable".into();
        report.notice = Some(
            "Landlock is not available on this Linux (it needs 5.13 or later with Landlock enabled): the engine's files are not confined; programs and environment are still checked".into(),
        );
        return Ok(Prepared {
            ruleset: None,
            temp: None,
            report,
        });
    };
    let temp = tempfile::Builder::new()
        .prefix("llem-engine-")
        .tempdir()
        .map_err(|e| format!("cannot create the engine's temporary directory: {e}"))?;
    let home = host_var("HOME").map(PathBuf::from);
    let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    read.extend(program_prefixes(program, home.as_deref()));
    read.extend(grants.read.iter().cloned());
    let mut write = vec![
        run_dir.to_owned(),
        temp.path().to_owned(),
        PathBuf::from("/dev/shm"),
    ];
    write.extend(named_caches(home.as_deref()));
    write.extend(grants.write.iter().cloned());
    for missing in grants
        .read
        .iter()
        .chain(&grants.write)
        .filter(|p| !p.exists())
    {
        tracing::warn!(
            "[plugins.{}.sandbox]: {} does not exist, so the engine is not granted it",
            grants.instance,
            missing.display()
        );
    }
    read.retain(|p| p.exists());
    write.retain(|p| p.exists());
    read.dedup();
    write.dedup();
    let ruleset = build_ruleset(&read, &write)
        .map_err(|e| format!("cannot build the engine's Landlock ruleset: {e}"))?;
    report.mode = "landlock".into();
    report.landlock_abi = Some(abi);
    report.read = read;
    report.write = write;
    Ok(Prepared {
        ruleset: Some(ruleset),
        temp: Some(temp),
        report,
    })
}

fn build_ruleset(read: &[PathBuf], write: &[PathBuf]) -> Result<OwnedFd, String> {
    let abi = HANDLED_ABI;
    let devices: BitFlags<AccessFs> =
        AccessFs::from_read(abi) | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    let created = (|| {
        Ruleset::default()
            .handle_access(AccessFs::from_all(abi))?
            .create()?
            .add_rules(path_beneath_rules(read, AccessFs::from_read(abi)))?
            .add_rules(path_beneath_rules(write, AccessFs::from_all(abi)))?
            .add_rules(path_beneath_rules(["/dev"], devices))
    })()
    .map_err(|e| e.to_string())?;
    let fd: Option<OwnedFd> = created.into();
    fd.ok_or_else(|| "Landlock created no ruleset".to_owned())
}

impl Prepared {
    /// Make `command` confine itself between fork and exec. The ruleset's file
    /// descriptor must stay open until the command has been spawned (`self`
    /// outlives the spawn).
    pub fn apply(&self, command: &mut Command) {
        if let Some(temp) = &self.temp {
            command.env("TMPDIR", temp.path());
        }
        let Some(fd) = &self.ruleset else {
            return;
        };
        let fd = fd.as_raw_fd();
        // SAFETY: runs in the child after fork: only two raw system calls and
        // errno, no allocation, no locks.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn host_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The program's installation prefix (`…/venv` for `…/venv/bin/python`,
/// `~/.pyenv` for `~/.pyenv/shims/python3`), for
/// the path given and its resolved target — but never `/`, the home directory
/// or anything above it: then only the program's own directory.
fn program_prefixes(program: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let too_wide = |p: &Path| p == Path::new("/") || home.is_some_and(|h| h.starts_with(p));
    let mut out = Vec::new();
    let resolved = program.canonicalize().ok();
    for path in std::iter::once(program).chain(resolved.as_deref()) {
        let Some(dir) = path.parent() else { continue };
        let prefix = match dir.parent() {
            // `bin/` of a venv, conda env or prefix; `shims/` of pyenv (whose
            // shims run `libexec/pyenv` and `versions/*` under the same root).
            Some(up)
                if dir.file_name().is_some_and(|n| n == "bin" || n == "shims") && !too_wide(up) =>
            {
                up
            }
            _ => dir,
        };
        let chosen = if too_wide(prefix) { path } else { prefix };
        if !out.iter().any(|p: &PathBuf| p == chosen) {
            out.push(chosen.to_owned());
        }
    }
    out
}

/// Model and compiler caches engines write (created if missing, so a first
/// run can fill them): Hugging Face (`HF_HOME`, and `HF_HUB_CACHE` when it is
/// elsewhere), vLLM (`VLLM_CACHE_ROOT`),
/// torch (`TORCH_HOME`), FlashInfer, Triton, CUDA (`CUDA_CACHE_PATH`).
fn named_caches(home: Option<&Path>) -> Vec<PathBuf> {
    let cache_root = host_var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".cache")));
    let under_root = |name: &str| cache_root.as_ref().map(|r| r.join(name));
    let under_home = |name: &str| home.map(|h| h.join(name));
    let caches = [
        host_var("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| under_root("huggingface")),
        // The hub cache moved out of HF_HOME (where llem finds models by id,
        // `llem::model`): the engine loads from it and writes its locks there.
        host_var("HF_HUB_CACHE")
            .or_else(|| host_var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from),
        host_var("VLLM_CACHE_ROOT")
            .map(PathBuf::from)
            .or_else(|| under_root("vllm")),
        host_var("TORCH_HOME")
            .map(PathBuf::from)
            .or_else(|| under_root("torch")),
        under_root("flashinfer"),
        under_home(".triton"),
        host_var("CUDA_CACHE_PATH")
            .map(PathBuf::from)
            .or_else(|| under_home(".nv")),
    ];
    caches
        .into_iter()
        .flatten()
        .filter(|dir| {
            use std::os::unix::fs::DirBuilderExt;
            dir.is_dir()
                || std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .is_ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_the_environment_never_the_root_or_home() {
        let home = Path::new("/home/u");
        assert_eq!(
            program_prefixes(Path::new("/opt/venv/bin/no-such-python"), Some(home)),
            [PathBuf::from("/opt/venv")]
        );
        // /bin/x: the prefix would be `/`; ~/bin/x: the home. Only the directory then.
        assert_eq!(
            program_prefixes(Path::new("/no-such-bin/bin/x"), Some(home))[0],
            PathBuf::from("/no-such-bin")
        );
        assert_eq!(
            program_prefixes(Path::new("/bin/no-such-x"), Some(home)),
            [PathBuf::from("/bin")]
        );
        assert_eq!(
            program_prefixes(
                Path::new("/home/u/.pyenv/shims/no-such-python3"),
                Some(home)
            ),
            [PathBuf::from("/home/u/.pyenv")]
        );
        assert_eq!(
            program_prefixes(Path::new("/home/u/bin/no-such-x"), Some(home)),
            [PathBuf::from("/home/u/bin")]
        );
        assert_eq!(
            program_prefixes(Path::new("/home/no-such-x"), Some(home)),
            [PathBuf::from("/home/no-such-x")]
        );
    }
}
