//! Command-line edits of a raw manifest: `--plugins a,b` and `--set key=value`.
//!
//! Edits change the raw tree and stamp what they write with the flag, so the
//! checks in `resolve` treat them exactly like file contents and their errors
//! read `--set vllm.max_num_seq: …` instead of a file position.

use llem_sdk::PluginKind;
use toml::de::{DeTable, DeValue};

use crate::error::ManifestError;
use crate::keys::{PLUGINS_TABLE, SECTIONS};
use crate::raw::{Converter, Locate, RawEntry, RawItem, RawManifest, RawTable, RawValue};
use crate::spans::{Loc, join_path};

impl RawManifest {
    /// `--plugins name`: add an empty `[plugins.<name>]` unless the manifest already
    /// has an instance of that plugin (under its short or full name).
    pub fn add_plugin(&mut self, name: &str) -> Result<(), ManifestError> {
        let name = name.trim();
        let loc = Loc::CommandLine("--plugins".to_owned());
        if name.is_empty() {
            return Err(ManifestError::at(
                &self.source_name,
                &loc,
                PLUGINS_TABLE,
                "empty plugin name",
            )
            .with_help("write plugin names separated by commas, e.g. `--plugins vllm,nvml`"));
        }
        let source_name = self.source_name.clone();
        let plugins = child_table(&mut self.root, PLUGINS_TABLE, "", &loc, &source_name)?;
        if instances_of(plugins, name).is_empty() {
            plugins.set(name, loc.clone(), table_item(loc));
        }
        Ok(())
    }

    /// `--set key=value`. `key` is `experiment.<key>` (or another top-level
    /// table), `plugins.<instance>.<option>`, or `<instance>.<option>` for short.
    /// `value` is read as a TOML value (`64`, `true`, `["a", "b"]`, `"quoted"`),
    /// and otherwise taken as a bare string (`bfloat16`).
    pub fn apply_set(&mut self, assignment: &str) -> Result<(), ManifestError> {
        let usage = "write `--set <plugin>.<option>=<value>` or `--set experiment.<key>=<value>`";
        let Some((lhs, rhs)) = assignment.split_once('=') else {
            let loc = Loc::CommandLine(format!("--set {assignment}"));
            return Err(
                ManifestError::at(&self.source_name, &loc, "", "missing `=`").with_help(usage),
            );
        };
        let lhs = lhs.trim();
        let label = Loc::CommandLine(format!("--set {lhs}"));
        let fail = |message: String| ManifestError::at(&self.source_name, &label, lhs, message);

        let mut path = key_path(lhs)
            .ok_or_else(|| fail(format!("`{lhs}` is not a valid key")).with_help(usage))?;
        let is_top = |k: &str| k == PLUGINS_TABLE || SECTIONS.iter().any(|s| s.name == k);
        if !path.first().is_some_and(|k| is_top(k)) {
            path.insert(0, PLUGINS_TABLE.to_owned());
        }
        if path.len() < 2 || (path[0] == PLUGINS_TABLE && path.len() < 3) {
            return Err(fail(format!("`{lhs}` names a table, not a key")).with_help(usage));
        }
        // `--set vllm.x=1` edits the manifest's `[plugins.backend-vllm]` if that is how it is written.
        if path[0] == PLUGINS_TABLE
            && let Some(RawValue::Table(plugins)) =
                self.root.get(PLUGINS_TABLE).map(|e| &e.item.value)
        {
            let matches = instances_of(plugins, &path[1]);
            match matches.as_slice() {
                [] => {}
                [one] => path[1] = one.clone(),
                many if many.contains(&path[1]) => {}
                many => {
                    return Err(fail(format!(
                        "`{}` matches several plugin instances: {}",
                        path[1],
                        many.join(", ")
                    ))
                    .with_help("name the instance, e.g. `--set <instance>.<option>=<value>`"));
                }
            }
        }

        let item = parse_value(rhs.trim(), &label, &self.source_name)?;
        let source_name = self.source_name.clone();
        let (last, parents) = path
            .split_last()
            .ok_or_else(|| fail("empty key".to_owned()))?;
        let mut table = &mut self.root;
        let mut prefix = String::new();
        for key in parents {
            table = child_table(table, key, &prefix, &label, &source_name)?;
            prefix = join_path(&prefix, key);
        }
        table.set(last, label.clone(), item);
        Ok(())
    }
}

