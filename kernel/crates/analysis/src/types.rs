//! Plain inputs shared by the modules: energy per time interval and request
//! timings. Every time is CLOCK_MONOTONIC in nanoseconds (the sampler's and the
//! workers' clock), so request and energy timestamps compare directly.

use serde::{Deserialize, Serialize};

use crate::AnalysisError;

/// Energy spent in one time interval `[start_ns, end_ns)`, summed over the
/// devices that do not overlap (the run's total, not every zone).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyInterval {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Joules spent between `start_ns` and `end_ns` (≥ 0).
    pub joules: f64,
}

/// Consecutive energy intervals: sorted, non-overlapping, each non-empty;
/// gaps between them are allowed (time without a justified reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergySeries {
    intervals: Vec<EnergyInterval>,
}

impl EnergySeries {
    /// Check and wrap intervals. Refuses an empty or reversed interval,
    /// intervals out of order or overlapping, and negative or non-finite
    /// joules: each is a bug upstream, and the maths below would hide it.
    pub fn new(intervals: Vec<EnergyInterval>) -> Result<Self, AnalysisError> {
        for (i, iv) in intervals.iter().enumerate() {
            if iv.end_ns <= iv.start_ns {
                return Err(AnalysisError::Input(format!(
                    "energy interval {i} is empty or reversed ({} → {} ns)",
                    iv.start_ns, iv.end_ns
                )));
            }
            if !iv.joules.is_finite() || iv.joules < 0.0 {
                return Err(AnalysisError::Input(format!(
                    "energy interval {i} has {} J; energy must be finite and ≥ 0",
                    iv.joules
                )));
            }
            if i > 0 && iv.start_ns < intervals[i - 1].end_ns {
                return Err(AnalysisError::Input(format!(
                    "energy interval {i} starts at {} ns, before interval {} ends at {} ns: \
                     intervals must be sorted and must not overlap",
                    iv.start_ns,
                    i - 1,
                    intervals[i - 1].end_ns
                )));
            }
        }
        Ok(Self { intervals })
    }

    /// Intervals on a common time grid from several devices' cumulative
    /// energy: each device is `(t_ns, cumulative_j)` in time order, already
    /// corrected for wraps and resets (non-decreasing), and is interpolated
    /// linearly at the grid points; an interval's joules are the sum over
    /// devices of the increase between its two grid points. A grid interval
    /// that some device does not cover (before its first or after its last
    /// reading) is left out, i.e. becomes a gap. Devices sampled at their own
    /// instants are thus summed without pretending their readings coincide.
    pub fn from_cumulative(
        devices: &[Vec<(u64, f64)>],
        grid: &[u64],
    ) -> Result<Self, AnalysisError> {
        if devices.is_empty() {
            return Err(AnalysisError::Input("no device to sum".into()));
        }
        for (d, series) in devices.iter().enumerate() {
            for (i, w) in series.windows(2).enumerate() {
                let finite = w[0].1.is_finite() && w[1].1.is_finite();
                if w[1].0 <= w[0].0 || !finite || w[1].1 < w[0].1 {
                    return Err(AnalysisError::Input(format!(
                        "device {d}: readings {i} and {} are not strictly later in time with \
                         finite, non-decreasing cumulative energy ({:?} then {:?})",
                        i + 1,
                        w[0],
                        w[1]
                    )));
                }
            }
        }
        if grid.windows(2).any(|w| w[1] <= w[0]) {
            return Err(AnalysisError::Input(
                "the time grid must be strictly increasing".into(),
            ));
        }
        let at = |series: &[(u64, f64)], t: u64| -> Option<f64> {
            let j = series.partition_point(|p| p.0 < t);
            let hi = series.get(j)?;
            if hi.0 == t {
                return Some(hi.1);
            }
            let lo = series.get(j.checked_sub(1)?)?;
            Some(lo.1 + (hi.1 - lo.1) * (t - lo.0) as f64 / (hi.0 - lo.0) as f64)
        };
        let mut intervals = Vec::new();
        for w in grid.windows(2) {
            let mut joules = 0.0;
            let mut covered = true;
            for series in devices {
                match (at(series, w[0]), at(series, w[1])) {
                    (Some(a), Some(b)) => joules += b - a,
                    _ => covered = false,
                }
            }
            if covered {
                intervals.push(EnergyInterval {
                    start_ns: w[0],
                    end_ns: w[1],
                    joules,
                });
            }
        }
        Self::new(intervals)
    }

    pub fn intervals(&self) -> &[EnergyInterval] {
        &self.intervals
    }

