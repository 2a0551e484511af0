//! `energy-nvml` at its real boundary: the built plugin library, loaded by the
//! kernel's native host, dlopens a fake `libnvidia-ml.so.1` written in C
//! (`tests/fixtures/c/fake_nvml.c`) through nvml-wrapper. The test drives the
//! fake's counters and power through its `fake_nvml_*` controls (same file,
//! same handle, same state) and checks readings down to exact joules through
//! the kernel's `DeviceAccumulator`.
//!
//! NVML is initialised once per process per library path, and tests in this
//! binary run in parallel threads: every test builds its own copy of the fake,
//! so each has its own state and its own NVML. `CUDA_VISIBLE_DEVICES` is
//! process-wide, so those cases run in child processes of this binary.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem::energy::{DeviceAccumulator, EnergyMethod};
use llem::plugin::{EnergyInstance, FailureKind, PluginFailure};
use llem_integration_tests::{build_c_library, loader, native_artifact};
use llem_sdk::{DeviceKind, Metric, Reading};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private copy of the fake NVML library and a handle on its controls.
struct FakeNvml {
    lib: libloading::Library,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeNvml {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = build_c_library("fake_nvml.c", "libnvidia-ml.so.1", dir.path());
        Self::at(&path, dir)
    }

    fn at(path: &Path, dir: tempfile::TempDir) -> Self {
        // SAFETY: the fake runs no code when loaded.
        let lib = unsafe { libloading::Library::new(path) }.unwrap();
        FakeNvml {
            lib,
            path: path.to_owned(),
            _dir: dir,
        }
    }

    fn control<T: Copy>(&self, name: &str) -> T {
        // SAFETY: each caller names a control with the signature it asks for.
        unsafe { *self.lib.get::<T>(name.as_bytes()).unwrap() }
    }

    fn set_energy_mj(&self, gpu: u32, mj: u64) {
        let f: unsafe extern "C" fn(u32, u64) = self.control("fake_nvml_set_energy_mj");
        unsafe { f(gpu, mj) }
    }

    fn set_power_mw(&self, gpu: u32, instant: u32, average: u32) {
        let f: unsafe extern "C" fn(u32, u32, u32) = self.control("fake_nvml_set_power_mw");
        unsafe { f(gpu, instant, average) }
    }

    fn set_supported(&self, gpu: u32, feature: &str, supported: bool) {
        let f: unsafe extern "C" fn(u32, *const std::ffi::c_char, i32) -> i32 =
            self.control("fake_nvml_set_supported");
        let feature = std::ffi::CString::new(feature).unwrap();
        assert_eq!(unsafe { f(gpu, feature.as_ptr(), supported.into()) }, 0);
    }

    fn set_device_count(&self, count: u32) {
        let f: unsafe extern "C" fn(u32) = self.control("fake_nvml_set_device_count");
        unsafe { f(count) }
    }

    fn set_init_result(&self, code: u32) {
        let f: unsafe extern "C" fn(u32) = self.control("fake_nvml_set_init_result");
        unsafe { f(code) }
    }

    fn set_read_error(&self, gpu: u32, code: u32) {
        let f: unsafe extern "C" fn(u32, u32) = self.control("fake_nvml_set_read_error");
        unsafe { f(gpu, code) }
    }

    fn set_throttle_reasons(&self, gpu: u32, mask: u64) {
        let f: unsafe extern "C" fn(u32, u64) = self.control("fake_nvml_set_throttle_reasons");
        unsafe { f(gpu, mask) }
    }

    fn init_calls(&self) -> i32 {
        let f: unsafe extern "C" fn() -> i32 = self.control("fake_nvml_init_calls");
        unsafe { f() }
    }

    /// Open the plugin on this fake, every option given as the kernel would.
    fn open(&self, devices: &[&str]) -> Result<Box<dyn EnergyInstance>, PluginFailure> {
        open(&self.path.display().to_string(), devices)
    }
}

fn open(library: &str, devices: &[&str]) -> Result<Box<dyn EnergyInstance>, PluginFailure> {
    let config = match json!({"library": library, "devices": devices}) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let plugin = loader().load(&native_artifact("energy-nvml")).unwrap();
    plugin.open_energy(&config, &Sandbox::default())
}

