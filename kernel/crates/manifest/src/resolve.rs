//! Raw manifest → [`Plan`]: every table checked, every plugin looked up, every
//! default filled. All problems are collected so one run of `llem config validate`
//! shows everything to fix, not one error at a time.

use serde_json::Map;

use crate::catalog::{LookupError, PluginCatalog};
use crate::check::{TableCheck, absolute};
use crate::error::ManifestError;
use crate::grants::{check_native_sandbox, grants_for};
use crate::keys::{
    EXPERIMENT, KeySpec, LOAD, MEASUREMENT, PLUGINS_TABLE, RESERVED_PLUGIN_KEYS, SANDBOX, Section,
    top_level_names,
};
use crate::plan::{Experiment, Load, Measurement, Plan, PluginPlan, SandboxGrants};
use crate::raw::{RawEntry, RawManifest, RawTable, RawValue};
use crate::spans::{Loc, join_path};
use crate::suggest::did_you_mean;

/// Validate `raw` and resolve its plugins through `catalog`.
pub fn resolve(raw: &RawManifest, catalog: &dyn PluginCatalog) -> Result<Plan, Vec<ManifestError>> {
    let mut errors = Vec::new();
    check_top_level(raw, &mut errors);

    let experiment = resolve_section::<Experiment>(raw, &EXPERIMENT, &mut errors);
    let load = resolve_section::<Load>(raw, &LOAD, &mut errors);
    let measurement = resolve_section::<Measurement>(raw, &MEASUREMENT, &mut errors);

    let mut plugins = Vec::new();
    if let Some(table) = table_at_top(raw, PLUGINS_TABLE, &mut errors) {
        for entry in &table.entries {
            if let Some(plugin) = resolve_plugin(raw, entry, catalog, &mut errors) {
                plugins.push(plugin);
            }
        }
    }

    if errors.is_empty() {
        crate::combine::check(raw, &plugins, &mut errors);
    }

    match (experiment, load, measurement) {
        (Some(experiment), Some(load), Some(measurement)) if errors.is_empty() => Ok(Plan {
            source_name: raw.source_name.clone(),
            experiment,
            load,
            measurement,
            plugins,
        }),
        _ => {
            // Document order reads best; command-line edits (no position) come last.
            errors.sort_by_key(|e| (e.line.is_none(), e.line, e.column));
            Err(errors)
        }
    }
}

fn check_top_level(raw: &RawManifest, errors: &mut Vec<ManifestError>) {
    let known = top_level_names();
    for entry in &raw.root.entries {
        if known.contains(&entry.key.as_str()) {
            continue;
        }
        let what = if matches!(entry.item.value, RawValue::Table(_)) {
            "table"
        } else {
            "top-level key"
        };
        let help = did_you_mean(&entry.key, known.iter().copied())
            .unwrap_or_else(|| format!("known tables: {}", known.join(", ")));
        errors.push(
            ManifestError::at(
                &raw.source_name,
                &entry.key_loc,
                join_path("", &entry.key),
                format!("unknown {what} `{}`", entry.key),
            )
            .with_help(help),
        );
    }
}

/// The top-level table `name`, `None` (and an error) when it is not a table.
/// An absent table reads as empty, so its defaults apply.
fn table_at_top<'r>(
    raw: &'r RawManifest,
    name: &str,
    errors: &mut Vec<ManifestError>,
) -> Option<&'r RawTable> {
    static EMPTY: RawTable = RawTable {
        entries: Vec::new(),
    };
    match raw.root.get(name) {
        None => Some(&EMPTY),
        Some(entry) => as_table(raw, entry, name, errors),
    }
}

fn as_table<'r>(
    raw: &RawManifest,
    entry: &'r RawEntry,
    path: &str,
    errors: &mut Vec<ManifestError>,
) -> Option<&'r RawTable> {
    match &entry.item.value {
        RawValue::Table(t) => Some(t),
        other => {
            errors.push(
                ManifestError::at(
                    &raw.source_name,
                    &entry.item.loc,
                    path,
                    format!("`{path}` must be a table, found {}", other.describe()),
                )
                .with_help(format!("write `[{path}]` on its own line, then its keys")),
            );
            None
        }
    }
}

