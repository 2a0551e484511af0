//! `energy-rapl` built as a WASM component, loaded by the kernel and reading
//! fake powercap trees shaped exactly like sysfs: real zone directories under
//! `devices/virtual/powercap`, and `class/powercap` entries that are relative
//! symbolic links into them (with `subsystem` links pointing back out, as the
//! kernel makes them). The sandbox is granted only the devices tree.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::energy::DeviceAccumulator;
use llem::plugin::{EnergyInstance, FailureKind};
use llem::{PluginFormat, Sandbox};
use llem_integration_tests::powercap::{AMD_MAX, FakeSys, INTEL_DRAM_MAX, INTEL_MAX};
use llem_integration_tests::{fresh_loader, loader, native_artifact, wasm_artifact};
use llem_sdk::{Device, DeviceKind, PluginKind, Reading};
use serde_json::{Map, Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const CVE_TEXT: &str = "energy_uj is root-only since Linux 5.10 (CVE-2020-8694)";
const CHMOD_HINT: &str = "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj /sys/class/powercap/intel-rapl:*:*/energy_uj";

fn config(root: &Path, domains: &[&str]) -> Map<String, Value> {
    match json!({"root": root.to_str().unwrap(), "domains": domains}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn open_wasm(root: &Path, domains: &[&str], sandbox: &Sandbox) -> Box<dyn EnergyInstance> {
    let plugin = loader().load(&wasm_artifact("energy-rapl")).unwrap();
    assert_eq!(plugin.format(), PluginFormat::Wasm);
    assert_eq!(plugin.kind(), PluginKind::Energy);
    plugin
        .open_energy(&config(root, domains), sandbox)
        .unwrap_or_else(|e| panic!("open: {e}"))
}

fn read(source: &mut Box<dyn EnergyInstance>) -> Vec<Reading> {
    let mut out = Vec::new();
    source.read(&mut out).unwrap();
    out
}

fn counters(readings: &[Reading]) -> Vec<u64> {
    readings.iter().map(|r| r.energy_uj.unwrap()).collect()
}

fn ids(devices: &[Device]) -> Vec<&str> {
    devices.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn intel_two_sockets_with_subzones_and_psys() {
    let (sys, _) = FakeSys::intel_two_sockets();
    let mut source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    let devices = source.devices().to_vec();
    assert_eq!(
        ids(&devices),
        [
            "package-0",
            "package-0-core",
            "package-0-uncore",
            "package-0-dram",
            "package-1",
            "package-1-core",
            "package-1-uncore",
            "package-1-dram",
            "psys",
        ]
    );
    use DeviceKind::*;
    assert_eq!(
        devices.iter().map(|d| d.kind).collect::<Vec<_>>(),
        [
            CpuPackage, CpuCore, CpuUncore, Dram, CpuPackage, CpuCore, CpuUncore, Dram, Psys
        ]
    );
    for device in &devices {
        assert!(device.has_energy_counter, "{}", device.id);
        assert!(!device.has_power, "{}", device.id);
        assert!(!device.estimated, "{}", device.id);
        let max = if device.kind == Dram {
            INTEL_DRAM_MAX
        } else {
            INTEL_MAX
        };
        assert_eq!(device.counter_wrap_uj, Some(max + 1), "{}", device.id);
    }
    let readings = read(&mut source);
    assert!(
        readings
            .iter()
            .enumerate()
            .all(|(i, r)| r.device == i as u32 && r.power_mw.is_none())
    );
    assert_eq!(
        counters(&readings),
        [
            1_000_000, 1_000_001, 1_000_002, 1_000_003, 2_000_000, 2_000_001, 2_000_002, 2_000_003,
            42
        ]
    );

    // `domains` filters by domain type.
    let mut dram = open_wasm(&sys.devices(), &["dram", "psys"], &sys.sandbox());
    assert_eq!(
        ids(dram.devices()),
        ["package-0-dram", "package-1-dram", "psys"]
    );
    assert_eq!(counters(&read(&mut dram)), [1_000_003, 2_000_003, 42]);
}

#[test]
fn amd_zen_packages_with_core_subzones_and_no_dram() {
    let (sys, _) = FakeSys::amd_zen();
    let mut source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    assert_eq!(
        ids(source.devices()),
        ["package-0", "package-0-core", "package-1", "package-1-core"]
    );
    assert!(
        source
            .devices()
            .iter()
            .all(|d| d.counter_wrap_uj == Some(AMD_MAX + 1))
    );
    assert_eq!(counters(&read(&mut source)), [10, 20, 11, 21]);

    let plugin = loader().load(&wasm_artifact("energy-rapl")).unwrap();
    let err = plugin
        .open_energy(&config(&sys.devices(), &["dram"]), &sys.sandbox())
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable, "{err}");
    assert!(err.message.contains("no `dram` zone"), "{err}");
}

#[test]
fn a_wrap_mid_window_gives_exact_joules() {
    let sys = FakeSys::new();
    let pkg = sys.zone("intel-rapl", &[0], "package-0", 262_142_000_000, INTEL_MAX);
    let dram = sys.zone("intel-rapl", &[0, 0], "dram", 5_000_000, INTEL_DRAM_MAX);
    let mut source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    let devices = source.devices().to_vec();
    assert_eq!(ids(&devices), ["package-0", "package-0-dram"]);
    let mut acc: Vec<DeviceAccumulator> = devices.iter().map(DeviceAccumulator::new).collect();

    // package-0 climbs to just below its top, wraps, and goes on; dram does not wrap.
    let steps: [(u64, u64); 5] = [
        (262_142_000_000, 5_000_000),
        (262_143_000_000, 6_000_000),
        (262_143_328_850, 7_000_000), // the top value itself is a valid reading
        (1_500_000, 8_500_000),       // wrapped: 1 µJ to reach 0, then 1.5 J
        (4_000_000, 9_000_000),
    ];
    for (t, (p, d)) in steps.into_iter().enumerate() {
        sys.set(&pkg, p);
        sys.set(&dram, d);
        let readings = read(&mut source);
        assert_eq!(counters(&readings), [p, d], "raw counters at step {t}");
        for r in &readings {
            acc[r.device as usize].push(t as u64 * 1_000_000_000, r);
        }
    }
    // package: 1_000_000 + 328_850 + (1 + 1_500_000) + 2_500_000 µJ; dropping
    // the wrapped interval (Scaphandre) would give 3.82885 J, treating the
    // modulus as max_energy_range_uj would give 5.32885 J.
    assert_eq!(acc[0].wraps, 1);
    assert_eq!(acc[0].resets, 0);
    assert_eq!(acc[0].energy_j(), Some(5.328851));
    assert_eq!(acc[1].wraps, 0);
    assert_eq!(acc[1].energy_j(), Some(4.0));
    assert_eq!(acc[1].average_power_w(), Some(1.0));
}

#[test]
fn the_class_tree_alone_is_refused_with_a_pointer_to_the_devices_tree() {
    // Granting only /sys/class/powercap gives links that escape the grant.
    let (sys, _) = FakeSys::intel_two_sockets();
    let plugin = loader().load(&wasm_artifact("energy-rapl")).unwrap();
    let sandbox = Sandbox {
        read_dirs: vec![sys.class()],
        ..Sandbox::default()
    };
    let err = plugin
        .open_energy(&config(&sys.class(), &[]), &sandbox)
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable, "{err}");
    assert!(err.message.contains("symbolic link"), "{err}");
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("/sys/devices/virtual/powercap"),
        "{err}"
    );
    // The same links work for a sandbox granted the whole fake /sys.
    let whole = Sandbox {
        read_dirs: vec![sys.path().join("sys")],
        ..Sandbox::default()
    };
    let mut source = open_wasm(&sys.class(), &["package"], &whole);
    assert_eq!(ids(source.devices()), ["package-0", "package-1"]);
    assert_eq!(counters(&read(&mut source)), [1_000_000, 2_000_000]);
}

#[test]
fn no_powercap_tree_is_unavailable_with_a_hint() {
    let sys = FakeSys::new();
    let plugin = loader().load(&wasm_artifact("energy-rapl")).unwrap();
    let err = plugin
        .open_energy(&config(&sys.devices(), &[]), &sys.sandbox())
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable, "{err}");
    assert!(
        err.message
            .starts_with(&format!("no RAPL zones under {}", sys.devices().display())),
        "{err}"
    );
    assert!(err.message.contains("Intel CPUs and AMD Zen"), "{err}");
    assert!(err.message.contains("virtual machines"), "{err}");
    assert!(err.hint.is_some(), "{err}");
}

