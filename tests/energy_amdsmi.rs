//! `energy-amdsmi` through the kernel, against a fake `libamd_smi.so`
//! (`tests/fixtures/c/fake_amdsmi.c`) that exports the amdsmi functions the
//! plugin calls with their real signatures. The tests drive the fake through
//! its control functions, dlopen-ing the same file.
//!
//! All tests share one process, hence one amdsmi initialisation: each test
//! uses its own amd-smi GPU index (the fake has eight, 0-7) so that they can run
//! in parallel.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::energy::{DeviceAccumulator, EnergyMethod};
use llem::plugin::{EnergyInstance, FailureKind};
use llem_integration_tests::{build_c_library, loader, native_artifact};
use llem_sdk::{Device, DeviceKind, Reading};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The fake library, built once per test process (amdsmi is initialised once
/// per process, from one file).
fn fake_library() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("fake-amdsmi-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        build_c_library("fake_amdsmi.c", "libamd_smi.so", &dir)
    })
}

/// The fake's control functions.
struct Fake {
    library: libloading::Library,
}

impl Fake {
    fn get() -> &'static Fake {
        static FAKE: OnceLock<Fake> = OnceLock::new();
        FAKE.get_or_init(|| Fake {
            // SAFETY: the fixture has no initialisers beyond zeroing its state.
            library: unsafe { libloading::Library::new(fake_library()) }.unwrap(),
        })
    }

    fn symbol<T: Copy>(&self, name: &str) -> T {
        // SAFETY: each caller names a function with the signature in fake_amdsmi.c.
        unsafe { *self.library.get::<T>(name.as_bytes()).unwrap() }
    }

    fn set_energy(&self, gpu: u32, accumulator: u64) {
        let f: unsafe extern "C" fn(u32, u64) = self.symbol("fake_amdsmi_set_energy");
        unsafe { f(gpu, accumulator) }
    }

    fn set_resolution(&self, gpu: u32, resolution_uj: f32) {
        let f: unsafe extern "C" fn(u32, f32) = self.symbol("fake_amdsmi_set_resolution");
        unsafe { f(gpu, resolution_uj) }
    }

    fn set_energy_supported(&self, gpu: u32, supported: bool) {
        let f: unsafe extern "C" fn(u32, i32) = self.symbol("fake_amdsmi_set_energy_supported");
        unsafe { f(gpu, i32::from(supported)) }
    }

    fn set_power(&self, gpu: u32, current_w: u32, average_w: u32) {
        let f: unsafe extern "C" fn(u32, u32, u32) = self.symbol("fake_amdsmi_set_power");
        unsafe { f(gpu, current_w, average_w) }
    }

    fn set_market_name(&self, gpu: u32, name: &str) {
        let name = std::ffi::CString::new(name).unwrap();
        let f: unsafe extern "C" fn(u32, *const std::ffi::c_char) =
            self.symbol("fake_amdsmi_set_market_name");
        unsafe { f(gpu, name.as_ptr()) }
    }

    fn init_count(&self) -> i32 {
        let f: unsafe extern "C" fn() -> i32 = self.symbol("fake_amdsmi_init_count");
        unsafe { f() }
    }

    fn init_flags(&self) -> u64 {
        let f: unsafe extern "C" fn() -> u64 = self.symbol("fake_amdsmi_init_flags");
        unsafe { f() }
    }

    fn overlapping_calls(&self) -> i32 {
        let f: unsafe extern "C" fn() -> i32 = self.symbol("fake_amdsmi_overlapping_calls");
        unsafe { f() }
    }
}

/// amdsmi's "not supported" marker in power fields.
const UNSUPPORTED: u32 = u32::MAX;