fn ids(source: &dyn EnergyInstance) -> Vec<String> {
    source.devices().iter().map(|d| d.id.clone()).collect()
}

/// One read; the reading of device `device`.
fn read(source: &mut dyn EnergyInstance, device: u32) -> Reading {
    let mut out = Vec::new();
    source.read(&mut out).unwrap();
    assert_eq!(out.len(), source.devices().len());
    *out.iter().find(|r| r.device == device).unwrap()
}

const S: u64 = 1_000_000_000;

#[test]
fn counter_deltas_become_exact_joules() {
    let fake = FakeNvml::new();
    fake.set_power_mw(0, 250_000, 240_000);
    let mut source = fake.open(&["0", "1"]).unwrap();
    assert_eq!(ids(&*source), ["gpu0", "gpu1"]);
    let gpu0 = source.devices()[0].clone();
    assert_eq!(gpu0.name, "Fake NVIDIA H100 80GB HBM3 #0");
    assert_eq!(gpu0.kind, DeviceKind::Gpu);
    assert!(gpu0.has_energy_counter);
    assert_eq!(gpu0.counter_wrap_uj, None);
    assert!(gpu0.has_power);
    // Instantaneous power field: no averaging window.
    assert_eq!(gpu0.power_average_window_ms, 0);
    assert!(!gpu0.estimated);

    let mut acc = DeviceAccumulator::new(&gpu0);
    let mut seen = Vec::new();
    for (i, mj) in [1_000u64, 1_500, 1_500, 4_000].into_iter().enumerate() {
        fake.set_energy_mj(0, mj);
        let reading = read(&mut *source, 0);
        assert_eq!(reading.power_mw, Some(250_000));
        seen.push(reading.energy_uj);
        acc.push(i as u64 * S, &reading);
    }
    // mJ from NVML, µJ to the kernel.
    assert_eq!(
        seen,
        [
            Some(1_000_000),
            Some(1_500_000),
            Some(1_500_000),
            Some(4_000_000)
        ]
    );
    assert_eq!(acc.method(), EnergyMethod::Counter);
    assert_eq!(acc.energy_j(), Some(3.0));
    assert_eq!(acc.resets, 0);
}

#[test]
fn an_unchanged_counter_adds_zero_joules_not_an_error() {
    // The driver refreshes the counter every ~20-100 ms: fast reads repeat it.
    let fake = FakeNvml::new();
    fake.set_energy_mj(1, 123_456);
    let mut source = fake.open(&["1"]).unwrap();
    let mut acc = DeviceAccumulator::new(&source.devices()[0]);
    for i in 0..5 {
        let reading = read(&mut *source, 0);
        assert_eq!(reading.energy_uj, Some(123_456_000));
        acc.push(i * S / 100, &reading);
    }
    assert_eq!(acc.method(), EnergyMethod::Counter);
    assert_eq!(acc.energy_j(), Some(0.0));
    fake.set_energy_mj(1, 123_457);
    acc.push(5 * S / 100, &read(&mut *source, 0));
    assert_eq!(acc.energy_j(), Some(0.001));
}

#[test]
fn a_driver_reset_is_a_gap_and_energy_stays_positive() {
    let fake = FakeNvml::new();
    let mut source = fake.open(&["2"]).unwrap();
    let mut acc = DeviceAccumulator::new(&source.devices()[0]);
    // 5 J -> 6 J, then the driver reloads and the counter restarts near 0.
    for (i, mj) in [5_000u64, 6_000, 200, 700].into_iter().enumerate() {
        fake.set_energy_mj(2, mj);
        acc.push(i as u64 * S, &read(&mut *source, 0));
    }
    assert_eq!(acc.resets, 1);
    assert_eq!(acc.wraps, 0);
    // 1 J before the reset, 0.5 J after; the interval across it is a gap
    // (what the counter held after the restart is not that interval's energy).
    assert_eq!(acc.energy_j(), Some(1.5));
    assert_eq!(acc.gaps.count, 1);
    assert_eq!(acc.covered_s(), 2.0);
}

