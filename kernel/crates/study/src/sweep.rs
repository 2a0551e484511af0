//! `[sweep]` and `[[experiments]]` read into factors: the parts a study's
//! configuration points are combined from.
//!
//! Every level of every factor is a list of overrides (`--set` keys and values)
//! plus, optionally, the backend instance it selects; each keeps where it was
//! written so a failing override points at the study file.

use llem_manifest::{Loc, ManifestError, RawEntry, RawItem, RawManifest, RawTable, RawValue};

use crate::value::to_toml;

/// One override: `key` as `--set` takes it, its value, where it was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Set {
    pub key: String,
    pub value: toml::Value,
    #[serde(skip)]
    pub loc: Loc,
}

/// One choice of one factor: what it sets, and its label when it has a name.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Level {
    pub name: Option<String>,
    pub backend: Option<(String, Loc)>,
    pub sets: Vec<Set>,
}

/// A factor: one of its levels goes into each configuration point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Factor {
    pub levels: Vec<Level>,
}

/// Everything a study varies: factors combined in a cartesian product (file
/// order: axes, `together` groups, `one_of` groups), then explicit points.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Design {
    pub factors: Vec<Factor>,
    pub explicit: Vec<Level>,
}

/// The key that selects a backend instance instead of setting an option.
pub const BACKEND_KEY: &str = "backend";
const TOGETHER: &str = "together";
const ONE_OF: &str = "one_of";
const ALTERNATIVES: &str = "alternatives";

/// Reads the study's tables; `raw` gives the file name for errors.
pub(crate) struct Reader<'r> {
    pub raw: &'r RawManifest,
}