/// Every option of the plugin, as the kernel would hand them over.
fn config(library: &str, devices: &[u32]) -> Map<String, Value> {
    match json!({ "library": library, "devices": devices }) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn open(devices: &[u32]) -> Box<dyn EnergyInstance> {
    let plugin = loader().load(&native_artifact("energy-amdsmi")).unwrap();
    assert_eq!(plugin.name(), "energy-amdsmi");
    let library = fake_library().to_str().unwrap();
    plugin
        .open_energy(&config(library, devices), &llem::Sandbox::default())
        .unwrap()
}

/// One read; the reading of device 0.
fn read_one(source: &mut Box<dyn EnergyInstance>) -> Reading {
    let mut out = Vec::new();
    source.read(&mut out).unwrap();
    assert_eq!(out.len(), 1);
    out[0]
}

/// Feed readings one second apart to the kernel's accumulator.
fn accumulate(device: &Device, readings: &[Reading]) -> DeviceAccumulator {
    let mut acc = DeviceAccumulator::new(device);
    for (i, reading) in readings.iter().enumerate() {
        acc.push(i as u64 * 1_000_000_000, reading);
    }
    acc
}

#[test]
fn counter_deltas_times_the_resolution_give_exact_joules() {
    let fake = Fake::get();
    fake.set_resolution(0, 15.625);
    fake.set_power(0, UNSUPPORTED, UNSUPPORTED);
    fake.set_energy(0, 64_000);
    let mut source = open(&[0]);
    assert_eq!(fake.init_flags(), 1 << 1, "AMDSMI_INIT_AMD_GPUS");

    let device = source.devices()[0].clone();
    assert_eq!(device.id, "gpu0");
    assert_eq!(device.name, "AMD Instinct MI300X (0000:10:00.0)");
    assert_eq!(device.kind, DeviceKind::Gpu);
    assert!(device.has_energy_counter);
    assert_eq!(device.counter_wrap_uj, None, "64-bit accumulator");
    assert!(!device.has_power, "both power fields unsupported");
    assert!(!device.estimated);

    let mut readings = Vec::new();
    for accumulator in [64_000u64, 128_000, 1_024_000] {
        fake.set_energy(0, accumulator);
        readings.push(read_one(&mut source));
    }
    // 15.625 µJ per count.
    let energy: Vec<_> = readings.iter().map(|r| r.energy_uj).collect();
    assert_eq!(energy, [Some(1_000_000), Some(2_000_000), Some(16_000_000)]);
    assert!(readings.iter().all(|r| r.power_mw.is_none()));
    let acc = accumulate(&device, &readings);
    assert_eq!(acc.method(), EnergyMethod::Counter);
    assert_eq!(acc.energy_j(), Some(15.0));
    assert_eq!(acc.average_power_w(), Some(7.5));
}

#[test]
fn an_unchanged_counter_is_zero_joules_not_missing() {
    let fake = Fake::get();
    fake.set_resolution(1, 15.625);
    fake.set_energy(1, 80_000);
    let mut source = open(&[1]);
    let readings: Vec<_> = (0..3).map(|_| read_one(&mut source)).collect();
    assert!(readings.iter().all(|r| r.energy_uj == Some(1_250_000)));
    let acc = accumulate(&source.devices()[0], &readings);
    assert_eq!(acc.method(), EnergyMethod::Counter);
    assert_eq!(acc.energy_j(), Some(0.0));
}

#[test]
fn a_counter_that_goes_backwards_is_a_reset_and_a_gap() {
    let fake = Fake::get();
    fake.set_resolution(2, 2.0);
    fake.set_energy(2, 1_000);
    let mut source = open(&[2]);
    let mut readings = Vec::new();
    // 2 J, 4 J, driver reload: 200 µJ, 600 µJ.
    for accumulator in [1_000_000u64, 2_000_000, 100, 300] {
        fake.set_energy(2, accumulator);
        readings.push(read_one(&mut source));
    }
    let energy: Vec<_> = readings.iter().map(|r| r.energy_uj).collect();
    assert_eq!(
        energy,
        [Some(2_000_000), Some(4_000_000), Some(200), Some(600)]
    );
    let acc = accumulate(&source.devices()[0], &readings);
    assert_eq!(acc.resets, 1);
    assert_eq!(acc.wraps, 0);
    // 2 J before the reset, 400 µJ after; the interval across it is a gap
    // (before: the 200 µJ after the restart were counted as its energy).
    assert_eq!(acc.energy_j(), Some(2_000_400.0 / 1e6));
    assert_eq!(acc.gaps.count, 1);
}

#[test]
fn a_gpu_without_an_energy_counter_falls_back_to_power() {
    let fake = Fake::get();
    // gpu3: energy not supported (VM guest), averaged power only.
    fake.set_energy_supported(3, false);
    fake.set_power(3, UNSUPPORTED, 300);
    // gpu4: both, instantaneous power.
    fake.set_resolution(4, 15.625);
    fake.set_energy(4, 0);
    fake.set_power(4, 640, 600);
    let mut source = open(&[3, 4]);

    let devices = source.devices().to_vec();
    assert_eq!(
        devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["gpu3", "gpu4"]
    );
    assert!(!devices[0].has_energy_counter);
    assert!(devices[0].has_power);
    assert_eq!(devices[0].power_average_window_ms, 1000, "averaged power");
    assert!(devices[1].has_energy_counter && devices[1].has_power);
    assert_eq!(devices[1].power_average_window_ms, 0, "current power");

    let mut readings = Vec::new();
    for watts in [300u32, 300, 500] {
        fake.set_power(3, UNSUPPORTED, watts);
        let mut out = Vec::new();
        source.read(&mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].device, 0);
        assert_eq!(out[0].energy_uj, None);
        assert_eq!(out[0].power_mw, Some(u64::from(watts) * 1000));
        assert_eq!(out[1].device, 1);
        assert_eq!(out[1].energy_uj, Some(0));
        assert_eq!(out[1].power_mw, Some(640_000));
        readings.push(out[0]);
    }
    let acc = accumulate(&devices[0], &readings);
    assert_eq!(acc.method(), EnergyMethod::PowerIntegration);
    // 300 W for 1 s, then a 300 -> 500 W ramp over 1 s: 300 + 400 J.
    assert_eq!(acc.energy_j(), Some(700.0));
}

