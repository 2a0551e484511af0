//! From command-line input to a resolved plan: the manifest file (or the
//! embedded default), `--plugins` and `--set` edits, then resolution against
//! the plugins this llem can find. Shared by `run` and `config`.

use crate::output::Failure;
use llem::Catalog;
use llem::default_workload::{self, DefaultWorkload};
use llem::manifest::{self, ManifestSource, Plan, RawManifest};
use llem_sdk::PluginKind;
use std::path::{Path, PathBuf};

/// Used when no manifest is given. Plugins come from `--plugins`.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

pub struct Input<'a> {
    pub manifest: Option<&'a Path>,
    pub plugins: &'a [String],
    pub sets: &'a [String],
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

pub fn raw_manifest(input: &Input<'_>) -> Result<RawManifest, Failure> {
    let source = match input.manifest {
        Some(path) => ManifestSource::from_file(path).map_err(|e| {
            Failure::bad_input(format!("cannot read manifest {}: {e}", path.display()))
        })?,
        None => ManifestSource {
            name: "<embedded default>".into(),
            dir: cwd(),
            text: EMBEDDED_DEFAULT.into(),
        },
    };
    let mut raw = manifest::parse(&source)
        .map_err(|e| Failure::bad_input(e.to_string()))?
        .with_command_line_dir(cwd());
    for name in input
        .plugins
        .iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        raw.add_plugin(name)
            .map_err(|e| Failure::bad_input(e.to_string()))?;
    }
    for set in input.sets {
        raw.apply_set(set)
            .map_err(|e| Failure::bad_input(e.to_string()))?;
    }
    Ok(raw)
}

pub fn resolve(input: &Input<'_>, catalog: &Catalog) -> Result<Plan, Failure> {
    let raw = raw_manifest(input)?;
    manifest::resolve(&raw, catalog).map_err(|errors| {
        let count = errors.len();
        let mut text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        if count > 1 {
            text.push_str(&format!("\n{count} problems in the manifest"));
        }
        Failure::bad_input(text)
    })
}

/// [`resolve`], then, when the plan has a backend and no dataset, again with
/// the default workload's dataset (see `llem::default_workload`), which is
/// returned to be shown. Shared by `run` and `config validate`.
pub fn resolve_with_default_workload(
    input: &Input<'_>,
    catalog: &Catalog,
) -> Result<(Plan, Option<DefaultWorkload>), Failure> {
    let plan = resolve(input, catalog)?;
    let has = |kind| plan.plugins.iter().any(|p| p.kind == kind);
    if !has(PluginKind::Backend) || has(PluginKind::Dataset) {
        return Ok((plan, None));
    }
    let workload = DefaultWorkload::for_model(
        plan.experiment.model.as_deref().unwrap_or(""),
        plan.load.num_prompts.map(u64::from),
    );
    let mut plugins = input.plugins.to_vec();
    plugins.push(default_workload::DATASET.into());
    let mut sets = input.sets.to_vec();
    sets.extend(workload.sets());
    let plan = resolve(
        &Input {
            manifest: input.manifest,
            plugins: &plugins,
            sets: &sets,
        },
        catalog,
    )?;
    Ok((plan, Some(workload)))
}
