//! Which energy sources work on this machine, and why the others do not.
//! Used by `llem env`, and by `llem run`/`llem monitor` when no energy source
//! is named (they measure with whatever works here).

use crate::catalog::Catalog;
use crate::experiment::sandbox_for;
use crate::plugin::PluginFailure;
use llem_manifest::{ManifestSource, PluginPlan};
use llem_sdk::{Device, PluginKind};
use std::path::PathBuf;

/// The energy sources llem ships, so `llem env` can name those not installed.
pub const KNOWN_ENERGY_SOURCES: &[(&str, &str)] = &[
    (
        "energy-nvml",
        "NVIDIA GPUs through NVML (libnvidia-ml.so.1)",
    ),
    ("energy-amdsmi", "AMD GPUs through AMD SMI (libamd_smi.so)"),
    (
        "energy-rapl",
        "Intel and AMD CPU packages, cores and DRAM through Linux powercap (RAPL)",
    ),
    (
        "energy-cpu-estimate",
        "CPU power estimated as TDP x utilisation, when nothing measures",
    ),
];

#[derive(Debug)]
pub enum ProbeOutcome {
    /// Opened with its defaults: these devices.
    Works(Vec<Device>),
    /// Found but does not work here.
    Fails(PluginFailure),
    /// Needs configuration to be tried (a required option, a broken manifest entry).
    NeedsConfig(String),
    /// Not on the plugin path.
    NotInstalled,
}

#[derive(Debug)]
pub struct Probe {
    pub name: String,
    pub path: Option<PathBuf>,
    /// Shipped with llem (see [`crate::discovery::is_shipped`]): only these are
    /// chosen when no energy source is named.
    pub shipped: bool,
    pub outcome: ProbeOutcome,
}

impl Probe {
    /// Works, and every device it measures is an estimate.
    pub fn estimated_only(&self) -> bool {
        matches!(&self.outcome, ProbeOutcome::Works(devices) if devices.iter().all(|d| d.estimated))
    }
}

/// The plan entry a plugin gets from an otherwise empty manifest: its defaults
/// and automatic grants, exactly what `--plugins NAME` would give it.
/// `sets` are `--set` overrides (`rapl.root=/tmp/fake`); those naming other plugins are ignored.
pub fn default_entry(catalog: &Catalog, name: &str, sets: &[String]) -> Result<PluginPlan, String> {
    let dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut raw = llem_manifest::parse(&ManifestSource::empty("<probe>", dir.clone()))
        .map_err(|e| e.to_string())?
        .with_command_line_dir(dir);
    raw.add_plugin(name).map_err(|e| e.to_string())?;
    let short = crate::discovery::short_name(name);
    for set in sets {
        let target = set.split(['.', '=']).next().unwrap_or_default();
        if target == short || target == name {
            raw.apply_set(set).map_err(|e| e.to_string())?;
        }
    }
    let plan = llem_manifest::resolve(&raw, catalog).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    plan.plugins
        .into_iter()
        .next()
        .ok_or_else(|| format!("`{name}` resolved to nothing"))
}

/// Open every discovered energy plugin with its defaults, plus a line for each
/// known source that is not installed.
pub fn probe_energy(catalog: &Catalog, sets: &[String]) -> Vec<Probe> {
    let mut probes = Vec::new();
    for found in catalog.discovered() {
        // Names say the kind of first-party plugins: skip loading (compiling)
        // backends, datasets and sinks just to learn they measure nothing.
        if ["backend-", "dataset-", "sink-"]
            .iter()
            .any(|p| found.name.starts_with(p))
        {
            continue;
        }
        let plugin = match catalog.load_path(&found.path) {
            Ok(plugin) if plugin.kind() == PluginKind::Energy => plugin,
            Ok(_) => continue,
            Err(mut failure) => {
                // Not loadable, so of unknown kind: shown, with a way out.
                if failure.hint.is_none() {
                    failure.hint = Some(format!(
                        "remove {} from the plugin path, or rebuild it against this llem",
                        found.path.display()
                    ));
                }
                probes.push(Probe {
                    name: found.name.clone(),
                    path: Some(found.path.clone()),
                    shipped: crate::discovery::is_shipped(&found.path),
                    outcome: ProbeOutcome::Fails(failure),
                });
                continue;
            }
        };
        let outcome = match default_entry(catalog, &found.name, sets) {
            Err(why) => ProbeOutcome::NeedsConfig(why),
            Ok(entry) => match plugin.open_energy(&entry.config, &sandbox_for(&entry, None)) {
                Ok(source) => ProbeOutcome::Works(source.devices().to_vec()),
                Err(failure) => ProbeOutcome::Fails(failure),
            },
        };
        probes.push(Probe {
            name: plugin.name().to_owned(),
            path: Some(found.path.clone()),
            shipped: crate::discovery::is_shipped(&found.path),
            outcome,
        });
    }
    for (name, _) in KNOWN_ENERGY_SOURCES {
        if !probes.iter().any(|p| p.name == *name) {
            probes.push(Probe {
                name: (*name).to_owned(),
                path: None,
                shipped: false,
                outcome: ProbeOutcome::NotInstalled,
            });
        }
    }
    probes
}

/// Short names of the sources to measure with when none is named: every one
/// shipped with llem that works, measured ones preferred; the estimate only when
/// nothing measures. A plugin dropped on the plugin path is never chosen without
/// being named, whatever it claims about itself (it could claim to measure).
pub fn auto_energy_sources(probes: &[Probe]) -> Vec<String> {
    let working: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.shipped && matches!(p.outcome, ProbeOutcome::Works(_)))
        .collect();
    let measured: Vec<&Probe> = working
        .iter()
        .copied()
        .filter(|p| !p.estimated_only())
        .collect();
    let chosen = if measured.is_empty() {
        working
    } else {
        measured
    };
    chosen
        .iter()
        .map(|p| crate::discovery::short_name(&p.name).to_owned())
        .collect()
}