#[test]
fn wasm_and_native_builds_read_identically() {
    let (sys, zones) = FakeSys::intel_two_sockets();
    let mmio = sys.zone("intel-rapl-mmio", &[0], "package-0", 999, INTEL_MAX);
    let cache = tempfile::tempdir().unwrap();
    let loader = fresh_loader(cache.path());
    let wasm = loader.load(&wasm_artifact("energy-rapl")).unwrap();
    let native = loader.load(&native_artifact("energy-rapl")).unwrap();
    assert_eq!(native.format(), PluginFormat::Native);
    assert_eq!(wasm.info(), native.info(), "describe() must agree");
    let cfg = config(&sys.devices(), &[]);
    let mut from_wasm = wasm.open_energy(&cfg, &sys.sandbox()).unwrap();
    let mut from_native = native.open_energy(&cfg, &Sandbox::default()).unwrap();
    assert_eq!(from_wasm.devices(), from_native.devices());
    // The MMIO package-0 duplicates the MSR one: read once, from MSR.
    assert_eq!(from_wasm.devices().len(), 9);
    for round in 0..3u64 {
        for (i, zone) in zones.iter().enumerate() {
            sys.set(zone, round * 1_000 + i as u64);
        }
        sys.set(&mmio, 5);
        let a = read(&mut from_wasm);
        assert_eq!(a, read(&mut from_native));
        assert_eq!(a[0].energy_uj, Some(round * 1_000));
    }
}