#[test]
fn a_counter_that_drops_to_a_large_value_is_not_counted_as_that_value() {
    // 300 W for 5 s read every second; at t = 2 s the driver reloads and the
    // counter comes back at 101 488 J, not 0. Before: 300 + 101 488 + 900 =
    // 102 688 J. Now: the four good seconds, 1 200 J, one gap, 4 of 5 s covered.
    let fake = FakeNvml::new();
    let mut source = fake.open(&["0"]).unwrap();
    let mut acc = DeviceAccumulator::new(&source.devices()[0]);
    let counter_mj = [
        250_000_000u64,
        250_300_000,
        101_488_000,
        101_788_000,
        102_088_000,
        102_388_000,
    ];
    for (i, mj) in counter_mj.into_iter().enumerate() {
        fake.set_energy_mj(0, mj);
        acc.push(i as u64 * S, &read(&mut *source, 0));
    }
    assert_eq!(acc.energy_j(), Some(1_200.0));
    assert_eq!(acc.gaps.count, 1);
    assert_eq!(acc.gaps.first[0].t_ns, 2 * S);
    assert!(
        acc.gaps.first[0]
            .reason
            .contains("went back from 250300000000 to 101488000000 µJ"),
        "{:?}",
        acc.gaps
    );
    assert_eq!(acc.covered_s(), 4.0);
}

#[test]
fn an_absurd_counter_jump_is_a_gap_not_petajoules() {
    // A read returning 4.6e15 J (a 4.6e15 W step over 1 s) between good reads.
    let fake = FakeNvml::new();
    let mut source = fake.open(&["0"]).unwrap();
    let mut acc = DeviceAccumulator::new(&source.devices()[0]);
    let counter_mj = [
        1_000_000u64,
        1_300_000,
        4_600_000_000_000_000_000,
        1_900_000,
        2_200_000,
    ];
    for (i, mj) in counter_mj.into_iter().enumerate() {
        fake.set_energy_mj(0, mj);
        acc.push(i as u64 * S, &read(&mut *source, 0));
    }
    // The jump up and the way back down are both gaps; 300 J either side count.
    assert_eq!(acc.energy_j(), Some(600.0));
    assert_eq!(acc.gaps.count, 2);
    assert!(
        acc.gaps.first[0]
            .reason
            .contains("plausible maximum of 2000 W")
    );
}

#[test]
fn absurd_power_on_a_gpu_without_counter_is_a_gap_not_energy() {
    let fake = FakeNvml::new();
    fake.set_supported(1, "energy", false);
    let mut source = fake.open(&["1"]).unwrap();
    let mut acc = DeviceAccumulator::new(&source.devices()[0]);
    // 300 W, then 4 294 967 W (the largest NVML can report), then 300 W twice.
    for (i, mw) in [300_000u32, u32::MAX, 300_000, 300_000]
        .into_iter()
        .enumerate()
    {
        fake.set_power_mw(1, mw, mw);
        acc.push(i as u64 * S, &read(&mut *source, 0));
    }
    assert_eq!(acc.method(), EnergyMethod::PowerIntegration);
    assert_eq!(acc.gaps.count, 1);
    // Only the last second is integrated: the spike breaks both neighbours.
    assert!((acc.energy_j().unwrap() - 300.0).abs() < 1e-9);
    assert_eq!(acc.covered_s(), 1.0);
}

#[test]
fn a_gpu_without_energy_counter_has_its_power_integrated() {
    let fake = FakeNvml::new();
    fake.set_supported(1, "energy", false);
    let mut source = fake.open(&["0", "1"]).unwrap();
    let devices = source.devices().to_vec();
    assert!(devices[0].has_energy_counter);
    assert!(!devices[1].has_energy_counter);
    assert!(devices[1].has_power);
    assert_eq!(devices[1].power_average_window_ms, 0);

    let mut acc = DeviceAccumulator::new(&devices[1]);
    for (t_s, mw) in [(0, 100_000), (1, 200_000), (2, 200_000), (4, 50_000)] {
        fake.set_power_mw(1, mw, 1);
        let reading = read(&mut *source, 1);
        assert_eq!(reading.energy_uj, None);
        assert_eq!(reading.power_mw, Some(u64::from(mw)));
        acc.push(t_s * S, &reading);
    }
    // Trapezoids: 150 J + 200 J + 250 J.
    assert_eq!(acc.method(), EnergyMethod::PowerIntegration);
    assert_eq!(acc.energy_j(), Some(600.0));
}

