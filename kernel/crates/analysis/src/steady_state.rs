//! ML.ENERGY's steady-state window (server mode) and energy per output token
//! over it and over the whole measured window.
//!
//! The rule, as `mlenergy/llm/benchmark.py` (`RequestTracker`) applies it with
//! `B = max_num_seqs` and `N` requests sent:
//!
//! * **start**: the moment the `B`-th request receives its first output token
//!   (the server has ramped up past the initial prefill burst);
//! * **end**: the moment the `(N − B − 1)`-th request finishes (the queue has
//!   drained to about `B` and ramp-down is about to begin; the `− 1` ends the
//!   window slightly early so no ramp-down is included). Failed requests count
//!   as finished, as in ML.ENERGY (its tracker counts them in a `finally`).
//!
//! Energy per token = energy in the window / output tokens that *arrived* in
//! the window (ML.ENERGY counts the tokens streamed between the two moments).
//! Per-request energy under this method is that J/token × the request's output
//! length ([`crate::attribution`] reports it beside the interval attribution).

use serde::{Deserialize, Serialize};

use crate::RequestTiming;

/// Words for result.json and the summary: which rule the window follows.
pub const DEFINITION: &str = "ML.ENERGY steady state: from the max_num_seqs-th first token \
     to the (num_requests - max_num_seqs - 1)-th finished request (failures count as finished)";

/// Figures over one time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowFigures {
    /// Window start, CLOCK_MONOTONIC ns.
    pub start_ns: u64,
    /// Window end, CLOCK_MONOTONIC ns.
    pub end_ns: u64,
    pub duration_s: f64,
    /// Energy over `[start_ns, end_ns]`, summed over the run's non-overlapping
    /// devices; `None` when the energy source does not cover the whole window.
    pub energy_j: Option<f64>,
    /// Output tokens, of every request given, whose arrival lies in
    /// `[start_ns, end_ns]` (requests that straddle an edge count only their
    /// tokens inside).
    pub output_tokens: u64,
    /// `energy_j / output_tokens`; `None` without energy or without tokens.
    pub j_per_token: Option<f64>,
    /// `output_tokens / duration_s`.
    pub output_tokens_per_s: Option<f64>,
    /// `energy_j / duration_s`.
    pub mean_power_w: Option<f64>,
    /// Time-averaged number of requests between send and end (the client's
    /// view: queued requests included) over the window.
    pub mean_requests_in_flight: Option<f64>,
}

/// The steady-state window and how it was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyWindow {
    #[serde(flatten)]
    pub figures: WindowFigures,
    /// `B`: the start is the `B`-th first token.
    pub max_num_seqs: u32,
    /// `N`: requests given (the measured phase's, warm-up excluded).
    pub num_requests: u32,
    /// `N − B − 1`: the end is this many-th finished request.
    pub finished_at_end: u32,
}

/// Which J/token the summary leads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headline {
    /// ML.ENERGY's figure: the steady state exists and has a J/token.
    SteadyState,
    /// No usable steady state: the whole measured window.
    MeasuredWindow,
}

/// J/token over the steady state and over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyStateReport {
    /// The rule followed ([`DEFINITION`]).
    pub definition: String,
    pub steady_state: Option<SteadyWindow>,
    /// Why there is no steady-state figure, when there is none (or it has no J/token).
    pub steady_state_missing: Option<String>,
    /// The whole measured window (warm-up excluded), every request's tokens in it.
    pub measured_window: WindowFigures,
    pub headline: Headline,
    /// The headline J/token (`None` only when neither window has one).
    pub headline_j_per_token: Option<f64>,
    /// Caveats worth printing (e.g. a client concurrency below `max_num_seqs`).
    pub notes: Vec<String>,
}

