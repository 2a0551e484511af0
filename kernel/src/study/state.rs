//! `state/<slot>.json`: where each run of a study stands. Written by whoever
//! runs the slot (the local executor, or a Slurm array task on any node), each
//! file by one writer, atomically; read by resume, `llem study status` and the
//! merge into study.json.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const STATE_DIR: &str = "state";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotStatus {
    Pending,
    Running,
    Complete,
    Degraded,
    Failed,
    Interrupted,
}

impl SlotStatus {
    /// Done for good: resume never runs it again.
    pub fn is_done(self) -> bool {
        matches!(self, SlotStatus::Complete | SlotStatus::Degraded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Pending => "pending",
            SlotStatus::Running => "running",
            SlotStatus::Complete => "complete",
            SlotStatus::Degraded => "degraded",
            SlotStatus::Failed => "failed",
            SlotStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotState {
    pub index: usize,
    pub config: usize,
    pub cycle: u32,
    pub status: SlotStatus,
    /// The run directory, once the run made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<PathBuf>,
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// Wall seconds the run took (engine start included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_s: Option<f64>,
    /// Why it failed, was interrupted or is degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Where it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub pid: u32,
    /// `<job id>_<task>` when a Slurm array task ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// The run directory whose engine it used, when kept up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_kept_from: Option<String>,
    /// How many times this slot was started (resume counts).
    #[serde(default)]
    pub attempts: u32,
}

pub fn path(study_dir: &Path, index: usize) -> PathBuf {
    study_dir.join(STATE_DIR).join(format!("{index:04}.json"))
}

/// The slot's state, `None` when it never started.
pub fn read(study_dir: &Path, index: usize) -> Result<Option<SlotState>, String> {
    let path = path(study_dir, index);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

pub fn write(study_dir: &Path, state: &SlotState) -> Result<(), String> {
    let json = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    write_atomically(&path(study_dir, state.index), &json)
}

/// Write `text` to `path` through a temporary file and a rename, so a reader
/// (another node, a crash) sees the old file or the new one, never half.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or("state".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Whether process `pid` on this host is alive (a `running` slot whose
/// process is gone was cut short: a crash, a kill, a time limit).
pub fn alive(pid: u32) -> bool {
    // Signal 0 checks existence without sending anything.
    // SAFETY: kill(2) with signal 0 has no effect on the target.
    pid != 0 && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

/// Now, RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    crate::experiment::timestamp::rfc3339(std::time::SystemTime::now())
}

pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}
