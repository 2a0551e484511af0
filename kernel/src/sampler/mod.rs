//! The sampler: one thread per energy source, reading on absolute deadlines
//! at the source's own interval, timestamping every read with the kernel's
//! monotonic clock, keeping the raw readings, and accumulating energy per
//! device. Named, concurrent measurement windows (like Zeus's ZeusMonitor)
//! are cut on fresh reads taken at `begin_window` and `end_window`.
//!
//! A source that fails is recorded, not fatal: three failures in a row stop
//! that source's thread and the gap is reported; the others go on.

mod source_thread;
mod spool;
mod window;

pub use spool::{FLUSH_PERIOD, ReadingTap, TELEMETRY_FILE, TIMESERIES_FILE};

pub use window::{DeviceWindow, WindowMeasurement};

use crate::clock::monotonic_ns;
use crate::energy::{DeviceAccumulator, EnergyMethod};
use crate::plugin::EnergyInstance;
use llem_sdk::{Device, DeviceTelemetry, Metric, Reading};
use source_thread::Shared;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How one source is sampled.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Name shown in results (the manifest's instance name).
    pub name: String,
    pub interval: Duration,
    /// Telemetry (utilisation, temperature, clocks) is read at most this often.
    pub telemetry_interval: Duration,
}

/// Everything one source's thread has gathered.
#[derive(Debug, Default, Clone)]
pub struct SourceSeries {
    /// Raw readings with their read timestamps (midpoint of the call), in time
    /// order. When the sampler spools to a run directory, rows already written
    /// to `timeseries.csv` are no longer here.
    pub readings: Vec<(u64, Reading)>,
    /// The latest reading of each device (live display).
    pub latest: Vec<Option<(u64, Reading)>>,
    /// Per device, (t_ns, cumulative joules by the device's method) after every
    /// read: the energy-over-time curve windows and attribution are cut from.
    pub energy_track: Vec<Vec<(u64, f64)>>,
    /// The source's thread was still inside a call when the sampler stopped
    /// and was left behind; nothing after its last reading is counted.
    pub abandoned: bool,
    pub telemetry: Vec<(u64, DeviceTelemetry)>,
    /// Per device, the metrics of its latest telemetry read and when it was
    /// taken (kept when the rows above are spooled or discarded: the live
    /// view and the Prometheus exporter read it).
    pub latest_telemetry: Vec<Option<(u64, Vec<Metric>)>>,
    pub accumulators: Vec<DeviceAccumulator>,
    pub ticks: u64,
    /// Ticks skipped because a read overran its slot.
    pub missed_ticks: u64,
    /// Failures, with the time they happened (s since the sampler started).
    pub errors: Vec<String>,
    /// The source stopped being read after repeated failures.
    pub gave_up: bool,
    /// CPU time the sampling thread used (CLOCK_THREAD_CPUTIME_ID), ns.
    pub thread_cpu_ns: u64,
    /// Reads completed: lets a window wait for a fresh one.
    pub reads_done: u64,
    /// (when the call began, its timestamp) of the last read attempt and of
    /// the last successful one: a window boundary waits for an attempt that
    /// began after it was asked for, and sits on that read's timestamp.
    pub last_attempt: Option<(u64, u64)>,
    pub last_success: Option<(u64, u64)>,
    /// What the source delivered that belongs to no device or is not a
    /// number (a reading for an unknown device index, non-finite telemetry):
    /// dropped, counted, the first few described. Per-device gaps are in
    /// each accumulator's `gaps`.
    pub source_gaps: crate::energy::GapLog,
}

struct SourceHandle {
    config: SourceConfig,
    devices: Vec<Device>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Running sampler. Dropping it stops its threads.
pub struct Sampler {
    sources: Vec<SourceHandle>,
    started_ns: u64,
    windows: Mutex<HashMap<String, window::OpenWindow>>,
    spool: Option<spool::Spool>,
}

/// One stopped source: its configuration, devices and everything sampled.
pub type Stopped = (SourceConfig, Vec<Device>, SourceSeries);

/// How long `stop` waits for a source's thread to leave a call before it is
/// abandoned: a source blocked in a read cannot hold a run past its end.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("sources", &self.sources.len())
            .finish()
    }
}

