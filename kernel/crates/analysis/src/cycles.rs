//! Statistics of one figure across a study's cycles: a configuration run `n`
//! times gives `n` values of each figure (J/token, tokens/s, TTFT p99, …).
//!
//! * [`Summary::of`]: n, mean, sample standard deviation, coefficient of
//!   variation, min, max, median and the 95 % Student t interval of the mean;
//!   it goes into study.json.
//! * [`outliers`]: cycles that stand apart, by the modified z-score.
//! * [`separable`]: warnings when the intervals are too wide to tell
//!   configurations apart.
//!
//! The test of a difference between two configurations is in
//! [`crate::compare`]; intervals for percentiles in [`crate::bootstrap`].
//!
//! ```
//! use llem_analysis::bootstrap::{DEFAULT_RESAMPLES, bootstrap_ci};
//! use llem_analysis::compare::Comparison;
//! use llem_analysis::cycles::{Summary, outliers, quantile, separable};
//!
//! // J/token of two configurations over five cycles each.
//! let bs8 = [0.512, 0.498, 0.505, 0.520, 0.509];
//! let bs16 = [0.471, 0.480, 0.468, 0.475, 0.490];
//! let (a, b) = (Summary::of(&bs8).unwrap(), Summary::of(&bs16).unwrap());
//! assert!(separable(&[("bs8", &a), ("bs16", &b)]).is_empty());
//! assert!(outliers(&bs8).is_empty());
//! let c = Comparison::of(&bs8, &bs16).unwrap();
//! assert!(c.significant && c.difference < 0.0); // bs16 spends less
//! // TTFT p99 (ms) of each cycle: an interval for their median.
//! let p99 = [182.0, 175.5, 190.2, 178.9, 240.3, 181.1];
//! let ci = bootstrap_ci(&p99, |xs| quantile(xs, 0.5), DEFAULT_RESAMPLES, 0, 0.95).unwrap();
//! assert!(ci.contains(quantile(&p99, 0.5)));
//! assert_eq!(outliers(&p99), [4]);
//! ```

use serde::{Deserialize, Serialize};

use crate::student_t::student_t_quantile;

/// A closed interval `[low, high]`, e.g. a 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Half the width: the `x` of `mean ± x` for a symmetric interval.
    #[must_use]
    pub fn half_width(&self) -> f64 {
        0.5 * (self.high - self.low)
    }

    #[must_use]
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }

    /// The two intervals share at least one point.
    #[must_use]
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.low <= other.high && other.low <= self.high
    }
}

/// One figure summarised over the cycles of one configuration. Serialised
/// with these snake_case field names into study.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Finite values the summary rests on.
    pub n: usize,
    /// Non-finite values (NaN, ±∞) left out: a cycle that produced no figure
    /// should be visible, not silently shrink `n`.
    pub dropped: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator); `None` for
    /// `n < 2`, where it is undefined.
    pub sd: Option<f64>,
    /// Coefficient of variation `sd / |mean|`; `None` for `n < 2` or a mean
    /// of 0.
    pub cv: Option<f64>,
    pub min: f64,
    pub max: f64,
    /// Middle value, or the mean of the two middle ones for even `n`.
    pub median: f64,
    /// 95 % confidence interval of the mean, `mean ± t(0.975, n − 1)·sd/√n`
    /// (Student t: the values are assumed roughly normal, which for a mean
    /// over a whole run's requests they are); `None` for `n < 2`.
    pub ci95: Option<Interval>,
}