/// A top-level table with fixed keys, typed as `T`.
fn resolve_section<T: serde::de::DeserializeOwned>(
    raw: &RawManifest,
    section: &Section,
    errors: &mut Vec<ManifestError>,
) -> Option<T> {
    let table = table_at_top(raw, section.name, errors)?;
    let anchor = raw
        .root
        .get(section.name)
        .map_or(Loc::Nowhere, |e| e.anchor().clone());
    let before = errors.len();
    let specs = (section.keys)();
    let map = TableCheck {
        raw,
        table,
        path: section.name,
        anchor: &anchor,
        specs: &specs,
        handled_elsewhere: &[],
    }
    .run(errors);
    if errors.len() > before {
        return None;
    }
    typed(raw, map, section.name, &anchor, errors)
}

/// The checked JSON as its typed struct. The checks above guarantee types and
/// bounds, so a failure here is a bug in a key table; still, report it, don't panic.
fn typed<T: serde::de::DeserializeOwned>(
    raw: &RawManifest,
    map: Map<String, serde_json::Value>,
    path: &str,
    anchor: &Loc,
    errors: &mut Vec<ManifestError>,
) -> Option<T> {
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| {
            errors.push(ManifestError::at(
                &raw.source_name,
                anchor,
                path,
                format!("internal error reading [{path}]: {e}"),
            ))
        })
        .ok()
}

fn resolve_plugin(
    raw: &RawManifest,
    entry: &RawEntry,
    catalog: &dyn PluginCatalog,
    errors: &mut Vec<ManifestError>,
) -> Option<PluginPlan> {
    let instance = &entry.key;
    let path = join_path(PLUGINS_TABLE, instance);
    let table = as_table(raw, entry, &path, errors)?;
    let anchor = entry.anchor();
    let before = errors.len();

    // Which plugin: `plugin = "…"` when given, else the instance name itself.
    let (plugin_name, name_loc) = match table.get("plugin") {
        Some(e) => (reserved_string(raw, e, &path, errors)?, e.item.loc.clone()),
        None => (instance.clone(), anchor.clone()),
    };
    let explicit_path = match table.get("path") {
        Some(e) => {
            let s = reserved_string(raw, e, &path, errors)?;
            Some(absolute(raw.base_dir(&e.item.loc), &s))
        }
        None => None,
    };
    let sandbox = resolve_sandbox(raw, table, &path, anchor, errors);
    let sample_interval_ms = sample_interval(raw, table, &path, errors);

    let found = match catalog.lookup(&plugin_name, explicit_path.as_deref()) {
        Ok(found) => found,
        Err(LookupError::Unknown {
            suggestions,
            available,
        }) => {
            let mut help = suggestions
                .first()
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            if available.is_empty() {
                help.push_str("no plugins are installed; see `llem plugins list`");
            } else {
                help.push_str(&format!("available: {}", available.join(", ")));
            }
            errors.push(
                ManifestError::at(
                    &raw.source_name,
                    &name_loc,
                    &path,
                    format!("unknown plugin `{plugin_name}` in [{path}]"),
                )
                .with_help(help),
            );
            return None;
        }
        Err(LookupError::Broken(message)) => {
            errors.push(ManifestError::at(
                &raw.source_name,
                &name_loc,
                &path,
                format!("plugin `{plugin_name}` in [{path}] failed to load: {message}"),
            ));
            return None;
        }
    };

    // A plugin may not declare an option the kernel reserves: its value would be
    // taken by the kernel and never reach the plugin.
    let mut specs: Vec<KeySpec> = Vec::with_capacity(found.info.options.len());
    for option in &found.info.options {
        if RESERVED_PLUGIN_KEYS.contains(&option.name.as_str()) {
            errors.push(
                ManifestError::at(
                    &raw.source_name,
                    anchor,
                    join_path(&path, &option.name),
                    format!("plugin `{}` declares option `{}`, a key llem reserves in every plugin table", found.full_name, option.name),
                )
                .with_help(format!("rename the option in the plugin; reserved keys: {}", RESERVED_PLUGIN_KEYS.join(", "))),
            );
        } else {
            specs.push(KeySpec::from(option.clone()));
        }
    }
    let mut config = TableCheck {
        raw,
        table,
        path: &path,
        anchor,
        specs: &specs,
        handled_elsewhere: &RESERVED_PLUGIN_KEYS,
    }
    .run(errors);

    check_native_sandbox(raw, table, &path, &found, errors);
    if errors.len() > before {
        return None;
    }
    let mut sandbox = sandbox?;
    let grants = if found.sandboxed {
        grants_for(instance, table, &found, &mut config, &mut sandbox)
    } else {
        Vec::new()
    };
    Some(PluginPlan {
        instance: instance.clone(),
        kind: found.info.kind,
        full_name: found.full_name,
        location: found.location,
        info: found.info,
        config,
        sandbox,
        sandboxed: found.sandboxed,
        grants,
        sample_interval_ms: sample_interval_ms?,
    })
}