/// A read of the series under its lock; a poisoned lock still yields the data
/// (the writer only appends, so it is consistent up to the panic).
fn lock(series: &Mutex<SourceSeries>) -> MutexGuard<'_, SourceSeries> {
    series.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sampler {
    /// Start one thread per source. Each takes a first reading immediately.
    pub fn start(
        sources: Vec<(SourceConfig, Box<dyn EnergyInstance>)>,
    ) -> std::io::Result<Sampler> {
        Self::start_spooled(sources, None)
    }

    /// Start, streaming every reading and telemetry row to `dir`
    /// (`timeseries.csv`, `telemetry.csv`) while the run goes on.
    pub fn start_spooled(
        sources: Vec<(SourceConfig, Box<dyn EnergyInstance>)>,
        dir: Option<&std::path::Path>,
    ) -> std::io::Result<Sampler> {
        Self::start_tapped(sources, dir, None)
    }

    /// [`Sampler::start_spooled`], also handing every reading written to
    /// `timeseries.csv` to `tap` (on the spool's thread, as it is written:
    /// each reading exactly once, in order, the last ones when the sampler
    /// stops). Without `dir` there is no spool and the tap is never called.
    pub fn start_tapped(
        sources: Vec<(SourceConfig, Box<dyn EnergyInstance>)>,
        dir: Option<&std::path::Path>,
        tap: Option<ReadingTap>,
    ) -> std::io::Result<Sampler> {
        let started_ns = monotonic_ns();
        let mut handles = Vec::with_capacity(sources.len());
        for (config, instance) in sources {
            let devices = instance.devices().to_vec();
            let shared = Arc::new(Shared::new(&devices));
            let thread =
                source_thread::spawn(config.clone(), instance, shared.clone(), started_ns)?;
            handles.push(SourceHandle {
                config,
                devices,
                shared,
                thread: Some(thread),
            });
        }
        let spool = match dir {
            Some(dir) => Some(spool::Spool::start(
                dir,
                handles
                    .iter()
                    .map(|h| spool::SpoolSource {
                        name: h.config.name.clone(),
                        devices: h.devices.clone(),
                        shared: h.shared.clone(),
                    })
                    .collect(),
                tap,
            )?),
            None => None,
        };
        Ok(Sampler {
            sources: handles,
            started_ns,
            windows: Mutex::new(HashMap::new()),
            spool,
        })
    }

    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// (name, devices) of every source, in start order.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &[Device])> {
        self.sources
            .iter()
            .map(|s| (s.config.name.as_str(), s.devices.as_slice()))
    }

    /// Ask every source for a fresh read now and wait (up to `timeout`) until
    /// each has done one that began after this call, so a window boundary
    /// sits on real readings. Returns when the request was made.
    pub fn sync(&self, timeout: Duration) -> u64 {
        let asked_ns = monotonic_ns();
        for source in &self.sources {
            source.shared.request_read();
        }
        for source in &self.sources {
            source.shared.wait_for_read_since(asked_ns, timeout);
        }
        asked_ns
    }

    /// A snapshot of one source's series.
    pub fn series(&self, index: usize) -> Option<SourceSeries> {
        self.sources
            .get(index)
            .map(|s| lock(&s.shared.series).clone())
    }

    /// Per-device cumulative energy (J) and latest power (W) for live display.
    pub fn live(&self) -> Vec<LiveDevice> {
        self.view().live()
    }

    /// A handle on the live figures that outlives nothing it should not:
    /// cheap to clone, sendable to another thread (an exporter), and still
    /// answering (with the final figures) after the sampler stopped.
    pub fn view(&self) -> SamplerView {
        SamplerView {
            started_ns: self.started_ns,
            sources: Arc::new(
                self.sources
                    .iter()
                    .map(|s| ViewSource {
                        name: s.config.name.clone(),
                        devices: s.devices.clone(),
                        shared: s.shared.clone(),
                    })
                    .collect(),
            ),
        }
    }

    /// Drop the raw rows kept in memory (readings, telemetry, energy tracks):
    /// for long-running callers that only need live figures and windows.
    pub fn discard_raw(&self) {
        for source in &self.sources {
            let mut series = lock(&source.shared.series);
            series.readings.clear();
            series.telemetry.clear();
            for track in &mut series.energy_track {
                track.clear();
            }
        }
    }

    /// Open a named window; several may be open at once. Reopening a name restarts it.
    ///
    /// The window opens on the latest of the sources' fresh reads: every
    /// source's energy is then counted from a reading at or before the
    /// window's start, so a healthy source covers all of it.
    /// Returns the window's start (the `start_ns` its measurement will have).
    pub fn begin_window(&self, name: &str) -> u64 {
        let asked_ns = self.sync(Duration::from_secs(2));
        let mut snapshot = self.snapshot();
        if let Some(opened) = snapshot.fresh_reads(asked_ns).max() {
            snapshot.t_ns = opened;
        }
        let start_ns = snapshot.t_ns;
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.insert(name.to_owned(), snapshot);
        start_ns
    }

    /// Close a named window and measure it; `None` if it was never opened.
    ///
    /// The window closes on the earliest of the sources' fresh reads, each
    /// taken after this call began: every source's energy runs at least to
    /// the window's end, and what happened before the call (the requests) is
    /// inside it. A source that did not answer in time keeps its last
    /// reading, and its coverage says what is missing.
    pub fn end_window(&self, name: &str) -> Option<WindowMeasurement> {
        let begin = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows.remove(name)?
        };
        let asked_ns = self.sync(Duration::from_secs(2));
        let mut end = self.snapshot();
        end.t_ns = end.fresh_reads(asked_ns).min().unwrap_or(end.t_ns);
        Some(window::measure(name, &begin, &end, &self.sources_meta()))
    }

    fn sources_meta(&self) -> Vec<(String, Vec<Device>)> {
        self.sources
            .iter()
            .map(|s| (s.config.name.clone(), s.devices.clone()))
            .collect()
    }

    fn snapshot(&self) -> window::OpenWindow {
        let mut accumulators = Vec::with_capacity(self.sources.len());
        let mut track_len = Vec::with_capacity(self.sources.len());
        let mut last_reads = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            let series = lock(&s.shared.series);
            accumulators.push(series.accumulators.clone());
            track_len.push(series.energy_track.iter().map(Vec::len).collect());
            last_reads.push(series.last_success);
        }
        window::OpenWindow {
            t_ns: monotonic_ns(),
            accumulators,
            track_len,
            last_reads,
        }
    }

    /// Stop every thread and return each source's series (waiting at most
    /// [`STOP_GRACE`] for a source stuck in a call).
    pub fn stop(self) -> Vec<Stopped> {
        self.stop_within(STOP_GRACE).0
    }

    /// Stop every thread, abandoning one still inside a call after `grace`;
    /// also returns the spool's write errors (empty when everything reached disk).
    pub fn stop_within(mut self, grace: Duration) -> (Vec<Stopped>, Vec<String>) {
        for source in &self.sources {
            source.shared.stop();
        }
        let deadline = std::time::Instant::now() + grace;
        let mut out = Vec::with_capacity(self.sources.len());
        for mut source in self.sources.drain(..) {
            if let Some(thread) = source.thread.take() {
                while !thread.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if thread.is_finished() {
                    if thread.join().is_err() {
                        lock(&source.shared.series)
                            .errors
                            .push("sampling thread panicked".into());
                    }
                } else {
                    // Left behind: it may return some day, but nothing it reads counts.
                    let mut series = lock(&source.shared.series);
                    series.abandoned = true;
                    series.errors.push(format!(
                        "`{}` was still inside a call {:.1} s after the run ended and was abandoned; its figures end at its last reading",
                        source.config.name,
                        grace.as_secs_f64()
                    ));
                }
            }
            out.push((source.config, source.devices, source.shared.clone()));
        }
        let spool_errors = self
            .spool
            .take()
            .map(|mut s| s.finish())
            .unwrap_or_default();
        let out = out
            .into_iter()
            .map(|(config, devices, shared)| {
                let series = lock(&shared.series).clone();
                (config, devices, series)
            })
            .collect();
        (out, spool_errors)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        for source in &self.sources {
            source.shared.stop();
        }
        let deadline = std::time::Instant::now() + STOP_GRACE;
        for source in &mut self.sources {
            if let Some(thread) = source.thread.take() {
                while !thread.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if thread.is_finished() {
                    let _ = thread.join();
                }
            }
        }
        if let Some(mut spool) = self.spool.take() {
            let _ = spool.finish();
        }
    }
}

