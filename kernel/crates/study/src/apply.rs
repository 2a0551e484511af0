//! A configuration point applied to the study's base manifest: the raw manifest
//! of one run, ready for `llem_manifest::resolve` like any other.

use llem_manifest::{Loc, ManifestError, RawItem, RawManifest, RawTable, RawValue};

use crate::expand::ConfigPoint;
use crate::value::toml_text;

/// The manifest of `point`: `base` with the point's backend selected, then each
/// of its sets applied as `--set` would.
///
/// Selecting a backend removes every other `[plugins.<instance>]` for which
/// `is_backend(instance)` is true (only the caller's plugin catalog knows
/// plugin kinds). A set that targets an instance the point does not have —
/// removed by the selection, or never in the base — is an error rather than a
/// new, half-configured plugin: the caller skips the point with this reason.
/// Values written by a set point at the study file, where they were written.
pub fn apply(
    base: &RawManifest,
    point: &ConfigPoint,
    is_backend: impl Fn(&str) -> bool,
) -> Result<RawManifest, ManifestError> {
    let mut raw = base.clone();
    let mut removed = Vec::new();
    if let Some(keep) = &point.backend {
        let instances = raw.plugin_instances();
        if !instances.contains(keep) {
            let loc = point.backend_loc.clone().unwrap_or(Loc::Nowhere);
            return Err(ManifestError::at(
                &raw.source_name,
                &loc,
                "backend",
                format!("`backend = \"{keep}\"` names no `[plugins.{keep}]` of the manifest"),
            ));
        }
        for instance in instances {
            if instance != *keep && is_backend(&instance) {
                raw.remove_plugin(&instance);
                removed.push(instance);
            }
        }
    }
    for set in &point.sets {
        let before = raw.plugin_instances();
        let key = set.key.trim();
        raw.apply_set(&format!("{key}={}", toml_text(&set.value)))
            .map_err(|e| at_set(e, &raw.source_name, &set.loc))?;
        let added = raw
            .plugin_instances()
            .into_iter()
            .find(|i| !before.contains(i));
        if let Some(instance) = added {
            let was_removed = removed.iter().any(|r| same_instance(r, &instance));
            let (message, help) = if was_removed {
                (
                    format!(
                        "`{key}` sets an option of `{instance}`, which this configuration does not run"
                    ),
                    format!(
                        "it selects backend `{}`; move the key into the alternative that selects `{instance}`",
                        point.backend.as_deref().unwrap_or_default()
                    ),
                )
            } else {
                let help = llem_manifest::suggest(&instance, before.iter().map(String::as_str))
                    .first()
                    .map_or_else(
                        || format!("the manifest's plugin instances: {}", before.join(", ")),
                        |best| format!("did you mean `{best}`?"),
                    );
                (
                    format!(
                        "`{key}` sets an option of `{instance}`, which the manifest has no `[plugins.{instance}]` for"
                    ),
                    help,
                )
            };
            return Err(ManifestError::at(&raw.source_name, &set.loc, key, message).with_help(help));
        }
        let written = Loc::CommandLine(format!("--set {key}"));
        relocate(&mut raw.root, &written, &set.loc);
    }
    Ok(raw)
}

/// `vllm` and `backend-vllm` are the same instance to `--set`.
fn same_instance(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!("-{b}")) || b.ends_with(&format!("-{a}"))
}

/// An error of `apply_set` points at the set's place in the study file.
fn at_set(e: ManifestError, source_name: &str, loc: &Loc) -> ManifestError {
    if !e.origin.starts_with("--") {
        return e;
    }
    let at = ManifestError::at(source_name, loc, "", "");
    ManifestError {
        origin: at.origin,
        line: at.line,
        column: at.column,
        ..e
    }
}

/// What `apply_set` stamped with the flag `from` now reads as file contents at `to`.
fn relocate(table: &mut RawTable, from: &Loc, to: &Loc) {
    for entry in &mut table.entries {
        if entry.key_loc == *from {
            entry.key_loc = to.clone();
        }
        relocate_item(&mut entry.item, from, to);
    }
}

fn relocate_item(item: &mut RawItem, from: &Loc, to: &Loc) {
    if item.loc == *from {
        item.loc = to.clone();
        item.literal = None;
    }
    match &mut item.value {
        RawValue::Table(t) => relocate(t, from, to),
        RawValue::Array(items) => items.iter_mut().for_each(|i| relocate_item(i, from, to)),
        _ => {}
    }
}
