//! A run's quality verdict: `good`, `caution` or `poor`, with every check's
//! figure and threshold so a reader can judge the judgement.
//!
//! Each check yields a level; the verdict is the worst. Thresholds are the
//! named constants below, chosen so that `caution` means "the figure may be
//! off by a few per cent or rests on an assumption" and `poor` means "do not
//! compare this figure with others".

use serde::{Deserialize, Serialize};

use crate::stats::slope_per_s;

/// Share of the window with justified energy below which a device is `caution`.
pub const COVERAGE_CAUTION_BELOW: f64 = 0.99;
/// ... and `poor`.
pub const COVERAGE_POOR_BELOW: f64 = 0.90;
/// Window length over the counter's refresh period below which a window edge
/// (located only to one refresh period each) can shift the energy by more
/// than 2 % (2 edges / 100): `caution`.
pub const WINDOW_REFRESHES_CAUTION_BELOW: f64 = 100.0;
/// ... by more than 10 % (2 / 20): `poor`.
pub const WINDOW_REFRESHES_POOR_BELOW: f64 = 20.0;
/// A reading its source declares refreshed less often than this (s) is
/// `caution` in itself (`slow_refresh`): power changes faster than the refresh
/// are averaged away or missed, whatever the window. Redfish BMCs (1–60 s)
/// are above it; NVML's 1 s power average is not.
pub const SLOW_REFRESH_ABOVE_S: f64 = 1.0;
/// For integrated power: readings per sensor refresh below which power
/// changes between readings are missed: `caution`.
pub const READINGS_PER_REFRESH_CAUTION_BELOW: f64 = 1.0;
/// Share of the energy that is estimated (not measured) above which: `caution`
/// (any estimate at all).
pub const ESTIMATED_SHARE_CAUTION_ABOVE: f64 = 0.0;
/// ... and from which: `poor`.
pub const ESTIMATED_SHARE_POOR_FROM: f64 = 0.5;
/// Share from integrated power (NVML's averaged power lags and smears) above
/// which: `caution`.
pub const INTEGRATED_SHARE_CAUTION_ABOVE: f64 = 0.5;
/// Recorded gaps (implausible or missing readings) above which: `caution`.
pub const GAPS_CAUTION_ABOVE: u32 = 0;
/// Counter resets above which: `caution`.
pub const RESETS_CAUTION_ABOVE: u32 = 0;
/// Share of sampler ticks missed above which: `caution`.
pub const MISSED_TICKS_CAUTION_ABOVE: f64 = 0.05;
/// ... and `poor`.
pub const MISSED_TICKS_POOR_ABOVE: f64 = 0.25;
/// Share of telemetry samples with thermal or hardware slowdown above which:
/// `caution` (any).
pub const THERMAL_THROTTLE_CAUTION_ABOVE: f64 = 0.0;
/// ... and from which: `poor`.
pub const THERMAL_THROTTLE_POOR_FROM: f64 = 0.25;
/// Share of samples capped by the software power limit above which: `caution`
/// (the figure then depends on the power limit setting).
pub const POWER_CAP_CAUTION_ABOVE: f64 = 0.5;
/// Relative SM clock spread `(max − min) / max` above which: `caution`.
pub const CLOCK_SPREAD_CAUTION_ABOVE: f64 = 0.10;
/// Temperature rise over the window (least-squares slope × duration, °C) above
/// which: `caution` (power rises with temperature).
pub const TEMPERATURE_RISE_CAUTION_ABOVE_C: f64 = 5.0;
/// ... and `poor`.
pub const TEMPERATURE_RISE_POOR_ABOVE_C: f64 = 15.0;
/// Relative change of idle power between the baseline used and a re-check
/// above which: `caution`.
pub const BASELINE_DRIFT_CAUTION_ABOVE: f64 = 0.05;
/// ... and `poor`.
pub const BASELINE_DRIFT_POOR_ABOVE: f64 = 0.20;