/// The table under `key`, created (stamped with `loc`) when absent.
fn child_table<'t>(
    table: &'t mut RawTable,
    key: &str,
    prefix: &str,
    loc: &Loc,
    source_name: &str,
) -> Result<&'t mut RawTable, ManifestError> {
    if table.get(key).is_none() {
        table.entries.push(RawEntry {
            key: key.to_owned(),
            key_loc: loc.clone(),
            item: table_item(loc.clone()),
        });
    }
    let path = join_path(prefix, key);
    match table.get_mut(key).map(|e| &mut e.item) {
        Some(RawItem {
            value: RawValue::Table(t),
            ..
        }) => Ok(t),
        Some(item) => Err(ManifestError::at(
            source_name,
            &item.loc,
            &path,
            format!("`{path}` is {}, not a table", item.value.describe()),
        )),
        None => Err(ManifestError::at(
            source_name,
            loc,
            &path,
            format!("`{path}` could not be created"),
        )),
    }
}

fn table_item(loc: Loc) -> RawItem {
    RawItem {
        value: RawValue::Table(RawTable::default()),
        loc,
        literal: None,
    }
}

/// The key path of a TOML key (`vllm.max_num_seqs`, `plugins."my.gpu".x`),
/// parsed by toml itself so quoting works as in a file.
fn key_path(key: &str) -> Option<Vec<String>> {
    if key.is_empty() {
        return None;
    }
    let doc = format!("{key} = 0");
    let parsed = DeTable::parse(&doc).ok()?;
    let mut path = Vec::new();
    let mut table = parsed.get_ref();
    loop {
        let mut entries = table.iter();
        let (k, v) = entries.next()?;
        path.push(k.get_ref().to_string());
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return Some(path),
        }
    }
}

/// A `--set` value: TOML when it parses, else the bare string.
fn parse_value(text: &str, loc: &Loc, source_name: &str) -> Result<RawItem, ManifestError> {
    let mut item = match DeValue::parse(text) {
        Ok(value) => Converter {
            locate: Locate::Fixed(loc.clone()),
            source_name,
        }
        .item(&value)?,
        Err(_) => RawItem {
            value: RawValue::String(text.to_owned()),
            loc: loc.clone(),
            literal: None,
        },
    };
    item.literal = Some(text.to_owned());
    Ok(item)
}

/// Instances in the `[plugins]` table that are `name`: same key, or same plugin
/// by short/full name (`vllm` ~ `backend-vllm`), or `plugin = "<name>"`.
fn instances_of(plugins: &RawTable, name: &str) -> Vec<String> {
    plugins
        .entries
        .iter()
        .filter(|e| {
            let declared = match &e.item.value {
                RawValue::Table(t) => match t.get("plugin").map(|p| &p.item.value) {
                    Some(RawValue::String(s)) => Some(s.as_str()),
                    _ => None,
                },
                _ => None,
            };
            match declared {
                Some(plugin) => e.key == name || same_plugin(plugin, name),
                None => same_plugin(&e.key, name),
            }
        })
        .map(|e| e.key.clone())
        .collect()
}

/// `nvml` and `energy-nvml` name the same plugin: full names are `<kind>-<short>`.
fn same_plugin(a: &str, b: &str) -> bool {
    a == b
        || PluginKind::ALL.iter().any(|k| {
            let prefix = format!("{}-", k.as_str());
            a.strip_prefix(&prefix) == Some(b) || b.strip_prefix(&prefix) == Some(a)
        })
}