#[test]
fn without_instant_power_the_averaged_reading_is_used_and_labelled() {
    let fake = FakeNvml::new();
    fake.set_supported(3, "power_instant", false);
    fake.set_power_mw(3, 999, 300_000);
    let mut source = fake.open(&["3"]).unwrap();
    let device = &source.devices()[0];
    assert!(device.has_power);
    assert_eq!(device.power_average_window_ms, 1000);
    assert_eq!(read(&mut *source, 0).power_mw, Some(300_000));
}

#[test]
fn a_gpu_with_neither_counter_nor_power_is_refused() {
    let fake = FakeNvml::new();
    for feature in ["energy", "power_instant", "power_average"] {
        fake.set_supported(3, feature, false);
    }
    let err = fake.open(&["0", "3"]).err().unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(err.message.contains("gpu3"), "{err}");
    assert!(err.message.contains("neither"), "{err}");
    assert!(err.hint.as_deref().unwrap().contains("devices"), "{err:?}");
}

#[test]
fn a_failed_read_is_an_error_never_zero() {
    let fake = FakeNvml::new();
    fake.set_energy_mj(0, 10);
    let mut source = fake.open(&["0"]).unwrap();
    read(&mut *source, 0);
    fake.set_read_error(0, 15); // NVML_ERROR_GPU_IS_LOST
    let mut out = Vec::new();
    let err = source.read(&mut out).err().unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(err.message.contains("gpu0"), "{err}");
    assert!(err.message.contains("fell off the bus"), "{err}");
    fake.set_read_error(0, 0);
    out.clear();
    source.read(&mut out).unwrap();
    assert_eq!(out[0].energy_uj, Some(10_000));
}

#[test]
fn a_missing_library_is_unavailable_and_named() {
    let library = "/nonexistent-llem-test-dir/libnvidia-ml.so.1";
    let err = open(library, &[]).err().unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(
        err.message.contains(&format!("cannot load {library}")),
        "{err}"
    );
    assert!(err.message.contains("no NVIDIA driver"), "{err}");
    assert!(
        err.hint.as_deref().unwrap().contains("`library`"),
        "{err:?}"
    );
}

#[test]
fn a_driver_that_is_not_loaded_is_said_so_and_a_later_open_retries() {
    let fake = FakeNvml::new();
    fake.set_init_result(9); // NVML_ERROR_DRIVER_NOT_LOADED
    let err = fake.open(&[]).err().unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(err.message.contains("driver is not loaded"), "{err}");
    assert!(
        err.hint.as_deref().unwrap().contains("nvidia-smi"),
        "{err:?}"
    );
    // A failed init is not remembered: once the driver is there, it works.
    fake.set_init_result(0);
    fake.open(&["0"]).unwrap();
    assert_eq!(fake.init_calls(), 2);
}

#[test]
fn no_gpus_is_unavailable() {
    let fake = FakeNvml::new();
    fake.set_device_count(0);
    let err = fake.open(&[]).err().unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(err.message.contains("sees no GPU"), "{err}");
}

#[test]
fn instances_share_one_nvml_init() {
    let fake = FakeNvml::new();
    let a = fake.open(&["0"]).unwrap();
    let b = fake.open(&["1"]).unwrap();
    drop(a);
    let c = fake.open(&["2"]).unwrap();
    assert_eq!(fake.init_calls(), 1);
    drop((b, c));
}