/// Environment the permission test hands its unprivileged child.
const CHILD_ROOT: &str = "LLEM_RAPL_TEST_ROOT";
const CHILD_CACHE: &str = "LLEM_RAPL_TEST_CACHE";
const CHILD_WASM: &str = "LLEM_RAPL_TEST_WASM";

#[test]
fn a_root_only_energy_uj_is_permission_denied_with_the_cve() {
    let (sys, zones) = FakeSys::intel_two_sockets();
    let dram = zones[3].join("energy_uj");
    let running_as_root = {
        let probe = sys.path().join("uid-probe");
        std::fs::write(&probe, "").unwrap();
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap()) == 0
    };
    if !running_as_root {
        std::fs::set_permissions(&dram, std::fs::Permissions::from_mode(0o000)).unwrap();
        check_permission_denied(&sys.devices(), &loader());
        return;
    }
    // Root reads a 0400 file anyway: make every counter root-only, as Linux
    // does, and run the check as `nobody` in a child process.
    for zone in &zones {
        std::fs::set_permissions(
            zone.join("energy_uj"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
    }
    let cache = sys.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!(
                "`setpriv` is needed to drop root privileges for this test: \
                 apt-get install util-linux"
            )
        });
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "energy_rapl::permission_denied_as_an_unprivileged_user",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROOT, sys.devices())
        .env(CHILD_CACHE, &cache)
        .env(CHILD_WASM, wasm_artifact("energy-rapl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the unprivileged check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("checked as an unprivileged user"),
        "{stdout}\n{stderr}"
    );
}

/// Run by `a_root_only_energy_uj_is_permission_denied_with_the_cve` as uid
/// 65534; does nothing when run any other way.
#[test]
#[ignore = "helper: run as an unprivileged child by a_root_only_energy_uj_is_permission_denied_with_the_cve"]
fn permission_denied_as_an_unprivileged_user() {
    let (Some(root), Some(cache), Some(wasm)) = (
        std::env::var_os(CHILD_ROOT),
        std::env::var_os(CHILD_CACHE),
        std::env::var_os(CHILD_WASM),
    ) else {
        return;
    };
    let root = PathBuf::from(root);
    let probe = root.join("intel-rapl/intel-rapl:0/energy_uj");
    assert_eq!(
        std::fs::File::open(&probe).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::PermissionDenied),
        "the child must not be able to read {}",
        probe.display()
    );
    let loader = fresh_loader(Path::new(&cache));
    let plugin = loader.load(Path::new(&wasm)).unwrap();
    assert_eq!(plugin.name(), "energy-rapl");
    check_permission_denied(&root, &loader);
    println!("checked as an unprivileged user");
}

/// Opening the WASM plugin on `root` fails at `open` with PermissionDenied,
/// naming an `energy_uj`, the CVE and the chmod that fixes it.
fn check_permission_denied(root: &Path, loader: &llem::PluginLoader) {
    let plugin = loader.load(&child_wasm()).unwrap();
    let sandbox = Sandbox {
        read_dirs: vec![root.to_owned()],
        ..Sandbox::default()
    };
    let err = plugin
        .open_energy(&config(root, &[]), &sandbox)
        .err()
        .expect("open must fail on an unreadable energy_uj");
    assert_eq!(err.kind, FailureKind::PermissionDenied, "{err}");
    assert_eq!(err.call, "open", "{err}");
    assert!(err.message.starts_with("cannot read "), "{err}");
    assert!(
        err.message
            .contains("/energy_uj: permission denied. energy_uj is root-only"),
        "{err}"
    );
    assert!(
        err.message
            .starts_with(&format!("cannot read {}", root.display())),
        "{err}"
    );
    assert!(err.message.ends_with(CVE_TEXT), "{err}");
    let hint = err.hint.as_deref().unwrap();
    assert!(
        hint.starts_with("run as root, or grant read access"),
        "{hint}"
    );
    assert!(hint.ends_with(CHMOD_HINT), "{hint}");
    assert!(err.to_string().contains("CVE-2020-8694"), "{err}");
}

