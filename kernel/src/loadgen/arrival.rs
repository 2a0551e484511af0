//! Request arrival times: a seeded, version-stable random source and the
//! Poisson / gamma processes of `vllm bench serve` (`--request-rate`,
//! `--burstiness`), with an optional linear or exponential ramp of the rate.
//!
//! The generator is hand-rolled (xoshiro256++ seeded by SplitMix64; gamma by
//! Marsaglia–Tsang) so a seed gives the same schedule on every platform and
//! every llem version, whatever a random-number crate changes.

use super::{Arrival, Ramp};

/// xoshiro256++ seeded through SplitMix64.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1].
    fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Exponential with mean 1.
    pub(crate) fn exp1(&mut self) -> f64 {
        -self.open01().ln()
    }

    /// Standard normal (Box–Muller, one value per call: simple and stable).
    fn normal(&mut self) -> f64 {
        let u1 = self.open01();
        let u2 = self.open01();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, scale 1), Marsaglia–Tsang; shape < 1 via the boost
    /// Gamma(a) = Gamma(a + 1) · U^(1/a).
    pub(crate) fn gamma(&mut self, shape: f64) -> f64 {
        if shape == 1.0 {
            return self.exp1();
        }
        if shape < 1.0 {
            let u = self.open01();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.open01();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }
}

/// Send times of successive requests, in ns after the start of the measured
/// phase. The first request goes at 0; each gap is drawn from
/// Gamma(shape = burstiness, scale = 1 / (rate · burstiness)) (mean 1/rate;
/// burstiness 1 is the exponential gap of a Poisson process), with the rate
/// in force at the previous send (the ramp's rate while it lasts). `Closed`
/// yields 0 forever: requests go as fast as the concurrency limit allows.
///
/// Unlike `vllm bench serve`, the gaps are not rescaled so that N requests take
/// exactly N / rate seconds: that rescaling makes the process non-Poisson.
#[derive(Debug, Clone)]
pub struct ArrivalTimes {
    rng: Rng,
    arrival: Arrival,
    ramp: Option<Ramp>,
    t_s: f64,
    first: bool,
}

impl ArrivalTimes {
    pub fn new(arrival: Arrival, ramp: Option<Ramp>, seed: u64) -> Self {
        ArrivalTimes {
            rng: Rng::new(seed),
            arrival,
            ramp,
            t_s: 0.0,
            first: true,
        }
    }

    /// The target rate at `t_s` seconds into the phase (`None` for `Closed`).
    pub fn rate_at(&self, t_s: f64) -> Option<f64> {
        let target = match self.arrival {
            Arrival::Closed => return None,
            Arrival::Poisson { rate } | Arrival::Gamma { rate, .. } => rate,
        };
        Some(match self.ramp {
            None => target,
            Some(Ramp::Linear {
                from_rate,
                duration,
            }) => {
                let progress = (t_s / duration.as_secs_f64()).min(1.0);
                from_rate + (target - from_rate) * progress
            }
            Some(Ramp::Exponential {
                from_rate,
                duration,
            }) => {
                let progress = (t_s / duration.as_secs_f64()).min(1.0);
                from_rate * (target / from_rate).powf(progress)
            }
        })
    }
}

impl Iterator for ArrivalTimes {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.first {
            self.first = false;
            return Some(0);
        }
        let burstiness = match self.arrival {
            Arrival::Closed => return Some(0),
            Arrival::Poisson { .. } => 1.0,
            Arrival::Gamma { burstiness, .. } => burstiness,
        };
        let rate = self.rate_at(self.t_s)?;
        let gap = if burstiness.is_infinite() {
            1.0 / rate
        } else {
            self.rng.gamma(burstiness) / (rate * burstiness)
        };
        self.t_s += gap;
        Some((self.t_s * 1e9).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn gamma_moments() {
        let mut rng = Rng::new(7);
        for shape in [0.3, 0.5, 1.0, 2.0, 7.5] {
            let xs: Vec<f64> = (0..200_000).map(|_| rng.gamma(shape)).collect();
            let (mean, var) = mean_var(&xs);
            // Gamma(k, 1): mean k, variance k.
            assert!(
                (mean - shape).abs() < 0.02 * shape.max(1.0),
                "{shape}: {mean}"
            );
            assert!(
                (var - shape).abs() < 0.05 * shape.max(1.0),
                "{shape}: {var}"
            );
        }
    }

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let a: Vec<u64> = ArrivalTimes::new(Arrival::Poisson { rate: 10.0 }, None, 1)
            .take(100)
            .collect();
        let b: Vec<u64> = ArrivalTimes::new(Arrival::Poisson { rate: 10.0 }, None, 1)
            .take(100)
            .collect();
        let c: Vec<u64> = ArrivalTimes::new(Arrival::Poisson { rate: 10.0 }, None, 2)
            .take(100)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a[0], 0);
    }

    #[test]
    fn burstiness_changes_dispersion_not_rate() {
        for burstiness in [0.25, 1.0, 4.0] {
            let times: Vec<u64> = ArrivalTimes::new(
                Arrival::Gamma {
                    rate: 50.0,
                    burstiness,
                },
                None,
                3,
            )
            .take(100_001)
            .collect();
            let gaps: Vec<f64> = times
                .windows(2)
                .map(|w| (w[1] - w[0]) as f64 / 1e9)
                .collect();
            let (mean, var) = mean_var(&gaps);
            assert!(
                (mean - 0.02).abs() < 0.0005,
                "{burstiness}: mean gap {mean}"
            );
            // Coefficient of variation² of Gamma(k) is 1/k.
            let cv2 = var / (mean * mean);
            assert!(
                (cv2 - 1.0 / burstiness).abs() < 0.05 / burstiness,
                "{burstiness}: cv² {cv2}"
            );
        }
    }

    #[test]
    fn ramps_reach_the_target() {
        let linear = ArrivalTimes::new(
            Arrival::Poisson { rate: 100.0 },
            Some(Ramp::Linear {
                from_rate: 10.0,
                duration: Duration::from_secs(10),
            }),
            0,
        );
        assert_eq!(linear.rate_at(0.0), Some(10.0));
        assert_eq!(linear.rate_at(5.0), Some(55.0));
        assert_eq!(linear.rate_at(20.0), Some(100.0));
        let exp = ArrivalTimes::new(
            Arrival::Poisson { rate: 100.0 },
            Some(Ramp::Exponential {
                from_rate: 1.0,
                duration: Duration::from_secs(10),
            }),
            0,
        );
        assert!((exp.rate_at(5.0).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(exp.rate_at(10.0), Some(100.0));
    }
}
