//! The study file: a run manifest plus `[study]`, `[sweep]` and
//! `[[experiments]]`, read with the manifest crate so every error carries
//! `file:line:column`.

use std::path::{Path, PathBuf};

use llem_manifest::{Loc, ManifestError, ManifestSource, RawEntry, RawItem, RawManifest, RawValue};
use serde::Serialize;

use crate::expand::{ConfigPoint, Skipped, expand};
use crate::order::Order;
use crate::sweep::Reader;

/// The tables that make a manifest a study.
pub const STUDY_TABLES: [&str; 3] = ["study", "sweep", "experiments"];

/// `[study]`: how the study runs, as opposed to what it varies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudySpec {
    /// Default: `experiment.name` of the (merged) manifest, else the file's stem.
    pub name: String,
    /// How many times every configuration runs. Default 1.
    pub cycles: u32,
    /// Default [`Order::Interleave`].
    pub order: Order,
    /// Randomises `shuffle` and `latin-square`; absent, the caller picks one and
    /// records it, so a resume reuses it.
    pub seed: Option<u64>,
    /// Idle seconds between two runs. Default 0.
    pub gap_s: f64,
    /// Idle seconds between two cycles (instead of `gap_s`). Default 0.
    pub cycle_gap_s: f64,
    /// Limit on one run, seconds. Default none.
    pub run_timeout_s: Option<f64>,
    /// Limit on the whole study, seconds. Default none.
    pub timeout_s: Option<f64>,
    /// Stop after this many failed runs in a row (a broken setup fails every
    /// run: stop wasting hours). Default 3; 0 never stops.
    pub max_consecutive_failures: u32,
}

/// A study read from its file: how it runs, the manifest every configuration
/// starts from, and its configurations.
#[derive(Debug, Clone, PartialEq)]
pub struct Study {
    pub spec: StudySpec,
    /// The study file without its study tables, over its `base` manifest when it
    /// has one. Keys from the base file keep pointing into the base file.
    pub base: RawManifest,
    pub points: Vec<ConfigPoint>,
    /// Points dropped while expanding (duplicates), with the reason.
    pub skipped: Vec<Skipped>,
}

/// Reading a study file.
#[derive(Debug)]
pub struct StudyFile;

impl StudyFile {
    /// Read and check the study file at `path` (and its `base`).
    pub fn load(path: &Path) -> Result<Study, ManifestError> {
        let source = read_source(path, &Loc::Nowhere, &path.display().to_string())?;
        Self::parse(&source)
    }

    /// Check a study given as text; `source.dir` is where `base` is looked for.
    pub fn parse(source: &ManifestSource) -> Result<Study, ManifestError> {
        let mut raw = llem_manifest::parse(source)?;
        let study = raw.take_table("study");
        let sweep = raw.take_table("sweep");
        let experiments = raw.take_table("experiments");

        let fields = StudyFields::read(&raw, study.as_ref())?;
        let raw = match &fields.base {
            Some((base, loc)) => raw.inherit(load_base(source, base, loc)?),
            None => raw,
        };
        let design = Reader { raw: &raw }.design(sweep.as_ref(), experiments.as_ref())?;
        let (points, skipped) = expand(&design);
        if points.is_empty() {
            return Err(ManifestError::at(
                &raw.source_name,
                &Loc::Nowhere,
                "",
                "the study has no configurations",
            )
            .with_help(
                "add `[sweep]` axes, e.g. `\"vllm.max_num_seqs\" = [8, 32]`, or `[[experiments]]` \
                 entries (one with just `name = \"base\"` repeats the base manifest)",
            ));
        }
        check_backends(&raw, &points)?;
        let spec = fields.spec(&raw, source);
        Ok(Study {
            spec,
            base: raw,
            points,
            skipped,
        })
    }
}

/// Whether a manifest is a study (has `[study]`, `[sweep]` or `[[experiments]]`)
/// rather than a single run: `llem run` reads the file once and decides.
pub fn is_study(raw: &RawManifest) -> bool {
    raw.root
        .entries
        .iter()
        .any(|e| STUDY_TABLES.contains(&e.key.as_str()))
}

