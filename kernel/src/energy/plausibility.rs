//! What a device can plausibly do, and the record of readings that were not
//! plausible. A reading the kernel cannot trust becomes a *gap*: counted,
//! described (the first few, with their time) and warned about, never energy.

use llem_sdk::{Device, DeviceKind};
use serde::{Deserialize, Serialize};

/// Counters refresh only every 20–100 ms (NVML) and a read may return energy
/// accrued before the previous read's timestamp, so the energy one interval
/// may carry is judged over the interval plus this much.
pub const REFRESH_SLACK_S: f64 = 0.25;

/// A counter that steps back by at most this much (µJ) is read-out jitter,
/// not a reset or a wrap: the interval counts 0 J and the higher value stays
/// the baseline. Ten times the coarsest counter unit in use (NVML's 1 mJ);
/// a real reset or wrap moves a counter by far more.
pub const JITTER_UJ: u64 = 10_000;

/// Gaps described in full per device; later ones are only counted.
pub const MAX_GAP_DETAILS: usize = 8;

/// The most power a device of this kind can plausibly draw, watts, when the
/// plugin does not say (`Device::max_power_w`). Generous on purpose: the
/// bound exists to catch corrupt readings (a counter that jumped by 10¹⁵ µJ),
/// not to second-guess real hardware. A GH200 module is ~1 kW; a 2-socket
/// server's packages ~700 W; a whole node with 8 GPUs ~12 kW.
pub fn default_max_power_w(kind: DeviceKind) -> f64 {
    match kind {
        DeviceKind::Gpu | DeviceKind::Accelerator => 2_000.0,
        DeviceKind::CpuPackage | DeviceKind::CpuCore | DeviceKind::CpuUncore => 1_000.0,
        DeviceKind::Dram => 500.0,
        DeviceKind::Psys => 5_000.0,
        DeviceKind::System | DeviceKind::Other => 20_000.0,
    }
}

/// The bound used for `device`: its own `max_power_w` when it gives a
/// positive finite one, else the default for its kind.
pub fn max_power_w(device: &Device) -> f64 {
    device
        .max_power_w
        .filter(|w| w.is_finite() && *w > 0.0)
        .unwrap_or_else(|| default_max_power_w(device.kind))
}

/// One reading that was not turned into energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// When the offending reading was taken (CLOCK_MONOTONIC, ns).
    pub t_ns: u64,
    /// Time whose energy is not counted because of it, seconds (0 when only
    /// the reading was dropped and the next one bridged the interval).
    pub lost_s: f64,
    pub reason: String,
}

/// Every gap of one device: how many, and the first [`MAX_GAP_DETAILS`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GapLog {
    pub count: u64,
    pub first: Vec<Gap>,
}

impl GapLog {
    pub fn record(&mut self, gap: Gap) {
        self.count += 1;
        if self.first.len() < MAX_GAP_DETAILS {
            self.first.push(gap);
        }
    }

    /// The gaps recorded after `earlier`, a snapshot of this same log.
    pub fn since(&self, earlier: &GapLog) -> GapLog {
        GapLog {
            count: self.count.saturating_sub(earlier.count),
            first: self
                .first
                .get(earlier.first.len()..)
                .unwrap_or_default()
                .to_vec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(t_ns: u64) -> Gap {
        Gap {
            t_ns,
            lost_s: 0.0,
            reason: "x".into(),
        }
    }

    #[test]
    fn the_log_keeps_the_first_details_and_counts_the_rest() {
        let mut log = GapLog::default();
        for t in 0..20 {
            log.record(gap(t));
        }
        assert_eq!(log.count, 20);
        assert_eq!(log.first.len(), MAX_GAP_DETAILS);
        assert_eq!(log.first[0].t_ns, 0);
    }

    #[test]
    fn since_returns_only_the_later_gaps() {
        let mut log = GapLog::default();
        log.record(gap(1));
        let before = log.clone();
        log.record(gap(2));
        log.record(gap(3));
        let window = log.since(&before);
        assert_eq!(window.count, 2);
        assert_eq!(
            window.first.iter().map(|g| g.t_ns).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[test]
    fn a_device_bound_overrides_the_default_only_when_sane() {
        let mut device = Device {
            id: "gpu0".into(),
            name: "g".into(),
            kind: DeviceKind::Gpu,
            has_energy_counter: true,
            counter_wrap_uj: None,
            has_power: false,
            power_average_window_ms: 0,
            estimated: false,
            parent: None,
            max_power_w: Some(700.0),
        };
        assert_eq!(max_power_w(&device), 700.0);
        device.max_power_w = Some(f64::NAN);
        assert_eq!(max_power_w(&device), 2_000.0);
        device.max_power_w = Some(-1.0);
        assert_eq!(max_power_w(&device), 2_000.0);
    }
}
