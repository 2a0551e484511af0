//! The thread that samples one source.

use super::{SourceConfig, SourceSeries, lock};
use crate::clock::monotonic_ns;
use crate::energy::{DeviceAccumulator, Gap};
use crate::plugin::EnergyInstance;
use llem_sdk::{Device, Reading};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A source stops being read after this many failures in a row.
const MAX_CONSECUTIVE_FAILURES: u32 = 3;

#[derive(Default)]
struct Control {
    stop: bool,
    read_now: bool,
}

/// State shared between a source's thread and the sampler.
pub struct Shared {
    pub series: Mutex<SourceSeries>,
    control: Mutex<Control>,
    wake: Condvar,
    read_done: Condvar,
    /// Threads waiting on `read_done`. A notify is a system call even with
    /// no one waiting, and reads happen at up to 100 Hz while windows are
    /// cut a few times per run: a read notifies only when someone waits.
    read_waiters: AtomicUsize,
}

impl Shared {
    pub fn new(devices: &[Device]) -> Self {
        Shared {
            series: Mutex::new(SourceSeries {
                accumulators: devices.iter().map(DeviceAccumulator::new).collect(),
                latest: vec![None; devices.len()],
                latest_telemetry: vec![None; devices.len()],
                energy_track: vec![Vec::new(); devices.len()],
                ..SourceSeries::default()
            }),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            read_done: Condvar::new(),
            read_waiters: AtomicUsize::new(0),
        }
    }

    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stop(&self) {
        self.control().stop = true;
        self.wake.notify_all();
        // Nobody waits for reads once stopped.
        self.read_done.notify_all();
    }

    /// Ask for a read now.
    pub fn request_read(&self) {
        self.control().read_now = true;
        self.wake.notify_all();
    }

    /// Wait (up to `timeout`) for a read attempt that began at or after
    /// `asked_ns` to finish, or for the source to give up. A read already
    /// under way when the boundary was asked for does not count: its value
    /// may predate what the boundary must include.
    pub fn wait_for_read_since(&self, asked_ns: u64, timeout: Duration) {
        let series = lock(&self.series);
        // Counted while holding the lock the reader takes to record a read:
        // a reader that records after this point sees the count and notifies.
        self.read_waiters.fetch_add(1, Ordering::SeqCst);
        let _ = self.read_done.wait_timeout_while(series, timeout, |s| {
            !s.gave_up && s.last_attempt.is_none_or(|(began, _)| began < asked_ns)
        });
        self.read_waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wake the threads waiting for a read, if any.
    fn read_recorded(&self) {
        if self.read_waiters.load(Ordering::SeqCst) > 0 {
            self.read_done.notify_all();
        }
    }
}

pub fn spawn(
    config: SourceConfig,
    instance: Box<dyn EnergyInstance>,
    shared: Arc<Shared>,
    started_ns: u64,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("llem-sample-{}", config.name))
        .spawn(move || run(config, instance, &shared, started_ns))
}

struct Reader {
    instance: Box<dyn EnergyInstance>,
    buffer: Vec<Reading>,
    failures_in_a_row: u32,
    started_ns: u64,
    name: String,
}

impl Reader {
    /// One read, recorded. Returns false once the source has failed too often.
    fn read(&mut self, shared: &Shared) -> bool {
        self.buffer.clear();
        let before = monotonic_ns();
        let result = self.instance.read(&mut self.buffer);
        let after = monotonic_ns();
        let t_ns = before + (after - before) / 2;
        let mut guard = lock(&shared.series);
        let series = &mut *guard;
        match result {
            Ok(()) => {
                self.failures_in_a_row = 0;
                series.last_success = Some((before, t_ns));
                let devices = series.accumulators.len();
                for reading in &self.buffer {
                    let index = reading.device as usize;
                    if let Some(acc) = series.accumulators.get_mut(index) {
                        acc.push(t_ns, reading);
                        series.readings.push((t_ns, *reading));
                        series.latest[index] = Some((t_ns, *reading));
                        // Cumulative energy starts at 0 J on the first reading
                        // (a figure needs two readings), so every reading is a point.
                        if reading.energy_uj.is_some() || reading.power_mw.is_some() {
                            let joules = acc.energy_j().unwrap_or(0.0);
                            series.energy_track[index].push((t_ns, joules));
                        }
                    } else {
                        series.source_gaps.record(Gap {
                            t_ns,
                            lost_s: 0.0,
                            reason: format!(
                                "`{}` returned a reading for device index {}, but it has {devices} device(s); dropped",
                                self.name, reading.device
                            ),
                        });
                    }
                }
            }
            Err(error) => {
                self.failures_in_a_row += 1;
                let at = t_ns.saturating_sub(self.started_ns) as f64 / 1e9;
                series.errors.push(format!("{at:.3} s: {error}"));
                if self.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES {
                    series.gave_up = true;
                    series.errors.push(format!(
                        "stopped reading `{}` after {MAX_CONSECUTIVE_FAILURES} failures in a row; its figures cover only the time before {at:.3} s",
                        self.name
                    ));
                }
            }
        }
        series.reads_done += 1;
        series.last_attempt = Some((before, t_ns));
        let alive = !series.gave_up;
        drop(guard);
        shared.read_recorded();
        alive
    }