#[test]
fn the_devices_option_takes_indices_and_uuids_in_order() {
    let fake = FakeNvml::new();
    let source = fake
        .open(&["GPU-fa4e0002-0000-0000-0000-000000000000", "0", "2"])
        .unwrap();
    assert_eq!(ids(&*source), ["gpu2", "gpu0"]);
    let source = fake
        .open(&["MIG-fa4e0003-0001-0000-0000-000000000000"])
        .unwrap();
    assert_eq!(ids(&*source), ["gpu3"]);

    let err = fake.open(&["7"]).err().unwrap();
    assert_eq!(err.kind, FailureKind::InvalidConfig);
    assert_eq!(err.key.as_deref(), Some("devices"));
    assert!(err.message.contains("no GPU 7"), "{err}");
    let err = fake.open(&["banana"]).err().unwrap();
    assert_eq!(err.kind, FailureKind::InvalidConfig);
    assert!(err.message.contains("`banana` is not a GPU"), "{err}");
    let err = fake.open(&["GPU-0bad"]).err().unwrap();
    assert!(err.message.contains("no GPU has UUID GPU-0bad"), "{err}");
}

fn metric<'a>(metrics: &'a [Metric], name: &str) -> (f64, &'a str) {
    let m = metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name} in {metrics:?}"));
    (m.value, m.unit.as_str())
}

#[test]
fn telemetry_is_named_with_units_and_skips_what_is_not_supported() {
    let fake = FakeNvml::new();
    // SW power cap (0x4) and SW thermal slowdown (0x20).
    fake.set_throttle_reasons(1, 0x4 | 0x20);
    fake.set_supported(2, "telemetry", false);
    let mut source = fake.open(&["1", "2"]).unwrap();
    let telemetry = source.telemetry().unwrap();
    assert_eq!(telemetry.len(), 2);
    let m = &telemetry[0].metrics;
    assert_eq!(telemetry[0].device, 0);
    assert_eq!(metric(m, "gpu_utilisation"), (0.51, "fraction"));
    assert_eq!(metric(m, "memory_utilisation"), (0.25, "fraction"));
    assert_eq!(metric(m, "memory_used"), ((2u64 << 30) as f64, "bytes"));
    assert_eq!(metric(m, "memory_total"), ((80u64 << 30) as f64, "bytes"));
    assert_eq!(metric(m, "temperature"), (41.0, "celsius"));
    assert_eq!(metric(m, "sm_clock"), (1980.0, "MHz"));
    assert_eq!(metric(m, "memory_clock"), (2619.0, "MHz"));
    assert_eq!(metric(m, "power_limit"), (700.0, "W"));
    assert_eq!(metric(m, "throttle_reasons"), (36.0, "bitmask"));
    assert_eq!(metric(m, "throttle_sw_power_cap"), (1.0, "flag"));
    assert_eq!(metric(m, "throttle_sw_thermal_slowdown"), (1.0, "flag"));
    assert_eq!(
        m.iter().filter(|m| m.name.starts_with("throttle_")).count(),
        3
    );
    // Not supported is left out, not an error and not a 0.
    assert_eq!(telemetry[1].device, 1);
    assert!(telemetry[1].metrics.is_empty(), "{:?}", telemetry[1]);
}

