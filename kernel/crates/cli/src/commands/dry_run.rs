//! `llem run --dry-run`: print what the run would do (`Experiment::dry_run`)
//! and start nothing. The plan goes to stdout; exit 2 when the run would be
//! refused, with the reason.

use crate::output::{CmdResult, Failure};
use llem::experiment::{DryRun, MemoryReport};
use llem::manifest::Plan;
use llem::{Catalog, Experiment};
use std::process::ExitCode;

/// `bytes` for people: GiB, MiB, KiB or bytes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|(_, size)| bytes >= *size)
        .map(|(unit, size)| format!("{:.2} {unit}", bytes as f64 / *size as f64))
        .unwrap_or_else(|| format!("{bytes} B"))
}

/// Exact bytes beside the rounded figure, for scripts and checks.
fn bytes_both(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", human_bytes(bytes))
}

pub fn print(plan: Plan, catalog: &Catalog) -> CmdResult {
    let resolved = plan
        .to_toml_string()
        .map_err(|e| Failure::failed(format!("cannot render the resolved manifest: {e}")))?;
    let experiment = Experiment::new(plan, catalog);
    let dry = experiment
        .dry_run()
        .map_err(|e| Failure::bad_input(format!("the run would be refused: {e}")))?;
    println!("dry run: nothing is started, nothing is written\n");
    print_plan(&dry);
    println!("\nresolved manifest (what manifest.resolved.toml would hold):");
    for line in resolved.lines() {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(dry: &DryRun) {
    println!("plugins:");
    for p in &dry.plugins {
        println!(
            "  {} ({}, {}): {}",
            p.instance,
            p.plugin,
            p.kind,
            p.location.display()
        );
        for g in &p.grants {
            println!("    grant: {g}");
        }
    }
    println!(
        "model: {}",
        dry.model
            .as_deref()
            .unwrap_or("not found on this machine (the engine may download it)")
    );
    if let Some(e) = &dry.engine {
        match &e.attached_to {
            Some(url) => println!(
                "engine: {} attached to {url} (nothing is started)",
                e.engine
            ),
            None => {
                println!(
                    "engine: {} ({}): {}",
                    e.engine,
                    format!("{:?}", e.mode).to_lowercase(),
                    e.command_line
                );
                match &e.program {
                    Ok(path) => println!("  program: {} (allowed)", path.display()),
                    Err(why) => println!("  program: refused: {why}"),
                }
            }
        }
    }
    if let Some(stack) = &dry.stack {
        print_stack(stack);
    }
    println!("phases:");
    for (i, (phase, note)) in dry.phases.iter().enumerate() {
        println!("  {}. {:<15} {note}", i + 1, phase.as_str());
    }
    match &dry.memory {
        Ok(report) => print_memory(report),
        Err(why) => println!("memory estimate: none: {why}"),
    }
}

fn print_memory(r: &MemoryReport) {
    let e = &r.estimate;
    println!(
        "memory estimate (weights + KV cache; activations, CUDA graphs and context not included):"
    );
    println!(
        "  {} parameters, {}{}; KV cache {}",
        e.parameters,
        r.dtype,
        r.quantization
            .as_deref()
            .map(|q| format!(", {q}-quantised"))
            .unwrap_or_default(),
        r.kv_cache_dtype
    );
    println!("  weights:  {}", bytes_both(e.weights_bytes));
    println!(
        "  KV cache: {} ({} per token × {} sequences × {} tokens)",
        bytes_both(e.kv_cache_bytes),
        human_bytes(e.kv_bytes_per_token),
        r.max_num_seqs,
        r.max_model_len
    );
    println!(
        "  per rank (tensor parallel {}): {} weights + {} KV cache = {}",
        e.tensor_parallel,
        human_bytes(e.per_rank_weights_bytes),
        human_bytes(e.per_rank_kv_cache_bytes),
        bytes_both(e.per_rank_total_bytes)
    );
    for a in &r.assumed {
        println!("  assumed: {a}");
    }
    if r.devices.is_empty() {
        println!("  devices: no GPU memory figure from the energy sources to compare with");
    }
    for (name, bytes) in &r.devices {
        println!(
            "  device {name}: {} × {} usable = {}",
            human_bytes(*bytes),
            r.usable_fraction,
            human_bytes((*bytes as f64 * r.usable_fraction) as u64)
        );
    }
    match r.fits {
        Some(true) => println!("  fits: yes, on the smallest device"),
        Some(false) => println!(
            "  fits: NO: lower max_num_seqs or max_model_len, quantise, or add tensor-parallel ranks"
        ),
        None => {}
    }
}

/// The engine's Python stack (as `llem env` shows it), so a Python without
/// the engine's packages is found before anything starts.
fn print_stack(b: &llem::doctor::BackendCheck) {
    println!("  python: {}", b.python_label());
    crate::commands::env::print_modules(&b.modules, "    ");
    for p in &b.problems {
        println!("    fix: {}", llem::plugin::sanitize(p));
    }
}