struct ViewSource {
    name: String,
    devices: Vec<Device>,
    shared: Arc<Shared>,
}

/// The sampler's live figures, readable from any thread ([`Sampler::view`]).
/// Each read takes a source's lock only long enough to copy a few numbers.
#[derive(Clone)]
pub struct SamplerView {
    started_ns: u64,
    sources: Arc<Vec<ViewSource>>,
}

impl std::fmt::Debug for SamplerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerView")
            .field("sources", &self.sources.len())
            .finish()
    }
}

/// One source's counters and devices, as [`SamplerView::sources`] sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSource {
    pub name: String,
    /// Sampling ticks done (reads attempted on their deadline).
    pub ticks: u64,
    /// Ticks skipped because a read overran its slot.
    pub missed_ticks: u64,
    /// Reads that failed.
    pub errors: u64,
    /// The source stopped being read after repeated failures.
    pub gave_up: bool,
    pub devices: Vec<LiveSourceDevice>,
}

/// One device of a [`LiveSource`]: what it is, its live figures and its
/// latest telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSourceDevice {
    pub info: Device,
    pub live: LiveDevice,
    pub telemetry: Vec<Metric>,
}

impl SamplerView {
    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    /// Per-device cumulative energy (J) and latest power (W).
    pub fn live(&self) -> Vec<LiveDevice> {
        self.sources()
            .into_iter()
            .flat_map(|s| s.devices.into_iter().map(|d| d.live))
            .collect()
    }

