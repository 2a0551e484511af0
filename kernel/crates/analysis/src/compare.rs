//! Is configuration B's figure different from A's? Welch's t-test over the
//! two sets of cycles (`llem compare A B`).
//!
//! Welch's rather than Student's pooled test: two configurations (batch
//! sizes, engines) need not have the same spread across cycles, and Welch's
//! test loses almost nothing when they do.

use serde::{Deserialize, Serialize};

use crate::cycles::{Interval, Summary};
use crate::student_t::{student_t_quantile, student_t_two_sided_p};

/// Significance level of [`Comparison::significant`]: 5 %, two-sided,
/// matching the 95 % intervals.
pub const ALPHA: f64 = 0.05;

/// Welch's t-test of B against A, serialised with these snake_case names.
/// Differences are B − A: a negative `difference` in J/token means B spends
/// less energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Finite values of A and B (non-finite ones are left out, as in
    /// [`Summary::of`]).
    pub n_a: usize,
    pub n_b: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// `mean_b − mean_a`.
    pub difference: f64,
    /// `difference / |mean_a|` (−0.1 = B is 10 % lower); `None` when
    /// `mean_a` is 0.
    pub relative_difference: Option<f64>,
    /// `difference / se`, `se = √(s_a²/n_a + s_b²/n_b)`. Note the sign:
    /// scipy's `ttest_ind(a, b)` reports A − B, i.e. `−t_statistic`.
    pub t_statistic: f64,
    /// Welch–Satterthwaite degrees of freedom
    /// `se⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1))`.
    pub df: f64,
    /// 95 % confidence interval of `difference`:
    /// `difference ± t(0.975, df)·se`.
    pub ci95: Interval,
    /// Two-sided p-value: the chance of a |t| at least this large if the
    /// means were equal.
    pub p_value: f64,
    /// `p_value < ALPHA` (5 %); equivalently `ci95` excludes 0.
    pub significant: bool,
}

