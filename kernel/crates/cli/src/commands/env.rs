//! `llem env`: what can be measured on this machine and, where something
//! cannot, why and the exact fix.

use crate::output::{CmdResult, Failure};
use llem::Catalog;
use llem::doctor::{BackendCheck, HfCacheCheck};
use llem::plugin::{sanitize, sanitize_lines};
use llem::probe::{KNOWN_ENERGY_SOURCES, ProbeOutcome, probe_energy};
use llem_sdk::PluginKind;
use std::process::ExitCode;

/// What can be measured on this machine and, where something cannot, why and the fix.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Options to try sources and backends with: `--set nvml.library=/opt/…/libnvidia-ml.so.1`,
    /// `--set vllm.python=/opt/venv/bin/python`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Every backend this llem finds, checked with the user's `--set`s for it.
/// Checked in parallel: each imports an engine, which takes seconds.
fn check_backends(catalog: &Catalog, sets: &[String]) -> Vec<BackendCheck> {
    let mut backends = Vec::new();
    for found in catalog.discovered() {
        let Ok(code) = catalog.load_path(&found.path) else {
            continue;
        };
        if code.info().kind != PluginKind::Backend {
            continue;
        }
        let short = llem::discovery::short_name(code.name()).to_owned();
        let own: Vec<String> = sets
            .iter()
            .filter(|s| s.starts_with(&format!("{short}.")))
            .cloned()
            .collect();
        let plugins = [short.clone()];
        let input = crate::input::Input {
            manifest: None,
            plugins: &plugins,
            sets: &own,
        };
        match crate::input::resolve(&input, catalog) {
            Ok(plan) => {
                if let Some(p) = plan
                    .plugins
                    .into_iter()
                    .find(|p| p.kind == PluginKind::Backend)
                {
                    backends.push((short, p));
                }
            }
            Err(failure) => crate::output::warn(&format!("backend `{short}`: {}", failure.message)),
        }
    }
    let backends: Vec<(&str, &_)> = backends.iter().map(|(short, p)| (&**short, p)).collect();
    llem::doctor::check_backends(catalog, &backends)
}

/// One line per package: its version, or why it did not import. Shared with
/// `llem run --dry-run`.
pub fn print_modules(modules: &[llem::doctor::ModuleCheck], indent: &str) {
    for m in modules {
        match (&m.version, &m.error) {
            (_, Some(e)) => println!("{indent}✘ {}: {}", m.name, sanitize(e)),
            (Some(v), None) => println!("{indent}✔ {} {}", m.name, sanitize(v)),
            (None, None) => println!("{indent}✔ {}", m.name),
        }
    }
}

fn print_backends(backends: &[BackendCheck], cache: &HfCacheCheck) {
    println!("inference backends:");
    if backends.is_empty() {
        println!("  - none installed; build them with `cargo xtask build`");
    }
    for b in backends {
        let mark = if b.ok { "✔" } else { "✘" };
        println!(
            "  {mark} {} ({}): {}",
            b.backend,
            b.plugin,
            b.python_label()
        );
        print_modules(&b.modules, "      ");
        if let Some(cuda) = &b.cuda {
            let built = cuda
                .built_with
                .as_deref()
                .map_or("a CPU build".to_owned(), |v| format!("built for CUDA {v}"));
            if cuda.available {
                println!(
                    "      CUDA: torch {built}, {} device(s) visible",
                    cuda.devices.len()
                );
                for d in &cuda.devices {
                    println!(
                        "        {} ({})",
                        sanitize(&d.name),
                        crate::commands::dry_run::human_bytes(d.memory_bytes)
                    );
                }
            } else {
                println!(
                    "      CUDA: not usable (torch {built}); the engine would run on CPU or fail"
                );
            }
        }
        for p in &b.problems {
            println!("      fix: {}", sanitize(p));
        }
    }
    match (&cache.path, cache.exists) {
        (Some(path), true) => println!(
            "Hugging Face cache: {} ({} model(s){})",
            path.display(),
            cache.models.len(),
            if cache.models.is_empty() {
                String::new()
            } else {
                format!(": {}", cache.models.join(", "))
            }
        ),
        (Some(path), false) => println!(
            "Hugging Face cache: {} does not exist: models named by id must be downloaded first (`huggingface-cli download <id>`), or give a local directory",
            path.display()
        ),
        (None, _) => println!("Hugging Face cache: none (set HF_HOME or HF_HUB_CACHE)"),
    }
}