fn read_source(path: &Path, loc: &Loc, shown: &str) -> Result<ManifestSource, ManifestError> {
    let mut source = ManifestSource::from_file(path).map_err(|e| {
        ManifestError::at(
            shown,
            loc,
            "",
            format!("cannot read `{}`: {e}", path.display()),
        )
    })?;
    source.name = shown.to_owned();
    Ok(source)
}

/// The `base` manifest, relative to the study file; a run manifest, not a study.
fn load_base(study: &ManifestSource, base: &str, loc: &Loc) -> Result<RawManifest, ManifestError> {
    let shown = match Path::new(&study.name).parent() {
        Some(p) if !p.as_os_str().is_empty() && Path::new(base).is_relative() => {
            p.join(base).display().to_string()
        }
        _ => base.to_owned(),
    };
    let path = study.dir.join(base);
    let source = read_source(&path, loc, &shown).map_err(|e| ManifestError {
        origin: study.name.clone(),
        key_path: "study.base".to_owned(),
        ..e
    })?;
    let raw = llem_manifest::parse(&source)?;
    if is_study(&raw) {
        return Err(ManifestError::at(
            &study.name,
            loc,
            "study.base",
            format!("the base manifest `{shown}` is itself a study"),
        )
        .with_help("a base is a run manifest: move its [study], [sweep] and [[experiments]] into this file"));
    }
    Ok(raw)
}

/// Every backend a point selects is a plugin instance of the base.
fn check_backends(raw: &RawManifest, points: &[ConfigPoint]) -> Result<(), ManifestError> {
    let instances = raw.plugin_instances();
    for point in points {
        if let Some(backend) = &point.backend
            && !instances.contains(backend)
        {
            let help = llem_manifest::suggest(backend, instances.iter().map(String::as_str))
                .first()
                .map_or_else(
                    || format!("the manifest's plugin instances: {}", instances.join(", ")),
                    |best| format!("did you mean `{best}`?"),
                );
            let loc = point.backend_loc.clone().unwrap_or(Loc::Nowhere);
            return Err(ManifestError::at(
                &raw.source_name,
                &loc,
                "backend",
                format!("`backend = \"{backend}\"` names no `[plugins.{backend}]` of the manifest"),
            )
            .with_help(help));
        }
    }
    Ok(())
}

/// The keys of `[study]`, as written.
#[derive(Default)]
struct StudyFields {
    name: Option<String>,
    base: Option<(String, Loc)>,
    cycles: Option<u32>,
    order: Option<Order>,
    seed: Option<u64>,
    gap_s: Option<f64>,
    cycle_gap_s: Option<f64>,
    run_timeout_s: Option<f64>,
    timeout_s: Option<f64>,
    max_consecutive_failures: Option<u32>,
}

const STUDY_KEYS: [&str; 10] = [
    "name",
    "base",
    "cycles",
    "order",
    "seed",
    "gap_s",
    "cycle_gap_s",
    "run_timeout_s",
    "timeout_s",
    "max_consecutive_failures",
];

