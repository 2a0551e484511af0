//! Checks one table against a list of [`KeySpec`]s and turns it into JSON with
//! every default filled. Shared by `[experiment]`, each plugin's table and each
//! `sandbox` sub-table, so all of them report problems the same way.

use std::path::{Path, PathBuf};

use llem_sdk::OptionType;
use serde_json::{Map, Number, Value};

use crate::error::ManifestError;
use crate::keys::{Bounds, KeySpec};
use crate::raw::{RawItem, RawManifest, RawTable, RawValue};
use crate::spans::{Loc, join_path};
use crate::suggest::did_you_mean;

/// One table to check.
pub(crate) struct TableCheck<'a> {
    pub raw: &'a RawManifest,
    pub table: &'a RawTable,
    /// Dotted path of the table, e.g. `plugins.vllm`; shown as `[plugins.vllm]`.
    pub path: &'a str,
    /// Where missing-key errors point: the table's header or key.
    pub anchor: &'a Loc,
    pub specs: &'a [KeySpec],
    /// Keys another stage handles (reserved plugin keys): not unknown, not converted.
    pub handled_elsewhere: &'a [&'a str],
}

impl TableCheck<'_> {
    /// The table as JSON, in spec order, with defaults filled; problems go to `errors`.
    pub(crate) fn run(&self, errors: &mut Vec<ManifestError>) -> Map<String, Value> {
        let name = &self.raw.source_name;
        for entry in &self.table.entries {
            let known = self.specs.iter().any(|s| s.name() == entry.key)
                || self.handled_elsewhere.contains(&entry.key.as_str());
            if !known {
                let candidates = self
                    .specs
                    .iter()
                    .map(KeySpec::name)
                    .chain(self.handled_elsewhere.iter().copied());
                let help = did_you_mean(&entry.key, candidates.clone()).or_else(|| {
                    let all: Vec<&str> = candidates.collect();
                    (!all.is_empty()).then(|| format!("known keys: {}", all.join(", ")))
                });
                errors.push(
                    ManifestError::at(
                        name,
                        &entry.key_loc,
                        join_path(self.path, &entry.key),
                        format!("unknown key `{}` in [{}]", entry.key, self.path),
                    )
                    .with_help_opt(help),
                );
            }
        }

        let mut out = Map::new();
        for spec in self.specs {
            let key_path = join_path(self.path, spec.name());
            match self.table.get(spec.name()) {
                Some(entry) => match convert(self.raw, &entry.item, spec, &key_path) {
                    Ok(value) => {
                        out.insert(spec.name().to_owned(), value);
                    }
                    Err(err) => errors.push(err),
                },
                None => match &spec.option.default {
                    Some(default) => {
                        let value = if spec.is_path {
                            resolve_paths(default, &self.raw.dir)
                        } else {
                            default.clone()
                        };
                        out.insert(spec.name().to_owned(), value);
                    }
                    None if spec.optional => {}
                    None => errors.push(
                        ManifestError::at(
                            name,
                            self.anchor,
                            key_path,
                            format!(
                                "missing required option `{}` in [{}]",
                                spec.name(),
                                self.path
                            ),
                        )
                        .with_help(format!(
                            "add `{} = …` ({}): {}",
                            spec.name(),
                            spec.option.ty.as_str(),
                            spec.option.doc
                        )),
                    ),
                },
            }
        }
        out
    }
}

/// Convert one value to JSON, checking it against `spec`.
fn convert(
    raw: &RawManifest,
    item: &RawItem,
    spec: &KeySpec,
    key_path: &str,
) -> Result<Value, ManifestError> {
    let fail =
        |loc: &Loc, message: String| ManifestError::at(&raw.source_name, loc, key_path, message);
    let mismatch = |item: &RawItem, suffix: &str| {
        fail(
            &item.loc,
            format!(
                "`{key_path}` must be {}, found {}{suffix}",
                expected(spec.option.ty),
                item.value.describe()
            ),
        )
    };
    let choices = &spec.option.choices;
    let check_choice = |item: &RawItem, s: &str| -> Result<(), ManifestError> {
        if choices.is_empty() || choices.iter().any(|c| c == s) {
            return Ok(());
        }
        let list = choices
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(fail(
            &item.loc,
            format!("`{key_path}` must be one of {list}; found {s:?}"),
        )
        .with_help_opt(did_you_mean(s, choices.iter().map(String::as_str))))
    };

    let value = match spec.option.ty {
        OptionType::String | OptionType::Path => {
            // A `--set` value that TOML read as a number or date is still what the
            // user typed; where a string is wanted, take the typed text.
            let s = match (&item.value, &item.literal) {
                (RawValue::String(s), _) => s.as_str(),
                (_, Some(literal)) => literal.as_str(),
                _ => return Err(mismatch(item, "")),
            };
            check_choice(item, s)?;
            if spec.is_path {
                path_value(s, raw.base_dir(&item.loc))
            } else {
                Value::String(s.to_owned())
            }
        }
        OptionType::Integer => match item.value {
            RawValue::Integer(i) => {
                check_bounds(f64_of(i), spec.bounds)
                    .map_err(|m| fail(&item.loc, format!("`{key_path}` {m}")))?;
                Value::from(i)
            }
            _ => return Err(mismatch(item, "")),
        },
        OptionType::Float => {
            let x = match item.value {
                RawValue::Integer(i) => f64_of(i),
                RawValue::Float(x) => x,
                _ => return Err(mismatch(item, "")),
            };
            check_bounds(x, spec.bounds)
                .map_err(|m| fail(&item.loc, format!("`{key_path}` {m}")))?;
            Number::from_f64(x).map(Value::Number).ok_or_else(|| {
                fail(
                    &item.loc,
                    format!("`{key_path}` must be a finite number, found {x}"),
                )
            })?
        }
        OptionType::Boolean => match item.value {
            RawValue::Boolean(b) => Value::Bool(b),
            _ => return Err(mismatch(item, "")),
        },
        OptionType::StringList | OptionType::IntegerList => {
            let RawValue::Array(elements) = &item.value else {
                return Err(mismatch(item, ""));
            };
            let mut out = Vec::with_capacity(elements.len());
            for (i, element) in elements.iter().enumerate() {
                let at = format!(" at index {i}");
                match (&element.value, spec.option.ty) {
                    (RawValue::String(s), OptionType::StringList) => {
                        check_choice(element, s)?;
                        out.push(if spec.is_path {
                            path_value(s, raw.base_dir(&element.loc))
                        } else {
                            Value::String(s.clone())
                        });
                    }
                    (RawValue::Integer(n), OptionType::IntegerList) => out.push(Value::from(*n)),
                    _ => return Err(mismatch(element, &at)),
                }
            }
            Value::Array(out)
        }
        // The plugin owns the contents of its tables; llem only checks the shape.
        OptionType::Table => match &item.value {
            RawValue::Table(_) => to_json(item).map_err(|(loc, m)| fail(&loc, m))?,
            _ => return Err(mismatch(item, "")),
        },
        OptionType::Any => to_json(item).map_err(|(loc, m)| fail(&loc, m))?,
    };
    Ok(value)
}