pub fn run(args: Args) -> CmdResult {
    let catalog = Catalog::from_env();
    let probes = probe_energy(&catalog, &args.sets);
    let backends = check_backends(&catalog, &args.sets);
    let cache = llem::doctor::check_hf_cache();
    if args.json {
        let entries: Vec<serde_json::Value> = probes
            .iter()
            .map(|p| {
                let (status, detail) = match &p.outcome {
                    ProbeOutcome::Works(devices) => ("works", serde_json::json!({ "devices": devices })),
                    ProbeOutcome::Fails(f) => (
                        "fails",
                        serde_json::json!({ "kind": format!("{:?}", f.kind), "message": f.message, "fix": f.hint }),
                    ),
                    ProbeOutcome::NeedsConfig(why) => ("needs-config", serde_json::json!({ "message": why })),
                    ProbeOutcome::NotInstalled => ("not-installed", serde_json::json!({})),
                };
                serde_json::json!({ "name": p.name, "path": p.path, "status": status, "detail": detail })
            })
            .collect();
        let doc = serde_json::json!({
            "llem_version": env!("CARGO_PKG_VERSION"),
            "cpu": cpu_model(),
            "kernel": kernel_release(),
            "energy_sources": entries,
            "backends": backends,
            "hf_cache": cache,
        });
        let text =
            serde_json::to_string_pretty(&doc).map_err(|e| Failure::failed(e.to_string()))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "llem {} · {} · Linux {}",
        env!("CARGO_PKG_VERSION"),
        cpu_model(),
        kernel_release()
    );
    println!("energy sources:");
    for probe in &probes {
        let about = KNOWN_ENERGY_SOURCES
            .iter()
            .find(|(name, _)| *name == probe.name)
            .map(|(_, about)| *about)
            .unwrap_or("");
        match &probe.outcome {
            ProbeOutcome::Works(devices) => {
                let estimated = if probe.estimated_only() {
                    " (estimated, not measured)"
                } else {
                    ""
                };
                // A plugin from the plugin path is used only when named.
                let named_only = if probe.shipped {
                    ""
                } else {
                    " (not shipped with llem: used only when named)"
                };
                println!(
                    "  ✔ {}: {} device(s){estimated}{named_only}",
                    probe.name,
                    devices.len()
                );
                for device in devices {
                    let how = match (device.has_energy_counter, device.has_power) {
                        (true, _) => "energy counter".to_owned(),
                        (false, true) if device.power_average_window_ms > 0 => {
                            format!("power, {} ms average", device.power_average_window_ms)
                        }
                        (false, true) => "power".to_owned(),
                        (false, false) => "no reading".to_owned(),
                    };
                    println!(
                        "      {}: {} ({how})",
                        sanitize(&device.id),
                        sanitize(&device.name)
                    );
                }
            }
            ProbeOutcome::Fails(failure) => {
                // Plugin text: shown, never executed, on stdout as well.
                println!(
                    "  ✘ {}: {}",
                    probe.name,
                    sanitize_lines(&failure.message).replace('\n', "\n      ")
                );
                if let Some(hint) = &failure.hint {
                    println!("      fix: {}", sanitize(hint));
                }
            }
            ProbeOutcome::NeedsConfig(why) => {
                println!("  ? {}: needs configuration to be tried: {why}", probe.name);
            }
            ProbeOutcome::NotInstalled => {
                println!(
                    "  - {}: not installed ({about}); build it with `cargo xtask build`",
                    probe.name
                );
            }
        }
    }
    print_backends(&backends, &cache);
    let auto = llem::probe::auto_energy_sources(&probes);
    if auto.is_empty() {
        println!("nothing can measure energy here; `llem run` needs an energy source");
    } else {
        println!(
            "`llem run` with no manifest measures with: {}",
            auto.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
