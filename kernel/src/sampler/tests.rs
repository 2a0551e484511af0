//! The sampler against in-process sources whose readings are scripted.

use super::*;
use crate::plugin::{CallResult, FailureKind, PluginFailure};
use llem_sdk::DeviceKind;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter that advances `step_uj` per read; fails from read `fail_from` on.
struct Scripted {
    devices: Vec<Device>,
    step_uj: u64,
    reads: Arc<AtomicU64>,
    fail_from: u64,
    read_cost: Duration,
    /// Reads from this one on take `read_cost`; earlier ones are instant.
    slow_from: u64,
    /// Only every n-th read hands a reading over (a slowly refreshing meter); 0 or 1: every read.
    reading_every: u64,
}

impl EnergyInstance for Scripted {
    fn devices(&self) -> &[Device] {
        &self.devices
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> CallResult<()> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.slow_from && !self.read_cost.is_zero() {
            std::thread::sleep(self.read_cost);
        }
        if n >= self.fail_from {
            return Err(PluginFailure::new(
                "scripted",
                "read",
                FailureKind::Unavailable,
                "device lost",
            ));
        }
        if self.reading_every > 1 && n % self.reading_every != 1 {
            return Ok(());
        }
        out.push(Reading {
            device: 0,
            energy_uj: Some(n * self.step_uj),
            power_mw: None,
        });
        Ok(())
    }

    fn telemetry(&mut self) -> CallResult<Vec<DeviceTelemetry>> {
        Ok(Vec::new())
    }
}

fn source(
    name: &str,
    interval_ms: u64,
    step_uj: u64,
    fail_from: u64,
) -> ((SourceConfig, Box<dyn EnergyInstance>), Arc<AtomicU64>) {
    let reads = Arc::new(AtomicU64::new(0));
    let instance = Scripted {
        devices: vec![Device {
            id: format!("{name}0"),
            name: name.into(),
            kind: DeviceKind::Other,
            has_energy_counter: true,
            counter_wrap_uj: None,
            has_power: false,
            power_average_window_ms: 0,
            estimated: false,
            parent: None,
            max_power_w: None,
        }],
        step_uj,
        reads: reads.clone(),
        fail_from,
        read_cost: Duration::ZERO,
        slow_from: 0,
        reading_every: 0,
    };
    (
        (
            SourceConfig {
                name: name.into(),
                interval: Duration::from_millis(interval_ms),
                telemetry_interval: Duration::ZERO,
            },
            Box::new(instance),
        ),
        reads,
    )
}

