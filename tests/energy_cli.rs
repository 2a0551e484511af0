//! `llem env`, `llem monitor` and `llem run` end to end against a fake
//! powercap tree and a fake libnvidia-ml, through the shipped plugins.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::powercap::FakeSys;
use llem_integration_tests::{build_c_library, llem, output};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn fake_nvml(dir: &std::path::Path) -> PathBuf {
    build_c_library("fake_nvml.c", "libnvidia-ml.so.1", dir)
}

#[test]
fn env_reports_rapl_and_nvml_working_on_fakes_and_why_not_without() {
    let (sys, _) = FakeSys::intel_two_sockets();
    let libs = tempfile::tempdir().unwrap();
    let nvml = fake_nvml(libs.path());
    let empty = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        llem(empty.path())
            .arg("env")
            .arg("--set")
            .arg(format!("rapl.root=\"{}\"", sys.devices().display()))
            .arg("--set")
            .arg(format!("nvml.library=\"{}\"", nvml.display())),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("✔ energy-rapl: 9 device(s)"), "{stdout}");
    assert!(stdout.contains("package-1-dram"), "{stdout}");
    assert!(stdout.contains("✔ energy-nvml: 4 device(s)"), "{stdout}");
    assert!(stdout.contains("gpu0:"), "{stdout}");
    assert!(
        stdout.contains("measures with: nvml, rapl")
            || stdout.contains("measures with: rapl, nvml"),
        "{stdout}"
    );

    // Without the fakes: nothing of either on this machine, each with its fix.
    let (_, stdout, _) =
        output(llem(empty.path()).args(["env", "--set", "rapl.root=\"/nonexistent\""]));
    assert!(
        stdout.contains("✘ energy-rapl: no RAPL zones under /nonexistent"),
        "{stdout}"
    );
    assert!(stdout.contains("✘ energy-nvml: "), "{stdout}");
}

#[test]
fn monitor_and_run_measure_a_live_powercap_counter_exactly() {
    let (sys, zones) = FakeSys::intel_two_sockets();
    let package0 = zones[0].clone();
    sys.set(&package0, 100_000_000_000);
    // A writer advancing package-0 by exactly 1 J every 50 ms while llem samples.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let zone = package0.clone();
        std::thread::spawn(move || {
            // Rewritten in place, same width, one write() — as sysfs presents a
            // counter: the plugin keeps the file open, so it must stay the same file.
            use std::io::{Seek, Write};
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(zone.join("energy_uj"))
                .unwrap();
            let mut value = 100_000_000_000u64;
            while !stop.load(Ordering::Relaxed) {
                value += 1_000_000;
                file.seek(std::io::SeekFrom::Start(0)).unwrap();
                file.write_all(format!("{value}\n").as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let empty = tempfile::tempdir().unwrap();
    let root = format!("rapl.root=\"{}\"", sys.devices().display());
    let (code, stdout, stderr) = output(llem(empty.path()).args([
        "monitor",
        "--plugins",
        "rapl",
        "--set",
        &root,
        "--format",
        "jsonl",
        "--interval",
        "20ms",
        "--duration",
        "1",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let package: Vec<f64> = rows
        .iter()
        .filter(|r| r["device"] == "package-0")
        .filter_map(|r| r["energy_j"].as_f64())
        .collect();
    let last = *package.last().unwrap();
    assert!(
        (10.0..=25.0).contains(&last),
        "about 20 J over a second: {package:?}"
    );
    assert_eq!(
        last,
        last.round(),
        "whole joules: the counter moves 1 J at a time"
    );
    // Untouched zones stay at exactly 0 J.
    assert!(
        rows.iter()
            .filter(|r| r["device"] == "package-1")
            .all(|r| r["energy_j"].as_f64().unwrap_or(0.0) == 0.0)
    );

    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(
        llem(empty.path())
            .args([
                "run",
                "--set",
                "measurement.baseline=off",
                "--plugins",
                "rapl",
                "--set",
                &root,
                "--duration",
                "1",
                "--name",
                "rapl",
            ])
            .arg("--output")
            .arg(out.path()),
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    let run = std::fs::read_dir(out.path().join("rapl"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    let devices = result["energy"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 9);
    let p0 = devices.iter().find(|d| d["device"] == "package-0").unwrap();
    assert_eq!(p0["method"], "counter");
    assert_eq!(p0["kind"], "cpu-package");
    assert_eq!(p0["estimated"], false);
    let joules = p0["energy_j"].as_f64().unwrap();
    assert!(
        (10.0..=25.0).contains(&joules) && joules == joules.round(),
        "{joules}"
    );
    assert_eq!(result["energy"]["includes_estimates"], false);
    // psys contains the packages: the total is psys alone (still at 0 J in
    // this fake, where only package-0 moves), and every other zone says why
    // it is left out.
    assert_eq!(result["energy"]["total_includes"], json!(["rapl/psys"]));
    assert_eq!(result["energy"]["total_j"], 0.0);
    assert_eq!(p0["in_total"], false);
    assert_eq!(p0["parent"], "psys");
    assert_eq!(
        p0["excluded_because"],
        "inside rapl/psys, whose figure already includes it"
    );
    let core = devices
        .iter()
        .find(|d| d["device"] == "package-0-core")
        .unwrap();
    assert_eq!(
        core["excluded_because"],
        "inside rapl/package-0, whose figure already includes it"
    );
    assert_eq!(p0["gaps"]["count"], 0);
    let coverage = p0["coverage"].as_f64().unwrap();
    assert!(coverage > 0.95 && coverage <= 1.0, "{coverage}");
}