impl Reader<'_> {
    fn error(&self, loc: &Loc, key_path: &str, message: String) -> ManifestError {
        ManifestError::at(&self.raw.source_name, loc, key_path, message)
    }

    /// `[sweep]` (optional) and `[[experiments]]` (optional) into a design.
    pub(crate) fn design(
        &self,
        sweep: Option<&RawEntry>,
        experiments: Option<&RawEntry>,
    ) -> Result<Design, ManifestError> {
        let mut design = Design::default();
        if let Some(entry) = sweep {
            let table = self.table(&entry.item, "sweep")?;
            let mut groups = Vec::new();
            for e in &table.entries {
                match e.key.as_str() {
                    TOGETHER => groups.extend(self.groups(e, |r, t, p| r.together(t, p))?),
                    ONE_OF => groups.extend(self.groups(e, |r, t, p| r.one_of(t, p))?),
                    _ => {
                        for (key, item, key_loc) in flatten(&e.key, e) {
                            design.factors.push(self.axis(&key, item, &key_loc)?);
                        }
                    }
                }
            }
            // Groups follow the axes whatever their place in the file: TOML
            // writes `[[sweep.together]]` after `[sweep]`'s keys anyway.
            design.factors.extend(groups);
        }
        if let Some(entry) = experiments {
            let RawValue::Array(items) = &entry.item.value else {
                return Err(self
                    .error(&entry.item.loc, "experiments", format!(
                        "`experiments` must be a list of tables, found {}",
                        entry.item.value.describe()
                    ))
                    .with_help("write each explicit configuration as `[[experiments]]` followed by its `--set` keys"));
            };
            for (i, item) in items.iter().enumerate() {
                let path = format!("experiments[{i}]");
                let table = self.table(item, &path)?;
                design.explicit.push(self.level(table, &path, true)?);
            }
        }
        Ok(design)
    }

    fn table<'t>(&self, item: &'t RawItem, path: &str) -> Result<&'t RawTable, ManifestError> {
        match &item.value {
            RawValue::Table(t) => Ok(t),
            other => Err(self.error(
                &item.loc,
                path,
                format!("`{path}` must be a table, found {}", other.describe()),
            )),
        }
    }

    /// `[[sweep.<group>]]`: a list of tables, each read by `read`.
    fn groups(
        &self,
        entry: &RawEntry,
        read: impl Fn(&Self, &RawTable, &str) -> Result<Factor, ManifestError>,
    ) -> Result<Vec<Factor>, ManifestError> {
        let RawValue::Array(items) = &entry.item.value else {
            return Err(self
                .error(
                    &entry.item.loc,
                    &format!("sweep.{}", entry.key),
                    format!(
                        "`sweep.{}` must be a list of tables, found {}",
                        entry.key,
                        entry.item.value.describe()
                    ),
                )
                .with_help(format!("write each group as `[[sweep.{}]]`", entry.key)));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("sweep.{}[{i}]", entry.key);
                read(self, self.table(item, &path)?, &path)
            })
            .collect()
    }

    /// `"key" = [v1, v2, …]`: one factor, a level per value.
    fn axis(&self, key: &str, item: &RawItem, key_loc: &Loc) -> Result<Factor, ManifestError> {
        let path = format!("sweep.{key}");
        if !key.contains('.') && key != BACKEND_KEY {
            let help = llem_manifest::suggest(key, [TOGETHER, ONE_OF, BACKEND_KEY])
                .first()
                .map_or_else(
                    || "an axis is `\"<plugin>.<option>\" = [values]` or `\"experiment.<key>\" = [values]`".to_owned(),
                    |best| format!("did you mean `{best}`?"),
                );
            return Err(self
                .error(key_loc, &path, format!("unknown key `{key}` in [sweep]"))
                .with_help(help));
        }
        let values = self.values(item, &path)?;
        let levels = values
            .iter()
            .map(|v| self.override_level(key, v))
            .collect::<Result<_, _>>()?;
        Ok(Factor { levels })
    }

    /// The values of an axis: a non-empty list.
    fn values<'i>(&self, item: &'i RawItem, path: &str) -> Result<&'i [RawItem], ManifestError> {
        match &item.value {
            RawValue::Array(values) if values.is_empty() => Err(self
                .error(&item.loc, path, format!("`{path}` lists no values"))
                .with_help("give at least one value, e.g. `[8, 32]`, or remove the key")),
            RawValue::Array(values) => Ok(values),
            other => Err(self
                .error(
                    &item.loc,
                    path,
                    format!("`{path}` must be a list of values, found {}", other.describe()),
                )
                .with_help("write the values to try as a list, e.g. `[8, 32]`; a single value belongs in the base manifest")),
        }
    }

    /// A level that sets `key` to `value` (or selects a backend).
    fn override_level(&self, key: &str, value: &RawItem) -> Result<Level, ManifestError> {
        let mut level = Level::default();
        self.add(&mut level, key, value)?;
        Ok(level)
    }

    fn add(&self, level: &mut Level, key: &str, value: &RawItem) -> Result<(), ManifestError> {
        if key == BACKEND_KEY {
            let RawValue::String(instance) = &value.value else {
                return Err(self.error(
                    &value.loc,
                    key,
                    format!(
                        "`backend` names a `[plugins.<instance>]` and must be a string, found {}",
                        value.value.describe()
                    ),
                ));
            };
            level.backend = Some((instance.clone(), value.loc.clone()));
        } else {
            level.sets.push(Set {
                key: key.to_owned(),
                value: to_toml(value),
                loc: value.loc.clone(),
            });
        }
        Ok(())
    }

    /// `[[sweep.together]]`: lists of one length, zipped into levels.
    fn together(&self, table: &RawTable, path: &str) -> Result<Factor, ManifestError> {
        let mut columns: Vec<(String, &[RawItem], Loc)> = Vec::new();
        for entry in &table.entries {
            for (key, item, key_loc) in flatten(&entry.key, entry) {
                let values = self.values(item, &format!("{path}.{key}"))?;
                columns.push((key, values, key_loc));
            }
        }
        let Some((first_key, first, _)) = columns.first() else {
            return Err(self
                .error(&Loc::Nowhere, path, format!("`{path}` is empty"))
                .with_help("list the keys that move together, e.g. `\"experiment.model\" = [\"a\", \"b\"]`"));
        };
        if let Some((key, values, key_loc)) = columns.iter().find(|c| c.1.len() != first.len()) {
            return Err(self
                .error(
                    key_loc,
                    path,
                    format!(
                        "the lists of a `together` group must have one length: `{first_key}` has {}, `{key}` has {}",
                        first.len(),
                        values.len()
                    ),
                )
                .with_help("values at the same position move together; give every key one value per configuration"));
        }
        let levels = (0..first.len())
            .map(|i| {
                let mut level = Level::default();
                for (key, values, _) in &columns {
                    self.add(&mut level, key, &values[i])?;
                }
                Ok(level)
            })
            .collect::<Result<_, ManifestError>>()?;
        Ok(Factor { levels })
    }

    /// `[[sweep.one_of]]`: `alternatives = [ {…}, {…} ]`, a level each.
    fn one_of(&self, table: &RawTable, path: &str) -> Result<Factor, ManifestError> {
        let mut alternatives = None;
        for entry in &table.entries {
            if entry.key == ALTERNATIVES {
                alternatives = Some(entry);
            } else {
                let help = llem_manifest::suggest(&entry.key, [ALTERNATIVES])
                    .first()
                    .map_or_else(
                        || {
                            "a `one_of` group has one key, `alternatives = [ { … }, { … } ]`"
                                .to_owned()
                        },
                        |best| format!("did you mean `{best}`?"),
                    );
                return Err(self
                    .error(
                        &entry.key_loc,
                        &format!("{path}.{}", entry.key),
                        format!("unknown key `{}` in [[sweep.one_of]]", entry.key),
                    )
                    .with_help(help));
            }
        }
        let Some(entry) = alternatives else {
            return Err(self
                .error(
                    &Loc::Nowhere,
                    path,
                    format!("`{path}` has no `alternatives`"),
                )
                .with_help(
                    "write `alternatives = [ { backend = \"vllm\" }, { backend = \"pytorch\" } ]`",
                ));
        };
        let apath = format!("{path}.{ALTERNATIVES}");
        let items = self.values(&entry.item, &apath)?;
        let levels = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let p = format!("{apath}[{i}]");
                self.level(self.table(item, &p)?, &p, true)
            })
            .collect::<Result<_, _>>()?;
        Ok(Factor { levels })
    }

    /// A table of overrides: an alternative or an explicit experiment. `name`
    /// (when `named`) labels it, `backend` selects a backend.
    fn level(&self, table: &RawTable, path: &str, named: bool) -> Result<Level, ManifestError> {
        let mut level = Level::default();
        for entry in &table.entries {
            if named && entry.key == "name" {
                let RawValue::String(name) = &entry.item.value else {
                    return Err(self.error(
                        &entry.item.loc,
                        &format!("{path}.name"),
                        format!(
                            "`name` labels the configuration and must be a string, found {}",
                            entry.item.value.describe()
                        ),
                    ));
                };
                level.name = Some(name.clone());
                continue;
            }
            for (key, item, _) in flatten(&entry.key, entry) {
                self.add(&mut level, &key, item)?;
            }
        }
        Ok(level)
    }
}

/// `key = value` pairs under an entry: a table (`[sweep.vllm]`, or an unquoted
/// dotted key `vllm.max_num_seqs = …`) contributes its keys as `key.sub`.
fn flatten<'e>(key: &str, entry: &'e RawEntry) -> Vec<(String, &'e RawItem, Loc)> {
    fn walk<'e>(
        key: String,
        key_loc: &Loc,
        item: &'e RawItem,
        out: &mut Vec<(String, &'e RawItem, Loc)>,
    ) {
        match &item.value {
            RawValue::Table(t) => {
                for e in &t.entries {
                    walk(
                        format!("{key}.{}", llem_manifest::key_segment(&e.key)),
                        &e.key_loc,
                        &e.item,
                        out,
                    );
                }
            }
            _ => out.push((key, item, key_loc.clone())),
        }
    }
    let mut out = Vec::new();
    walk(key.to_owned(), &entry.key_loc, &entry.item, &mut out);
    out
}
