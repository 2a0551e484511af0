//! Per-device energy from a stream of timestamped raw readings, with every
//! reading judged before it becomes energy (see `plausibility`): a counter
//! step is energy only if it is forward, or a wrap the declared modulus
//! explains, and implies no more than the device's plausible power.

use super::plausibility::{self, Gap, GapLog, JITTER_UJ, REFRESH_SLACK_S};
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

/// What one counter step means.
enum Step {
    /// Energy, µJ (a forward step or a plausible wrap).
    Energy(u64),
    /// A step back within read-out jitter: 0 J, the higher value stays the baseline.
    Jitter,
    /// Not energy: why.
    Gap(String),
}

/// Accumulates one device's energy.
#[derive(Debug, Clone)]
pub struct DeviceAccumulator {
    wrap_uj: Option<u64>,
    prefer_counter: bool,
    max_power_w: f64,
    /// (t_ns, value) the next counter step is measured from.
    last_counter: Option<(u64, u64)>,
    last_power: Option<(u64, u64)>,
    first_t_ns: Option<u64>,
    last_t_ns: Option<u64>,
    counter_uj: u128,
    integrated_uj: f64,
    /// Time whose energy the counter / the integral accounts for, ns.
    counter_covered_ns: u64,
    power_covered_ns: u64,
    counter_samples: u64,
    power_samples: u64,
    /// Counter decreases not explained by a plausible wrap (driver reloads, corruption).
    pub resets: u32,
    /// Counter decreases explained by the wrap range.
    pub wraps: u32,
    /// Steps back within read-out jitter, counted as 0 J.
    pub jitter_steps: u32,
    /// Readings that did not become energy.
    pub gaps: GapLog,
    /// (t_ns, cumulative µJ by counter) over the last second, for live power.
    recent: VecDeque<(u64, u128)>,
}

impl DeviceAccumulator {
    pub fn new(device: &Device) -> Self {
        DeviceAccumulator {
            wrap_uj: device.counter_wrap_uj.filter(|w| *w > 0),
            prefer_counter: device.has_energy_counter,
            max_power_w: plausibility::max_power_w(device),
            last_counter: None,
            last_power: None,
            first_t_ns: None,
            last_t_ns: None,
            counter_uj: 0,
            integrated_uj: 0.0,
            counter_covered_ns: 0,
            power_covered_ns: 0,
            counter_samples: 0,
            power_samples: 0,
            resets: 0,
            wraps: 0,
            jitter_steps: 0,
            gaps: GapLog::default(),
            recent: VecDeque::new(),
        }
    }

    /// Feed one reading taken at `t_ns` (monotonic). Readings must come in time order.
    pub fn push(&mut self, t_ns: u64, reading: &Reading) {
        self.first_t_ns.get_or_insert(t_ns);
        self.last_t_ns = Some(t_ns);
        if let Some(value) = reading.energy_uj {
            self.push_counter(t_ns, value);
        }
        if let Some(power_mw) = reading.power_mw {
            self.push_power(t_ns, power_mw);
        }
    }

    /// Record that the source could not deliver this device's reading at
    /// `t_ns` (e.g. a non-finite value the plugin reported); nothing else changes.
    pub fn reject(&mut self, t_ns: u64, reason: String) {
        self.gaps.record(Gap {
            t_ns,
            lost_s: 0.0,
            reason,
        });
    }

    fn push_counter(&mut self, t_ns: u64, value: u64) {
        if let Some(wrap) = self.wrap_uj
            && value >= wrap
        {
            // Outside the declared range: a corrupt read. Drop it and keep the
            // baseline, so the next good reading bridges the interval.
            self.reject(
                t_ns,
                format!(
                    "counter value {value} µJ is outside the device's declared range [0, {wrap}) µJ; reading dropped"
                ),
            );
            return;
        }
        self.counter_samples += 1;
        let Some((t0, last)) = self.last_counter else {
            self.last_counter = Some((t_ns, value));
            self.push_recent(t_ns);
            return;
        };
        let dt_ns = t_ns.saturating_sub(t0);
        match self.step(last, value, dt_ns) {
            Step::Energy(delta) => {
                self.counter_uj += u128::from(delta);
                self.counter_covered_ns += dt_ns;
                self.last_counter = Some((t_ns, value));
            }
            Step::Jitter => {
                self.jitter_steps += 1;
                self.counter_covered_ns += dt_ns;
                self.last_counter = Some((t_ns, last));
            }
            Step::Gap(reason) => {
                self.gaps.record(Gap {
                    t_ns,
                    lost_s: dt_ns as f64 / 1e9,
                    reason,
                });
                // The counter starts again from here.
                self.last_counter = Some((t_ns, value));
            }
        }
        self.push_recent(t_ns);
    }

