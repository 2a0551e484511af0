//! Per-device energy from a stream of timestamped raw readings.

use llem_sdk::{Device, Reading};
use std::collections::VecDeque;

/// Live power is averaged over about this long: energy counters refresh only
/// every 20–100 ms (NVML), so shorter spans flap between 0 and spikes.
const RECENT_SPAN_NS: u64 = 1_000_000_000;

/// How a device's energy was obtained; reported with every figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnergyMethod {
    /// Deltas of the device's cumulative energy counter.
    Counter,
    /// Trapezoidal integration of power readings (no counter on this device).
    PowerIntegration,
    /// Neither counter nor power arrived.
    None,
}

/// Accumulates one device's energy.
#[derive(Debug, Clone)]
pub struct DeviceAccumulator {
    wrap_uj: Option<u64>,
    prefer_counter: bool,
    last_counter: Option<u64>,
    last_power: Option<(u64, u64)>,
    first_t_ns: Option<u64>,
    last_t_ns: Option<u64>,
    counter_uj: u128,
    integrated_uj: f64,
    counter_samples: u64,
    power_samples: u64,
    /// Counter decreases with no wrap range: the driver reset the counter.
    pub resets: u32,
    /// Counter decreases explained by the wrap range.
    pub wraps: u32,
    /// (t_ns, cumulative µJ by counter) over the last second, for live power.
    recent: VecDeque<(u64, u128)>,
}

impl DeviceAccumulator {
    pub fn new(device: &Device) -> Self {
        DeviceAccumulator {
            wrap_uj: device.counter_wrap_uj.filter(|w| *w > 0),
            prefer_counter: device.has_energy_counter,
            last_counter: None,
            last_power: None,
            first_t_ns: None,
            last_t_ns: None,
            counter_uj: 0,
            integrated_uj: 0.0,
            counter_samples: 0,
            power_samples: 0,
            resets: 0,
            wraps: 0,
            recent: VecDeque::new(),
        }
    }

    /// Feed one reading taken at `t_ns` (monotonic). Readings must come in time order.
    pub fn push(&mut self, t_ns: u64, reading: &Reading) {
        self.first_t_ns.get_or_insert(t_ns);
        self.last_t_ns = Some(t_ns);
        if let Some(value) = reading.energy_uj {
            if let Some(last) = self.last_counter {
                self.counter_uj += u128::from(self.delta(last, value));
            }
            self.last_counter = Some(value);
            self.counter_samples += 1;
            self.recent.push_back((t_ns, self.counter_uj));
            while self.recent.len() > 2
                && self
                    .recent
                    .front()
                    .is_some_and(|(t, _)| t_ns.saturating_sub(*t) > RECENT_SPAN_NS)
            {
                self.recent.pop_front();
            }
        }
        if let Some(power_mw) = reading.power_mw {
            if let Some((t0, p0)) = self.last_power {
                let dt_s = t_ns.saturating_sub(t0) as f64 / 1e9;
                // mW * s = mJ; x1000 for µJ.
                self.integrated_uj += (p0 as f64 + power_mw as f64) / 2.0 * dt_s * 1000.0;
            }
            self.last_power = Some((t_ns, power_mw));
            self.power_samples += 1;
        }
    }

    /// Counter delta: forward, wrapped (modulus known), or reset (count from 0).
    fn delta(&mut self, last: u64, value: u64) -> u64 {
        if value >= last {
            return value - last;
        }
        match self.wrap_uj {
            Some(wrap) if last < wrap => {
                self.wraps += 1;
                wrap - last + value
            }
            _ => {
                // Went backwards with no wrap to explain it: the counter restarted
                // (driver reload). What accrued since the restart is `value`; the
                // energy between the last read and the restart is lost, and counted.
                self.resets += 1;
                value
            }
        }
    }

