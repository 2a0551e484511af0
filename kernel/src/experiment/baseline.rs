//! The idle baseline (LLenergyMeasure's semantics): per-device power with no
//! engine load, measured before the engine starts. The run reports gross,
//! baseline and net (gross − baseline) energy side by side; the gross figure is
//! never replaced.
//!
//! Modes (`[measurement].baseline`): `fresh` measures every run; `cached`
//! reuses a figure younger than `baseline_ttl_h` for the same host, devices and
//! llem version; `validated` reuses it only after a short spot check agrees
//! within `baseline_drift`, and re-measures otherwise; `off` skips it.

use crate::clock::monotonic_ns;
use crate::sampler::Sampler;
use llem_manifest::Measurement;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WINDOW: &str = "idle-baseline";

/// Where the figure in a run came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineOrigin {
    /// Measured in this run.
    Measured,
    /// Taken from the cache without a check (`cached`).
    Cached,
    /// Taken from the cache after a spot check agreed (`validated`).
    Validated,
    /// The spot check disagreed, so it was measured again in this run.
    Remeasured,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineDevice {
    pub source: String,
    pub device: String,
    /// Mean idle power, watts; `None` when the device produced no figure.
    pub power_w: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotCheck {
    pub duration_s: f64,
    /// Idle power of every device with a figure, summed, over the spot check.
    pub power_w: f64,
    /// |spot check − cached| / cached.
    pub drift: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSummary {
    /// `[measurement].baseline` as configured.
    pub mode: String,
    pub origin: BaselineOrigin,
    /// When the idle figure was measured (RFC 3339 UTC).
    pub measured_at: String,
    /// Its age when this run used it, seconds.
    pub age_s: f64,
    /// Length of the idle measurement behind the figure, seconds.
    pub duration_s: f64,
    pub devices: Vec<BaselineDevice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_check: Option<SpotCheck>,
    /// Idle power of the devices in the energy total, watts (filled when the
    /// total is known), and the idle energy over the measured window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_power_w: Option<f64>,
}

impl BaselineSummary {
    /// Idle power of one device, watts.
    pub fn power_of(&self, source: &str, device: &str) -> Option<f64> {
        self.devices
            .iter()
            .find(|d| d.source == source && d.device == device)
            .and_then(|d| d.power_w)
    }
}

/// What is cached on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedBaseline {
    measured_at_unix_s: f64,
    duration_s: f64,
    devices: Vec<BaselineDevice>,
}

/// Measure idle for `duration` (or until `stop`): mean power per device.
fn measure(
    sampler: &Sampler,
    duration: Duration,
    stop: &AtomicBool,
) -> Option<(f64, Vec<BaselineDevice>)> {
    sampler.begin_window(WINDOW);
    let start = monotonic_ns();
    while monotonic_ns().saturating_sub(start) < duration.as_nanos() as u64 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let window = sampler.end_window(WINDOW)?;
    let seconds = window.duration_s();
    if stop.load(Ordering::Relaxed) || seconds <= 0.0 {
        return None;
    }
    let devices = window
        .devices
        .iter()
        .map(|d| BaselineDevice {
            source: d.source.clone(),
            device: d.device.clone(),
            power_w: d.energy_j.map(|j| j / seconds),
        })
        .collect();
    Some((seconds, devices))
}

fn summed(devices: &[BaselineDevice]) -> f64 {
    devices.iter().filter_map(|d| d.power_w).sum()
}

/// The cache file for this host, these devices and this llem.
fn cache_path(cache_dir: &Path, sampler: &Sampler) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(hostname().as_bytes());
    hash.update(env!("CARGO_PKG_VERSION").as_bytes());
    for (source, devices) in sampler.sources() {
        hash.update(source.as_bytes());
        for d in devices {
            hash.update([0]);
            hash.update(d.id.as_bytes());
            hash.update([0]);
            hash.update(d.name.as_bytes());
        }
        hash.update([1]);
    }
    let key: String = hash
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    cache_dir.join("baselines").join(format!("{key}.json"))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

fn now_unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn rfc3339_of(unix_s: f64) -> String {
    super::timestamp::rfc3339(UNIX_EPOCH + Duration::from_secs_f64(unix_s.max(0.0)))
}

fn load(path: &Path, ttl_h: f64) -> Option<CachedBaseline> {
    let text = std::fs::read_to_string(path).ok()?;
    let cached: CachedBaseline = serde_json::from_str(&text).ok()?;
    let age = now_unix_s() - cached.measured_at_unix_s;
    (age >= 0.0
        && age < ttl_h * 3600.0
        && cached
            .devices
            .iter()
            .all(|d| d.power_w.is_none_or(|w| w.is_finite() && w >= 0.0)))
    .then_some(cached)
}

fn store(path: &Path, cached: &CachedBaseline) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(cached).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Run the baseline phase as configured. `None` when off, interrupted, or no
/// device produced a figure; warnings go to `warn`.
pub fn run(
    config: &Measurement,
    sampler: &Sampler,
    cache_dir: Option<&Path>,
    stop: &AtomicBool,
    warn: &mut dyn FnMut(String),
) -> Option<BaselineSummary> {
    let mode = config.baseline.as_str();
    if mode == "off" {
        return None;
    }
    let path = cache_dir.map(|dir| cache_path(dir, sampler));
    let cached = match (mode, &path) {
        ("cached" | "validated", Some(path)) => load(path, config.baseline_ttl_h),
        _ => None,
    };
    let fresh = |origin: BaselineOrigin,
                 spot_check: Option<SpotCheck>,
                 warn: &mut dyn FnMut(String)|
     -> Option<BaselineSummary> {
        let (seconds, devices) =
            measure(sampler, Duration::from_secs_f64(config.baseline_s), stop)?;
        let measured_at = now_unix_s();
        if let Some(path) = &path
            && mode != "fresh"
        {
            let entry = CachedBaseline {
                measured_at_unix_s: measured_at,
                duration_s: seconds,
                devices: devices.clone(),
            };
            if let Err(e) = store(path, &entry) {
                warn(format!(
                    "cannot cache the idle baseline in {}: {e}",
                    path.display()
                ));
            }
        }
        Some(BaselineSummary {
            mode: mode.to_owned(),
            origin,
            measured_at: rfc3339_of(measured_at),
            age_s: 0.0,
            duration_s: seconds,
            devices,
            spot_check,
            total_power_w: None,
        })
    };
    let summary = match cached {
        None => fresh(BaselineOrigin::Measured, None, warn)?,
        Some(cached) => {
            let from_cache = |origin, spot_check| BaselineSummary {
                mode: mode.to_owned(),
                origin,
                measured_at: rfc3339_of(cached.measured_at_unix_s),
                age_s: now_unix_s() - cached.measured_at_unix_s,
                duration_s: cached.duration_s,
                devices: cached.devices.clone(),
                spot_check,
                total_power_w: None,
            };
            if mode == "cached" {
                from_cache(BaselineOrigin::Cached, None)
            } else {
                let (seconds, spot) = measure(
                    sampler,
                    Duration::from_secs_f64(config.baseline_spot_check_s),
                    stop,
                )?;
                let reference = summed(&cached.devices);
                let power = summed(&spot);
                let drift = if reference > 0.0 {
                    (power - reference).abs() / reference
                } else if power > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                let check = SpotCheck {
                    duration_s: seconds,
                    power_w: power,
                    drift,
                };
                if drift > config.baseline_drift {
                    warn(format!(
                        "idle power drifted {:.1} % from the cached baseline ({reference:.2} W → {power:.2} W); measuring it again",
                        drift * 100.0
                    ));
                    fresh(BaselineOrigin::Remeasured, Some(check), warn)?
                } else {
                    from_cache(BaselineOrigin::Validated, Some(check))
                }
            }
        }
    };
    if summary.devices.iter().all(|d| d.power_w.is_none()) {
        warn("no device produced an idle figure; net energy is not reported".into());
        return None;
    }
    Some(summary)
}