    fn push_recent(&mut self, t_ns: u64) {
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

    /// The most energy one interval of `dt_ns` can plausibly carry, µJ.
    fn allowed_uj(&self, dt_ns: u64) -> f64 {
        self.max_power_w * (dt_ns as f64 / 1e9 + REFRESH_SLACK_S) * 1e6
    }

    /// Judge a counter step from `last` to `value` over `dt_ns`.
    fn step(&mut self, last: u64, value: u64, dt_ns: u64) -> Step {
        let dt_s = dt_ns as f64 / 1e9;
        let allowed = self.allowed_uj(dt_ns);
        let max = self.max_power_w;
        if value >= last {
            let delta = value - last;
            if delta as f64 <= allowed {
                return Step::Energy(delta);
            }
            return Step::Gap(format!(
                "counter rose by {:.3} J in {dt_s:.3} s ({:.3e} W), more than this device's plausible maximum of {max} W; not counted",
                delta as f64 / 1e6,
                delta as f64 / 1e6 / dt_s.max(1e-9),
            ));
        }
        if last - value <= JITTER_UJ {
            return Step::Jitter;
        }
        match self.wrap_uj {
            Some(wrap) => {
                let implied = wrap - last + value;
                if implied as f64 <= allowed {
                    self.wraps += 1;
                    Step::Energy(implied)
                } else {
                    self.resets += 1;
                    Step::Gap(format!(
                        "counter went back from {last} to {value} µJ; a wrap at {wrap} µJ would mean {:.3} J in {dt_s:.3} s, more than this device's plausible maximum of {max} W, so it restarted: interval not counted",
                        implied as f64 / 1e6
                    ))
                }
            }
            None => {
                // No wrap range: the counter restarted (driver reload). What
                // accrued since the restart is unknown (the new value need not
                // start from 0), so the interval is a gap.
                self.resets += 1;
                Step::Gap(format!(
                    "counter went back from {last} to {value} µJ (reset, e.g. a driver reload): interval not counted"
                ))
            }
        }
    }

    fn push_power(&mut self, t_ns: u64, power_mw: u64) {
        let watts = power_mw as f64 / 1000.0;
        if watts > self.max_power_w {
            let lost_s = self
                .last_power
                .map_or(0.0, |(t0, _)| t_ns.saturating_sub(t0) as f64 / 1e9);
            self.gaps.record(Gap {
                t_ns,
                lost_s,
                reason: format!(
                    "power reading {watts:.3e} W is above this device's plausible maximum of {} W; reading dropped and integration restarted",
                    self.max_power_w
                ),
            });
            // Neither neighbouring interval can be integrated through it.
            self.last_power = None;
            return;
        }
        if let Some((t0, p0)) = self.last_power {
            let dt_ns = t_ns.saturating_sub(t0);
            // mW * s = mJ; x1000 for µJ.
            self.integrated_uj +=
                (p0 as f64 + power_mw as f64) / 2.0 * (dt_ns as f64 / 1e9) * 1000.0;
            self.power_covered_ns += dt_ns;
        }
        self.last_power = Some((t_ns, power_mw));
        self.power_samples += 1;
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

    /// When the latest reading was taken (CLOCK_MONOTONIC ns), if any.
    pub fn last_t_ns(&self) -> Option<u64> {
        self.last_t_ns
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

    /// Seconds whose energy the current method accounts for (readings that
    /// became gaps leave their intervals out).
    pub fn covered_s(&self) -> f64 {
        let ns = match self.method() {
            EnergyMethod::Counter => self.counter_covered_ns,
            EnergyMethod::PowerIntegration => self.power_covered_ns,
            EnergyMethod::None => 0,
        };
        ns as f64 / 1e9
    }

    /// Covered seconds since `earlier`, a snapshot of this same accumulator.
    pub fn covered_since(&self, earlier: &DeviceAccumulator) -> f64 {
        let ns = match self.method() {
            EnergyMethod::Counter => self
                .counter_covered_ns
                .saturating_sub(earlier.counter_covered_ns),
            EnergyMethod::PowerIntegration => self
                .power_covered_ns
                .saturating_sub(earlier.power_covered_ns),
            EnergyMethod::None => 0,
        };
        ns as f64 / 1e9
    }

    /// The plausible maximum power this accumulator judges readings by, W.
    pub fn max_power_w(&self) -> f64 {
        self.max_power_w
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
        bounded(counter, wrap, None)
    }

    fn bounded(counter: bool, wrap: Option<u64>, max_power_w: Option<f64>) -> Device {
        Device {
            id: "d".into(),
            name: "d".into(),
            kind: DeviceKind::Other,
            has_energy_counter: counter,
            counter_wrap_uj: wrap,
            has_power: true,
            power_average_window_ms: 0,
            estimated: false,
            parent: None,
            max_power_w,
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

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_reset_without_wrap_range_is_a_gap_not_the_new_value() {
        // 5 J -> 6 J -> (reset) 0.2 J -> 0.5 J: the reset interval is lost,
        // the counter starts again from 0.2 J. Before: 1.2 J (the new value
        // counted as energy).
        let mut acc = DeviceAccumulator::new(&device(true, None));
        acc.push(0, &counter(5_000_000));
        acc.push(S, &counter(6_000_000));
        acc.push(2 * S, &counter(200_000));
        acc.push(3 * S, &counter(500_000));
        assert_eq!(acc.resets, 1);
        assert_eq!(acc.gaps.count, 1);
        assert!((acc.energy_j().unwrap() - 1.3).abs() < 1e-12);
        assert_eq!(acc.covered_s(), 2.0);
        assert_eq!(acc.gaps.first[0].t_ns, 2 * S);
        assert_eq!(acc.gaps.first[0].lost_s, 1.0);
    }

    #[test]
    fn a_drop_to_a_large_non_zero_value_is_not_counted_as_that_value() {
        // An NVML counter at 250 kJ that drops to 101 488 J after a driver
        // reload, then goes on at 300 W: the total is the 300 W intervals
        // (4 x 1 s = 1 200 J), never 101 488 J.
        let mut acc = DeviceAccumulator::new(&bounded(true, None, None));
        let mut t = 0;
        let mut value = 250_000_000_000u64;
        acc.push(t, &counter(value));
        t += S;
        value += 300_000_000;
        acc.push(t, &counter(value));
        t += S;
        value = 101_488_000_000;
        acc.push(t, &counter(value));
        for _ in 0..3 {
            t += S;
            value += 300_000_000;
            acc.push(t, &counter(value));
        }
        assert_eq!(acc.energy_j(), Some(1_200.0));
        assert_eq!(acc.gaps.count, 1);
        assert_eq!(acc.covered_s(), 4.0);
    }

    #[test]
    fn jitter_backwards_with_a_wrap_range_is_not_a_wrap() {
        // RAPL modulus 262 143 328 851 µJ; the counter reads 1 µJ lower once.
        // Before: one full wrap, +262 kJ. Now 0 J for that step, and the
        // baseline stays at the higher value, so the total is exact.
        let wrap = 262_143_328_851;
        let mut acc = DeviceAccumulator::new(&bounded(true, Some(wrap), None));
        acc.push(0, &counter(10_000_000));
        acc.push(S / 10, &counter(15_000_000));
        acc.push(2 * S / 10, &counter(14_999_999));
        acc.push(3 * S / 10, &counter(20_000_000));
        assert_eq!(acc.wraps, 0);
        assert_eq!(acc.jitter_steps, 1);
        assert!(acc.gaps.is_empty());
        assert_eq!(acc.energy_j(), Some(10.0));
    }

    #[test]
    fn a_decrease_no_plausible_wrap_explains_is_a_gap() {
        // Modulus 1 000 J, 1 kW maximum: a 0.1 s interval carries at most
        // 1 kW x (0.1 + 0.25) s = 350 J. 900 J -> 500 J would be a 600 J
        // wrap: a gap, not 600 J.
        let wrap = 1_000_000_000;
        let mut acc = DeviceAccumulator::new(&bounded(true, Some(wrap), Some(1_000.0)));
        acc.push(0, &counter(900_000_000));
        acc.push(S / 10, &counter(500_000_000));
        acc.push(2 * S / 10, &counter(510_000_000));
        assert_eq!(acc.wraps, 0);
        assert_eq!(acc.resets, 1);
        assert_eq!(acc.gaps.count, 1);
        assert_eq!(acc.energy_j(), Some(10.0));
        // A plausible wrap still counts: 995 J -> 5 J is 10 J.
        let mut acc = DeviceAccumulator::new(&bounded(true, Some(wrap), Some(1_000.0)));
        acc.push(0, &counter(995_000_000));
        acc.push(S / 10, &counter(5_000_000));
        assert_eq!(acc.wraps, 1);
        assert_eq!(acc.energy_j(), Some(10.0));
    }

    #[test]
    fn a_delta_above_the_plausible_power_is_a_gap() {
        // A GPU (2 kW default) whose counter jumps by 4.6e15 µJ in 1 s
        // (4.6e9 W): a gap, and the counter goes on from the new value.
        let mut gpu = bounded(true, None, None);
        gpu.kind = llem_sdk::DeviceKind::Gpu;
        let mut acc = DeviceAccumulator::new(&gpu);
        acc.push(0, &counter(1_000_000));
        acc.push(S, &counter(4_600_000_001_000_000));
        acc.push(2 * S, &counter(4_600_000_301_000_000));
        assert_eq!(acc.gaps.count, 1);
        assert_eq!(acc.energy_j(), Some(300.0));
        assert_eq!(acc.covered_s(), 1.0);
        // Just under the bound is energy: 2 kW x (1 s + 0.25 s) = 2 500 J.
        let mut acc = DeviceAccumulator::new(&gpu);
        acc.push(0, &counter(0));
        acc.push(S, &counter(2_500_000_000));
        assert!(acc.gaps.is_empty());
        assert_eq!(acc.energy_j(), Some(2_500.0));
    }

    #[test]
    fn a_value_outside_the_wrap_range_is_dropped_and_bridged() {
        let mut acc = DeviceAccumulator::new(&device(true, Some(1_000_000)));
        acc.push(0, &counter(100_000));
        acc.push(S, &counter(5_000_000));
        acc.push(2 * S, &counter(300_000));
        assert_eq!(acc.gaps.count, 1);
        assert_eq!(acc.gaps.first[0].lost_s, 0.0);
        // The good readings around it still give the energy between them.
        assert!((acc.energy_j().unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(acc.covered_s(), 2.0);
        assert_eq!(acc.samples(), 2);
    }

    #[test]
    fn absurd_power_is_a_gap_and_breaks_the_integral() {
        // 100 W, then 4.6e15 W, then 100 W twice, 1 s apart: only the last
        // interval is integrated (100 J); 2 s are uncovered.
        let mut acc = DeviceAccumulator::new(&device(false, None));
        for (t, mw) in [
            (0, 100_000u64),
            (1, 4_600_000_000_000_000_000),
            (2, 100_000),
            (3, 100_000),
        ] {
            acc.push(
                t * S,
                &Reading {
                    device: 0,
                    energy_uj: None,
                    power_mw: Some(mw),
                },
            );
        }
        assert_eq!(acc.gaps.count, 1);
        assert_eq!(acc.method(), EnergyMethod::PowerIntegration);
        assert!((acc.energy_j().unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(acc.covered_s(), 1.0);
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
                modulus in 10_000_000u64..=1u64 << 50,
                start_fraction in 0.0f64..1.0,
                steps in prop::collection::vec(0.0f64..0.99, 1..200),
            ) {
                // Steps 1 s apart on a device whose plausible maximum lets one
                // interval carry up to the modulus: every step is plausible.
                let max_power_w = modulus as f64 / 1e6;
                let mut acc = DeviceAccumulator::new(&bounded(true, Some(modulus), Some(max_power_w)));
                let mut value = ((modulus - 1) as f64 * start_fraction) as u64;
                acc.push(0, &counter(value));
                let mut truth: u128 = 0;
                for (i, fraction) in steps.iter().enumerate() {
                    // Each step is shorter than one full wrap, as sampling guarantees.
                    let step = ((modulus - 1) as f64 * fraction) as u64;
                    truth += u128::from(step);
                    value = ((u128::from(value) + u128::from(step)) % u128::from(modulus)) as u64;
                    acc.push((i as u64 + 1) * 1_000_000_000, &counter(value));
                }
                prop_assert_eq!(acc.resets, 0);
                prop_assert!(acc.gaps.is_empty());
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

            /// Whatever the stream (garbage included), the energy counted never
            /// implies more than the plausible maximum over the covered time
            /// plus the refresh slack per interval, and coverage never exceeds the span.
            #[test]
            fn garbage_never_becomes_implausible_energy(
                values in prop::collection::vec((1u64..2_000_000_000, any::<u64>()), 2..100),
            ) {
                let mut gpu = device(true, Some(1u64 << 40));
                gpu.kind = llem_sdk::DeviceKind::Gpu;
                let mut acc = DeviceAccumulator::new(&gpu);
                let mut t = 0u64;
                for (dt, v) in &values {
                    t += dt;
                    acc.push(t, &counter(*v));
                }
                let energy = acc.energy_j().unwrap_or(0.0);
                let bound = 2_000.0 * (acc.covered_s() + REFRESH_SLACK_S * values.len() as f64);
                prop_assert!(energy <= bound, "{} J > {} J", energy, bound);
                prop_assert!(acc.covered_s() <= acc.span_s() + 1e-9);
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
                // Nothing is counted beyond what forward steps can explain.
                let forward: u64 = values.windows(2).map(|w| w[1].saturating_sub(w[0])).sum();
                prop_assert!(total * 1e6 <= forward as f64 + 1e-6);
                if let Some(half) = half {
                    let since = acc.energy_since(&half).unwrap();
                    prop_assert!(since >= 0.0 && since <= total);
                }
            }
        }
    }
}
