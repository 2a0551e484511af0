//! Energy–latency Pareto frontiers.
//!
//! The vertical figure (energy per output token) is always minimised; the
//! horizontal one is minimised (TTFT, ITL) or maximised (throughput). A point
//! is on the frontier when no other point is at least as good on both figures
//! and strictly better on one. Equal points do not dominate each other: all of
//! them are on the frontier or none is.

/// Which way the horizontal figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Minimise,
    Maximise,
}

/// `a` dominates `b`: no worse on both figures, strictly better on one.
#[must_use]
pub fn dominates(a: (f64, f64), b: (f64, f64), x_goal: Goal) -> bool {
    let (ax, bx) = match x_goal {
        Goal::Minimise => (a.0, b.0),
        Goal::Maximise => (-a.0, -b.0),
    };
    ax <= bx && a.1 <= b.1 && (ax < bx || a.1 < b.1)
}

/// Indices of the points on the frontier, in increasing `x`. Points with a
/// non-finite coordinate are never on it (and dominate nothing).
#[must_use]
pub fn frontier(points: &[(f64, f64)], x_goal: Goal) -> Vec<usize> {
    let finite = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let mut on: Vec<usize> = (0..points.len())
        .filter(|&i| finite(&points[i]))
        .filter(|&i| {
            !points
                .iter()
                .enumerate()
                .any(|(j, q)| j != i && finite(q) && dominates(*q, points[i], x_goal))
        })
        .collect();
    on.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[a].1.total_cmp(&points[b].1))
            .then(a.cmp(&b))
    });
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_example_with_ties_and_dominated_points() {
        // (latency ms, J/token)
        let points = [
            (10.0, 5.0),     // 0: fastest, costly — on
            (20.0, 3.0),     // 1: on
            (20.0, 4.0),     // 2: same latency as 1, costs more — dominated by 1
            (30.0, 3.0),     // 3: same cost as 1, slower — dominated by 1
            (40.0, 1.0),     // 4: cheapest — on
            (25.0, 2.0),     // 5: on
            (25.0, 2.0),     // 6: equal to 5 — on too (ties do not dominate)
            (50.0, 6.0),     // 7: dominated by everything
            (f64::NAN, 0.1), // 8: not finite — never on
        ];
        assert_eq!(frontier(&points, Goal::Minimise), [0, 1, 5, 6, 4]);
    }

    #[test]
    fn throughput_is_maximised() {
        // (tokens/s, J/token)
        let points = [(100.0, 2.0), (200.0, 1.0), (150.0, 0.5), (50.0, 0.5)];
        // 1 dominates 0; 2 dominates 3 (same cost, more throughput).
        assert_eq!(frontier(&points, Goal::Maximise), [2, 1]);
        assert!(dominates((200.0, 1.0), (100.0, 2.0), Goal::Maximise));
        assert!(!dominates((100.0, 2.0), (200.0, 1.0), Goal::Maximise));
    }

    #[test]
    fn one_point_dominating_all_is_the_whole_frontier() {
        let points = [(5.0, 5.0), (1.0, 1.0), (2.0, 3.0)];
        assert_eq!(frontier(&points, Goal::Minimise), [1]);
        assert!(frontier(&[], Goal::Minimise).is_empty());
        assert!(!dominates((1.0, 1.0), (1.0, 1.0), Goal::Minimise));
    }
}
