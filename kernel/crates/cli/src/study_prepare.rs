//! From a study file to a study directory's design: expand the sweep, make
//! each point a manifest (the command line's `--plugins` and `--set` apply to
//! the base), resolve it against the plugins here, let the plugins check it
//! (a point they refuse is skipped with their reason), drop points that
//! resolve to the same plan, order the runs and hash the design.

use crate::output::Failure;
use llem::Catalog;
use llem::default_workload::{self, DefaultWorkload};
use llem::manifest::{self, Plan, RawManifest, RawValue};
use llem::study::design::{Config, Controls, Design, Skipped, Slot};
use llem_sdk::PluginKind;
use llem_study::{Study, StudyFile};
use std::path::{Path, PathBuf};

pub struct Prepared {
    pub study: Study,
    pub design: Design,
    /// `<experiment.output_dir>/<study name>`.
    pub dir: PathBuf,
}

/// Whether the manifest at `path` is a study (has `[study]`, `[sweep]` or `[[experiments]]`).
pub fn is_study(path: &Path) -> bool {
    manifest::ManifestSource::from_file(path)
        .ok()
        .and_then(|source| manifest::parse(&source).ok())
        .is_some_and(|raw| llem_study::is_study(&raw))
}

pub fn prepare(
    path: &Path,
    plugins: &[String],
    sets: &[String],
    catalog: &Catalog,
) -> Result<Prepared, Failure> {
    let bad = |e: manifest::ManifestError| Failure::bad_input(e.to_string());
    let mut study = StudyFile::load(path).map_err(bad)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    study.base = study.base.clone().with_command_line_dir(cwd);
    for name in plugins.iter().flat_map(|p| p.split(',')).map(str::trim) {
        if !name.is_empty() {
            study.base.add_plugin(name).map_err(bad)?;
        }
    }
    for set in sets {
        study.base.apply_set(set).map_err(bad)?;
    }
    let is_backend = |instance: &str| backend_instance(&study.base, instance, catalog);

    let mut configs: Vec<Config> = Vec::new();
    let mut skipped: Vec<Skipped> = study
        .skipped
        .iter()
        .map(|s| Skipped {
            label: s.label.clone(),
            reason: s.reason.clone(),
        })
        .collect();
    for point in &study.points {
        let skip = |reason: String| Skipped {
            label: point.label.clone(),
            reason,
        };
        let raw = match llem_study::apply(&study.base, point, is_backend) {
            Ok(raw) => raw,
            Err(e) => {
                skipped.push(skip(e.to_string()));
                continue;
            }
        };
        let plan = match resolve(&raw, catalog) {
            Ok(plan) => plan,
            Err(e) => {
                skipped.push(skip(e));
                continue;
            }
        };
        // The plugins' own checks (option combinations, engine policy).
        if let Err(e) = llem::Experiment::new(plan.clone(), catalog).check() {
            skipped.push(skip(format!("refused: {e}")));
            continue;
        }
        if let Some(same) = configs.iter().find(|c| c.plan == plan) {
            skipped.push(skip(format!("same plan as {}", same.label)));
            continue;
        }
        configs.push(Config {
            id: point.id.clone(),
            label: point.label.clone(),
            sets: point
                .sets
                .iter()
                .map(|s| format!("{}={}", s.key, s.value))
                .chain(point.backend.iter().map(|b| format!("backend={b}")))
                .collect(),
            plan,
        });
    }
    if configs.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|s| format!("  {}: {}", s.label, s.reason))
            .collect();
        return Err(Failure::bad_input(format!(
            "{}: no configuration of the study can run:\n{}",
            path.display(),
            reasons.join("\n")
        )));
    }
    let spec = &study.spec;
    // `[experiment].cycles` in the base counts when `[study].cycles` is not given.
    let cycles = if spec.cycles > 1 {
        spec.cycles
    } else {
        configs[0].plan.experiment.cycles.max(1)
    };
    for config in &mut configs {
        config.plan.experiment.cycles = 1;
    }
    let seed = spec.seed.unwrap_or_else(fresh_seed);
    let schedule = llem_study::schedule(configs.len(), cycles, spec.order, seed)
        .into_iter()
        .map(|s| Slot {
            config: s.config,
            cycle: s.cycle + 1,
        })
        .collect();
    let hash = llem_study::design_hash(&study, seed);
    let dir = configs[0]
        .plan
        .experiment
        .output_dir
        .join(sanitize(&spec.name));
    let design = Design {
        name: spec.name.clone(),
        hash,
        cycles,
        order: spec.order.as_str().to_owned(),
        seed,
        controls: Controls {
            gap_s: spec.gap_s,
            cycle_gap_s: spec.cycle_gap_s,
            run_timeout_s: spec.run_timeout_s,
            timeout_s: spec.timeout_s,
            max_consecutive_failures: spec.max_consecutive_failures,
        },
        configs,
        skipped,
        schedule,
    };
    Ok(Prepared { study, design, dir })
}

/// A point's manifest resolved; with a backend and no dataset, llem's default
/// workload is added, as `llem run` does.
fn resolve(raw: &RawManifest, catalog: &Catalog) -> Result<Plan, String> {
    let resolved = |raw: &RawManifest| {
        manifest::resolve(raw, catalog).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    };
    let plan = resolved(raw)?;
    let has = |kind| plan.plugins.iter().any(|p| p.kind == kind);
    if !has(PluginKind::Backend) || has(PluginKind::Dataset) {
        return Ok(plan);
    }
    let workload = DefaultWorkload::for_model(
        plan.experiment.model.as_deref().unwrap_or(""),
        plan.load.num_prompts.map(u64::from),
    );
    let mut raw = raw.clone();
    raw.add_plugin(default_workload::DATASET)
        .map_err(|e| e.to_string())?;
    for set in workload.sets() {
        raw.apply_set(&set).map_err(|e| e.to_string())?;
    }
    resolved(&raw)
}

/// Whether `[plugins.<instance>]` of `base` is a backend: its `plugin` key
/// (or the instance name) looked up in the catalog.
fn backend_instance(base: &RawManifest, instance: &str, catalog: &Catalog) -> bool {
    use llem::manifest::PluginCatalog;
    let table = base
        .root
        .get(llem::manifest::keys::PLUGINS_TABLE)
        .and_then(|e| match &e.item.value {
            RawValue::Table(t) => t.get(instance),
            _ => None,
        })
        .and_then(|e| match &e.item.value {
            RawValue::Table(t) => Some(t),
            _ => None,
        });
    let text = |key: &str| {
        table
            .and_then(|t| t.get(key))
            .and_then(|e| match &e.item.value {
                RawValue::String(s) => Some(s.clone()),
                _ => None,
            })
    };
    let name = text("plugin").unwrap_or_else(|| instance.to_owned());
    let path = text("path").map(|p| base.dir.join(p));
    catalog
        .lookup(&name, path.as_deref())
        .is_ok_and(|entry| entry.info.kind == PluginKind::Backend)
}

fn fresh_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