/// Telemetry metric names read (as the NVML plugin reports them).
pub const METRIC_THROTTLE_REASONS: &str = "throttle_reasons";
pub const METRIC_SM_CLOCK: &str = "sm_clock";
pub const METRIC_TEMPERATURE: &str = "temperature";
pub const METRIC_POWER_LIMIT: &str = "power_limit";

/// NVML clock-event (throttle) reason bits, `nvmlClocksEventReason*`.
pub const THROTTLE_SW_POWER_CAP: u64 = 0x4;
/// HW slowdown, SW thermal, HW thermal, HW power brake.
pub const THROTTLE_THERMAL_OR_HW: u64 = 0x8 | 0x20 | 0x40 | 0x80;

/// Ordered: `Good < Caution < Poor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Good,
    Caution,
    Poor,
}

/// How a device's energy was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// A cumulative energy counter (NVML total energy, RAPL).
    Counter,
    /// Power readings integrated over time.
    Integrated,
    /// A model's estimate (e.g. CPU utilisation × TDP).
    Estimated,
}

/// One device's sampling over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSampling {
    pub device: String,
    pub method: EnergyMethod,
    /// Energy the device contributes to the total, J; `None` when it has none.
    pub energy_j: Option<f64>,
    /// Readings taken inside the window.
    pub readings: u64,
    /// How often the counter or sensor updates, s (measured or declared).
    pub refresh_period_s: Option<f64>,
    /// How often the source says the reading refreshes, s (its device's
    /// `power_average_window_ms`), when it says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_refresh_s: Option<f64>,
    pub window_s: f64,
    /// Seconds of the window with justified energy (window minus gaps).
    pub covered_s: f64,
    pub gaps: u32,
    pub resets: u32,
    /// Sampler ticks scheduled and missed in the window.
    pub ticks: u64,
    pub missed_ticks: u64,
}

/// One telemetry metric of one device over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySeries {
    pub device: String,
    /// e.g. [`METRIC_TEMPERATURE`].
    pub metric: String,
    /// `(t_ns, value)`, in time order.
    pub points: Vec<(u64, f64)>,
}

/// Everything the verdict looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerdictInputs {
    /// The devices whose energy makes the total.
    pub devices: Vec<DeviceSampling>,
    pub telemetry: Vec<TelemetrySeries>,
    /// `|idle power now − idle power used| / idle power used`, when re-checked.
    pub baseline_drift: Option<f64>,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub level: Level,
    /// Stable name, e.g. `coverage`, `estimated_share`.
    pub code: String,
    /// The device, for per-device checks.
    pub device: Option<String>,
    /// The measured figure.
    pub figure: f64,
    /// The threshold it was compared with (the one crossed, or the caution one).
    pub threshold: f64,
    pub message: String,
}

/// Share of the total energy by method (fractions summing to 1 when any energy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodShares {
    pub counter: f64,
    pub integrated: f64,
    pub estimated: f64,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The worst level of all checks.
    pub level: Level,
    /// Checks that are not `good`, worst first: what to print.
    pub reasons: Vec<Check>,
    /// Every check made, `good` ones included.
    pub checks: Vec<Check>,
    pub energy_share: MethodShares,
}

/// Grade with two thresholds: `> caution` is caution, `> poor` is poor
/// (or `<` for "below" checks).
fn grade_above(figure: f64, caution: f64, poor: Option<f64>) -> (Level, f64) {
    match poor {
        Some(p) if figure > p => (Level::Poor, p),
        _ if figure > caution => (Level::Caution, caution),
        _ => (Level::Good, caution),
    }
}

fn grade_below(figure: f64, caution: f64, poor: f64) -> (Level, f64) {
    if figure < poor {
        (Level::Poor, poor)
    } else if figure < caution {
        (Level::Caution, caution)
    } else {
        (Level::Good, caution)
    }
}

struct Checks(Vec<Check>);

impl Checks {
    fn push(
        &mut self,
        (level, threshold): (Level, f64),
        code: &str,
        device: Option<&str>,
        figure: f64,
        message: String,
    ) {
        self.0.push(Check {
            level,
            code: code.to_owned(),
            device: device.map(str::to_owned),
            figure,
            threshold,
            message,
        });
    }
}

