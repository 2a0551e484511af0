//! The measurement loop: every energy source read on absolute deadlines,
//! each read timestamped with the kernel's monotonic clock (midpoint of the
//! call), raw readings kept for the timeseries and fed to the accumulators.

use crate::clock::monotonic_ns;
use crate::energy::DeviceAccumulator;
use crate::plugin::EnergyInstance;
use llem_sdk::Reading;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A source stops being read after this many failures in a row (recorded).
const MAX_CONSECUTIVE_FAILURES: u32 = 3;

pub struct SourceState {
    pub instance_name: String,
    pub source: Box<dyn EnergyInstance>,
    pub accumulators: Vec<DeviceAccumulator>,
    /// (t_ns, reading) in time order.
    pub timeseries: Vec<(u64, Reading)>,
    failures_in_a_row: u32,
    pub disabled: bool,
}

impl SourceState {
    pub fn new(instance_name: String, source: Box<dyn EnergyInstance>) -> Self {
        let accumulators = source
            .devices()
            .iter()
            .map(DeviceAccumulator::new)
            .collect();
        SourceState {
            instance_name,
            source,
            accumulators,
            timeseries: Vec::new(),
            failures_in_a_row: 0,
            disabled: false,
        }
    }

    /// Latest summed power over devices, watts, for the progress line.
    pub fn latest_power_w(&self) -> Option<f64> {
        let mut total = None;
        for acc in &self.accumulators {
            if let Some(w) = acc.average_power_w() {
                *total.get_or_insert(0.0) += w;
            }
        }
        total
    }
}

pub struct SamplingOutcome {
    pub ticks: u64,
    pub missed_ticks: u64,
    pub elapsed_ns: u64,
    pub interrupted: bool,
    pub warnings: Vec<String>,
}

/// Read all sources every `interval` until `duration` passes or `stop` is set.
/// `on_tick(elapsed, sources)` runs after every tick (progress display).
pub fn sample(
    sources: &mut [SourceState],
    interval: Duration,
    duration: Duration,
    stop: &Arc<AtomicBool>,
    mut on_tick: impl FnMut(Duration, &[SourceState]),
) -> SamplingOutcome {
    let interval_ns = interval.as_nanos().max(1) as u64;
    let start = monotonic_ns();
    let end = start + duration.as_nanos() as u64;
    let mut outcome = SamplingOutcome {
        ticks: 0,
        missed_ticks: 0,
        elapsed_ns: 0,
        interrupted: false,
        warnings: Vec::new(),
    };
    let mut readings = Vec::new();
    let mut deadline = start;
    loop {
        for state in sources.iter_mut().filter(|s| !s.disabled) {
            readings.clear();
            let before = monotonic_ns();
            let result = state.source.read(&mut readings);
            let after = monotonic_ns();
            let t_ns = before + (after - before) / 2;
            match result {
                Ok(()) => {
                    state.failures_in_a_row = 0;
                    for reading in &readings {
                        if let Some(acc) = state.accumulators.get_mut(reading.device as usize) {
                            acc.push(t_ns, reading);
                            state.timeseries.push((t_ns, *reading));
                        }
                    }
                }
                Err(error) => {
                    state.failures_in_a_row += 1;
                    outcome
                        .warnings
                        .push(format!("{:.3} s: {error}", (t_ns - start) as f64 / 1e9));
                    if state.failures_in_a_row >= MAX_CONSECUTIVE_FAILURES {
                        state.disabled = true;
                        outcome.warnings.push(format!(
                            "stopped reading `{}` after {MAX_CONSECUTIVE_FAILURES} failures in a row; its figures cover only the time before",
                            state.instance_name
                        ));
                    }
                }
            }
        }
        outcome.ticks += 1;
        let now = monotonic_ns();
        on_tick(Duration::from_nanos(now - start), sources);
        if now >= end {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            outcome.interrupted = true;
            break;
        }
        // Absolute deadlines: a slow tick does not shift the ones after it;
        // ticks that can no longer happen on time are skipped and counted.
        deadline += interval_ns;
        if now > deadline {
            let behind = (now - deadline) / interval_ns + 1;
            outcome.missed_ticks += behind;
            deadline += behind * interval_ns;
        }
        let wake = deadline.min(end);
        sleep_until(wake, stop);
    }
    outcome.elapsed_ns = monotonic_ns() - start;
    outcome
}

/// Sleep to `deadline_ns`, waking early (within 50 ms) if `stop` is set.
fn sleep_until(deadline_ns: u64, stop: &AtomicBool) {
    loop {
        let now = monotonic_ns();
        if now >= deadline_ns || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(Duration::from_nanos((deadline_ns - now).min(50_000_000)));
    }
}