/// `sample_interval_ms` in a plugin table: `Some(None)` when absent, `None` after an error.
fn sample_interval(
    raw: &RawManifest,
    table: &RawTable,
    table_path: &str,
    errors: &mut Vec<ManifestError>,
) -> Option<Option<u32>> {
    let Some(entry) = table.get("sample_interval_ms") else {
        return Some(None);
    };
    let key_path = join_path(table_path, &entry.key);
    match entry.item.value {
        RawValue::Integer(ms) if (1..=60_000).contains(&ms) => Some(Some(ms as u32)),
        ref other => {
            errors.push(
                ManifestError::at(
                    &raw.source_name,
                    &entry.item.loc,
                    &key_path,
                    format!(
                        "`{key_path}` must be an integer number of milliseconds from 1 to 60000, found {}",
                        other.describe()
                    ),
                )
                .with_help("e.g. `sample_interval_ms = 50` samples this source at 20 Hz"),
            );
            None
        }
    }
}

fn resolve_sandbox(
    raw: &RawManifest,
    table: &RawTable,
    plugin_path: &str,
    plugin_anchor: &Loc,
    errors: &mut Vec<ManifestError>,
) -> Option<SandboxGrants> {
    static EMPTY: RawTable = RawTable {
        entries: Vec::new(),
    };
    let path = join_path(plugin_path, SANDBOX.name);
    let (sandbox, anchor) = match table.get(SANDBOX.name) {
        Some(e) => (as_table(raw, e, &path, errors)?, e.anchor().clone()),
        None => (&EMPTY, plugin_anchor.clone()),
    };
    let before = errors.len();
    let specs = (SANDBOX.keys)();
    let map = TableCheck {
        raw,
        table: sandbox,
        path: &path,
        anchor: &anchor,
        specs: &specs,
        handled_elsewhere: &[],
    }
    .run(errors);
    crate::grants::check_granted_paths_exist(raw, sandbox, &path, &map, errors);
    if errors.len() > before {
        return None;
    }
    typed(raw, map, &path, &anchor, errors)
}

/// The string value of a reserved key (`plugin`, `path`).
fn reserved_string(
    raw: &RawManifest,
    entry: &RawEntry,
    table_path: &str,
    errors: &mut Vec<ManifestError>,
) -> Option<String> {
    match (&entry.item.value, &entry.item.literal) {
        (RawValue::String(s), _) => Some(s.clone()),
        (_, Some(literal)) => Some(literal.clone()),
        (other, None) => {
            let key_path = join_path(table_path, &entry.key);
            errors.push(ManifestError::at(
                &raw.source_name,
                &entry.item.loc,
                &key_path,
                format!("`{key_path}` must be a string, found {}", other.describe()),
            ));
            None
        }
    }
}