/// Judge a run.
pub fn judge(inputs: &VerdictInputs) -> Verdict {
    let mut c = Checks(Vec::new());
    if inputs.devices.is_empty() {
        c.push(
            (Level::Poor, 1.0),
            "no_devices",
            None,
            0.0,
            "no energy source measured the window".to_owned(),
        );
    }
    for d in &inputs.devices {
        device_checks(&mut c, d);
    }
    let shares = method_shares(&inputs.devices);
    if shares.counter + shares.integrated + shares.estimated > 0.0 {
        let g = if shares.estimated >= ESTIMATED_SHARE_POOR_FROM {
            (Level::Poor, ESTIMATED_SHARE_POOR_FROM)
        } else {
            grade_above(shares.estimated, ESTIMATED_SHARE_CAUTION_ABOVE, None)
        };
        c.push(
            g,
            "estimated_share",
            None,
            shares.estimated,
            format!(
                "{:.1} % of the energy is estimated, not measured",
                shares.estimated * 100.0
            ),
        );
        c.push(
            grade_above(shares.integrated, INTEGRATED_SHARE_CAUTION_ABOVE, None),
            "integrated_share",
            None,
            shares.integrated,
            format!(
                "{:.1} % of the energy comes from integrated power readings (averaged sensors \
                 lag and smear), not from energy counters",
                shares.integrated * 100.0
            ),
        );
    }
    for t in &inputs.telemetry {
        telemetry_checks(&mut c, t);
    }
    if let Some(drift) = inputs.baseline_drift {
        c.push(
            grade_above(
                drift,
                BASELINE_DRIFT_CAUTION_ABOVE,
                Some(BASELINE_DRIFT_POOR_ABOVE),
            ),
            "baseline_drift",
            None,
            drift,
            format!(
                "idle power moved {:.1} % from the baseline used; net (baseline-subtracted) \
                 figures shift by as much",
                drift * 100.0
            ),
        );
    }
    let checks = c.0;
    let level = checks.iter().map(|k| k.level).max().unwrap_or(Level::Good);
    let mut reasons: Vec<Check> = checks
        .iter()
        .filter(|k| k.level > Level::Good)
        .cloned()
        .collect();
    reasons.sort_by_key(|c| std::cmp::Reverse(c.level));
    Verdict {
        level,
        reasons,
        checks,
        energy_share: shares,
    }
}

fn method_shares(devices: &[DeviceSampling]) -> MethodShares {
    let mut s = MethodShares::default();
    for d in devices {
        let e = d.energy_j.unwrap_or(0.0).max(0.0);
        match d.method {
            EnergyMethod::Counter => s.counter += e,
            EnergyMethod::Integrated => s.integrated += e,
            EnergyMethod::Estimated => s.estimated += e,
        }
    }
    let total = s.counter + s.integrated + s.estimated;
    if total > 0.0 {
        s.counter /= total;
        s.integrated /= total;
        s.estimated /= total;
    }
    s
}

