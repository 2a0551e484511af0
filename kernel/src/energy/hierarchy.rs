//! Which devices a total may add. Energy domains nest (RAPL `core` inside its
//! `package`, packages inside `psys`) and two sources may measure the same
//! hardware (a CPU estimate beside RAPL); adding them all counts energy twice.
//!
//! Rules, applied to the figures of one window:
//! 1. **Containment** (a plugin's `Device::parent`, same source): a device is
//!    in the total only if no ancestor has a figure. So the top-most measured
//!    node of each tree counts; when a parent has no figure, its children
//!    count instead (their sum is the best figure there is).
//! 2. **Overlap** (across sources): an estimated device is left out when a
//!    measured device of another source covers the same hardware (same kind;
//!    a CPU estimate is covered by a measured CPU package or psys), with a
//!    warning, never silently.

use llem_sdk::DeviceKind;
use serde::{Deserialize, Serialize};

/// One device as the total sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TotalDevice<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub parent: Option<&'a str>,
    pub kind: DeviceKind,
    pub estimated: bool,
    pub energy_j: Option<f64>,
}

/// Whether a device's figure is part of the total, and if not, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inclusion {
    pub in_total: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_because: Option<String>,
}

impl Inclusion {
    fn yes() -> Self {
        Inclusion {
            in_total: true,
            excluded_because: None,
        }
    }

    fn no(why: String) -> Self {
        Inclusion {
            in_total: false,
            excluded_because: Some(why),
        }
    }
}

fn is_cpu(kind: DeviceKind) -> bool {
    matches!(
        kind,
        DeviceKind::CpuPackage | DeviceKind::CpuCore | DeviceKind::CpuUncore | DeviceKind::Psys
    )
}

/// Whether a measured device of kind `measured` covers the hardware an
/// estimate of kind `estimate` models.
fn covers(measured: DeviceKind, estimate: DeviceKind) -> bool {
    measured == estimate
        || (is_cpu(estimate) && matches!(measured, DeviceKind::CpuPackage | DeviceKind::Psys))
}

fn name(d: &TotalDevice<'_>) -> String {
    format!("{}/{}", d.source, d.id)
}