/// Any TOML value as JSON. Fails only for NaN/infinite floats, which JSON lacks.
pub(crate) fn to_json(item: &RawItem) -> Result<Value, (Loc, String)> {
    Ok(match &item.value {
        RawValue::String(s) | RawValue::Datetime(s) => Value::String(s.clone()),
        RawValue::Integer(i) => Value::from(*i),
        RawValue::Float(x) => Number::from_f64(*x).map(Value::Number).ok_or_else(|| {
            (
                item.loc.clone(),
                format!("{x} cannot be represented (JSON has no NaN or infinity)"),
            )
        })?,
        RawValue::Boolean(b) => Value::Bool(*b),
        RawValue::Array(items) => {
            Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        RawValue::Table(t) => {
            let mut map = Map::new();
            for e in &t.entries {
                map.insert(e.key.clone(), to_json(&e.item)?);
            }
            Value::Object(map)
        }
    })
}

/// "a string", "an integer", … as used in "must be …".
pub(crate) fn expected(ty: OptionType) -> &'static str {
    match ty {
        OptionType::String | OptionType::Path => "a string",
        OptionType::Integer => "an integer",
        OptionType::Float => "a number",
        OptionType::Boolean => "a boolean",
        OptionType::StringList => "a list of strings",
        OptionType::IntegerList => "a list of integers",
        OptionType::Table => "a table",
        OptionType::Any => "a value",
    }
}

#[allow(clippy::cast_precision_loss)] // bounds are far below 2^53; precision is irrelevant here
fn f64_of(i: i64) -> f64 {
    i as f64
}

fn check_bounds(x: f64, b: Bounds) -> Result<(), String> {
    let below = b
        .min
        .is_some_and(|m| if b.exclusive_min { x <= m } else { x < m });
    let above = b.max.is_some_and(|m| x > m);
    if !below && !above {
        return Ok(());
    }
    let found = fmt_number(x);
    Err(match (b.min, b.max) {
        (Some(lo), Some(hi)) if b.exclusive_min => format!(
            "must be greater than {} and at most {}, found {found}",
            fmt_number(lo),
            fmt_number(hi)
        ),
        (Some(lo), Some(hi)) => format!(
            "must be between {} and {}, found {found}",
            fmt_number(lo),
            fmt_number(hi)
        ),
        (Some(lo), None) if b.exclusive_min => {
            format!("must be greater than {}, found {found}", fmt_number(lo))
        }
        (Some(lo), None) => format!("must be at least {}, found {found}", fmt_number(lo)),
        (None, Some(hi)) => format!("must be at most {}, found {found}", fmt_number(hi)),
        (None, None) => format!("is out of range: {found}"),
    })
}

/// Whole numbers without a trailing `.0`, so integer bounds read naturally.
fn fmt_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        x.to_string()
    }
}

/// A path option's value resolved against `base`; an empty string stays empty
/// (a plugin's way of saying "not set", e.g. a sink's `dir`: the run directory).
fn path_value(s: &str, base: &Path) -> Value {
    if s.is_empty() {
        return Value::String(String::new());
    }
    Value::String(absolute(base, s).to_string_lossy().into_owned())
}

/// `s` as a path: kept when absolute, else joined onto `base`. Not canonicalized:
/// output directories may not exist yet.
pub(crate) fn absolute(base: &Path, s: &str) -> PathBuf {
    let p = Path::new(s);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Resolve a path default (string or list of strings) against `base`.
fn resolve_paths(value: &Value, base: &Path) -> Value {
    match value {
        Value::String(s) => path_value(s, base),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_paths(v, base)).collect()),
        other => other.clone(),
    }
}