impl Summary {
    /// Summarise the finite values of `xs`, counting the others in
    /// `dropped`. `None` when no value is finite.
    #[must_use]
    pub fn of(xs: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        // Two passes: the one-pass formula cancels badly when sd ≪ mean,
        // which is exactly the case of good measurements.
        let sd = (n >= 2).then(|| {
            let ss: f64 = sorted.iter().map(|x| (x - mean) * (x - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let cv = sd.filter(|_| mean != 0.0).map(|sd| sd / mean.abs());
        let ci95 = match sd {
            Some(sd) => {
                let t = student_t_quantile(0.975, (n - 1) as f64)?;
                let half = t * sd / (n as f64).sqrt();
                Some(Interval {
                    low: mean - half,
                    high: mean + half,
                })
            }
            None => None,
        };
        Some(Summary {
            n,
            dropped: xs.len() - n,
            mean,
            sd,
            cv,
            min: sorted[0],
            max: sorted[n - 1],
            median: quantile_sorted(&sorted, 0.5)?,
            ci95,
        })
    }

    /// Half-width of the 95 % interval relative to `|mean|` (0.1 = ±10 %);
    /// `None` without an interval or with a mean of 0.
    #[must_use]
    pub fn relative_half_width(&self) -> Option<f64> {
        let ci = self.ci95?;
        (self.mean != 0.0).then(|| ci.half_width() / self.mean.abs())
    }
}

/// The `q` quantile (0 ≤ q ≤ 1) of ascending `sorted`, interpolating
/// linearly between order statistics (numpy's default, as the load
/// generator's percentiles). `None` when empty or `q` is outside [0, 1].
#[must_use]
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

/// The `q` quantile of `xs` in any order (non-finite values left out);
/// NaN when none is finite, so that it can serve as a
/// [`crate::bootstrap::bootstrap_ci`] statistic, which refuses NaN.
#[must_use]
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    quantile_sorted(&sorted, q).unwrap_or(f64::NAN)
}

/// Threshold on the modified z-score above which a value is an outlier,
/// as Iglewicz & Hoaglin recommend.
pub const OUTLIER_Z: f64 = 3.5;

/// Indices of the values of `xs` whose modified z-score exceeds
/// [`OUTLIER_Z`] in absolute value (Iglewicz & Hoaglin, *How to Detect and
/// Handle Outliers*, 1993):
///
/// `M_i = 0.6745 · (x_i − median) / MAD`, MAD the median of `|x_i − median|`.
///
/// Median and MAD, unlike mean and sd, are not dragged by the outlier they
/// look for, so a single bad cycle among three or more stands out. 0.6745 is
/// the normal quantile at 0.75, making `MAD / 0.6745` estimate σ for normal
/// data.
///
/// When more than half of the values are equal, MAD is 0 and the score
/// undefined; the mean absolute deviation then stands in, scaled to estimate
/// σ as well (`M_i = (x_i − median) / (1.253314 · MeanAD)`, the fallback IBM
/// SPSS uses): a single cycle off five identical ones is flagged, a spread of
/// several is not. All values equal: no outlier.
///
/// Non-finite values are neither scored nor returned ([`Summary::dropped`]
/// counts them). Fewer than 3 finite values: no outlier (with 2, each is
/// 0.6745 from the median).
#[must_use]
pub fn outliers(xs: &[f64]) -> Vec<usize> {
    let finite: Vec<(usize, f64)> = xs
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, x)| x.is_finite())
        .collect();
    if finite.len() < 3 {
        return Vec::new();
    }
    let median_of = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        quantile_sorted(values, 0.5).unwrap_or(f64::NAN)
    };
    let median = median_of(&mut finite.iter().map(|&(_, x)| x).collect());
    let deviations: Vec<f64> = finite.iter().map(|&(_, x)| (x - median).abs()).collect();
    let mad = median_of(&mut deviations.clone());
    let scale = if mad > 0.0 {
        mad / 0.6745
    } else {
        1.253_314 * deviations.iter().sum::<f64>() / deviations.len() as f64
    };
    if scale.is_nan() || scale <= 0.0 {
        return Vec::new();
    }
    finite
        .iter()
        .zip(&deviations)
        .filter(|(_, d)| **d / scale > OUTLIER_Z)
        .map(|(&(i, _), _)| i)
        .collect()
}