#[test]
fn each_source_runs_at_its_own_interval() {
    let (fast, _) = source("fast", 10, 1, u64::MAX);
    let (slow, _) = source("slow", 100, 1, u64::MAX);
    let sampler = Sampler::start(vec![fast, slow]).unwrap();
    std::thread::sleep(Duration::from_millis(550));
    let collected = sampler.stop();
    // Ticks that ran plus ticks skipped cover the time, whatever the machine's load.
    let fast_slots = collected[0].2.ticks + collected[0].2.missed_ticks;
    let slow_slots = collected[1].2.ticks + collected[1].2.missed_ticks;
    assert!((50..=60).contains(&fast_slots), "fast: {fast_slots}");
    assert!((5..=7).contains(&slow_slots), "slow: {slow_slots}");
    assert!(collected[0].2.thread_cpu_ns > 0, "thread CPU time recorded");
    // Timestamps strictly increase per source.
    let times: Vec<u64> = collected[0].2.readings.iter().map(|(t, _)| *t).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn windows_nest_overlap_and_are_exact_on_counters() {
    let (counter, _) = source("c", 20, 1000, u64::MAX);
    let sampler = Sampler::start(vec![counter]).unwrap();
    sampler.begin_window("outer");
    std::thread::sleep(Duration::from_millis(100));
    sampler.begin_window("inner");
    std::thread::sleep(Duration::from_millis(100));
    let inner = sampler.end_window("inner").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let outer = sampler.end_window("outer").unwrap();
    assert!(sampler.end_window("never-opened").is_none());
    drop(sampler);
    // The counter gives 1000 µJ per read, so a window's energy is exactly one
    // millijoule per reading after the one it opened on.
    for window in [&inner, &outer] {
        let device = &window.devices[0];
        assert!(device.samples >= 3, "{window:?}");
        assert_eq!(
            window.total_j(),
            Some((device.samples - 1) as f64 * 0.001),
            "{window:?}"
        );
    }
    assert!(outer.devices[0].samples > inner.devices[0].samples);
    assert!(outer.duration_s() > inner.duration_s());
    assert!(outer.start_ns < inner.start_ns && inner.end_ns < outer.end_ns);
}

/// A window sits on its boundary reads: when the closing read is slow, the
/// window ends on that read instead of when llem got the answer, so a healthy
/// source covers all of it (it once read as 60 % covered, and a short run on a
/// loaded machine came out `degraded`), and it still holds everything between
/// `begin_window` and `end_window`.
#[test]
fn a_window_sits_on_its_boundary_reads_even_when_the_last_one_is_slow() {
    let (mut config, _) = source("c", 10_000, 1000, u64::MAX);
    let scripted = Scripted {
        devices: config.1.devices().to_vec(),
        step_uj: 1000,
        reads: Arc::new(AtomicU64::new(0)),
        fail_from: u64::MAX,
        read_cost: Duration::from_millis(40),
        // Read 1: the sampler's first; 2: the window's opening read; 3: its closing one.
        slow_from: 3,
        reading_every: 0,
    };
    config.1 = Box::new(scripted);
    let sampler = Sampler::start(vec![config]).unwrap();
    // Let the first read happen, so the window's own reads are the 2nd and 3rd.
    while sampler.series(0).unwrap().reads_done == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    sampler.begin_window("w");
    let work_began = monotonic_ns();
    std::thread::sleep(Duration::from_millis(10));
    let work_ended = monotonic_ns();
    let window = sampler.end_window("w").unwrap();
    drop(sampler);
    let device = &window.devices[0];
    assert_eq!(device.samples, 2, "{window:?}");
    assert_eq!(window.total_j(), Some(0.001));
    assert!(
        window.start_ns <= work_began && window.end_ns >= work_ended,
        "the window holds the work: {window:?}"
    );
    assert_eq!(window.min_coverage(), Some(1.0), "{window:?}");
    assert!(
        (device.covered_s - window.duration_s()).abs() < 1e-9,
        "one source: the window is exactly the span of its boundary reads: {window:?}"
    );
}

/// A meter that hands over a new reading only now and then (a BMC) covers
/// only what lies between its readings inside the window: the interval that
/// began before the window opened does not count as covering it (it once
/// did, and a window between two slow readings read as fully covered).
#[test]
fn a_slow_meter_covers_only_the_window_between_its_readings() {
    let (mut config, _) = source("bmc", 10, 1000, u64::MAX);
    config.1 = Box::new(Scripted {
        devices: config.1.devices().to_vec(),
        step_uj: 1000,
        reads: Arc::new(AtomicU64::new(0)),
        fail_from: u64::MAX,
        read_cost: Duration::ZERO,
        slow_from: 0,
        // Reads 1, 26, 51, …: a new reading every 25 reads of 10 ms.
        reading_every: 25,
    });
    let sampler = Sampler::start(vec![config]).unwrap();
    std::thread::sleep(Duration::from_millis(120));
    sampler.begin_window("w");
    std::thread::sleep(Duration::from_millis(300));
    let window = sampler.end_window("w").unwrap();
    drop(sampler);
    let device = &window.devices[0];
    // Readings come every ~250 ms: the 300 ms window holds at most one full
    // interval between two of them, plus part of one, never all of itself.
    assert!(
        device.covered_s < window.duration_s() * 0.95,
        "{device:?} over {} s",
        window.duration_s()
    );
    assert!(device.covered_s <= window.duration_s());
}

#[test]
fn a_failing_source_is_recorded_and_the_others_go_on() {
    let (bad, _) = source("bad", 10, 1, 5);
    let (good, _) = source("good", 10, 1, u64::MAX);
    let sampler = Sampler::start(vec![bad, good]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let collected = sampler.stop();
    let bad = &collected[0].2;
    assert!(bad.gave_up);
    assert_eq!(
        bad.readings.len(),
        4,
        "readings before the failure are kept"
    );
    assert_eq!(
        bad.errors.len(),
        4,
        "three failures and the stop note: {:?}",
        bad.errors
    );
    assert!(bad.errors[3].contains("stopped reading `bad` after 3 failures"));
    assert!(collected[1].2.ticks > 10, "the good source kept going");
}

#[test]
fn overrunning_reads_count_missed_ticks_instead_of_drifting() {
    let reads = Arc::new(AtomicU64::new(0));
    let slow = Scripted {
        devices: source("x", 10, 1, u64::MAX).0.1.devices().to_vec(),
        step_uj: 1,
        reads: reads.clone(),
        fail_from: u64::MAX,
        read_cost: Duration::from_millis(25),
        slow_from: 0,
        reading_every: 0,
    };
    let config = SourceConfig {
        name: "slow".into(),
        interval: Duration::from_millis(10),
        telemetry_interval: Duration::ZERO,
    };
    let sampler =
        Sampler::start(vec![(config, Box::new(slow) as Box<dyn EnergyInstance>)]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let series = sampler.stop().remove(0).2;
    assert!(
        series.missed_ticks >= series.ticks,
        "{} ticks, {} missed",
        series.ticks,
        series.missed_ticks
    );
}

/// A source that reports a reading for a device it does not have, and
/// telemetry that is not a number.
struct Garbage {
    devices: Vec<Device>,
    reads: u64,
}

impl EnergyInstance for Garbage {
    fn devices(&self) -> &[Device] {
        &self.devices
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> CallResult<()> {
        self.reads += 1;
        out.push(Reading {
            device: 0,
            energy_uj: Some(self.reads * 1_000),
            power_mw: None,
        });
        out.push(Reading {
            device: 7,
            energy_uj: Some(u64::MAX),
            power_mw: None,
        });
        Ok(())
    }

    fn telemetry(&mut self) -> CallResult<Vec<DeviceTelemetry>> {
        let metric = |name: &str, value: f64| llem_sdk::Metric {
            name: name.into(),
            value,
            unit: "C".into(),
            labels: Vec::new(),
        };
        Ok(vec![
            DeviceTelemetry {
                device: 0,
                metrics: vec![metric("temperature", f64::NAN), metric("fan", 40.0)],
            },
            DeviceTelemetry {
                device: 3,
                metrics: vec![metric("temperature", 50.0)],
            },
        ])
    }
}

#[test]
fn unknown_devices_and_non_finite_telemetry_are_recorded_gaps_not_data() {
    let ((_, scripted), _) = source("g", 10, 1, u64::MAX);
    let instance = Garbage {
        devices: scripted.devices().to_vec(),
        reads: 0,
    };
    let config = SourceConfig {
        name: "g".into(),
        interval: Duration::from_millis(10),
        telemetry_interval: Duration::from_millis(10),
    };
    let sampler = Sampler::start(vec![(config, Box::new(instance))]).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let collected = sampler.stop();
    let series = &collected[0].2;
    let reads = series.reads_done;
    assert!(reads >= 2);
    // Every read carried one reading for device 7: each is a gap, none is kept.
    assert!(series.readings.iter().all(|(_, r)| r.device == 0));
    let telemetry_reads = series
        .telemetry
        .iter()
        .filter(|(_, t)| t.device == 0)
        .count() as u64;
    // One gap per bad reading, two per telemetry read (NaN, unknown device).
    assert_eq!(series.source_gaps.count, reads + 2 * telemetry_reads);
    assert!(
        series.source_gaps.first[0]
            .reason
            .contains("device index 7, but it has 1 device(s)"),
        "{:?}",
        series.source_gaps.first
    );
    assert!(
        series
            .telemetry
            .iter()
            .all(|(_, t)| t.device == 0 && t.metrics.iter().all(|m| m.value.is_finite()))
    );
    // The good device's energy is untouched: 1 mJ per read.
    let acc = &series.accumulators[0];
    let expected = (reads - 1) as f64 * 1e-3;
    assert!((acc.energy_j().unwrap() - expected).abs() < 1e-12);
}