    /// Sum of every interval's joules.
    pub fn total_j(&self) -> f64 {
        self.intervals.iter().map(|iv| iv.joules).sum()
    }

    /// First start to last end, `None` when empty.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((
            self.intervals.first()?.start_ns,
            self.intervals.last()?.end_ns,
        ))
    }

    /// The part of the series inside `[a_ns, b_ns]`: intervals cut at the
    /// edges keep joules in proportion to the time kept (power constant inside
    /// an interval), as [`EnergySeries::energy_between`] assumes. For
    /// attributing only a sub-window, e.g. the steady state.
    pub fn clip(&self, a_ns: u64, b_ns: u64) -> Self {
        let intervals = self
            .intervals
            .iter()
            .filter_map(|iv| {
                let lo = iv.start_ns.max(a_ns);
                let hi = iv.end_ns.min(b_ns);
                (hi > lo).then(|| EnergyInterval {
                    start_ns: lo,
                    end_ns: hi,
                    joules: iv.joules * (hi - lo) as f64 / (iv.end_ns - iv.start_ns) as f64,
                })
            })
            .collect();
        Self { intervals }
    }

    /// Energy in `[a_ns, b_ns]`, taking a part of an interval in proportion to
    /// the time it overlaps (power assumed constant inside one interval).
    /// `None` when `[a, b]` is not wholly covered by intervals (a gap, or
    /// outside the series) or when `b ≤ a`: a figure over missing time would
    /// be an under-count.
    pub fn energy_between(&self, a_ns: u64, b_ns: u64) -> Option<f64> {
        if b_ns <= a_ns {
            return None;
        }
        let mut covered = 0u64;
        let mut joules = 0.0;
        for iv in &self.intervals {
            let lo = iv.start_ns.max(a_ns);
            let hi = iv.end_ns.min(b_ns);
            if hi > lo {
                covered += hi - lo;
                joules += iv.joules * (hi - lo) as f64 / (iv.end_ns - iv.start_ns) as f64;
            }
        }
        (covered == b_ns - a_ns).then_some(joules)
    }
}

/// Output tokens that arrived together at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEvent {
    pub t_ns: u64,
    /// Tokens that arrived at `t_ns` (a streamed chunk may carry several).
    pub n: u32,
}

/// One request as the load generator or the worker saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestTiming {
    /// The request's id in the run (e.g. its send index).
    pub id: String,
    /// When it was sent (server) or submitted (offline worker).
    pub send_ns: u64,
    /// When its first output token arrived; `None` when none did.
    pub first_token_ns: Option<u64>,
    /// Every output-token arrival, in time order; the first is the first token.
    pub tokens: Vec<TokenEvent>,
    /// When it finished (last chunk, `[DONE]`, or when a failure was noticed).
    pub end_ns: u64,
    pub input_tokens: Option<u32>,
    /// The request's output length (usage or worker count). When the events'
    /// `n` are known per event this equals their sum.
    pub output_tokens: Option<u32>,
    pub success: bool,
}

impl RequestTiming {
    /// Token events from chunk arrival times when only the request's total is
    /// known (server streams without per-chunk usage): `output_tokens` spread
    /// as evenly as whole numbers allow, the remainder one each on the
    /// earliest chunks. No chunks or no count gives no events.
    pub fn events_from_chunks(chunk_ns: &[u64], output_tokens: Option<u32>) -> Vec<TokenEvent> {
        let (Some(total), Ok(k)) = (output_tokens, u32::try_from(chunk_ns.len())) else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let (base, extra) = (total / k, total % k);
        chunk_ns
            .iter()
            .enumerate()
            .map(|(i, &t_ns)| TokenEvent {
                t_ns,
                n: base + u32::from((i as u32) < extra),
            })
            .filter(|e| e.n > 0)
            .collect()
    }

    /// Output tokens whose arrival lies in `[a_ns, b_ns]` (both ends included).
    pub fn tokens_between(&self, a_ns: u64, b_ns: u64) -> u64 {
        self.tokens
            .iter()
            .filter(|e| e.t_ns >= a_ns && e.t_ns <= b_ns)
            .map(|e| u64::from(e.n))
            .sum()
    }