impl Comparison {
    /// Welch's test of `b` against `a`. `None` when either has fewer than
    /// 2 finite values (no spread to judge by), or when both have zero
    /// spread: the t statistic is then undefined (scipy returns NaN), and
    /// identical cycles are better compared directly.
    #[must_use]
    pub fn of(a: &[f64], b: &[f64]) -> Option<Comparison> {
        let (sa, sb) = (Summary::of(a)?, Summary::of(b)?);
        let (va, vb) = (sa.sd?.powi(2) / sa.n as f64, sb.sd?.powi(2) / sb.n as f64);
        let se2 = va + vb;
        if se2 == 0.0 || !se2.is_finite() {
            return None;
        }
        let se = se2.sqrt();
        let df = se2 * se2 / (va * va / (sa.n - 1) as f64 + vb * vb / (sb.n - 1) as f64);
        let difference = sb.mean - sa.mean;
        let t_statistic = difference / se;
        let p_value = student_t_two_sided_p(t_statistic, df)?;
        let half = student_t_quantile(0.975, df)? * se;
        Some(Comparison {
            n_a: sa.n,
            n_b: sb.n,
            mean_a: sa.mean,
            mean_b: sb.mean,
            difference,
            relative_difference: (sa.mean != 0.0).then(|| difference / sa.mean.abs()),
            t_statistic,
            df,
            ci95: Interval {
                low: difference - half,
                high: difference + half,
            },
            p_value,
            significant: p_value < ALPHA,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(a, b, t, p, df, ci_low, ci_high)` with t and the interval from scipy
    /// 1.17.1, which reports A − B:
    ///   r = stats.ttest_ind(a, b, equal_var=False); ci = r.confidence_interval(0.95)
    ///   print(r.statistic, r.pvalue, r.df, ci.low, ci.high)
    /// Ours is B − A: t and the interval change sign.
    type Case = (&'static [f64], &'static [f64], f64, f64, f64, f64, f64);
    const SCIPY: [Case; 3] = [
        // J/token, B clearly lower.
        (
            &[0.512, 0.498, 0.505, 0.520, 0.509],
            &[0.471, 0.480, 0.468, 0.475, 0.490, 0.472],
            6.703_656_778_368_956_5,
            0.000_111_488_285_339_901_37,
            8.559_078_507_009_31,
            0.021_644_070_010_227_04,
            0.043_955_929_989_772_95,
        ),
        // tokens/s, A far noisier than B, no difference to speak of.
        (
            &[102.0, 98.5, 110.2, 95.1],
            &[104.3, 101.9, 103.0, 102.2, 103.8, 100.9, 102.5],
            -0.369_350_015_128_438_6,
            0.735_591_900_687_453_6,
            3.109_650_537_473_313,
            -11.403_863_159_284_787,
            8.989_577_444_999_076,
        ),
        // Two and three cycles.
        (
            &[1.0, 3.0],
            &[2.0, 2.5, 7.0],
            -0.976_092_160_357_725_2,
            0.401_735_295_692_761_2,
            2.966_798_491_676_630_3,
            -7.848_746_360_694_156,
            4.182_079_694_027_488,
        ),
    ];

    #[test]
    fn welch_matches_scipy() {
        for (i, &(a, b, t, p, df, low, high)) in SCIPY.iter().enumerate() {
            let c = Comparison::of(a, b).unwrap();
            // Relative 1e-9 (absolute below 1e-3): well inside the 1e-6 asked for.
            let close = |x: f64, y: f64| (x - y).abs() < 1e-9 * y.abs().max(1e-3);
            assert!(
                close(c.t_statistic, -t),
                "{i}: t {} vs {}",
                c.t_statistic,
                -t
            );
            assert!(close(c.p_value, p), "{i}: p {} vs {p}", c.p_value);
            assert!(close(c.df, df), "{i}: df {} vs {df}", c.df);
            assert!(
                close(c.ci95.low, -high),
                "{i}: {:?} vs ({}, {})",
                c.ci95,
                -high,
                -low
            );
            assert!(
                close(c.ci95.high, -low),
                "{i}: {:?} vs ({}, {})",
                c.ci95,
                -high,
                -low
            );
            assert_eq!(c.significant, p < 0.05);
            // The interval excludes 0 exactly when the test is significant.
            assert_eq!(c.significant, !c.ci95.contains(0.0));
        }
    }

    #[test]
    fn welch_by_hand() {
        // a = [1, 3]: mean 2, s² 2; b = [2, 2.5, 7]: mean 23/6, s² = 7.58333.
        // se² = 2/2 + 7.58333/3 = 3.52778; t = (23/6 − 2)/√3.52778 = 0.97609.
        let c = Comparison::of(&[1.0, 3.0], &[2.0, 2.5, 7.0]).unwrap();
        assert_eq!((c.n_a, c.n_b, c.mean_a), (2, 3, 2.0));
        assert!((c.difference - 11.0 / 6.0).abs() < 1e-12);
        assert!((c.relative_difference.unwrap() - 11.0 / 12.0).abs() < 1e-12);
        let se2 = 1.0 + (91.0 / 12.0) / 3.0;
        assert!((c.t_statistic - (11.0 / 6.0) / f64::sqrt(se2)).abs() < 1e-12);
        assert!(!c.significant);
    }

    #[test]
    fn welch_edges() {
        // Too few cycles.
        assert_eq!(Comparison::of(&[1.0], &[2.0, 3.0]), None);
        assert_eq!(Comparison::of(&[1.0, f64::NAN], &[2.0, 3.0]), None);
        // No spread on either side.
        assert_eq!(Comparison::of(&[1.0, 1.0], &[2.0, 2.0]), None);
        // Spread on one side only: fine, df = n − 1 of that side.
        let c = Comparison::of(&[1.0, 1.0, 1.0], &[2.0, 3.0, 4.0]).unwrap();
        assert!((c.df - 2.0).abs() < 1e-12);
        // Mean of A zero: no relative difference.
        let c = Comparison::of(&[-1.0, 1.0], &[2.0, 3.0]).unwrap();
        assert_eq!(c.relative_difference, None);
    }
}