/// The WASM artifact: from the parent's environment in the child, else the
/// usual place.
fn child_wasm() -> PathBuf {
    std::env::var_os(CHILD_WASM)
        .map(PathBuf::from)
        .unwrap_or_else(|| wasm_artifact("energy-rapl"))
}

// ---------------------------------------------------------------- hierarchy

/// Measure one window over a source whose counters are moved by `advance`
/// between the window's two forced reads (the sampler's own ticks are an hour
/// apart, so the window rests on exactly those reads).
fn window_over(
    source: Box<dyn EnergyInstance>,
    advance: impl FnOnce(),
) -> llem::sampler::WindowMeasurement {
    let config = llem::sampler::SourceConfig {
        name: "rapl".into(),
        interval: std::time::Duration::from_secs(3600),
        telemetry_interval: std::time::Duration::ZERO,
    };
    let sampler = llem::sampler::Sampler::start(vec![(config, source)]).unwrap();
    // The window's own syncs wait at most 2 s; on a loaded CI machine a read
    // can take longer, so make sure every read before `advance` has finished
    // (and one after it has happened) before the window edges are cut.
    let patient = std::time::Duration::from_secs(60);
    sampler.sync(patient);
    sampler.begin_window("w");
    sampler.sync(patient);
    advance();
    sampler.sync(patient);
    let window = sampler.end_window("w").unwrap();
    drop(sampler);
    window
}

fn parents(devices: &[Device]) -> Vec<(&str, Option<&str>)> {
    devices
        .iter()
        .map(|d| (d.id.as_str(), d.parent.as_deref()))
        .collect()
}

fn in_total(window: &llem::sampler::WindowMeasurement) -> Vec<(&str, bool)> {
    window
        .devices
        .iter()
        .map(|d| (d.device.as_str(), d.in_total))
        .collect()
}

/// Joules each Intel zone gains in the window, in the order of
/// `FakeSys::intel_two_sockets` (package, core, uncore, dram per socket, psys).
const INTEL_STEP_J: [u64; 9] = [100, 40, 35, 20, 90, 30, 25, 15, 260];

fn advance(sys: &FakeSys, zones: &[PathBuf], start: &[u64], step_j: &[u64]) {
    for ((zone, start), j) in zones.iter().zip(start).zip(step_j) {
        sys.set(zone, start + j * 1_000_000);
    }
}

#[test]
fn intel_parents_core_and_uncore_in_their_package_packages_and_dram_in_psys() {
    let (sys, _) = FakeSys::intel_two_sockets();
    let source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    assert_eq!(
        parents(source.devices()),
        [
            ("package-0", Some("psys")),
            ("package-0-core", Some("package-0")),
            ("package-0-uncore", Some("package-0")),
            ("package-0-dram", Some("psys")),
            ("package-1", Some("psys")),
            ("package-1-core", Some("package-1")),
            ("package-1-uncore", Some("package-1")),
            ("package-1-dram", Some("psys")),
            ("psys", None),
        ]
    );
    // The same through the native build (parents cross as JSON there).
    let native = loader()
        .load(&native_artifact("energy-rapl"))
        .unwrap()
        .open_energy(&config(&sys.devices(), &[]), &Sandbox::default())
        .unwrap();
    assert_eq!(native.devices(), source.devices());
}

#[test]
fn intel_total_counts_psys_once_not_every_zone() {
    let (sys, zones) = FakeSys::intel_two_sockets();
    let source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    let start = counters(&read(&mut open_wasm(&sys.devices(), &[], &sys.sandbox())));
    let window = window_over(source, || advance(&sys, &zones, &start, &INTEL_STEP_J));
    // psys contains everything: 260 J. Summing every zone gave 615 J (+137 %).
    assert_eq!(window.total_j(), Some(260.0));
    assert_eq!(window.total_includes(), ["rapl/psys"]);
    let core = &window.devices[1];
    assert_eq!(core.energy_j, Some(40.0));
    assert_eq!(
        core.excluded_because.as_deref(),
        Some("inside rapl/package-0, whose figure already includes it")
    );
    assert_eq!(
        window.devices[0].excluded_because.as_deref(),
        Some("inside rapl/psys, whose figure already includes it")
    );
    assert!(window.warnings.is_empty(), "{:?}", window.warnings);
}