impl StudyFields {
    fn read(raw: &RawManifest, study: Option<&RawEntry>) -> Result<Self, ManifestError> {
        let mut fields = StudyFields::default();
        let Some(study) = study else {
            return Ok(fields);
        };
        let err = |loc: &Loc, key: &str, message: String| {
            ManifestError::at(&raw.source_name, loc, format!("study.{key}"), message)
        };
        let RawValue::Table(table) = &study.item.value else {
            return Err(err(
                &study.item.loc,
                "",
                format!(
                    "`study` must be a table, found {}",
                    study.item.value.describe()
                ),
            )
            .with_help("write `[study]` on its own line, then its keys"));
        };
        for entry in &table.entries {
            let key = entry.key.as_str();
            let item = &entry.item;
            let wrong = |what: &str| {
                err(
                    &item.loc,
                    key,
                    format!(
                        "`study.{key}` must be {what}, found {}",
                        item.value.describe()
                    ),
                )
            };
            match key {
                "name" => fields.name = Some(string(item).ok_or_else(|| wrong("a string"))?),
                "base" => {
                    let path = string(item).ok_or_else(|| wrong("a path (string)"))?;
                    fields.base = Some((path, item.loc.clone()));
                }
                "cycles" => {
                    fields.cycles = Some(
                        integer(item, 1, u32::MAX.into())
                            .ok_or_else(|| wrong("an integer from 1"))?
                            .try_into()
                            .map_err(|_| wrong("an integer from 1"))?,
                    );
                }
                "order" => {
                    let name = string(item).ok_or_else(|| wrong("a string"))?;
                    let names = Order::ALL.map(Order::as_str);
                    let order = Order::from_name(&name).ok_or_else(|| {
                        let help = llem_manifest::suggest(&name, names).first().map_or_else(
                            || format!("orders: {}", names.join(", ")),
                            |best| format!("did you mean `{best}`?"),
                        );
                        err(&item.loc, key, format!("unknown order `{name}`")).with_help(help)
                    })?;
                    fields.order = Some(order);
                }
                "seed" => {
                    fields.seed = Some(
                        integer(item, 0, i64::MAX)
                            .and_then(|s| u64::try_from(s).ok())
                            .ok_or_else(|| wrong("an integer from 0"))?,
                    );
                }
                "gap_s" => {
                    fields.gap_s =
                        Some(seconds(item, true).ok_or_else(|| wrong("a number of seconds ≥ 0"))?)
                }
                "cycle_gap_s" => {
                    fields.cycle_gap_s =
                        Some(seconds(item, true).ok_or_else(|| wrong("a number of seconds ≥ 0"))?);
                }
                "run_timeout_s" => {
                    fields.run_timeout_s =
                        Some(seconds(item, false).ok_or_else(|| wrong("a number of seconds > 0"))?);
                }
                "timeout_s" => {
                    fields.timeout_s =
                        Some(seconds(item, false).ok_or_else(|| wrong("a number of seconds > 0"))?);
                }
                "max_consecutive_failures" => {
                    fields.max_consecutive_failures = Some(
                        integer(item, 0, u32::MAX.into())
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| wrong("an integer from 0"))?,
                    );
                }
                _ => {
                    let help = llem_manifest::suggest(key, STUDY_KEYS).first().map_or_else(
                        || format!("keys of [study]: {}", STUDY_KEYS.join(", ")),
                        |best| format!("did you mean `{best}`?"),
                    );
                    return Err(err(
                        &entry.key_loc,
                        key,
                        format!("unknown key `{key}` in [study]"),
                    )
                    .with_help(help));
                }
            }
        }
        Ok(fields)
    }

    /// Defaults filled in; `raw` is the merged manifest (for `experiment.name`).
    fn spec(self, raw: &RawManifest, source: &ManifestSource) -> StudySpec {
        let experiment_name = match raw.root.get("experiment").map(|e| &e.item.value) {
            Some(RawValue::Table(t)) => t.get("name").and_then(|e| string(&e.item)),
            _ => None,
        };
        let stem = || {
            PathBuf::from(&source.name)
                .file_stem()
                .map_or_else(|| "study".to_owned(), |s| s.to_string_lossy().into_owned())
        };
        StudySpec {
            name: self.name.or(experiment_name).unwrap_or_else(stem),
            cycles: self.cycles.unwrap_or(1),
            order: self.order.unwrap_or(Order::Interleave),
            seed: self.seed,
            gap_s: self.gap_s.unwrap_or(0.0),
            cycle_gap_s: self.cycle_gap_s.unwrap_or(0.0),
            run_timeout_s: self.run_timeout_s,
            timeout_s: self.timeout_s,
            max_consecutive_failures: self.max_consecutive_failures.unwrap_or(3),
        }
    }
}

fn string(item: &RawItem) -> Option<String> {
    match &item.value {
        RawValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(item: &RawItem, min: i64, max: i64) -> Option<i64> {
    match item.value {
        RawValue::Integer(i) if (min..=max).contains(&i) => Some(i),
        _ => None,
    }
}

/// A duration: integer or float, ≥ 0 (`zero_ok`) or > 0, finite.
fn seconds(item: &RawItem, zero_ok: bool) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    let x = match item.value {
        RawValue::Integer(i) => i as f64,
        RawValue::Float(x) => x,
        _ => return None,
    };
    (x.is_finite() && (x > 0.0 || (zero_ok && x == 0.0))).then_some(x)
}