/// A 95 % interval wider than ±10 % of its mean is flagged by
/// [`separable`]: the differences llem is used to find (batch size, precision,
/// engine, power cap) are often 10–30 %, and an interval that wide cannot
/// resolve them.
pub const MAX_RELATIVE_HALF_WIDTH: f64 = 0.10;

/// Warnings on one figure across configurations, `(label, summary)` each,
/// in input order for the per-configuration ones, then in mean order:
///
/// * a configuration with fewer than 2 cycles has no interval;
/// * a 95 % interval whose half-width exceeds [`MAX_RELATIVE_HALF_WIDTH`]
///   of `|mean|` is too wide (not judged for a mean of 0);
/// * two configurations next to each other in mean order whose 95 %
///   intervals overlap cannot be told apart by their intervals.
///
/// Overlapping intervals are a conservative screen, not a test: two means can
/// differ significantly while their intervals overlap a little. The test is
/// [`crate::compare::Comparison`]; this says where more cycles would help.
/// No warning: every configuration is separated from its neighbours.
#[must_use]
pub fn separable(summaries: &[(&str, &Summary)]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (label, s) in summaries {
        match s.ci95 {
            None => warnings.push(format!(
                "config {label}: {} cycle(s) with a finite value, no 95 % interval; run at least 2 \
                 (better 3 or more)",
                s.n
            )),
            Some(ci) => {
                if let Some(rel) = s.relative_half_width()
                    && rel > MAX_RELATIVE_HALF_WIDTH
                {
                    warnings.push(format!(
                        "config {label}: interval ±{:.1} % of the mean is too wide ({} ± {}, \
                         more than ±{:.0} %); more cycles are needed",
                        100.0 * rel,
                        significant(s.mean),
                        significant(ci.half_width()),
                        100.0 * MAX_RELATIVE_HALF_WIDTH
                    ));
                }
            }
        }
    }
    let mut with_interval: Vec<(&str, f64, Interval)> = summaries
        .iter()
        .filter_map(|(label, s)| Some((*label, s.mean, s.ci95?)))
        .collect();
    with_interval.sort_by(|a, b| a.1.total_cmp(&b.1));
    for pair in with_interval.windows(2) {
        let ((a, _, ia), (b, _, ib)) = (pair[0], pair[1]);
        if ia.overlaps(&ib) {
            warnings.push(format!(
                "configs {a} and {b}: 95 % intervals overlap ({} vs {}); more cycles are needed \
                 to tell them apart",
                show(&ia),
                show(&ib)
            ));
        }
    }
    warnings
}

fn show(i: &Interval) -> String {
    format!("[{}, {}]", significant(i.low), significant(i.high))
}