#[test]
fn intel_total_without_psys_is_packages_plus_dram() {
    let (sys, zones) = FakeSys::intel_two_sockets();
    let domains = ["package", "core", "uncore", "dram"];
    let source = open_wasm(&sys.devices(), &domains, &sys.sandbox());
    // psys left out by `domains`: the packages and DRAM become top-level.
    assert_eq!(source.devices()[0].parent, None);
    assert_eq!(source.devices()[3].parent, None);
    assert_eq!(source.devices()[1].parent.as_deref(), Some("package-0"));
    let start = counters(&read(&mut open_wasm(&sys.devices(), &[], &sys.sandbox())));
    let window = window_over(source, || advance(&sys, &zones, &start, &INTEL_STEP_J));
    // 100 + 20 + 90 + 15 = 225 J; every zone summed gave 355 J (+58 %).
    assert_eq!(window.total_j(), Some(225.0));
    assert_eq!(
        in_total(&window),
        [
            ("package-0", true),
            ("package-0-core", false),
            ("package-0-uncore", false),
            ("package-0-dram", true),
            ("package-1", true),
            ("package-1-core", false),
            ("package-1-uncore", false),
            ("package-1-dram", true),
        ]
    );
}

#[test]
fn only_core_zones_are_summed_when_no_package_is_measured() {
    let (sys, zones) = FakeSys::intel_two_sockets();
    let source = open_wasm(&sys.devices(), &["core"], &sys.sandbox());
    let start = counters(&read(&mut open_wasm(&sys.devices(), &[], &sys.sandbox())));
    let window = window_over(source, || advance(&sys, &zones, &start, &INTEL_STEP_J));
    assert_eq!(window.total_j(), Some(70.0));
}

#[test]
fn amd_total_counts_packages_not_their_cores() {
    let (sys, zones) = FakeSys::amd_zen();
    let source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    assert_eq!(
        parents(source.devices()),
        [
            ("package-0", None),
            ("package-0-core", Some("package-0")),
            ("package-1", None),
            ("package-1-core", Some("package-1")),
        ]
    );
    let start = counters(&read(&mut open_wasm(&sys.devices(), &[], &sys.sandbox())));
    let window = window_over(source, || advance(&sys, &zones, &start, &[50, 30, 45, 25]));
    // 50 + 45 = 95 J; every zone summed gave 150 J (+58 %).
    assert_eq!(window.total_j(), Some(95.0));
    assert_eq!(
        window.total_includes(),
        ["rapl/package-0", "rapl/package-1"]
    );
}

#[test]
fn a_counter_one_microjoule_back_is_jitter_not_a_262_kj_wrap() {
    let sys = FakeSys::new();
    let pkg = sys.zone("intel-rapl", &[0], "package-0", 10_000_000, INTEL_MAX);
    let source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    let window = window_over(source, || sys.set(&pkg, 9_999_999));
    // Before: one full wrap, 262 143.328 850 J. Now: 0 J, no gap, no wrap.
    assert_eq!(window.total_j(), Some(0.0));
    assert!(window.devices[0].gaps.is_empty());
}

#[test]
fn a_value_above_the_declared_range_is_a_gap_not_energy() {
    let sys = FakeSys::new();
    let pkg = sys.zone("intel-rapl", &[0], "package-0", 10_000_000, INTEL_MAX);
    let source = open_wasm(&sys.devices(), &[], &sys.sandbox());
    let window = window_over(source, || sys.set(&pkg, INTEL_MAX + 5));
    // Every read after it is a gap: the helper's sync, and the window's end
    // when its fresh read comes within its 2 s wait (not always on a loaded
    // CI machine, so one gap is the least).
    assert!(
        window.devices[0].gaps.count >= 1,
        "{:?}",
        window.devices[0].gaps
    );
    assert!(
        window.devices[0].gaps.first[0]
            .reason
            .contains("outside the device's declared range"),
        "{:?}",
        window.devices[0].gaps
    );
    // The reads were dropped: the figure rests on the readings before them.
    assert_eq!(window.total_j(), Some(0.0));
}
