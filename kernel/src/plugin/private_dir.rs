//! Directories and files only this user may write: where llem keeps what it
//! later trusts (compiled components, plugin descriptions). A directory or
//! file that is a symbolic link, belongs to someone else, or is writable by
//! group or others is refused, so a shared `LLEM_CACHE_DIR` cannot be used to
//! slip entries in.

use std::path::Path;

/// `dir`, created 0700 (with its parents) if missing; refused when it is not
/// the user's own or others may write it.
pub fn ensure(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create it: {e}"))?;
        }
        private_dir_builder()
            .create(dir)
            .or_else(|e| {
                // Another llem may have created it meanwhile.
                if dir.is_dir() { Ok(()) } else { Err(e) }
            })
            .map_err(|e| format!("cannot create it: {e}"))?;
    }
    owned_and_private(dir)
}

/// Write `bytes` to `path` through a private temporary file and a rename, so a
/// concurrent llem never reads a half-written file.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    drop(file);
    std::fs::rename(&tmp, path)
}

fn private_dir_builder() -> std::fs::DirBuilder {
    #[allow(unused_mut)] // mode is Unix-only
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

/// Not a symlink, owned by this user, not writable by group or others.
#[cfg(unix)]
pub fn owned_and_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Err(format!("{} is a symbolic link", path.display()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to user {}, not to this user ({me})",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn owned_and_private(_: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_directory_is_private_and_a_group_writable_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let refused = ensure(&dir).unwrap_err();
        assert!(refused.contains("writable by group or others"), "{refused}");
    }

    #[test]
    fn written_files_are_private_and_links_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("entry");
        write(&file, b"x").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        owned_and_private(&file).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(
            owned_and_private(&link)
                .unwrap_err()
                .contains("symbolic link")
        );
    }
}
