//! Named measurement windows: accumulator snapshots at begin and end, both
//! taken right after a fresh read of every source.

use crate::energy::{DeviceAccumulator, EnergyMethod};
use llem_sdk::Device;

pub struct OpenWindow {
    pub t_ns: u64,
    /// Per source, per device.
    pub accumulators: Vec<Vec<DeviceAccumulator>>,
    /// Per source, per device: how many points the energy track had, so the
    /// window's share of the track is exactly the readings its snapshots hold.
    pub track_len: Vec<Vec<usize>>,
}

/// One device's share of a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceWindow {
    pub source: String,
    pub device: String,
    pub method: EnergyMethod,
    pub estimated: bool,
    /// `None` when the device produced no figure in the window (never a silent 0).
    pub energy_j: Option<f64>,
    /// Readings the figure rests on: the one the window opened on, and those after.
    pub samples: u64,
    /// Indices (first, last) into the source's `energy_track` of this device
    /// that the window spans: the reading it opened on to the one it closed on.
    #[serde(skip)]
    pub track: Option<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowMeasurement {
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub devices: Vec<DeviceWindow>,
}

impl WindowMeasurement {
    pub fn duration_s(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    /// Sum over devices with a figure; `None` if none has one.
    pub fn total_j(&self) -> Option<f64> {
        let figures: Vec<f64> = self.devices.iter().filter_map(|d| d.energy_j).collect();
        (!figures.is_empty()).then(|| figures.iter().sum())
    }
}

pub fn measure(
    name: &str,
    begin: &OpenWindow,
    end: &OpenWindow,
    sources: &[(String, Vec<Device>)],
) -> WindowMeasurement {
    let mut devices = Vec::new();
    for (index, (source, source_devices)) in sources.iter().enumerate() {
        for (d, device) in source_devices.iter().enumerate() {
            let before = begin.accumulators.get(index).and_then(|a| a.get(d));
            let after = end.accumulators.get(index).and_then(|a| a.get(d));
            let (method, energy_j, samples) = match (before, after) {
                (Some(b), Some(a)) => {
                    // The reading the window opened on counts: deltas start from it.
                    let opened_on = u64::from(b.samples() > 0);
                    (
                        a.method(),
                        a.energy_since(b),
                        a.samples() - b.samples() + opened_on,
                    )
                }
                _ => (EnergyMethod::None, None, 0),
            };
            let len = |w: &OpenWindow| w.track_len.get(index).and_then(|l| l.get(d)).copied();
            let track = match (len(begin), len(end)) {
                (Some(b), Some(e)) if b > 0 && e >= b => Some((b - 1, e - 1)),
                _ => None,
            };
            devices.push(DeviceWindow {
                source: source.clone(),
                device: device.id.clone(),
                method,
                estimated: device.estimated,
                energy_j,
                samples,
                track,
            });
        }
    }
    WindowMeasurement {
        name: name.to_owned(),
        start_ns: begin.t_ns,
        end_ns: end.t_ns,
        devices,
    }
}