    /// Every source with its counters, devices and latest telemetry.
    pub fn sources(&self) -> Vec<LiveSource> {
        self.sources
            .iter()
            .map(|source| {
                let series = lock(&source.shared.series);
                let devices = source
                    .devices
                    .iter()
                    .zip(&series.accumulators)
                    .enumerate()
                    .map(|(index, (device, acc))| {
                        let latest = series.latest.get(index).copied().flatten();
                        LiveSourceDevice {
                            info: device.clone(),
                            live: LiveDevice {
                                t_ns: latest.map(|(t, _)| t),
                                source: source.name.clone(),
                                device: device.id.clone(),
                                estimated: device.estimated,
                                method: acc.method(),
                                energy_j: acc.energy_j(),
                                power_w: latest
                                    .and_then(|(_, r)| r.power_mw)
                                    .map(|mw| mw as f64 / 1000.0)
                                    .or_else(|| acc.recent_power_w()),
                            },
                            telemetry: series
                                .latest_telemetry
                                .get(index)
                                .and_then(|t| t.as_ref())
                                .map(|(_, metrics)| metrics.clone())
                                .unwrap_or_default(),
                        }
                    })
                    .collect();
                LiveSource {
                    name: source.name.clone(),
                    ticks: series.ticks,
                    missed_ticks: series.missed_ticks,
                    errors: series.errors.len() as u64,
                    gave_up: series.gave_up,
                    devices,
                }
            })
            .collect()
    }
}

/// One device's state for a live display.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveDevice {
    /// When the reading behind `energy_j` was taken (CLOCK_MONOTONIC, ns);
    /// `None` before the first one.
    pub t_ns: Option<u64>,
    pub source: String,
    pub device: String,
    pub estimated: bool,
    pub method: EnergyMethod,
    pub energy_j: Option<f64>,
    pub power_w: Option<f64>,
}

#[cfg(test)]
mod tests;