    fn telemetry(&mut self, shared: &Shared) {
        match self.instance.telemetry() {
            Ok(mut items) => {
                let t_ns = monotonic_ns();
                let mut series = lock(&shared.series);
                let devices = series.accumulators.len();
                for item in &mut items {
                    let device = item.device;
                    let source_gaps = &mut series.source_gaps;
                    item.metrics.retain(|m| {
                        let finite = m.value.is_finite();
                        if !finite {
                            source_gaps.record(Gap {
                                t_ns,
                                lost_s: 0.0,
                                reason: format!(
                                    "telemetry `{}` of device {device} is {}, not a number; dropped",
                                    m.name, m.value
                                ),
                            });
                        }
                        finite
                    });
                }
                items.retain(|item| {
                    let known = (item.device as usize) < devices;
                    if !known {
                        series.source_gaps.record(Gap {
                            t_ns,
                            lost_s: 0.0,
                            reason: format!(
                                "telemetry for device index {}, but the source has {devices} device(s); dropped",
                                item.device
                            ),
                        });
                    }
                    known
                });
                // The latest metrics per device: this read's, all of them
                // (a source may send one device in several items).
                let mut fresh: Vec<Option<Vec<llem_sdk::Metric>>> = vec![None; devices];
                for item in &items {
                    if let Some(slot) = fresh.get_mut(item.device as usize) {
                        slot.get_or_insert_with(Vec::new)
                            .extend(item.metrics.iter().cloned());
                    }
                }
                for (slot, metrics) in series.latest_telemetry.iter_mut().zip(fresh) {
                    if let Some(metrics) = metrics {
                        *slot = Some((t_ns, metrics));
                    }
                }
                series
                    .telemetry
                    .extend(items.into_iter().map(|item| (t_ns, item)));
            }
            Err(error) => lock(&shared.series)
                .errors
                .push(format!("telemetry: {error}")),
        }
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid, writable timespec; the clock id is a Linux constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

fn run(config: SourceConfig, instance: Box<dyn EnergyInstance>, shared: &Shared, started_ns: u64) {
    let interval_ns = config.interval.as_nanos().max(1) as u64;
    let telemetry_ns = config.telemetry_interval.as_nanos() as u64;
    let mut reader = Reader {
        instance,
        buffer: Vec::new(),
        failures_in_a_row: 0,
        started_ns,
        name: config.name.clone(),
    };
    let mut deadline = monotonic_ns();
    let mut next_telemetry = deadline;
    'sampling: loop {
        if !reader.read(shared) {
            break;
        }
        let now = monotonic_ns();
        if telemetry_ns > 0 && now >= next_telemetry {
            reader.telemetry(shared);
            next_telemetry = now + telemetry_ns;
        }
        // Absolute deadlines: a slow read does not shift later ticks; ticks that
        // can no longer happen on time are skipped and counted.
        deadline += interval_ns;
        let now = monotonic_ns();
        let mut missed = 0;
        if now > deadline {
            missed = (now - deadline) / interval_ns + 1;
            deadline += missed * interval_ns;
        }
        {
            let mut series = lock(&shared.series);
            series.ticks += 1;
            series.missed_ticks += missed;
        }
        let mut control = shared.control();
        loop {
            if control.stop {
                break 'sampling;
            }
            if control.read_now {
                control.read_now = false;
                drop(control);
                if !reader.read(shared) {
                    break 'sampling;
                }
                control = shared.control();
                continue;
            }
            let now = monotonic_ns();
            if now >= deadline {
                break;
            }
            control = shared
                .wake
                .wait_timeout(control, Duration::from_nanos(deadline - now))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
    lock(&shared.series).thread_cpu_ns = thread_cpu_ns();
    shared.read_done.notify_all();
}
