//! Named measurement windows: accumulator snapshots at begin and end, both
//! taken right after a fresh read of every source.

use crate::energy::hierarchy::{self, TotalDevice};
use crate::energy::{DeviceAccumulator, EnergyMethod, GapLog};
use llem_sdk::{Device, DeviceKind};

pub struct OpenWindow {
    pub t_ns: u64,
    /// Per source, per device.
    pub accumulators: Vec<Vec<DeviceAccumulator>>,
    /// Per source, per device: how many points the energy track had, so the
    /// window's share of the track is exactly the readings its snapshots hold.
    pub track_len: Vec<Vec<usize>>,
    /// Per source, (call began, timestamp) of its last successful read when
    /// the snapshot was taken.
    pub last_reads: Vec<Option<(u64, u64)>>,
}

impl OpenWindow {
    /// Timestamps of the sources' last reads that began at or after `asked_ns`
    /// (the fresh reads a boundary asked for; stale sources are left out).
    pub fn fresh_reads(&self, asked_ns: u64) -> impl Iterator<Item = u64> + '_ {
        self.last_reads
            .iter()
            .flatten()
            .filter(move |(began, _)| *began >= asked_ns)
            .map(|(_, t)| *t)
    }
}

/// One device's share of a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceWindow {
    pub source: String,
    pub device: String,
    pub kind: DeviceKind,
    /// The device (same source) whose figure includes this one, if any.
    pub parent: Option<String>,
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
    /// Whether [`WindowMeasurement::total_j`] adds this figure, and if not, why
    /// (inside a measured parent, an estimate of measured hardware, no figure).
    pub in_total: bool,
    pub excluded_because: Option<String>,
    /// Readings in the window that did not become energy.
    pub gaps: GapLog,
    /// Seconds of the window whose energy the figure accounts for; compare
    /// with [`WindowMeasurement::duration_s`] (gaps and a late first reading
    /// make it shorter).
    pub covered_s: f64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowMeasurement {
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub devices: Vec<DeviceWindow>,
    /// What deciding the total raised: overlapping sources, broken parent links.
    pub warnings: Vec<String>,
}

impl WindowMeasurement {
    pub fn duration_s(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e9
    }

    /// Sum over the devices the total includes (top-most measured node of
    /// each containment tree, estimates of measured hardware left out);
    /// `None` if none has a figure.
    pub fn total_j(&self) -> Option<f64> {
        let figures: Vec<f64> = self
            .devices
            .iter()
            .filter(|d| d.in_total)
            .filter_map(|d| d.energy_j)
            .collect();
        (!figures.is_empty()).then(|| figures.iter().sum())
    }

    /// `source/device` of every device the total includes.
    pub fn total_includes(&self) -> Vec<String> {
        self.devices
            .iter()
            .filter(|d| d.in_total)
            .map(|d| format!("{}/{}", d.source, d.device))
            .collect()
    }

    /// Lowest share of the window any device in the total covers (1.0 =
    /// every second accounted for); `None` when the total has no device.
    pub fn min_coverage(&self) -> Option<f64> {
        let window = self.duration_s();
        self.devices
            .iter()
            .filter(|d| d.in_total)
            .map(|d| {
                if window > 0.0 {
                    (d.covered_s / window).min(1.0)
                } else {
                    1.0
                }
            })
            .reduce(f64::min)
    }
}

/// Seconds of `[start_ns, end_ns]` that the device's readings between the
/// snapshots `b` and `a` account for: the covered intervals, less the part
/// of the first one before the window opened (a source that handed no new
/// reading at the opening, e.g. a slowly refreshing BMC, counts from its
/// previous one) and of the last one after it closed. A device read at both
/// edges covers the whole window exactly.
fn covered_within(b: &DeviceAccumulator, a: &DeviceAccumulator, start_ns: u64, end_ns: u64) -> f64 {
    let mut covered = a.covered_since(b);
    if covered <= 0.0 {
        return 0.0;
    }
    if let Some(opened_on) = b.last_t_ns().filter(|t| *t < start_ns) {
        covered -= (start_ns - opened_on) as f64 / 1e9;
    }
    if let Some(closed_on) = a.last_t_ns().filter(|t| *t > end_ns) {
        covered -= (closed_on - end_ns) as f64 / 1e9;
    }
    covered.max(0.0)
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
            let (method, energy_j, samples, gaps, covered_s) = match (before, after) {
                (Some(b), Some(a)) => {
                    // The reading the window opened on counts: deltas start from it.
                    let opened_on = u64::from(b.samples() > 0);
                    (
                        a.method(),
                        a.energy_since(b),
                        a.samples() - b.samples() + opened_on,
                        a.gaps.since(&b.gaps),
                        covered_within(b, a, begin.t_ns, end.t_ns),
                    )
                }
                _ => (EnergyMethod::None, None, 0, GapLog::default(), 0.0),
            };
            let len = |w: &OpenWindow| w.track_len.get(index).and_then(|l| l.get(d)).copied();
            let track = match (len(begin), len(end)) {
                (Some(b), Some(e)) if b > 0 && e >= b => Some((b - 1, e - 1)),
                _ => None,
            };
            devices.push(DeviceWindow {
                source: source.clone(),
                device: device.id.clone(),
                kind: device.kind,
                parent: device.parent.clone(),
                method,
                estimated: device.estimated,
                energy_j,
                samples,
                track,
                in_total: false,
                excluded_because: None,
                gaps,
                covered_s,
            });
        }
    }
    let view: Vec<TotalDevice<'_>> = devices
        .iter()
        .map(|d| TotalDevice {
            source: &d.source,
            id: &d.device,
            parent: d.parent.as_deref(),
            kind: d.kind,
            estimated: d.estimated,
            energy_j: d.energy_j,
        })
        .collect();
    let (inclusion, warnings) = hierarchy::include(&view);
    for (device, inclusion) in devices.iter_mut().zip(inclusion) {
        device.in_total = inclusion.in_total;
        device.excluded_because = inclusion.excluded_because;
    }
    WindowMeasurement {
        name: name.to_owned(),
        start_ns: begin.t_ns,
        end_ns: end.t_ns,
        devices,
        warnings,
    }
}