    pub fn method(&self) -> EnergyMethod {
        if self.counter_samples >= 2 && (self.prefer_counter || self.power_samples < 2) {
            EnergyMethod::Counter
        } else if self.power_samples >= 2 {
            EnergyMethod::PowerIntegration
        } else if self.counter_samples >= 2 {
            EnergyMethod::Counter
        } else {
            EnergyMethod::None
        }
    }

    /// Energy in joules by the best method available, `None` if there is none.
    pub fn energy_j(&self) -> Option<f64> {
        match self.method() {
            EnergyMethod::Counter => Some(self.counter_uj as f64 / 1e6),
            EnergyMethod::PowerIntegration => Some(self.integrated_uj / 1e6),
            EnergyMethod::None => None,
        }
    }

    /// Time between the first and last reading, seconds.
    pub fn span_s(&self) -> f64 {
        match (self.first_t_ns, self.last_t_ns) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        }
    }

    pub fn average_power_w(&self) -> Option<f64> {
        let span = self.span_s();
        self.energy_j().filter(|_| span > 0.0).map(|e| e / span)
    }

    /// Energy accrued since `earlier`, a snapshot of this same accumulator.
    pub fn energy_since(&self, earlier: &DeviceAccumulator) -> Option<f64> {
        match self.method() {
            EnergyMethod::Counter => {
                Some(self.counter_uj.saturating_sub(earlier.counter_uj) as f64 / 1e6)
            }
            EnergyMethod::PowerIntegration => {
                Some((self.integrated_uj - earlier.integrated_uj) / 1e6)
            }
            EnergyMethod::None => None,
        }
    }

    /// Power over about the last second from the counter, watts.
    pub fn recent_power_w(&self) -> Option<f64> {
        let (t0, e0) = *self.recent.front()?;
        let (t1, e1) = *self.recent.back()?;
        (t1 > t0).then(|| (e1 - e0) as f64 / 1e6 / ((t1 - t0) as f64 / 1e9))
    }

    pub fn samples(&self) -> u64 {
        self.counter_samples.max(self.power_samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::DeviceKind;

    fn device(counter: bool, wrap: Option<u64>) -> Device {
        Device {
            id: "d".into(),
            name: "d".into(),
            kind: DeviceKind::Other,
            has_energy_counter: counter,
            counter_wrap_uj: wrap,
            has_power: true,
            power_average_window_ms: 0,
            estimated: false,
        }
    }

    fn counter(value: u64) -> Reading {
        Reading {
            device: 0,
            energy_uj: Some(value),
            power_mw: None,
        }
    }

    #[test]
    fn counter_deltas_add_up() {
        let mut acc = DeviceAccumulator::new(&device(true, None));
        for (i, v) in [1_000_000u64, 1_500_000, 1_500_000, 4_000_000]
            .iter()
            .enumerate()
        {
            acc.push(i as u64 * 1_000_000_000, &counter(*v));
        }
        assert_eq!(acc.method(), EnergyMethod::Counter);
        assert_eq!(acc.energy_j(), Some(3.0));
        assert_eq!(acc.average_power_w(), Some(1.0));
    }

    #[test]
    fn a_wrap_uses_the_modulus() {
        // RAPL-like: modulus 1_000_000 µJ. 900k -> 100k is a 200k step.
        let mut acc = DeviceAccumulator::new(&device(true, Some(1_000_000)));
        acc.push(0, &counter(800_000));
        acc.push(1, &counter(900_000));
        acc.push(2, &counter(100_000));
        acc.push(3, &counter(150_000));
        assert_eq!(acc.wraps, 1);
        assert_eq!(acc.resets, 0);
        assert_eq!(acc.energy_j(), Some(0.35));
    }

    #[test]
    fn a_reset_without_wrap_range_counts_from_zero() {
        let mut acc = DeviceAccumulator::new(&device(true, None));
        acc.push(0, &counter(5_000_000));
        acc.push(1, &counter(6_000_000));
        acc.push(2, &counter(200_000));
        assert_eq!(acc.resets, 1);
        assert_eq!(acc.energy_j(), Some(1.2));
    }

    #[test]
    fn power_is_integrated_when_there_is_no_counter() {
        let mut acc = DeviceAccumulator::new(&device(false, None));
        // 100 W for 1 s then ramp to 200 W over 1 s: 100 + 150 = 250 J.
        for (t_s, w) in [(0u64, 100u64), (1, 100), (2, 200)] {
            acc.push(
                t_s * 1_000_000_000,
                &Reading {
                    device: 0,
                    energy_uj: None,
                    power_mw: Some(w * 1000),
                },
            );
        }
        assert_eq!(acc.method(), EnergyMethod::PowerIntegration);
        let e = acc.energy_j().unwrap();
        assert!((e - 250.0).abs() < 1e-9, "{e}");
    }

    #[test]
    fn a_single_reading_yields_no_energy_rather_than_zero() {
        let mut acc = DeviceAccumulator::new(&device(true, None));
        acc.push(0, &counter(1));
        assert_eq!(acc.method(), EnergyMethod::None);
        assert_eq!(acc.energy_j(), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the start value and however often the counter wraps, the
            /// energy is the sum of the true increments, to the microjoule.
            #[test]
            fn wrapped_counters_sum_exactly(
                modulus in 1_000u64..=u64::MAX / 4,
                start_fraction in 0.0f64..1.0,
                steps in prop::collection::vec(0.0f64..1.0, 1..200),
            ) {
                let mut acc = DeviceAccumulator::new(&device(true, Some(modulus)));
                let mut value = ((modulus - 1) as f64 * start_fraction) as u64;
                acc.push(0, &counter(value));
                let mut truth: u128 = 0;
                for (i, fraction) in steps.iter().enumerate() {
                    // Each step is shorter than one full wrap, as sampling guarantees.
                    let step = ((modulus - 1) as f64 * fraction) as u64;
                    truth += u128::from(step);
                    value = ((u128::from(value) + u128::from(step)) % u128::from(modulus)) as u64;
                    acc.push(i as u64 + 1, &counter(value));
                }
                prop_assert_eq!(acc.resets, 0);
                prop_assert_eq!(acc.counter_uj, truth);
            }

            /// Trapezoidal integration equals the hand sum, and never goes negative.
            #[test]
            fn power_integration_matches_the_trapezoid_sum(
                points in prop::collection::vec((1u64..5_000_000_000, 0u64..2_000_000), 2..100),
            ) {
                let mut acc = DeviceAccumulator::new(&device(false, None));
                let mut t = 0u64;
                let mut expected_uj = 0.0f64;
                let mut previous: Option<(u64, u64)> = None;
                for (dt, mw) in &points {
                    t += dt;
                    if let Some((t0, p0)) = previous {
                        expected_uj += (p0 + mw) as f64 / 2.0 * ((t - t0) as f64 / 1e9) * 1000.0;
                    }
                    previous = Some((t, *mw));
                    acc.push(t, &Reading { device: 0, energy_uj: None, power_mw: Some(*mw) });
                }
                let got = acc.energy_j().unwrap() * 1e6;
                prop_assert!((got - expected_uj).abs() <= expected_uj.abs() * 1e-9 + 1e-6, "{} vs {}", got, expected_uj);
                prop_assert!(got >= 0.0);
            }

            /// A counter that only ever goes forward or resets never yields negative
            /// energy, and a window never exceeds the whole.
            #[test]
            fn resets_never_make_energy_negative(values in prop::collection::vec(0u64..1_000_000_000, 2..100)) {
                let mut acc = DeviceAccumulator::new(&device(true, None));
                let mut half = None;
                for (i, v) in values.iter().enumerate() {
                    acc.push(i as u64, &counter(*v));
                    if i == values.len() / 2 {
                        half = Some(acc.clone());
                    }
                }
                let total = acc.energy_j().unwrap();
                prop_assert!(total >= 0.0);
                if let Some(half) = half {
                    let since = acc.energy_since(&half).unwrap();
                    prop_assert!(since >= 0.0 && since <= total);
                }
            }
        }
    }
}