    /// Sum of the token events' counts.
    pub fn event_tokens(&self) -> u64 {
        self.tokens.iter().map(|e| u64::from(e.n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start_ns: u64, end_ns: u64, joules: f64) -> EnergyInterval {
        EnergyInterval {
            start_ns,
            end_ns,
            joules,
        }
    }

    #[test]
    fn energy_between_takes_parts_of_intervals_pro_rata() -> Result<(), AnalysisError> {
        // [0,100) 10 J, [100,200) 30 J, gap, [300,400) 5 J.
        let s = EnergySeries::new(vec![
            iv(0, 100, 10.0),
            iv(100, 200, 30.0),
            iv(300, 400, 5.0),
        ])?;
        // [50,150]: half of 10 J + half of 30 J = 5 + 15 = 20 J.
        assert_eq!(s.energy_between(50, 150), Some(20.0));
        // [0,200]: 10 + 30 = 40 J.
        assert_eq!(s.energy_between(0, 200), Some(40.0));
        // [150,350] crosses the gap [200,300): not covered.
        assert_eq!(s.energy_between(150, 350), None);
        // Before the series, or empty.
        assert_eq!(s.energy_between(350, 450), None);
        assert_eq!(s.energy_between(10, 10), None);
        assert_eq!(s.total_j(), 45.0);
        // Clipped to [50, 350]: [50,100) 5 J, [100,200) 30 J, [300,350) 2.5 J.
        let c = s.clip(50, 350);
        assert_eq!(
            c.intervals(),
            &[iv(50, 100, 5.0), iv(100, 200, 30.0), iv(300, 350, 2.5)]
        );
        assert!(s.clip(200, 300).intervals().is_empty());
        assert_eq!(s.span(), Some((0, 400)));
        Ok(())
    }

    #[test]
    fn devices_are_summed_on_a_common_grid() -> Result<(), AnalysisError> {
        // A: (0, 0 J), (10, 100), (20, 300); B: (5, 0), (15, 50), (25, 60).
        // Interpolated: A(5) = 50, A(10) = 100, A(15) = 200, A(20) = 300;
        //               B(5) = 0,  B(10) = 25,  B(15) = 50,  B(20) = 55.
        // [5,10): 50 + 25 = 75; [10,15): 100 + 25 = 125; [15,20): 100 + 5 = 105.
        // [0,5): B has no reading before 5 → a gap.
        let a = vec![(0, 0.0), (10, 100.0), (20, 300.0)];
        let b = vec![(5, 0.0), (15, 50.0), (25, 60.0)];
        let s = EnergySeries::from_cumulative(&[a.clone(), b.clone()], &[0, 5, 10, 15, 20])?;
        assert_eq!(
            s.intervals(),
            &[iv(5, 10, 75.0), iv(10, 15, 125.0), iv(15, 20, 105.0)]
        );
        // A decreasing counter or an unsorted grid is refused.
        let bad = vec![(0, 10.0), (10, 5.0)];
        assert!(EnergySeries::from_cumulative(&[bad], &[0, 10]).is_err());
        let nan = vec![(0, f64::NAN), (10, 5.0)];
        assert!(EnergySeries::from_cumulative(&[nan], &[0, 10]).is_err());
        assert!(EnergySeries::from_cumulative(&[a], &[10, 5]).is_err());
        assert!(EnergySeries::from_cumulative(&[], &[0, 5]).is_err());
        Ok(())
    }

    #[test]
    fn bad_intervals_are_refused() {
        assert!(EnergySeries::new(vec![iv(10, 10, 1.0)]).is_err());
        assert!(EnergySeries::new(vec![iv(0, 10, -1.0)]).is_err());
        assert!(EnergySeries::new(vec![iv(0, 10, f64::NAN)]).is_err());
        assert!(EnergySeries::new(vec![iv(0, 10, 1.0), iv(5, 20, 1.0)]).is_err());
        assert!(EnergySeries::new(vec![iv(0, 10, 1.0), iv(10, 20, 1.0)]).is_ok());
    }

    #[test]
    fn chunk_events_spread_the_total() {
        // 7 tokens over 3 chunks: 7 / 3 = 2 rem 1 → 3, 2, 2.
        let ev = RequestTiming::events_from_chunks(&[10, 20, 30], Some(7));
        let ns: Vec<u32> = ev.iter().map(|e| e.n).collect();
        assert_eq!(ns, vec![3, 2, 2]);
        // 2 tokens over 3 chunks: 1, 1, 0 → the empty chunk is dropped.
        assert_eq!(
            RequestTiming::events_from_chunks(&[10, 20, 30], Some(2)).len(),
            2
        );
        assert!(RequestTiming::events_from_chunks(&[10], None).is_empty());
        assert!(RequestTiming::events_from_chunks(&[], Some(3)).is_empty());
    }
}