/// `x` with 4 significant digits (at least its integer digits): figures range
/// from 0.0012 J/token to 12000 tokens/s.
fn significant(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (3 - x.abs().log10().floor() as i32).max(0) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn summary_by_hand() {
        // [2, 4, 4, 4, 5, 5, 7, 9]: mean 5, squared deviations sum to 32,
        // sd = √(32/7) = 2.138089935299395, median (4 + 5)/2 = 4.5.
        // 95 % interval: t(0.975, 7) = 2.364624251592784, half-width
        // 2.3646·2.1381/√8 = 1.787487918236209; scipy 1.17.1
        // stats.t.interval(0.95, 7, loc=5, scale=stats.sem(x)) =
        // (3.21251208176379, 6.787487918236209).
        let s = Summary::of(&[5.0, 2.0, 4.0, 4.0, 9.0, 4.0, 5.0, 7.0]).unwrap();
        assert_eq!((s.n, s.dropped), (8, 0));
        assert_eq!((s.mean, s.min, s.max, s.median), (5.0, 2.0, 9.0, 4.5));
        let sd = (32.0f64 / 7.0).sqrt();
        assert!(close(s.sd.unwrap(), sd, 1e-15));
        assert!(close(s.cv.unwrap(), sd / 5.0, 1e-15));
        let ci = s.ci95.unwrap();
        assert!(close(ci.low, 3.212_512_081_763_79, 1e-9), "{ci:?}");
        assert!(close(ci.high, 6.787_487_918_236_209, 1e-9), "{ci:?}");
        assert!(close(
            s.relative_half_width().unwrap(),
            1.787_487_918 / 5.0,
            1e-9
        ));
    }

    #[test]
    fn summary_drops_non_finite_values() {
        // Four cycles of J/token and one that failed: scipy 1.17.1 on
        // [10.2, 9.8, 10.1, 10.0]: mean 10.025, sd 0.17078251276599268,
        // interval (9.7532469116204, 10.296753088379601).
        let s = Summary::of(&[10.2, f64::NAN, 9.8, 10.1, f64::INFINITY, 10.0]).unwrap();
        assert_eq!((s.n, s.dropped), (4, 2));
        assert!(close(s.mean, 10.025, 1e-12));
        assert!(close(s.sd.unwrap(), 0.170_782_512_765_992_68, 1e-12));
        assert_eq!(s.median, 10.05);
        let ci = s.ci95.unwrap();
        assert!(close(ci.low, 9.753_246_911_620_4, 1e-9));
        assert!(close(ci.high, 10.296_753_088_379_601, 1e-9));
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn summary_edges() {
        // One cycle: a mean but no spread.
        let s = Summary::of(&[3.0]).unwrap();
        assert_eq!(
            (s.n, s.mean, s.median, s.sd, s.cv, s.ci95),
            (1, 3.0, 3.0, None, None, None)
        );
        // Mean 0: no CV, but an interval.
        let s = Summary::of(&[-1.0, 1.0]).unwrap();
        assert_eq!(s.cv, None);
        assert!(s.ci95.is_some_and(|ci| ci.contains(0.0)));
        assert_eq!(s.relative_half_width(), None);
        // Identical values: a zero-width interval.
        let s = Summary::of(&[2.5; 4]).unwrap();
        assert_eq!(s.sd, Some(0.0));
        assert_eq!(
            s.ci95,
            Some(Interval {
                low: 2.5,
                high: 2.5
            })
        );
    }

    #[test]
    fn summary_serialises_with_snake_case_names() {
        let s = Summary::of(&[1.0, 2.0, 3.0]).unwrap();
        let v = serde_json::to_value(&s).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "ci95", "cv", "dropped", "max", "mean", "median", "min", "n", "sd"
            ]
        );
        assert!(v["ci95"]["low"].is_f64() && v["ci95"]["high"].is_f64());
        let back: Summary = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        // n = 1: the missing figures are nulls, not NaN (which JSON lacks).
        let v = serde_json::to_value(Summary::of(&[1.0]).unwrap()).unwrap();
        assert!(v["sd"].is_null() && v["cv"].is_null() && v["ci95"].is_null());
    }

    #[test]
    fn quantiles_like_numpy() {
        // numpy.quantile([1, 2, 3, 4, 10], [0, 0.5, 0.9, 0.99, 1]) =
        // [1, 3, 7.6, 9.76, 10]
        let xs = [1.0, 2.0, 3.0, 4.0, 10.0];
        for (q, want) in [
            (0.0, 1.0),
            (0.5, 3.0),
            (0.9, 7.6),
            (0.99, 9.76),
            (1.0, 10.0),
        ] {
            assert!(close(quantile_sorted(&xs, q).unwrap(), want, 1e-12), "{q}");
        }
        assert!(close(
            quantile(&[10.0, 4.0, f64::NAN, 1.0, 3.0, 2.0], 0.9),
            7.6,
            1e-12
        ));
        assert_eq!(quantile_sorted(&xs, 1.5), None);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn outliers_by_hand() {
        // [10.0, 10.2, 9.9, 10.1, 10.0, 13.0]: median 10.05; |deviations|
        // 0.05, 0.15, 0.15, 0.05, 0.05, 2.95 → MAD 0.1;
        // M(13.0) = 0.6745·2.95/0.1 = 19.9, M(10.2) = 0.6745·0.15/0.1 = 1.01.
        assert_eq!(outliers(&[10.0, 10.2, 9.9, 10.1, 10.0, 13.0]), [5]);
        // Near the threshold: [1, 2, 3, 4, 5, x], median 3.5, MAD 1.5.
        // x = 12: M = 0.6745·8.5/1.5 = 3.822 > 3.5; x = 11: 0.6745·7.5/1.5 = 3.3725.
        assert_eq!(outliers(&[1.0, 2.0, 3.0, 4.0, 5.0, 12.0]), [5]);
        assert!(outliers(&[1.0, 2.0, 3.0, 4.0, 5.0, 11.0]).is_empty());
        // Both sides, and a NaN that keeps its index out of the answer.
        assert_eq!(
            outliers(&[-20.0, 1.0, f64::NAN, 2.0, 3.0, 4.0, 5.0, 30.0]),
            [0, 7]
        );
        // Too few values.
        assert!(outliers(&[1.0, 100.0]).is_empty());
    }

    #[test]
    fn outliers_when_mad_is_zero() {
        // [5, 5, 5, 5, 5, 6]: MAD 0; MeanAD 1/6, M(6) = 1/(1.253314/6) = 4.79.
        assert_eq!(outliers(&[5.0, 5.0, 5.0, 5.0, 5.0, 6.0]), [5]);
        // [5, 5, 5, 6, 6, 5, 5]: MAD 0; MeanAD 2/7, M(6) = 1/(1.253314·2/7) = 2.79.
        assert!(outliers(&[5.0, 5.0, 5.0, 6.0, 6.0, 5.0, 5.0]).is_empty());
        // All equal.
        assert!(outliers(&[5.0; 6]).is_empty());
    }

    fn summary(mean: f64, half: f64, n: usize) -> Summary {
        Summary {
            n,
            dropped: 0,
            mean,
            sd: Some(1.0),
            cv: None,
            min: mean,
            max: mean,
            median: mean,
            ci95: Some(Interval {
                low: mean - half,
                high: mean + half,
            }),
        }
    }

    #[test]
    fn separable_warnings() {
        // Sorted by mean: b 0.50 [0.49, 0.51], a 0.52 [0.505, 0.535] (overlaps b),
        // c 0.60 [0.59, 0.61] (clear of a), d 2.0 ± 0.3 (±15 %, too wide; clear of c).
        let (a, b, c, d) = (
            summary(0.52, 0.015, 5),
            summary(0.50, 0.01, 5),
            summary(0.60, 0.01, 5),
            summary(2.0, 0.3, 5),
        );
        let one = Summary::of(&[1.0]).unwrap();
        let w = separable(&[("a", &a), ("b", &b), ("c", &c), ("d", &d), ("e", &one)]);
        assert_eq!(
            w,
            [
                "config d: interval ±15.0 % of the mean is too wide (2.000 ± 0.3000, more than \
                 ±10 %); more cycles are needed",
                "config e: 1 cycle(s) with a finite value, no 95 % interval; run at least 2 \
                 (better 3 or more)",
                "configs b and a: 95 % intervals overlap ([0.4900, 0.5100] vs [0.5050, 0.5350]); \
                 more cycles are needed to tell them apart",
            ]
        );
        // Well separated and tight: nothing to say.
        assert!(separable(&[("b", &b), ("c", &c)]).is_empty());
        // Exactly 10 % (5 ± 0.5, exact in binary) is not "more than 10 %".
        assert!(separable(&[("x", &summary(5.0, 0.5, 3))]).is_empty());
    }

    #[test]
    fn significant_digits() {
        assert_eq!(significant(0.001_234_56), "0.001235");
        assert_eq!(significant(12.345_6), "12.35");
        assert_eq!(significant(12_345.6), "12346");
        assert_eq!(significant(-0.5), "-0.5000");
        assert_eq!(significant(0.0), "0");
    }
}