fn device_checks(c: &mut Checks, d: &DeviceSampling) {
    let dev = Some(d.device.as_str());
    if d.energy_j.is_none() {
        c.push(
            (Level::Poor, 0.0),
            "no_energy",
            dev,
            0.0,
            format!("{} gave no energy figure for the window", d.device),
        );
    }
    if d.window_s > 0.0 {
        let coverage = (d.covered_s / d.window_s).clamp(0.0, 1.0);
        c.push(
            grade_below(coverage, COVERAGE_CAUTION_BELOW, COVERAGE_POOR_BELOW),
            "coverage",
            dev,
            coverage,
            format!(
                "{}'s readings justify {:.2} of {:.2} s ({:.1} %)",
                d.device,
                d.covered_s,
                d.window_s,
                coverage * 100.0
            ),
        );
        if let Some(declared) = d.declared_refresh_s.filter(|r| *r > SLOW_REFRESH_ABOVE_S) {
            c.push(
                (Level::Caution, SLOW_REFRESH_ABOVE_S),
                "slow_refresh",
                dev,
                declared,
                format!(
                    "{} refreshes its reading only every {declared} s (declared by its source, \
                     e.g. a BMC): power changes faster than that are averaged away or missed",
                    d.device
                ),
            );
        }
        // A slow source's declared refresh bounds what its track shows (a
        // power track changes at every reading, however stale the sensor).
        let refresh = match (d.refresh_period_s, d.declared_refresh_s) {
            (Some(m), Some(r)) if r > SLOW_REFRESH_ABOVE_S => Some(m.max(r)),
            (None, Some(r)) if r > SLOW_REFRESH_ABOVE_S => Some(r),
            (m, _) => m,
        };
        if let Some(refresh) = refresh.filter(|r| *r > 0.0) {
            let refreshes = d.window_s / refresh;
            c.push(
                grade_below(
                    refreshes,
                    WINDOW_REFRESHES_CAUTION_BELOW,
                    WINDOW_REFRESHES_POOR_BELOW,
                ),
                "window_vs_refresh",
                dev,
                refreshes,
                format!(
                    "the window spans {refreshes:.0} refreshes of {}'s reading ({:.0} ms each); \
                     each edge is located to one refresh",
                    d.device,
                    refresh * 1e3
                ),
            );
            let per_refresh = d.readings as f64 / refreshes;
            // A counter loses nothing between readings (it is cumulative), so
            // for counters the figure is recorded but not graded; integrating
            // power that is read less often than it refreshes misses changes.
            let (grade, message) = if d.method == EnergyMethod::Integrated {
                (
                    grade_below(per_refresh, READINGS_PER_REFRESH_CAUTION_BELOW, 0.0),
                    format!(
                        "{per_refresh:.2} power readings per sensor refresh on {}: power \
                         changes between readings are missed",
                        d.device
                    ),
                )
            } else {
                (
                    (Level::Good, READINGS_PER_REFRESH_CAUTION_BELOW),
                    format!(
                        "{per_refresh:.2} readings per refresh on {} (a cumulative reading \
                         loses nothing between readings)",
                        d.device
                    ),
                )
            };
            c.push(grade, "readings_per_refresh", dev, per_refresh, message);
        }
    }
    c.push(
        grade_above(f64::from(d.gaps), f64::from(GAPS_CAUTION_ABOVE), None),
        "gaps",
        dev,
        f64::from(d.gaps),
        format!("{} gap(s) in {}'s readings", d.gaps, d.device),
    );
    c.push(
        grade_above(f64::from(d.resets), f64::from(RESETS_CAUTION_ABOVE), None),
        "resets",
        dev,
        f64::from(d.resets),
        format!("{}'s counter reset {} time(s)", d.device, d.resets),
    );
    if d.ticks > 0 {
        let missed = d.missed_ticks as f64 / d.ticks as f64;
        c.push(
            grade_above(
                missed,
                MISSED_TICKS_CAUTION_ABOVE,
                Some(MISSED_TICKS_POOR_ABOVE),
            ),
            "missed_ticks",
            dev,
            missed,
            format!(
                "the sampler missed {} of {} ticks on {} ({:.1} %)",
                d.missed_ticks,
                d.ticks,
                d.device,
                missed * 100.0
            ),
        );
    }
}

