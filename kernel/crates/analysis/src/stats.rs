//! Small statistics the run's control loops use.
//!
//! * Warm-up until stable: send warm-up requests until the coefficient of
//!   variation (CV) of the last `window` latencies drops below a threshold, or
//!   a cap is reached ([`CvWindow`], [`warmup_until_stable`]).
//! * Thermal settle: wait until a temperature or power series stops drifting,
//!   judged by the least-squares slope over its last seconds ([`drift`]).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Mean of `xs`; `None` when empty.
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Coefficient of variation: sample standard deviation (n − 1 in the
/// denominator) over the mean. `None` with fewer than two values or a mean
/// of zero (a CV is meaningless there).
pub fn coefficient_of_variation(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs)?;
    if m == 0.0 {
        return None;
    }
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64;
    Some(var.sqrt() / m.abs())
}

/// A sliding window of the last `window` values, for warm-up online: push
/// each warm-up request's latency as it completes; stop when
/// [`CvWindow::is_stable`] says so or the cap is reached.
#[derive(Debug, Clone)]
pub struct CvWindow {
    window: usize,
    threshold: f64,
    values: VecDeque<f64>,
}

impl CvWindow {
    /// `window` ≥ 2 values (a CV needs two); `threshold` e.g. 0.05 for 5 %.
    pub fn new(window: usize, threshold: f64) -> Self {
        Self {
            window: window.max(2),
            threshold,
            values: VecDeque::new(),
        }
    }

    pub fn push(&mut self, value: f64) {
        if self.values.len() == self.window {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    /// CV of the last `window` values, once the window is full.
    pub fn cv(&self) -> Option<f64> {
        if self.values.len() < self.window {
            return None;
        }
        let xs: Vec<f64> = self.values.iter().copied().collect();
        coefficient_of_variation(&xs)
    }

    /// The window is full and its CV is below the threshold.
    pub fn is_stable(&self) -> bool {
        self.cv().is_some_and(|cv| cv < self.threshold)
    }
}

/// Where warm-up ended, over latencies in completion order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmupOutcome {
    /// Warm-up requests used: the first `n` latencies. Equals the cap when
    /// stability was not reached.
    pub requests: usize,
    /// Stability was reached within the cap.
    pub stable: bool,
    /// CV of the last `window` latencies at the end (`None` when fewer than
    /// `window` were seen).
    pub final_cv: Option<f64>,
    pub window: usize,
    pub threshold: f64,
    pub cap: usize,
}

/// Warm-up until stable, on latencies already collected: the smallest `n ≤
/// cap` such that the CV of `latencies[n − window .. n]` is below `threshold`.
/// When none is, `n = min(cap, len)` and `stable` is false.
pub fn warmup_until_stable(
    latencies: &[f64],
    window: usize,
    threshold: f64,
    cap: usize,
) -> WarmupOutcome {
    let mut w = CvWindow::new(window, threshold);
    let limit = cap.min(latencies.len());
    let mut outcome = WarmupOutcome {
        requests: limit,
        stable: false,
        final_cv: None,
        window: w.window,
        threshold,
        cap,
    };
    for (i, &x) in latencies.iter().take(limit).enumerate() {
        w.push(x);
        outcome.final_cv = w.cv();
        if w.is_stable() {
            outcome.requests = i + 1;
            outcome.stable = true;
            break;
        }
    }
    outcome
}

/// Whether a series has stopped drifting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    /// Least-squares slope over the points in the last `span_s` seconds, in
    /// units per second (°C/s for temperature, W/s for power); `None` with
    /// fewer than two points or all at one instant.
    pub slope_per_s: Option<f64>,
    /// Points the slope rests on.
    pub points: usize,
    /// Seconds of history asked for.
    pub span_s: f64,
    /// The series reaches back at least `span_s` seconds before its last point.
    pub enough_history: bool,
    /// Enough history and |slope| ≤ the threshold.
    pub settled: bool,
    pub max_abs_slope_per_s: f64,
}

