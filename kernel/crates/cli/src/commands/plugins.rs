//! `llem plugins list|inspect|new`.

use crate::output::{CmdResult, Failure, ok};
use llem::discovery::{Origin, short_name};
use llem::{Catalog, Plugin};
use llem_sdk::PluginKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every plugin found, where it came from, and whether it loads.
    ///
    /// Listing reads each plugin's description from llem's cache when the file
    /// is unchanged since llem last described it, and otherwise loads the plugin
    /// to ask it: a WASM plugin runs sandboxed, but a native library's
    /// constructors run inside llem, with your permissions, when it is listed —
    /// put only trusted libraries on the path.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One plugin's description, every option it accepts, and what it may
    /// touch: native (trusted, unconfined) or sandboxed, and its grants.
    Inspect {
        /// Full name (`energy-nvml`), short name (`nvml`) or a path.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write a plugin crate that builds as it is, as WASM or native.
    New {
        #[arg(value_enum)]
        kind: Kind,
        /// Plugin name; the kind is prefixed if missing (`hwmon` -> `energy-hwmon`).
        name: String,
        /// Where to create the crate (default: ./<full name>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The llem-sdk to depend on (default: this llem's source tree when it
        /// is still there, else a copy vendored into the crate).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
        /// Vendor the SDK into the crate (`vendor/`) even when this llem's
        /// source tree is there: the crate then builds anywhere, on its own.
        #[arg(long, conflicts_with = "sdk_path")]
        vendor_sdk: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    Energy,
    Backend,
    Dataset,
    Sink,
}

impl Kind {
    fn plugin_kind(self) -> PluginKind {
        match self {
            Kind::Energy => PluginKind::Energy,
            Kind::Backend => PluginKind::Backend,
            Kind::Dataset => PluginKind::Dataset,
            Kind::Sink => PluginKind::Sink,
        }
    }
}

pub fn run(command: Command) -> CmdResult {
    match command {
        Command::List { json } => list(&Catalog::from_env(), json),
        Command::Inspect { name, json } => inspect(&Catalog::from_env(), &name, json),
        Command::New {
            kind,
            name,
            dir,
            sdk_path,
            vendor_sdk,
        } => crate::templates::new_plugin(
            kind.plugin_kind(),
            &name,
            dir.as_deref(),
            sdk_path.as_deref(),
            vendor_sdk,
        )
            .map(|dir| {
                ok(&format!("created {}", dir.display()));
                eprintln!(
                    "  build it:  cd {0} && cargo build --target wasm32-wasip2   (sandboxed WASM)\n             cd {0} && cargo build                           (native)\n  try it:    LLEM_PLUGIN_PATH={0}/target/wasm32-wasip2/debug llem plugins list",
                    dir.display()
                );
                ExitCode::SUCCESS
            })
            .map_err(Failure::failed),
    }
}

fn origin(origin: &Origin) -> &'static str {
    match origin {
        Origin::PluginPath => "LLEM_PLUGIN_PATH",
        Origin::BuiltIn => "built-in",
        Origin::Extra => "extra",
    }
}

fn list(catalog: &Catalog, json: bool) -> CmdResult {
    let rows: Vec<(String, &Path, &'static str, Result<Plugin, String>)> = catalog
        .discovered()
        .iter()
        .map(|d| {
            (
                d.name.clone(),
                d.path.as_path(),
                origin(&d.origin),
                catalog.load_path(&d.path).map_err(|e| e.to_string()),
            )
        })
        .collect();
    if json {
        let entries: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, path, origin, loaded)| match loaded {
                Ok(p) => serde_json::json!({
                    "name": name, "short_name": short_name(name), "path": path, "origin": origin,
                    "format": p.format(), "info": p.info(),
                }),
                Err(e) => serde_json::json!({
                    "name": name, "short_name": short_name(name), "path": path, "origin": origin, "error": e,
                }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(entries));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no plugins found; searched: {}",
            catalog.search_description()
        );
        println!(
            "build them with `cargo xtask build`, or point LLEM_PLUGIN_PATH at a directory of .wasm/.so plugins"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<8}  {:<6}  {:<8}  {:<16}  DESCRIPTION",
        "NAME", "KIND", "FORMAT", "VERSION", "FROM"
    );
    let mut broken = 0;
    for (name, path, origin, loaded) in &rows {
        match loaded {
            Ok(p) => println!(
                "{name:<width$}  {:<8}  {:<6}  {:<8}  {origin:<16}  {}",
                p.kind().as_str(),
                match p.format() {
                    llem::PluginFormat::Wasm => "wasm",
                    llem::PluginFormat::Native => "native",
                },
                p.info().version,
                p.info().description
            ),
            Err(e) => {
                broken += 1;
                println!(
                    "{name:<width$}  {:<8}  {:<6}  {:<8}  {origin:<16}  cannot load: {e}",
                    "?", "?", "?"
                );
                tracing::debug!(path = %path.display(), "plugin failed to load");
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} plugin(s) failed to load; `llem plugins inspect <name>` says why");
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(catalog: &Catalog, name: &str, json: bool) -> CmdResult {
    let plugin = catalog.load(name).map_err(Failure::bad_input)?;
    let info = plugin.info();
    if json {
        let grants = super::capabilities::default_grants(catalog, &plugin).unwrap_or_default();
        let value = serde_json::json!({
            "path": plugin.path(), "format": plugin.format(), "info": info,
            "sandboxed": plugin.format() == llem::PluginFormat::Wasm,
            "shipped": llem::discovery::is_shipped(plugin.path()),
            "default_grants": grants,
        });
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {} ({} plugin, {})",
        info.name,
        info.version,
        info.kind,
        match plugin.format() {
            llem::PluginFormat::Wasm => "WASM component, sandboxed",
            llem::PluginFormat::Native => "native library, trusted",
        }
    );
    println!("  {}", info.description);
    println!("  file: {}", plugin.path().display());
    println!("  manifest table: [plugins.{}]", short_name(&info.name));
    super::capabilities::print(catalog, &plugin);
    println!("  can and cannot:");
    for line in llem::plugin::capabilities::describe(
        &info.name,
        info.kind,
        plugin.format() == llem::PluginFormat::Wasm,
        short_name(&info.name),
    ) {
        println!("    {line}");
    }
    if info.options.is_empty() {
        println!("  options: none");
        return Ok(ExitCode::SUCCESS);
    }
    println!("  options:");
    let width = info.options.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for option in &info.options {
        let default = match &option.default {
            Some(value) => format!("default {value}"),
            None => "required".to_owned(),
        };
        let choices = if option.choices.is_empty() {
            String::new()
        } else {
            format!(" [{}]", option.choices.join("|"))
        };
        println!(
            "    {:<width$}  {:<12} {:<22} {}{choices}",
            option.name,
            option.ty.as_str(),
            default,
            option.doc
        );
    }
    Ok(ExitCode::SUCCESS)
}
