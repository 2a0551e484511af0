//! One directory per run: `<output_dir>/<experiment>/<UTC time>/`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Create a fresh run directory; never reuses one (a suffix keeps runs started
/// in the same second apart).
pub fn create(
    output_dir: &Path,
    experiment: &str,
    started: SystemTime,
) -> std::io::Result<PathBuf> {
    let base = output_dir
        .join(sanitize(experiment))
        .join(super::timestamp::for_path(started));
    for attempt in 0..1000 {
        let dir = if attempt == 0 {
            base.clone()
        } else {
            PathBuf::from(format!("{}-{attempt}", base.display()))
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "too many runs named {}",
        base.display()
    )))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_made_path_safe_and_runs_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let t = std::time::UNIX_EPOCH;
        let a = super::create(dir.path(), "qwen 8b/batch", t).unwrap();
        let b = super::create(dir.path(), "qwen 8b/batch", t).unwrap();
        assert!(a.ends_with("qwen-8b-batch/1970-01-01T00-00-00"));
        assert!(b.ends_with("qwen-8b-batch/1970-01-01T00-00-00-1"));
    }
}
