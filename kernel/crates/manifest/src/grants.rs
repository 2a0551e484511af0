//! What a sandboxed plugin is granted, and whose words granted it.
//!
//! Only the user's words grant anything: `[plugins.<instance>.sandbox]` keys and
//! the `path` options the user wrote (manifest, `--set`, CLI flags). A plugin's
//! own defaults never do: a third-party plugin declaring `root = "/"` gets
//! nothing from it. The one exception is a plugin shipped with llem (in the
//! plugin directory next to the binary), part of llem's own release: its path
//! defaults (energy-rapl's powercap tree) are granted and labelled as such.
//!
//! A file value grants that file alone and a directory value that directory;
//! how the kernel shows a single file to a plugin is in `docs/architecture.md`.

use std::path::{Component, Path, PathBuf};

use llem_sdk::{OptionType, PluginKind};
use serde_json::{Map, Value};

use crate::catalog::CatalogEntry;
use crate::error::ManifestError;
use crate::keys::{PLUGINS_TABLE, SANDBOX};
use crate::plan::{Grant, GrantAccess, GrantedBy, SandboxGrants};
use crate::raw::{RawManifest, RawTable, RawValue};
use crate::spans::join_path;

/// A sandbox table on a native plugin would be silently ignored: refuse it.
pub(crate) fn check_native_sandbox(
    raw: &RawManifest,
    table: &RawTable,
    table_path: &str,
    found: &CatalogEntry,
    errors: &mut Vec<ManifestError>,
) {
    if found.sandboxed {
        return;
    }
    let Some(entry) = table.get(SANDBOX.name) else {
        return;
    };
    let path = join_path(table_path, SANDBOX.name);
    errors.push(
        ManifestError::at(
            &raw.source_name,
            entry.anchor(),
            &path,
            format!(
                "[{path}] cannot apply: `{}` ({}) is a native plugin, which runs inside llem with your permissions and cannot be confined",
                found.full_name,
                found.location.display()
            ),
        )
        .with_help(format!(
            "remove the [{path}] table, or use a WASM build of `{}`",
            found.full_name
        )),
    );
}

/// `sandbox.read` and `sandbox.write` must name something that exists: a grant
/// of a missing path would otherwise fail only at run time, without a position.
pub(crate) fn check_granted_paths_exist(
    raw: &RawManifest,
    sandbox: &RawTable,
    sandbox_path: &str,
    map: &Map<String, Value>,
    errors: &mut Vec<ManifestError>,
) {
    if let Some(entry) = sandbox.get("read")
        && let RawValue::Array(items) = &entry.item.value
        && let Some(Value::Array(values)) = map.get("read")
    {
        let key = join_path(sandbox_path, "read");
        for (item, value) in items.iter().zip(values) {
            if let Some(s) = value.as_str()
                && !Path::new(s).exists()
            {
                errors.push(
                    ManifestError::at(
                        &raw.source_name,
                        &item.loc,
                        &key,
                        format!("`{key}` grants {s}, which does not exist"),
                    )
                    .with_help("fix the path, or create it before the run: a grant opens only what is there"),
                );
            }
        }
    }
    if let Some(entry) = sandbox.get("write")
        && let Some(s) = map.get("write").and_then(Value::as_str)
        && !Path::new(s).exists()
    {
        let key = join_path(sandbox_path, "write");
        errors.push(
            ManifestError::at(
                &raw.source_name,
                &entry.item.loc,
                &key,
                format!("`{key}` grants {s}, which does not exist"),
            )
            .with_help(format!("create it first (`mkdir -p {s}`), or fix the path")),
        );
    }
}

/// Every grant of one sandboxed instance. Adds what its `path` options name to
/// `sandbox` (user-written values, or defaults of a shipped plugin) and rewrites
/// those values in `config` to the normalised path the grant opens.
pub(crate) fn grants_for(
    instance: &str,
    table: &RawTable,
    found: &CatalogEntry,
    config: &mut Map<String, Value>,
    sandbox: &mut SandboxGrants,
) -> Vec<Grant> {
    let table_path = join_path(PLUGINS_TABLE, instance);
    let sandbox_path = join_path(&table_path, SANDBOX.name);
    let grant = |access, target: &Path, key: String, by| Grant {
        instance: instance.to_owned(),
        access,
        target: target.display().to_string(),
        key,
        by,
    };
    let mut grants = Vec::new();
    for path in &sandbox.read_dirs {
        let access = if path.is_dir() {
            GrantAccess::ReadDir
        } else {
            GrantAccess::ReadFile
        };
        let key = join_path(&sandbox_path, "read");
        grants.push(grant(access, path, key, GrantedBy::User));
    }
    if let Some(path) = &sandbox.write_dir {
        let key = join_path(&sandbox_path, "write");
        grants.push(grant(write_access(path), path, key, GrantedBy::User));
    }
    for name in &sandbox.env {
        grants.push(Grant {
            instance: instance.to_owned(),
            access: GrantAccess::Env,
            target: name.clone(),
            key: join_path(&sandbox_path, "env"),
            by: GrantedBy::User,
        });
    }
    if !sandbox.grant_paths {
        return grants;
    }
    let path_options = found
        .info
        .options
        .iter()
        .filter(|o| o.ty == OptionType::Path);
    for option in path_options {
        let by = if table.get(&option.name).is_some() {
            GrantedBy::User
        } else if found.shipped {
            GrantedBy::ShippedDefault
        } else {
            // A plugin's own default grants nothing.
            continue;
        };
        let Some(value) = config.get(&option.name).and_then(Value::as_str) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let target = normalize(Path::new(value));
        config.insert(
            option.name.clone(),
            Value::String(target.display().to_string()),
        );
        let key = join_path(&table_path, &option.name);
        if found.info.kind == PluginKind::Sink {
            // A sink writes where its path points; the first such path (or
            // `sandbox.write`) is its one writable grant.
            if sandbox.write_dir.is_none() {
                grants.push(grant(write_access(&target), &target, key, by));
                sandbox.write_dir = Some(target);
            }
            continue;
        }
        let access = if target.is_dir() {
            GrantAccess::ReadDir
        } else if target.exists() {
            GrantAccess::ReadFile
        } else {
            // Nothing there to read; the plugin reports the missing file itself.
            continue;
        };
        if !sandbox.read_dirs.contains(&target) {
            grants.push(grant(access, &target, key, by));
            sandbox.read_dirs.push(target);
        }
    }
    grants
}

fn write_access(path: &Path) -> GrantAccess {
    if path.is_dir() {
        GrantAccess::WriteDir
    } else {
        GrantAccess::WriteFile
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system: the path the plugin
/// is told and the path its grant opens must be the same string.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use std::path::Path;

    #[test]
    fn normalize_removes_dots_and_climbs_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../../etc")), Path::new("/etc"));
        assert_eq!(
            normalize(Path::new("/data/x.json")),
            Path::new("/data/x.json")
        );
    }
}