/// On a machine with an NVIDIA driver, the real library:
/// `LLEM_TEST_REAL_NVML=1 cargo test -p llem-integration-tests --test integration energy_nvml::real_nvml -- --nocapture`.
/// Elsewhere it does nothing.
#[test]
fn real_nvml_when_asked() {
    if std::env::var_os("LLEM_TEST_REAL_NVML").is_none() {
        return;
    }
    let mut source = open("libnvidia-ml.so.1", &[]).unwrap();
    let devices = source.devices().to_vec();
    println!("{devices:#?}");
    let mut accumulators: Vec<DeviceAccumulator> =
        devices.iter().map(DeviceAccumulator::new).collect();
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    for _ in 0..40 {
        out.clear();
        source.read(&mut out).unwrap();
        let t_ns = start.elapsed().as_nanos() as u64;
        for reading in &out {
            accumulators[reading.device as usize].push(t_ns, reading);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!("last readings: {out:?}");
    for (device, acc) in devices.iter().zip(&accumulators) {
        let joules = acc.energy_j().unwrap();
        println!(
            "{} ({}): {joules} J over {:.2} s by {:?}, {:?} W",
            device.id,
            device.name,
            acc.span_s(),
            acc.method(),
            acc.average_power_w()
        );
        // Even an idle GPU draws tens of watts.
        assert!(joules > 0.0, "{}: no energy over two seconds", device.id);
        assert_eq!(acc.resets, 0);
    }
    println!("{:#?}", source.telemetry().unwrap());
}

// ------------------------------------------------------ CUDA_VISIBLE_DEVICES

/// The child test, by its full path in the integration binary (for `--exact`).
const CHILD: &str = "energy_nvml::cuda_visible_devices_child";

/// Runs only as a child of `cuda_visible_devices_map_to_physical_gpus`, which
/// sets the environment; on its own it does nothing.
#[test]
fn cuda_visible_devices_child() {
    let Ok(library) = std::env::var("LLEM_TEST_NVML_LIB") else {
        return;
    };
    let devices = std::env::var("LLEM_TEST_NVML_DEVICES").unwrap();
    let devices: Vec<&str> = devices.split(',').filter(|d| !d.is_empty()).collect();
    let expect = std::env::var("LLEM_TEST_NVML_EXPECT").unwrap();
    match (open(&library, &devices), expect.strip_prefix("error:")) {
        (Ok(source), None) => assert_eq!(ids(&*source).join(","), expect),
        (Err(err), Some(wanted)) => {
            assert_eq!(err.kind, FailureKind::Unavailable, "{err}");
            assert!(err.message.contains(wanted), "{err}");
        }
        (Ok(source), Some(_)) => panic!("expected {expect}, got {:?}", ids(&*source)),
        (Err(err), None) => panic!("expected {expect}, got: {err}"),
    }
}

#[test]
fn cuda_visible_devices_map_to_physical_gpus() {
    let fake = FakeNvml::new();
    let cases: &[(Option<&str>, &str, &str)] = &[
        (None, "", "gpu0,gpu1,gpu2,gpu3"),
        (Some("2,0"), "", "gpu2,gpu0"),
        (
            Some("GPU-fa4e0003-0000-0000-0000-000000000000,1"),
            "",
            "gpu3,gpu1",
        ),
        // A unique prefix is enough, as for CUDA.
        (Some("GPU-fa4e0001"), "", "gpu1"),
        // Two slices of GPU 1: one device, the parent.
        (
            Some(
                "MIG-fa4e0001-0000-0000-0000-000000000000,MIG-fa4e0001-0001-0000-0000-000000000000",
            ),
            "",
            "gpu1",
        ),
        (
            Some("MIG-GPU-fa4e0002-0000-0000-0000-000000000000/1/0"),
            "",
            "gpu2",
        ),
        // CUDA stops at the first invalid entry.
        (Some("1,-1,2"), "", "gpu1"),
        (Some("-1"), "", "error:hides every GPU"),
        (Some(""), "", "error:hides every GPU"),
        (Some("5"), "", "error:there is no GPU 5"),
        (Some("GPU-fa4e"), "", "error:more than one"),
        (
            Some("MIG-ffff"),
            "",
            "error:no MIG instance has UUID MIG-ffff",
        ),
        // The `devices` option wins over the environment.
        (Some("2"), "1,0", "gpu1,gpu0"),
    ];
    let exe = std::env::current_exe().unwrap();
    for (visible, devices, expect) in cases {
        let mut child = Command::new(&exe);
        child
            .args([CHILD, "--exact", "--nocapture", "--test-threads=1"])
            .env("LLEM_TEST_NVML_LIB", &fake.path)
            .env("LLEM_TEST_NVML_DEVICES", devices)
            .env("LLEM_TEST_NVML_EXPECT", expect)
            .env_remove("CUDA_DEVICE_ORDER");
        match visible {
            Some(value) => child.env("CUDA_VISIBLE_DEVICES", value),
            None => child.env_remove("CUDA_VISIBLE_DEVICES"),
        };
        let out = child.output().unwrap();
        assert!(
            out.status.success(),
            "CUDA_VISIBLE_DEVICES={visible:?} devices={devices:?}: expected {expect}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The child really ran the case (the harness printed "1 passed").
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
