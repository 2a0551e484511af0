//! Whole-table edits a study makes to a manifest: inheriting a `base` manifest,
//! taking out the study's own tables, and dropping the backend instances a
//! configuration does not use.
//!
//! They live here, next to the raw tree, because they must keep every key's
//! location right: a key inherited from the base file still points into the base
//! file ([`Loc::Included`]), so `resolve` errors name the file to fix.

use crate::keys::PLUGINS_TABLE;
use crate::raw::{RawEntry, RawItem, RawManifest, RawTable, RawValue};
use crate::spans::Loc;

impl RawManifest {
    /// This manifest over `base`: tables are merged key by key (recursively),
    /// and any other value written here replaces the base's. Keys keep the base's
    /// order, new ones follow. The result is this manifest (its name and
    /// directory); keys that come from `base` point into the base file.
    pub fn inherit(self, base: RawManifest) -> RawManifest {
        let mut root = base.root;
        relocate_table(&mut root, &base.source_name, &base.dir);
        merge_table(&mut root, self.root);
        RawManifest { root, ..self }
    }

    /// Remove the top-level entry `name` (e.g. a study's `[sweep]`) and return it.
    pub fn take_table(&mut self, name: &str) -> Option<RawEntry> {
        let at = self.root.entries.iter().position(|e| e.key == name)?;
        Some(self.root.entries.remove(at))
    }

    /// The instance names of `[plugins.<instance>]`, in file order.
    pub fn plugin_instances(&self) -> Vec<String> {
        match self.root.get(PLUGINS_TABLE).map(|e| &e.item.value) {
            Some(RawValue::Table(t)) => t.entries.iter().map(|e| e.key.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// Remove `[plugins.<instance>]` and return it; `None` when there is none.
    pub fn remove_plugin(&mut self, instance: &str) -> Option<RawEntry> {
        let plugins = match self.root.get_mut(PLUGINS_TABLE).map(|e| &mut e.item.value) {
            Some(RawValue::Table(t)) => t,
            _ => return None,
        };
        let at = plugins.entries.iter().position(|e| e.key == instance)?;
        Some(plugins.entries.remove(at))
    }
}

/// Write `over` into `into`: tables merge, everything else replaces.
fn merge_table(into: &mut RawTable, over: RawTable) {
    for entry in over.entries {
        match into.get_mut(&entry.key) {
            Some(existing) => match (&mut existing.item.value, entry.item.value) {
                (RawValue::Table(base), RawValue::Table(top)) => {
                    merge_table(base, top);
                    // The overriding file's header is where people look first.
                    existing.key_loc = entry.key_loc;
                    existing.item.loc = entry.item.loc;
                }
                (_, value) => {
                    existing.key_loc = entry.key_loc;
                    existing.item = RawItem {
                        value,
                        loc: entry.item.loc,
                        literal: entry.item.literal,
                    };
                }
            },
            None => into.entries.push(entry),
        }
    }
}

/// Make the file locations of a base manifest's keys name the base file.
fn relocate_table(table: &mut RawTable, file: &str, dir: &std::path::Path) {
    for entry in &mut table.entries {
        relocate(&mut entry.key_loc, file, dir);
        relocate_item(&mut entry.item, file, dir);
    }
}

fn relocate_item(item: &mut RawItem, file: &str, dir: &std::path::Path) {
    relocate(&mut item.loc, file, dir);
    match &mut item.value {
        RawValue::Table(t) => relocate_table(t, file, dir),
        RawValue::Array(items) => items.iter_mut().for_each(|i| relocate_item(i, file, dir)),
        _ => {}
    }
}

fn relocate(loc: &mut Loc, file: &str, dir: &std::path::Path) {
    if let Loc::File { line, column } = *loc {
        *loc = Loc::Included {
            file: file.to_owned(),
            dir: dir.to_path_buf(),
            line,
            column,
        };
    }
}
