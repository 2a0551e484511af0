//! `energy-cpu-estimate`: the fallback for machines with no energy counter at
//! all (VMs, most laptops without RAPL access). Power is modelled, as
//! CodeCarbon's fallback does, as `tdp_w × CPU utilisation`, utilisation
//! coming from `/proc/stat` between two reads. Every device it reports is
//! marked `estimated`, and llem carries that label into every output.

use llem_sdk::{
    Config, Device, DeviceKind, DeviceTelemetry, EnergySource, Metric, OptionSpec, OptionType,
    Plugin, PluginError, PluginInfo, PluginKind, Reading,
};

/// CodeCarbon's TDP when it cannot identify the CPU model.
const DEFAULT_TDP_W: f64 = 85.0;

/// Busy and total jiffies from the aggregate `cpu` line of /proc/stat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

fn parse_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    // already counted in user/nice, so only the first eight fields add up.
    let counted = &fields[..fields.len().min(8)];
    let total: u64 = counted.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

pub struct CpuEstimate {
    stat_file: String,
    tdp_w: f64,
    last: CpuTimes,
    utilisation: f64,
}

impl CpuEstimate {
    fn times(&self) -> Result<CpuTimes, PluginError> {
        read_times(&self.stat_file)
    }
}

fn read_times(path: &str) -> Result<CpuTimes, PluginError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PluginError::io(format_args!("reading {path}"), &e))?;
    parse_stat(&text)
        .ok_or_else(|| PluginError::unavailable(format!("{path} has no aggregate `cpu` line")))
}

impl Plugin for CpuEstimate {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "energy-cpu-estimate".into(),
            kind: PluginKind::Energy,
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Estimated CPU power: TDP x utilisation (no counter needed; labelled estimated)"
                    .into(),
            options: vec![
                OptionSpec::with_default(
                    "tdp_w",
                    OptionType::Float,
                    DEFAULT_TDP_W,
                    "The CPU's thermal design power in watts (85 W is CodeCarbon's default for unknown CPUs)",
                ),
                OptionSpec::with_default(
                    "stat_file",
                    OptionType::Path,
                    "/proc/stat",
                    "Where CPU times are read",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let tdp_w: f64 = config.require("tdp_w")?;
        if !(tdp_w > 0.0 && tdp_w < 10_000.0) {
            return Err(PluginError::invalid_config(
                "tdp_w",
                format!("must be a wattage between 0 and 10000, got {tdp_w}"),
            ));
        }
        let stat_file: String = config.require("stat_file")?;
        let last = read_times(&stat_file)?;
        Ok(CpuEstimate {
            stat_file,
            tdp_w,
            last,
            utilisation: 0.0,
        })
    }
}

impl EnergySource for CpuEstimate {
    fn devices(&self) -> Vec<Device> {
        vec![Device {
            id: "cpu".into(),
            name: format!("CPU (estimated: {} W TDP x utilisation)", self.tdp_w),
            kind: DeviceKind::CpuPackage,
            has_energy_counter: false,
            counter_wrap_uj: None,
            has_power: true,
            power_average_window_ms: 0,
            estimated: true,
            parent: None,
            max_power_w: None,
        }]
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), PluginError> {
        let now = self.times()?;
        let total = now.total.saturating_sub(self.last.total);
        // No jiffy elapsed since the last read (reads faster than USER_HZ):
        // keep the previous utilisation rather than invent a 0.
        if total > 0 {
            let busy = now.busy.saturating_sub(self.last.busy);
            self.utilisation = (busy as f64 / total as f64).clamp(0.0, 1.0);
            self.last = now;
        }
        out.push(Reading {
            device: 0,
            energy_uj: None,
            power_mw: Some((self.tdp_w * self.utilisation * 1000.0).round() as u64),
        });
        Ok(())
    }

    fn telemetry(&mut self) -> Result<Vec<DeviceTelemetry>, PluginError> {
        Ok(vec![DeviceTelemetry {
            device: 0,
            metrics: vec![Metric {
                name: "utilisation".into(),
                value: self.utilisation,
                unit: "fraction".into(),
                labels: Vec::new(),
            }],
        }])
    }
}

llem_sdk::export_energy!(CpuEstimate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_and_without_guest_fields() {
        let t = parse_stat("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(
            t,
            CpuTimes {
                busy: 150,
                total: 1000
            }
        );
        let t = parse_stat("cpu 10 0 10 80\n").unwrap();
        assert_eq!(
            t,
            CpuTimes {
                busy: 20,
                total: 100
            }
        );
        assert_eq!(parse_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn power_is_tdp_times_utilisation_between_reads() {
        let dir = std::env::temp_dir().join(format!("cpu-estimate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stat = dir.join("stat");
        std::fs::write(&stat, "cpu 100 0 0 900 0 0 0 0\n").unwrap();
        let config = Config::from_json(&format!(
            r#"{{"tdp_w": 100.0, "stat_file": "{}"}}"#,
            stat.display()
        ))
        .unwrap();
        let mut source = CpuEstimate::open(config).unwrap();
        // +300 busy of +400 total: 75 % of 100 W.
        std::fs::write(&stat, "cpu 400 0 0 1000 0 0 0 0\n").unwrap();
        let mut out = Vec::new();
        source.read(&mut out).unwrap();
        assert_eq!(out[0].power_mw, Some(75_000));
        // No time passed: the previous utilisation stands.
        source.read(&mut out).unwrap();
        assert_eq!(out[1].power_mw, Some(75_000));
        assert!(source.devices()[0].estimated);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
