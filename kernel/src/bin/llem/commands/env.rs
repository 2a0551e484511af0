//! `llem env`: what can be measured on this machine and, where something
//! cannot, why and the exact fix.

use crate::output::{CmdResult, Failure};
use llem::Catalog;
use llem::plugin::{sanitize, sanitize_lines};
use llem::probe::{KNOWN_ENERGY_SOURCES, ProbeOutcome, probe_energy};
use std::process::ExitCode;

/// What can be measured on this machine and, where something cannot, why and the fix.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Options to try sources with: `--set nvml.library=/opt/…/libnvidia-ml.so.1`.
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

pub fn run(args: Args) -> CmdResult {
    let catalog = Catalog::from_env();
    let probes = probe_energy(&catalog, &args.sets);
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