#[test]
fn mi100_counters_are_flagged_in_the_device_name() {
    let fake = Fake::get();
    fake.set_market_name(5, "AMD Instinct MI100");
    let source = open(&[5]);
    let device = &source.devices()[0];
    assert!(device.has_energy_counter);
    assert_eq!(
        device.name,
        "AMD Instinct MI100 (0000:60:00.0) [MI100: energy counter unreliable]"
    );
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let plugin = loader().load(&native_artifact("energy-amdsmi")).unwrap();
    let err = plugin
        .open_energy(
            &config("/nonexistent/rocm/lib/libamd_smi.so", &[]),
            &llem::Sandbox::default(),
        )
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::Unavailable);
    let text = err.to_string();
    assert!(
        text.contains("cannot load the AMD SMI library /nonexistent/rocm/lib/libamd_smi.so"),
        "{text}"
    );
    assert!(text.contains("/opt/rocm/lib"), "the ROCm path hint: {text}");
}

#[test]
fn devices_take_amd_smi_indices_and_unknown_ones_are_refused() {
    let plugin = loader().load(&native_artifact("energy-amdsmi")).unwrap();
    let library = fake_library().to_str().unwrap();
    let err = plugin
        .open_energy(&config(library, &[8]), &llem::Sandbox::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::InvalidConfig);
    assert_eq!(err.key.as_deref(), Some("devices"));
    assert!(err.message.contains("amdsmi sees 8 (0-7)"), "{err}");
}

#[test]
fn amdsmi_is_initialised_once_and_never_called_concurrently() {
    let fake = Fake::get();
    for gpu in [6, 7] {
        fake.set_resolution(gpu, 15.625);
        fake.set_energy(gpu, 0);
    }
    // Two instances reading from two threads at once, while the other tests
    // open and read theirs.
    let threads: Vec<_> = [6u32, 7]
        .into_iter()
        .map(|gpu| {
            std::thread::spawn(move || {
                let mut source = open(&[gpu]);
                for step in 1..=50u64 {
                    Fake::get().set_energy(gpu, step * 64);
                    assert_eq!(read_one(&mut source).energy_uj, Some(step * 1_000));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(fake.init_count(), 1);
    assert_eq!(fake.overlapping_calls(), 0);
}
