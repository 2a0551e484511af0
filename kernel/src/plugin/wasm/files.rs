//! Filesystem grants as WASI preopens. WASI opens directories only, so a grant
//! of a single file is shown through a private directory:
//!
//! * **Read a file**: a fresh directory (under the temporary directory) holding
//!   a hard link to the file — a copy when linking is impossible (another file
//!   system, `protected_hardlinks`) — preopened read-only at the file's parent
//!   path. Inside the guest the file is where the user said it is, and its
//!   siblings do not exist. Files sharing a parent share one directory; a file
//!   inside a granted directory needs nothing more.
//! * **Write a file** (sinks): a fresh directory preopened read-write at the
//!   file's parent path, holding a hard link to the file if it exists (so
//!   in-place writes land in it). When the instance closes, a regular file of
//!   that name left there (created, or replaced by a rename) is moved into
//!   place; anything else the plugin left (other files, links) is deleted.
//!
//! Directories are preopened as they are, at their own path.

use crate::plugin::Sandbox;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The private directories of one store; they live as long as it does.
#[derive(Debug, Default)]
pub struct Staged {
    dirs: Vec<TempDir>,
    /// A written file to move into place on drop: (inside the private directory, real path).
    write_back: Option<(PathBuf, PathBuf)>,
}

/// Preopen every grant of `sandbox` in `wasi`.
pub fn preopen(wasi: &mut WasiCtxBuilder, sandbox: &Sandbox) -> Result<Staged, String> {
    let mut staged = Staged::default();
    let dirs: Vec<&PathBuf> = sandbox.read_dirs.iter().filter(|p| p.is_dir()).collect();
    // Files by parent; a file under a granted directory is already visible.
    let mut files: BTreeMap<PathBuf, Vec<&Path>> = BTreeMap::new();
    for file in sandbox.read_dirs.iter().filter(|p| !p.is_dir()) {
        if dirs.iter().any(|d| file.starts_with(d)) {
            continue;
        }
        let parent = file
            .parent()
            .ok_or_else(|| format!("cannot grant read access to {}: not a file", file.display()))?;
        files.entry(parent.to_owned()).or_default().push(file);
    }
    for dir in &dirs {
        wasi.preopened_dir(dir, dir.to_string_lossy(), FsPerms::ReadOnly)
            .map_err(|e| format!("cannot grant read access to {}: {e}", dir.display()))?;
    }
    for (parent, files) in files {
        let private = private_dir()?;
        for file in files {
            place(file, private.path())
                .map_err(|e| format!("cannot grant read access to {}: {e}", file.display()))?;
        }
        wasi.preopened_dir(private.path(), parent.to_string_lossy(), FsPerms::ReadOnly)
            .map_err(|e| format!("cannot grant read access to {}: {e}", parent.display()))?;
        staged.dirs.push(private);
    }
    if let Some(target) = &sandbox.write_dir {
        let grant_error = |e: &dyn std::fmt::Display| {
            format!("cannot grant write access to {}: {e}", target.display())
        };
        if target.is_dir() {
            wasi.preopened_dir(target, target.to_string_lossy(), FsPerms::ReadWrite)
                .map_err(|e| grant_error(&e))?;
        } else {
            let (parent, name) = match (target.parent(), target.file_name()) {
                (Some(parent), Some(name)) if parent.is_dir() => (parent, name),
                _ => return Err(grant_error(&"its directory does not exist")),
            };
            let private = private_dir()?;
            if target.is_file() {
                place(target, private.path()).map_err(|e| grant_error(&e))?;
            }
            wasi.preopened_dir(private.path(), parent.to_string_lossy(), FsPerms::ReadWrite)
                .map_err(|e| grant_error(&e))?;
            staged.write_back = Some((private.path().join(name), target.clone()));
            staged.dirs.push(private);
        }
    }
    Ok(staged)
}

fn private_dir() -> Result<TempDir, String> {
    // Created 0700 by tempfile: no other user sees what is placed inside.
    tempfile::Builder::new()
        .prefix("llem-grant-")
        .tempdir()
        .map_err(|e| format!("cannot create a private directory for a file grant: {e}"))
}

/// Put `file` (its final target, links followed) into `dir` under its own name.
fn place(file: &Path, dir: &Path) -> std::io::Result<()> {
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let real = file.canonicalize()?;
    if !real.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let inside = dir.join(name);
    if std::fs::hard_link(&real, &inside).is_err() {
        tracing::debug!(file = %real.display(), "hard link impossible; copying the granted file");
        std::fs::copy(&real, &inside)?;
    }
    Ok(())
}

impl Drop for Staged {
    fn drop(&mut self) {
        let Some((inside, target)) = self.write_back.take() else {
            return;
        };
        // Only a regular file moves out: a symlink the plugin planted must not
        // make llem write somewhere else.
        let Ok(meta) = std::fs::symlink_metadata(&inside) else {
            return;
        };
        if !meta.file_type().is_file() {
            tracing::warn!(path = %target.display(), "a sandboxed sink left something other than a file; ignored");
            return;
        }
        if same_file(&inside, &target) {
            return; // written in place through the link
        }
        let moved = std::fs::rename(&inside, &target)
            .or_else(|_| std::fs::copy(&inside, &target).map(|_| ()));
        if let Err(e) = moved {
            tracing::warn!(path = %target.display(), "cannot move a sink's file into place: {e}");
        }
    }
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}