/// The index of `d`'s parent among `devices`, if it names one of its own source.
fn parent_of(devices: &[TotalDevice<'_>], i: usize) -> Option<usize> {
    let d = &devices[i];
    let parent = d.parent?;
    devices
        .iter()
        .position(|p| p.source == d.source && p.id == parent)
        .filter(|p| *p != i)
}

/// Decide, for each device (same order), whether the total includes it; and
/// the warnings the decision raises (overlaps, broken parent links).
pub fn include(devices: &[TotalDevice<'_>]) -> (Vec<Inclusion>, Vec<String>) {
    let mut warnings = Vec::new();
    let n = devices.len();
    // Parent links, with cycles cut (a plugin bug must not hide energy).
    let mut parent: Vec<Option<usize>> = (0..n).map(|i| parent_of(devices, i)).collect();
    for i in 0..n {
        let mut seen = vec![false; n];
        let mut at = i;
        seen[at] = true;
        while let Some(p) = parent[at] {
            if seen[p] {
                warnings.push(format!(
                    "{}: its parent chain loops back on itself; counted as top-level",
                    name(&devices[i])
                ));
                parent[i] = None;
                break;
            }
            seen[p] = true;
            at = p;
        }
    }
    for (i, d) in devices.iter().enumerate() {
        if let Some(missing) = d.parent.filter(|_| parent[i].is_none())
            && !devices
                .iter()
                .any(|p| p.source == d.source && p.id == missing)
        {
            warnings.push(format!(
                "{}: its parent `{missing}` is not a device of `{}`; counted as top-level",
                name(d),
                d.source
            ));
        }
    }

    let mut out = Vec::with_capacity(n);
    for (i, d) in devices.iter().enumerate() {
        if d.energy_j.is_none() {
            out.push(Inclusion::no("no figure in this window".into()));
            continue;
        }
        let mut ancestor = parent[i];
        let mut container = None;
        while let Some(a) = ancestor {
            if devices[a].energy_j.is_some() {
                container = Some(a);
                break;
            }
            ancestor = parent[a];
        }
        if let Some(a) = container {
            out.push(Inclusion::no(format!(
                "inside {}, whose figure already includes it",
                name(&devices[a])
            )));
            continue;
        }
        if d.estimated
            && let Some(m) = devices.iter().find(|m| {
                !m.estimated
                    && m.source != d.source
                    && m.energy_j.is_some()
                    && covers(m.kind, d.kind)
            })
        {
            warnings.push(format!(
                "{} is an estimate of hardware that {} measures: left out of the total, not added to it",
                name(d),
                name(m)
            ));
            out.push(Inclusion::no(format!(
                "an estimate of what {} measures",
                name(m)
            )));
            continue;
        }
        out.push(Inclusion::yes());
    }
    (out, warnings)
}

/// The sum of the included figures; `None` when nothing is included.
pub fn total_j(devices: &[TotalDevice<'_>], inclusion: &[Inclusion]) -> Option<f64> {
    let figures: Vec<f64> = devices
        .iter()
        .zip(inclusion)
        .filter(|(_, inc)| inc.in_total)
        .filter_map(|(d, _)| d.energy_j)
        .collect();
    (!figures.is_empty()).then(|| figures.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceKind::*;

    fn dev<'a>(
        source: &'a str,
        id: &'a str,
        parent: Option<&'a str>,
        kind: DeviceKind,
        energy_j: Option<f64>,
    ) -> TotalDevice<'a> {
        TotalDevice {
            source,
            id,
            parent,
            kind,
            estimated: false,
            energy_j,
        }
    }

    fn total(devices: &[TotalDevice<'_>]) -> Option<f64> {
        let (inc, _) = include(devices);
        total_j(devices, &inc)
    }

    #[test]
    fn intel_counts_packages_and_dram_not_core_or_uncore() {
        // package 100 J with core 40 J and uncore 35 J inside, dram 20 J beside:
        // 120 J. Summing every zone gave 195 J (+62 %).
        let devices = [
            dev("rapl", "package-0", None, CpuPackage, Some(100.0)),
            dev(
                "rapl",
                "package-0-core",
                Some("package-0"),
                CpuCore,
                Some(40.0),
            ),
            dev(
                "rapl",
                "package-0-uncore",
                Some("package-0"),
                CpuUncore,
                Some(35.0),
            ),
            dev("rapl", "package-0-dram", None, Dram, Some(20.0)),
        ];
        assert_eq!(total(&devices), Some(120.0));
        let (inc, warnings) = include(&devices);
        assert!(warnings.is_empty());
        assert_eq!(
            inc.iter().map(|i| i.in_total).collect::<Vec<_>>(),
            [true, false, false, true]
        );
        assert_eq!(
            inc[1].excluded_because.as_deref(),
            Some("inside rapl/package-0, whose figure already includes it")
        );
    }

    #[test]
    fn psys_contains_everything_below_it() {
        let devices = [
            dev("rapl", "package-0", Some("psys"), CpuPackage, Some(100.0)),
            dev(
                "rapl",
                "package-0-core",
                Some("package-0"),
                CpuCore,
                Some(40.0),
            ),
            dev("rapl", "package-0-dram", Some("psys"), Dram, Some(20.0)),
            dev("rapl", "psys", None, Psys, Some(150.0)),
        ];
        assert_eq!(total(&devices), Some(150.0));
        let (inc, _) = include(&devices);
        // Each names its nearest measured container.
        assert_eq!(
            inc[0].excluded_because.as_deref(),
            Some("inside rapl/psys, whose figure already includes it")
        );
        assert_eq!(
            inc[1].excluded_because.as_deref(),
            Some("inside rapl/package-0, whose figure already includes it")
        );
    }

    #[test]
    fn children_count_when_their_parent_has_no_figure() {
        let devices = [
            dev("rapl", "psys", None, Psys, None),
            dev("rapl", "package-0", Some("psys"), CpuPackage, Some(100.0)),
            dev("rapl", "package-1", Some("psys"), CpuPackage, Some(90.0)),
            dev(
                "rapl",
                "package-1-core",
                Some("package-1"),
                CpuCore,
                Some(50.0),
            ),
        ];
        assert_eq!(total(&devices), Some(190.0));
        let (inc, _) = include(&devices);
        assert_eq!(
            inc[0].excluded_because.as_deref(),
            Some("no figure in this window")
        );
    }

    #[test]
    fn an_estimate_beside_a_measured_cpu_is_flagged_not_summed() {
        let mut estimate = dev("cpu-estimate", "cpu", None, CpuPackage, Some(500.0));
        estimate.estimated = true;
        let devices = [
            estimate,
            dev("rapl", "package-0", None, CpuPackage, Some(100.0)),
            dev("nvml", "gpu0", None, Gpu, Some(300.0)),
        ];
        assert_eq!(total(&devices), Some(400.0));
        let (inc, warnings) = include(&devices);
        assert!(!inc[0].in_total);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("cpu-estimate/cpu"), "{warnings:?}");
        // Alone, the estimate is the figure.
        assert_eq!(total(&devices[..1]), Some(500.0));
        // A GPU does not cover a CPU.
        assert_eq!(total(&[devices[0], devices[2]]), Some(800.0));
    }

    #[test]
    fn same_ids_in_two_sources_are_separate_trees() {
        let devices = [
            dev("rapl-a", "package-0", None, CpuPackage, Some(10.0)),
            dev("rapl-b", "core", Some("package-0"), CpuCore, Some(4.0)),
        ];
        // rapl-b has no package-0: its core stands alone, with a warning.
        assert_eq!(total(&devices), Some(14.0));
        let (_, warnings) = include(&devices);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_parent_cycle_does_not_hide_energy() {
        let devices = [
            dev("s", "a", Some("b"), Other, Some(1.0)),
            dev("s", "b", Some("a"), Other, Some(2.0)),
        ];
        let (inc, warnings) = include(&devices);
        assert!(!warnings.is_empty());
        // The cycle is cut at the first device met: a is top-level, b inside it.
        assert!(inc[0].in_total);
        assert!(!inc[1].in_total);
        assert_eq!(total(&devices), Some(1.0));
    }

    #[test]
    fn nothing_with_a_figure_is_no_total() {
        let devices = [dev("s", "a", None, Gpu, None)];
        assert_eq!(total(&devices), None);
    }
}