fn telemetry_checks(c: &mut Checks, t: &TelemetrySeries) {
    let dev = Some(t.device.as_str());
    let values: Vec<f64> = t
        .points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return;
    }
    let n = values.len() as f64;
    match t.metric.as_str() {
        METRIC_THROTTLE_REASONS => {
            let share = |mask: u64| {
                values
                    .iter()
                    .filter(|&&v| v >= 0.0 && (v as u64) & mask != 0)
                    .count() as f64
                    / n
            };
            let thermal = share(THROTTLE_THERMAL_OR_HW);
            let g = if thermal >= THERMAL_THROTTLE_POOR_FROM {
                (Level::Poor, THERMAL_THROTTLE_POOR_FROM)
            } else {
                grade_above(thermal, THERMAL_THROTTLE_CAUTION_ABOVE, None)
            };
            c.push(
                g,
                "thermal_throttling",
                dev,
                thermal,
                format!(
                    "{} slowed down (thermal or hardware) in {:.1} % of telemetry samples",
                    t.device,
                    thermal * 100.0
                ),
            );
            let capped = share(THROTTLE_SW_POWER_CAP);
            c.push(
                grade_above(capped, POWER_CAP_CAUTION_ABOVE, None),
                "power_capped",
                dev,
                capped,
                format!(
                    "{} ran at its software power cap in {:.1} % of telemetry samples; the \
                     figure depends on the power limit",
                    t.device,
                    capped * 100.0
                ),
            );
        }
        METRIC_SM_CLOCK => {
            let max = values.iter().copied().fold(f64::MIN, f64::max);
            let min = values.iter().copied().fold(f64::MAX, f64::min);
            let spread = if max > 0.0 { (max - min) / max } else { 0.0 };
            c.push(
                grade_above(spread, CLOCK_SPREAD_CAUTION_ABOVE, None),
                "clock_changes",
                dev,
                spread,
                format!(
                    "{}'s SM clock ranged {min:.0}–{max:.0} MHz ({:.1} % spread)",
                    t.device,
                    spread * 100.0
                ),
            );
        }
        METRIC_POWER_LIMIT => {
            let changed = values.iter().any(|&v| v != values[0]);
            c.push(
                if changed {
                    (Level::Caution, 0.0)
                } else {
                    (Level::Good, 0.0)
                },
                "power_limit_changed",
                dev,
                f64::from(u8::from(changed)),
                format!("{}'s power limit changed during the window", t.device),
            );
        }
        METRIC_TEMPERATURE => {
            let (Some(&(first, _)), Some(&(last, _))) = (t.points.first(), t.points.last()) else {
                return;
            };
            let Some(slope) = slope_per_s(&t.points) else {
                return;
            };
            let rise = slope * last.saturating_sub(first) as f64 / 1e9;
            c.push(
                grade_above(
                    rise,
                    TEMPERATURE_RISE_CAUTION_ABOVE_C,
                    Some(TEMPERATURE_RISE_POOR_ABOVE_C),
                ),
                "temperature_drift",
                dev,
                rise,
                format!(
                    "{} warmed by {rise:.1} °C over the window (trend); power rises with \
                     temperature",
                    t.device
                ),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn gpu() -> DeviceSampling {
        DeviceSampling {
            device: "gpu0".into(),
            method: EnergyMethod::Counter,
            energy_j: Some(9000.0),
            readings: 3000,
            refresh_period_s: Some(0.1),
            declared_refresh_s: None,
            window_s: 30.0,
            covered_s: 30.0,
            gaps: 0,
            resets: 0,
            ticks: 3000,
            missed_ticks: 30,
        }
    }

    fn level_of(v: &Verdict, code: &str) -> Option<Level> {
        v.checks.iter().find(|c| c.code == code).map(|c| c.level)
    }

    #[test]
    fn a_clean_counter_run_is_good() {
        // Coverage 30/30 = 1; 30 s / 0.1 s = 300 refreshes ≥ 100; missed 30/3000 = 1 % ≤ 5 %.
        let v = judge(&VerdictInputs {
            devices: vec![gpu()],
            ..Default::default()
        });
        assert_eq!(v.level, Level::Good, "{:?}", v.reasons);
        assert!(v.reasons.is_empty());
        let w = v.checks.iter().find(|c| c.code == "window_vs_refresh");
        assert!(w.is_some_and(|c| (c.figure - 300.0).abs() < 1e-9));
        assert_eq!(v.energy_share.counter, 1.0);
        // 3000 readings over 300 refreshes = 10 per refresh, recorded, not graded.
        let r = v.checks.iter().find(|c| c.code == "readings_per_refresh");
        assert!(r.is_some_and(|c| c.level == Level::Good && (c.figure - 10.0).abs() < 1e-12));
    }

    #[test]
    fn each_threshold_by_hand() {
        // gpu0: covered 29.5 of 30 s = 0.98333 < 0.99 → caution; a gap and a reset → caution.
        // Window 1.5 s at 0.1 s refresh = 15 refreshes < 20 → poor (figure 15).
        let mut g = gpu();
        g.covered_s = 29.5;
        g.gaps = 1;
        g.resets = 1;
        let mut short = gpu();
        short.device = "gpu1".into();
        short.window_s = 1.5;
        short.covered_s = 1.5;
        short.readings = 10;
        short.ticks = 100;
        short.missed_ticks = 30; // 30 % > 25 % → poor
        // cpu: estimated 1000 J of 9000 + 9000 + 1000 = 19000 → 5.26 % → caution.
        let cpu = DeviceSampling {
            device: "cpu".into(),
            method: EnergyMethod::Estimated,
            energy_j: Some(1000.0),
            ..gpu()
        };
        let v = judge(&VerdictInputs {
            devices: vec![g, short, cpu],
            telemetry: vec![],
            baseline_drift: Some(0.08), // 8 % > 5 % → caution
        });
        let cov = v
            .checks
            .iter()
            .find(|c| c.code == "coverage")
            .map(|c| c.figure);
        assert!(cov.is_some_and(|x| (x - 29.5 / 30.0).abs() < 1e-12));
        assert_eq!(level_of(&v, "coverage"), Some(Level::Caution));
        assert_eq!(level_of(&v, "gaps"), Some(Level::Caution));
        assert_eq!(level_of(&v, "resets"), Some(Level::Caution));
        let w: Vec<&Check> = v
            .checks
            .iter()
            .filter(|c| c.code == "window_vs_refresh")
            .collect();
        assert_eq!(
            (w[1].level, w[1].figure, w[1].threshold),
            (Level::Poor, 15.0, 20.0)
        );
        let m: Vec<&Check> = v
            .checks
            .iter()
            .filter(|c| c.code == "missed_ticks")
            .collect();
        assert_eq!((m[1].level, m[1].figure), (Level::Poor, 0.3));
        let est = v.checks.iter().find(|c| c.code == "estimated_share");
        assert!(est.is_some_and(
            |c| c.level == Level::Caution && (c.figure - 1000.0 / 19000.0).abs() < 1e-12
        ));
        assert_eq!(level_of(&v, "baseline_drift"), Some(Level::Caution));
        assert_eq!(v.level, Level::Poor);
        assert_eq!(v.reasons[0].level, Level::Poor);
        assert!(v.reasons.iter().all(|r| r.level > Level::Good));
    }

    #[test]
    fn integrated_and_estimated_shares() {
        // Only an estimate: 100 % estimated ≥ 50 % → poor.
        let est = DeviceSampling {
            method: EnergyMethod::Estimated,
            ..gpu()
        };
        let v = judge(&VerdictInputs {
            devices: vec![est],
            ..Default::default()
        });
        assert_eq!(level_of(&v, "estimated_share"), Some(Level::Poor));
        // Integrated power sampled every 0.2 s, sensor refresh 0.1 s: 150 readings over
        // 300 refreshes = 0.5 per refresh < 1 → caution; 100 % integrated > 50 % → caution.
        let integ = DeviceSampling {
            method: EnergyMethod::Integrated,
            readings: 150,
            ..gpu()
        };
        let v = judge(&VerdictInputs {
            devices: vec![integ],
            ..Default::default()
        });
        let r = v.checks.iter().find(|c| c.code == "readings_per_refresh");
        assert!(r.is_some_and(|c| c.level == Level::Caution && (c.figure - 0.5).abs() < 1e-12));
        assert_eq!(level_of(&v, "integrated_share"), Some(Level::Caution));
        assert_eq!(v.level, Level::Caution);
    }

    #[test]
    fn telemetry_by_hand() {
        let series = |metric: &str, values: &[f64]| TelemetrySeries {
            device: "gpu0".into(),
            metric: metric.into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as u64 * S, v))
                .collect(),
        };
        // Throttle bitmasks over 8 samples: 0x4 (power cap) ×5, 0x20 (SW thermal) ×1,
        // 0x24 (both) ×1, 0x1 (idle) ×1 → thermal 2/8 = 0.25 ≥ 0.25 → poor;
        // power cap 6/8 = 0.75 > 0.5 → caution.
        let throttle = series(
            METRIC_THROTTLE_REASONS,
            &[4.0, 4.0, 4.0, 4.0, 4.0, 32.0, 36.0, 1.0],
        );
        // SM clock 1980 … 1755: spread 225/1980 = 0.1136 > 0.10 → caution.
        let clock = series(METRIC_SM_CLOCK, &[1980.0, 1980.0, 1755.0, 1900.0]);
        // Temperature 60, 62, 64, 66, 68 °C at 0..4 s: slope 2 °C/s × 4 s = 8 °C → caution.
        let temp = series(METRIC_TEMPERATURE, &[60.0, 62.0, 64.0, 66.0, 68.0]);
        let limit = series(METRIC_POWER_LIMIT, &[700.0, 700.0, 600.0]);
        let v = judge(&VerdictInputs {
            devices: vec![gpu()],
            telemetry: vec![throttle, clock, temp, limit],
            baseline_drift: None,
        });
        let get = |code: &str| v.checks.iter().find(|c| c.code == code).cloned();
        let th = get("thermal_throttling");
        assert!(th.is_some_and(|c| c.level == Level::Poor && c.figure == 0.25));
        let cap = get("power_capped");
        assert!(cap.is_some_and(|c| c.level == Level::Caution && c.figure == 0.75));
        let clk = get("clock_changes");
        assert!(clk.is_some_and(
            |c| c.level == Level::Caution && (c.figure - 225.0 / 1980.0).abs() < 1e-12
        ));
        let t = get("temperature_drift");
        assert!(t.is_some_and(|c| c.level == Level::Caution && (c.figure - 8.0).abs() < 1e-9));
        assert_eq!(level_of(&v, "power_limit_changed"), Some(Level::Caution));
        assert_eq!(v.level, Level::Poor);
    }

    #[test]
    fn a_slowly_refreshing_source_is_labelled_and_judged_by_its_declared_refresh() {
        // A BMC declaring a 5 s refresh, integrated power read at each refresh:
        // its track changes every reading (measured 0.5 s, say), but the declared
        // 5 s rules: 30 s / 5 s = 6 refreshes < 20 → poor; slow_refresh → caution.
        let bmc = DeviceSampling {
            device: "redfish/1U".into(),
            method: EnergyMethod::Integrated,
            readings: 6,
            refresh_period_s: Some(0.5),
            declared_refresh_s: Some(5.0),
            ..gpu()
        };
        let v = judge(&VerdictInputs {
            devices: vec![bmc],
            ..Default::default()
        });
        let slow = v.checks.iter().find(|c| c.code == "slow_refresh").cloned();
        let slow = slow.expect("a slow_refresh check");
        assert_eq!((slow.level, slow.figure), (Level::Caution, 5.0));
        assert!(
            slow.message
                .contains("refreshes its reading only every 5 s"),
            "{}",
            slow.message
        );
        let w = v.checks.iter().find(|c| c.code == "window_vs_refresh");
        assert!(w.is_some_and(|c| c.level == Level::Poor && (c.figure - 6.0).abs() < 1e-12));
        assert_eq!(v.level, Level::Poor);
        // NVML's 1 s power average is not slow; the measured refresh stands.
        let nvml = DeviceSampling {
            declared_refresh_s: Some(1.0),
            ..gpu()
        };
        let v = judge(&VerdictInputs {
            devices: vec![nvml],
            ..Default::default()
        });
        assert_eq!(level_of(&v, "slow_refresh"), None);
        assert_eq!(v.level, Level::Good, "{:?}", v.reasons);
    }

    #[test]
    fn a_device_without_energy_is_poor() {
        let d = DeviceSampling {
            energy_j: None,
            ..gpu()
        };
        let v = judge(&VerdictInputs {
            devices: vec![d],
            ..Default::default()
        });
        assert_eq!(level_of(&v, "no_energy"), Some(Level::Poor));
        let v = judge(&VerdictInputs::default());
        assert_eq!((v.level, v.reasons.len()), (Level::Poor, 1));
    }
}