/// Find the steady state and compute both windows' figures.
///
/// * `requests`: the measured requests (warm-up excluded), each with its token
///   arrivals.
/// * `max_num_seqs`: the server's batch limit `B`; `None` (unknown, or offline
///   mode) gives no steady state.
/// * `max_concurrency`: the client's limit, if any — only used to warn that a
///   limit below `B` never fills the batch the definition assumes.
/// * `measured_window`: `(start_ns, end_ns)` of the run's measured window.
/// * `energy(a, b)`: joules over `[a, b]`, `None` where not covered (e.g.
///   [`crate::EnergySeries::energy_between`] or the sampler's windows).
pub fn analyse(
    requests: &[RequestTiming],
    max_num_seqs: Option<u32>,
    max_concurrency: Option<u32>,
    measured_window: (u64, u64),
    energy: impl Fn(u64, u64) -> Option<f64>,
) -> SteadyStateReport {
    let measured = figures(requests, measured_window.0, measured_window.1, &energy);
    let mut notes = Vec::new();
    if let (Some(b), Some(c)) = (max_num_seqs, max_concurrency)
        && c < b
    {
        notes.push(format!(
            "the client's max_concurrency {c} is below max_num_seqs {b}: the server's batch is \
             never full, so the steady state is not ML.ENERGY's full-batch regime"
        ));
    }
    let (steady_state, mut missing) = match find_window(requests, max_num_seqs) {
        Ok(w) => {
            let (start, end, b, n, k) = w;
            let f = figures(requests, start, end, &energy);
            (
                Some(SteadyWindow {
                    figures: f,
                    max_num_seqs: b,
                    num_requests: n,
                    finished_at_end: k,
                }),
                None,
            )
        }
        Err(reason) => (None, Some(reason)),
    };
    let steady_j = steady_state.as_ref().and_then(|s| s.figures.j_per_token);
    if let (Some(s), None) = (&steady_state, steady_j) {
        missing = Some(if s.figures.energy_j.is_none() {
            "the energy readings do not cover the steady-state window".to_owned()
        } else {
            "no output token arrived inside the steady-state window".to_owned()
        });
    }
    let (headline, headline_j_per_token) = match steady_j {
        Some(j) => (Headline::SteadyState, Some(j)),
        None => (Headline::MeasuredWindow, measured.j_per_token),
    };
    SteadyStateReport {
        definition: DEFINITION.to_owned(),
        steady_state,
        steady_state_missing: missing,
        measured_window: measured,
        headline,
        headline_j_per_token,
        notes,
    }
}

/// `(start, end, B, N, N − B − 1)` or why there is no window.
fn find_window(
    requests: &[RequestTiming],
    max_num_seqs: Option<u32>,
) -> Result<(u64, u64, u32, u32, u32), String> {
    let b = max_num_seqs.ok_or_else(|| {
        "max_num_seqs is unknown (offline mode, or the engine does not say), so ML.ENERGY's \
         steady state is undefined"
            .to_owned()
    })?;
    if b == 0 {
        return Err("max_num_seqs is 0".to_owned());
    }
    let n = u32::try_from(requests.len()).map_err(|_| "too many requests".to_owned())?;
    // N − B − 1 finished requests must be at least one.
    let k = match n.checked_sub(b).and_then(|x| x.checked_sub(1)) {
        Some(k) if k >= 1 => k,
        _ => {
            return Err(format!(
                "{n} requests with max_num_seqs {b}: a steady state needs at least \
                 max_num_seqs + 2 = {} requests",
                u64::from(b) + 2
            ));
        }
    };
    let mut firsts: Vec<u64> = requests.iter().filter_map(|r| r.first_token_ns).collect();
    firsts.sort_unstable();
    let Some(&start) = firsts.get(b as usize - 1) else {
        return Err(format!(
            "only {} of {n} requests received a first token, fewer than max_num_seqs {b}: the \
             server never ramped up",
            firsts.len()
        ));
    };
    let mut ends: Vec<u64> = requests.iter().map(|r| r.end_ns).collect();
    ends.sort_unstable();
    let end = ends[k as usize - 1];
    if end <= start {
        return Err(format!(
            "ramp-down began before ramp-up ended: the {k}-th request finished at {end} ns, not \
             after the {b}-th first token at {start} ns (too few requests for max_num_seqs {b})"
        ));
    }
    Ok((start, end, b, n, k))
}

