//! `llem config default|validate|schema`.

use crate::input::{self, Input};
use crate::output::{CmdResult, Failure, ok};
use llem::Catalog;
use llem::discovery::short_name;
use llem::manifest;
use llem_sdk::PluginInfo;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a documented manifest with every key and its default, and a
    /// commented section for every plugin found.
    Default,
    /// Check a manifest as `llem run` would before starting anything: syntax,
    /// keys, types, plugin names and options, combinations, the backend's
    /// own checks of its options, the engine program.
    Validate {
        manifest: PathBuf,
        /// Also print the resolved manifest (every default filled).
        #[arg(long)]
        resolved: bool,
    },
    /// Print the manifest's JSON Schema, for editors (taplo, Even Better TOML).
    Schema,
}

/// (short name, info) of every plugin that loads; broken ones are skipped with a warning.
fn described_plugins(catalog: &Catalog) -> Vec<(String, PluginInfo)> {
    let mut described = Vec::new();
    for found in catalog.discovered() {
        match catalog.load_path(&found.path) {
            Ok(plugin) => {
                described.push((short_name(plugin.name()).to_owned(), plugin.info().clone()))
            }
            Err(e) => crate::output::warn(&format!("skipping {}: {e}", found.path.display())),
        }
    }
    described
}

pub fn run(command: Command) -> CmdResult {
    let catalog = Catalog::from_env();
    match command {
        Command::Default => {
            print!("{}", manifest::render_default(&described_plugins(&catalog)));
        }
        Command::Schema => {
            let schema = manifest::json_schema(&described_plugins(&catalog));
            let text = serde_json::to_string_pretty(&schema)
                .map_err(|e| Failure::failed(format!("cannot encode the schema: {e}")))?;
            println!("{text}");
        }
        Command::Validate { manifest, resolved } => {
            let (plan, workload) = input::resolve_with_default_workload(
                &Input {
                    manifest: Some(&manifest),
                    plugins: &[],
                    sets: &[],
                },
                &catalog,
            )?;
            if let Some(workload) = &workload {
                ok(&format!(
                    "no dataset named: `llem run` would use {}",
                    workload.describe()
                ));
            }
            // What `llem run` checks before it starts anything: the backend's
            // own option checks (its plan), the engine's program, offline-mode
            // refusals, a model to run.
            let refused = |why: String| {
                Failure::bad_input(format!(
                    "{}: `llem run` would refuse it: {why}",
                    manifest.display()
                ))
            };
            let dry = llem::Experiment::new(plan.clone(), &catalog)
                .check()
                .map_err(|e| refused(e.to_string()))?;
            if let Some(Err(why)) = dry.engine.as_ref().map(|e| &e.program) {
                return Err(refused(why.clone()));
            }
            if resolved {
                let text = plan.to_toml_string().map_err(|e| {
                    Failure::failed(format!("cannot render the resolved manifest: {e}"))
                })?;
                print!("{text}");
            }
            ok(&format!(
                "{} is valid: {} plugin(s): {}",
                manifest.display(),
                plan.plugins.len(),
                plan.plugins
                    .iter()
                    .map(|p| format!("{} ({})", p.instance, p.full_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