/// Least-squares slope of `(t_ns, value)` in units per second.
pub fn slope_per_s(series: &[(u64, f64)]) -> Option<f64> {
    if series.len() < 2 {
        return None;
    }
    // Shift times to the first point so that squares of ns do not lose precision.
    let t0 = series[0].0;
    let ts: Vec<f64> = series.iter().map(|&(t, _)| (t - t0) as f64 / 1e9).collect();
    let vs: Vec<f64> = series.iter().map(|&(_, v)| v).collect();
    let (mt, mv) = (mean(&ts)?, mean(&vs)?);
    let sxx: f64 = ts.iter().map(|t| (t - mt) * (t - mt)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = ts.iter().zip(&vs).map(|(t, v)| (t - mt) * (v - mv)).sum();
    Some(sxy / sxx)
}

/// Has the series settled? Takes the points in the last `span_s` seconds
/// before its last point (`series` sorted by time) and compares the
/// absolute least-squares slope with `max_abs_slope_per_s`. A series that
/// does not yet reach `span_s` back is never settled: a short flat stretch
/// says nothing about the trend.
pub fn drift(series: &[(u64, f64)], span_s: f64, max_abs_slope_per_s: f64) -> DriftCheck {
    let span_ns = (span_s * 1e9).max(0.0) as u64;
    let (recent, enough_history) = match series.last() {
        Some(&(last, _)) => {
            let from = last.saturating_sub(span_ns);
            let enough = series[0].0 <= from && last >= span_ns;
            let recent: Vec<(u64, f64)> =
                series.iter().copied().filter(|&(t, _)| t >= from).collect();
            (recent, enough)
        }
        None => (Vec::new(), false),
    };
    let slope = slope_per_s(&recent);
    DriftCheck {
        slope_per_s: slope,
        points: recent.len(),
        span_s,
        enough_history,
        settled: enough_history && slope.is_some_and(|s| s.abs() <= max_abs_slope_per_s),
        max_abs_slope_per_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cv_by_hand() {
        // [2, 4, 4, 4, 5, 5, 7, 9]: mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32,
        // sample variance 32/7, sd = sqrt(32/7) = 2.138089935..., CV = 0.427617987...
        let cv = coefficient_of_variation(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!(cv.is_some_and(|c| (c - (32.0f64 / 7.0).sqrt() / 5.0).abs() < 1e-15));
        assert!((cv.unwrap_or(0.0) - 0.427_617_987).abs() < 1e-9);
        assert_eq!(coefficient_of_variation(&[3.0]), None);
        assert_eq!(coefficient_of_variation(&[0.0, 0.0]), None);
    }

    #[test]
    fn warmup_stops_at_the_first_stable_window() {
        // Cold start, then settling: window 3, threshold 0.05.
        // n=3: [100, 60, 52]  mean 70.67, clearly unstable.
        // n=4: [60, 52, 50]   mean 54, deviations 6,-2,-4 → var (36+4+16)/2 = 28, sd 5.29, CV 0.098.
        // n=5: [52, 50, 51]   mean 51, deviations 1,-1,0 → var 1, sd 1, CV 1/51 = 0.0196 < 0.05.
        let lat = [100.0, 60.0, 52.0, 50.0, 51.0, 50.0, 51.0];
        let o = warmup_until_stable(&lat, 3, 0.05, 10);
        assert_eq!(o.requests, 5);
        assert!(o.stable);
        assert!(o.final_cv.is_some_and(|c| (c - 1.0 / 51.0).abs() < 1e-12));
        // With a cap of 4 it stops unstable after 4, CV of [60, 52, 50] = sqrt(28)/54.
        let o = warmup_until_stable(&lat, 3, 0.05, 4);
        assert_eq!(o.requests, 4);
        assert!(!o.stable);
        assert!(
            o.final_cv
                .is_some_and(|c| (c - 28f64.sqrt() / 54.0).abs() < 1e-12)
        );
        // Fewer latencies than the window: nothing to judge.
        let o = warmup_until_stable(&lat[..2], 3, 0.05, 10);
        assert_eq!((o.requests, o.stable, o.final_cv), (2, false, None));
    }

    #[test]
    fn drift_by_hand() {
        let s = |t_s: u64| t_s * 1_000_000_000;
        // Temperature rising 0.5 °C/s for 10 s, then flat at 65 °C for 30 s.
        let mut series: Vec<(u64, f64)> = (0..=10).map(|t| (s(t), 60.0 + 0.5 * t as f64)).collect();
        series.extend((11..=40).map(|t| (s(t), 65.0)));
        // Last 20 s (t = 20..40): flat → slope 0, settled under 0.01 °C/s.
        let d = drift(&series, 20.0, 0.01);
        assert_eq!(d.points, 21);
        assert!(d.enough_history && d.settled);
        assert_eq!(d.slope_per_s, Some(0.0));
        // Only the first 11 points (t = 0..10): slope exactly 0.5 °C/s.
        let d = drift(&series[..11], 10.0, 0.01);
        assert!(d.slope_per_s.is_some_and(|x| (x - 0.5).abs() < 1e-12));
        assert!(d.enough_history && !d.settled);
        // Asking for 60 s of history on a 40 s series: never settled.
        let d = drift(&series, 60.0, 1.0);
        assert!(!d.enough_history && !d.settled);
    }
}
