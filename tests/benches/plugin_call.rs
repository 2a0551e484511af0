//! Per-call overhead of a trivial energy read through each plugin host.
//!
//! The same fixture plugin is called three ways: directly as a Rust trait
//! object (the baseline: the plugin's own work), through the native C ABI,
//! and through the WASM host. Overhead = host time − baseline, hyperfine
//! style. Run (release-built fixtures, like the baseline):
//!   cargo build --release -p energy-fixture
//!   cargo build --release -p energy-fixture --target wasm32-wasip2
//!   cargo bench -p llem-integration-tests --bench plugin_call

use llem::Sandbox;
use llem_integration_tests::{loader, workspace_root};
use llem_sdk::{Config, EnergySource, Plugin, Reading};
use serde_json::{Map, Value, json};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

const BATCHES: usize = 21;

fn release_artifact(relative: &str) -> PathBuf {
    let path = workspace_root().join("target").join(relative);
    assert!(
        path.exists(),
        "{} is missing: see the build commands at the top of this file",
        path.display()
    );
    path
}

/// Median ns per call over `BATCHES` batches of `calls`.
fn measure(calls: usize, mut call: impl FnMut(&mut Vec<Reading>)) -> f64 {
    let mut out = Vec::with_capacity(8);
    for _ in 0..calls / 10 {
        out.clear();
        call(&mut out);
    }
    let mut per_call: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                out.clear();
                call(black_box(&mut out));
            }
            start.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[BATCHES / 2]
}

fn main() {
    let config = match json!({"devices": 1, "step_uj": 1000, "wrap_uj": 1u64 << 32}) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let text = Value::Object(config.clone()).to_string();
    let mut direct = match Config::from_json(&text).and_then(energy_fixture::Fixture::open) {
        Ok(source) => source,
        Err(e) => panic!("fixture opens: {e}"),
    };
    let baseline = measure(2_000_000, |out| {
        let _ = direct.read(out);
    });

    let native_plugin = loader()
        .load(&release_artifact("release/libenergy_fixture.so"))
        .expect("native fixture loads");
    let mut native = native_plugin
        .open_energy(&config, &Sandbox::default())
        .expect("opens");
    let native_ns = measure(2_000_000, |out| {
        let _ = native.read(out);
    });

    let wasm_plugin = loader()
        .load(&release_artifact(
            "wasm32-wasip2/release/energy_fixture.wasm",
        ))
        .expect("wasm fixture loads");
    let mut wasm = wasm_plugin
        .open_energy(&config, &Sandbox::default())
        .expect("opens");
    let wasm_ns = measure(200_000, |out| {
        let _ = wasm.read(out);
    });

    println!("trivial energy read, median of {BATCHES} batches (ns per call)");
    println!("  direct Rust call (baseline)   {baseline:8.1}");
    println!(
        "  native C ABI                  {native_ns:8.1}   overhead {:8.1}",
        native_ns - baseline
    );
    println!(
        "  WASM component                {wasm_ns:8.1}   overhead {:8.1}",
        wasm_ns - baseline
    );
}