fn figures(
    requests: &[RequestTiming],
    start_ns: u64,
    end_ns: u64,
    energy: &impl Fn(u64, u64) -> Option<f64>,
) -> WindowFigures {
    let duration_s = end_ns.saturating_sub(start_ns) as f64 / 1e9;
    let energy_j = energy(start_ns, end_ns);
    let output_tokens: u64 = requests
        .iter()
        .map(|r| r.tokens_between(start_ns, end_ns))
        .sum();
    let per_s = |x: f64| (duration_s > 0.0).then(|| x / duration_s);
    let in_flight_ns: u64 = requests
        .iter()
        .map(|r| {
            let lo = r.send_ns.max(start_ns);
            let hi = r.end_ns.min(end_ns);
            hi.saturating_sub(lo)
        })
        .sum();
    WindowFigures {
        start_ns,
        end_ns,
        duration_s,
        energy_j,
        output_tokens,
        j_per_token: energy_j
            .filter(|_| output_tokens > 0)
            .map(|e| e / output_tokens as f64),
        output_tokens_per_s: per_s(output_tokens as f64),
        mean_power_w: energy_j.and_then(per_s),
        mean_requests_in_flight: per_s(in_flight_ns as f64 / 1e9),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{EnergyInterval, EnergySeries, TokenEvent};

    pub(crate) const MS: u64 = 1_000_000;

    /// A request with one token per listed arrival (times in ms).
    pub(crate) fn req(id: &str, send: u64, tokens: &[u64], end: u64) -> RequestTiming {
        RequestTiming {
            id: id.to_owned(),
            send_ns: send * MS,
            first_token_ns: tokens.first().map(|t| t * MS),
            tokens: tokens
                .iter()
                .map(|&t| TokenEvent { t_ns: t * MS, n: 1 })
                .collect(),
            end_ns: end * MS,
            input_tokens: Some(100),
            output_tokens: Some(tokens.len() as u32),
            success: !tokens.is_empty(),
        }
    }

    /// The scripted server run (ms): six requests, max_num_seqs 2.
    pub(crate) fn schedule() -> Vec<RequestTiming> {
        vec![
            req("r0", 0, &[10, 20, 30], 30),
            req("r1", 0, &[15, 25, 35, 45], 45),
            req("r2", 5, &[32, 42, 52], 52),
            req("r3", 5, &[48, 58, 68], 68),
            req("r4", 10, &[55, 65, 75, 85], 85),
            req("r5", 10, &[70, 80, 90], 95),
        ]
    }

    /// Ten 10-ms intervals over [0, 100] ms holding 1, 2, …, 10 J.
    pub(crate) fn energy() -> EnergySeries {
        let ivs = (0..10u64)
            .map(|i| EnergyInterval {
                start_ns: i * 10 * MS,
                end_ns: (i + 1) * 10 * MS,
                joules: (i + 1) as f64,
            })
            .collect();
        EnergySeries::new(ivs).unwrap_or_else(|e| panic!("{e}"))
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= 1e-12 * b.abs().max(1.0))
    }

    #[test]
    fn scripted_server_run_by_hand() {
        let e = energy();
        let r = analyse(&schedule(), Some(2), None, (0, 100 * MS), |a, b| {
            e.energy_between(a, b)
        });
        // First tokens sorted: 10, 15, 32, 48, 55, 70 → the 2nd (B = 2) is at 15 ms.
        // Ends sorted: 30, 45, 52, 68, 85, 95; N − B − 1 = 6 − 2 − 1 = 3 → the 3rd is 52 ms.
        let s = r.steady_state.as_ref().unwrap_or_else(|| panic!("{r:?}"));
        assert_eq!((s.figures.start_ns, s.figures.end_ns), (15 * MS, 52 * MS));
        assert_eq!(
            (s.max_num_seqs, s.num_requests, s.finished_at_end),
            (2, 6, 3)
        );
        // Tokens in [15, 52]: r0 {20, 30} 2, r1 {15, 25, 35, 45} 4, r2 {32, 42, 52} 3,
        // r3 {48} 1, r4 and r5 none → 10.
        assert_eq!(s.figures.output_tokens, 10);
        // Energy in [15, 52]: half of [10,20) 2 J = 1, then 3 + 4 + 5, then 2/10 of
        // [50,60) 6 J = 1.2 → 14.2 J; 14.2 / 10 = 1.42 J/token.
        assert!(close(s.figures.energy_j, 14.2));
        assert!(close(s.figures.j_per_token, 1.42));
        // 37 ms: 14.2 J / 0.037 s = 383.78… W; 10 / 0.037 = 270.27… tok/s.
        assert!(close(s.figures.mean_power_w, 14.2 / 0.037));
        assert!(close(s.figures.output_tokens_per_s, 10.0 / 0.037));
        // In flight within [15, 52]: r0 15 ms, r1 30, r2..r5 37 each → 193 ms / 37 ms.
        assert!(close(s.figures.mean_requests_in_flight, 193.0 / 37.0));
        // Measured window [0, 100]: 1 + … + 10 = 55 J over all 20 tokens = 2.75 J/token.
        assert!(close(r.measured_window.energy_j, 55.0));
        assert_eq!(r.measured_window.output_tokens, 20);
        assert!(close(r.measured_window.j_per_token, 2.75));
        assert_eq!(r.headline, Headline::SteadyState);
        assert!(close(r.headline_j_per_token, 1.42));
        assert!(r.steady_state_missing.is_none() && r.notes.is_empty());
        // The JSON shape result.json gets: the window's figures flattened beside B, N.
        let j = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(j["headline"], "steady_state");
        assert_eq!(j["steady_state"]["start_ns"], 15 * MS);
        assert_eq!(j["steady_state"]["max_num_seqs"], 2);
        assert_eq!(j["measured_window"]["output_tokens"], 20);
    }

    #[test]
    fn degenerate_schedules_have_no_steady_state_and_say_why() {
        let e = energy();
        let en = |a, b| e.energy_between(a, b);
        let all = schedule();
        // Unknown max_num_seqs (offline): measured window is the headline.
        let r = analyse(&all, None, None, (0, 100 * MS), en);
        assert!(r.steady_state.is_none());
        assert_eq!(r.headline, Headline::MeasuredWindow);
        assert!(close(r.headline_j_per_token, 2.75));
        assert!(
            r.steady_state_missing
                .is_some_and(|m| m.contains("max_num_seqs"))
        );
        // 3 requests, B = 2: N − B − 1 = 0 finished requests → undefined.
        let r = analyse(&all[..3], Some(2), None, (0, 100 * MS), en);
        assert!(
            r.steady_state_missing
                .is_some_and(|m| m.contains("max_num_seqs + 2 = 4"))
        );
        // Fewer requests than max_num_seqs.
        let r = analyse(&all, Some(8), None, (0, 100 * MS), en);
        assert!(r.steady_state.is_none());
        // Five requests, B = 3: start = 3rd first token (32 ms), end = 1st finish (30 ms)
        // → ends before it starts.
        let r = analyse(&all[..5], Some(3), None, (0, 100 * MS), en);
        assert!(
            r.steady_state_missing
                .is_some_and(|m| m.contains("ramp-down"))
        );
        // Failed requests never produce a first token: with r1, r2, r3 failed only 3 of 6
        // started (r0, r4, r5); B = 4 (N − B − 1 = 1 is fine) cannot be reached.
        let mut failed = all.clone();
        for r in &mut failed[1..4] {
            r.first_token_ns = None;
            r.tokens.clear();
            r.success = false;
        }
        let r = analyse(&failed, Some(4), None, (0, 100 * MS), en);
        assert!(
            r.steady_state_missing
                .is_some_and(|m| m.contains("only 3 of 6"))
        );
        // No energy over the window: the window exists, its J/token does not.
        let r = analyse(&all, Some(2), Some(1), (0, 100 * MS), |_, _| None);
        assert!(r.steady_state.is_some());
        assert_eq!(r.headline, Headline::MeasuredWindow);
        assert_eq!(r.headline_j_per_token, None);
        assert!(
            r.steady_state_missing
                .is_some_and(|m| m.contains("do not cover"))
        );
        assert_eq!(r.notes.len(), 1);
    }

    #[test]
    fn failed_requests_count_as_finished() {
        let e = energy();
        // r0 fails at 20 ms without a token. Firsts: 15, 32, 48, 55, 70 → 2nd = 32 ms.
        // Ends: 20, 45, 52, 68, 85, 95 → 3rd = 52 ms. Window [32, 52].
        let mut all = schedule();
        all[0] = req("r0", 0, &[], 20);
        let r = analyse(&all, Some(2), None, (0, 100 * MS), |a, b| {
            e.energy_between(a, b)
        });
        let s = r.steady_state.unwrap_or_else(|| panic!("no window"));
        assert_eq!((s.figures.start_ns, s.figures.end_ns), (32 * MS, 52 * MS));
        // Tokens in [32, 52]: r1 {35, 45} 2, r2 {32, 42, 52} 3, r3 {48} 1 → 6.
        // Energy: 8/10 of [30,40) 4 J = 3.2, [40,50) 5, 2/10 of 6 J = 1.2 → 9.4 J.
        assert_eq!(s.figures.output_tokens, 6);
        assert!(close(s.figures.energy_j, 9.4));
        assert!(close(s.figures.j_per_token, 9.4 / 6.0));
    }
}
