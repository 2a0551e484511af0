//! The sampler: one thread per energy source, reading on absolute deadlines
//! at the source's own interval, timestamping every read with the kernel's
//! monotonic clock, keeping the raw readings, and accumulating energy per
//! device. Named, concurrent measurement windows (like Zeus's ZeusMonitor)
//! are cut on fresh reads taken at `begin_window` and `end_window`.
//!
//! A source that fails is recorded, not fatal: three failures in a row stop
//! that source's thread and the gap is reported; the others go on.

mod source_thread;
mod window;

pub use window::{DeviceWindow, WindowMeasurement};

use crate::clock::monotonic_ns;
use crate::energy::{DeviceAccumulator, EnergyMethod};
use crate::plugin::EnergyInstance;
use llem_sdk::{Device, DeviceTelemetry, Reading};
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
    /// Raw readings with their read timestamps (midpoint of the call), in time order.
    pub readings: Vec<(u64, Reading)>,
    pub telemetry: Vec<(u64, DeviceTelemetry)>,
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
}

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
        Ok(Sampler {
            sources: handles,
            started_ns,
            windows: Mutex::new(HashMap::new()),
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
    /// each has done one, so a window boundary sits on real readings.
    pub fn sync(&self, timeout: Duration) {
        let targets: Vec<u64> = self
            .sources
            .iter()
            .map(|s| s.shared.request_read())
            .collect();
        for (source, target) in self.sources.iter().zip(targets) {
            source.shared.wait_for_read(target, timeout);
        }
    }

    /// A snapshot of one source's series.
    pub fn series(&self, index: usize) -> Option<SourceSeries> {
        self.sources
            .get(index)
            .map(|s| lock(&s.shared.series).clone())
    }

    /// Per-device cumulative energy (J) and latest power (W) for live display.
    pub fn live(&self) -> Vec<LiveDevice> {
        let mut out = Vec::new();
        for source in &self.sources {
            let series = lock(&source.shared.series);
            for (index, (device, acc)) in
                source.devices.iter().zip(&series.accumulators).enumerate()
            {
                let mine = || {
                    series
                        .readings
                        .iter()
                        .rev()
                        .filter(|(_, r)| r.device as usize == index)
                };
                let latest_power_mw = mine().find_map(|(_, r)| r.power_mw);
                let t_ns = mine().next().map(|(t, _)| *t);
                out.push(LiveDevice {
                    t_ns,
                    source: source.config.name.clone(),
                    device: device.id.clone(),
                    estimated: device.estimated,
                    method: acc.method(),
                    energy_j: acc.energy_j(),
                    power_w: latest_power_mw
                        .map(|mw| mw as f64 / 1000.0)
                        .or_else(|| acc.recent_power_w()),
                });
            }
        }
        out
    }

    /// Open a named window; several may be open at once. Reopening a name restarts it.
    pub fn begin_window(&self, name: &str) {
        self.sync(Duration::from_secs(2));
        let snapshot = self.snapshot();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.insert(name.to_owned(), snapshot);
    }

    /// Close a named window and measure it; `None` if it was never opened.
    pub fn end_window(&self, name: &str) -> Option<WindowMeasurement> {
        let begin = {
            let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows.remove(name)?
        };
        self.sync(Duration::from_secs(2));
        let end = self.snapshot();
        Some(window::measure(name, &begin, &end, &self.sources_meta()))
    }

    fn sources_meta(&self) -> Vec<(String, Vec<Device>)> {
        self.sources
            .iter()
            .map(|s| (s.config.name.clone(), s.devices.clone()))
            .collect()
    }

    fn snapshot(&self) -> window::OpenWindow {
        window::OpenWindow {
            t_ns: monotonic_ns(),
            accumulators: self
                .sources
                .iter()
                .map(|s| lock(&s.shared.series).accumulators.clone())
                .collect(),
        }
    }

    /// Stop every thread and return each source's series.
    pub fn stop(mut self) -> Vec<(SourceConfig, Vec<Device>, SourceSeries)> {
        for source in &self.sources {
            source.shared.stop();
        }
        let mut out = Vec::with_capacity(self.sources.len());
        for mut source in self.sources.drain(..) {
            if let Some(thread) = source.thread.take()
                && thread.join().is_err()
            {
                lock(&source.shared.series)
                    .errors
                    .push("sampling thread panicked".into());
            }
            let series = lock(&source.shared.series).clone();
            out.push((source.config, source.devices, series));
        }
        out
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        for source in &self.sources {
            source.shared.stop();
        }
        for source in &mut self.sources {
            if let Some(thread) = source.thread.take() {
                let _ = thread.join();
            }
        }
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
