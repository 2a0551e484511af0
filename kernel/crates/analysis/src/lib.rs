//! llem's measurement maths, kept pure (no I/O, no clocks, no plugins) so each
//! figure can be tested against a hand computation.
//!
//! * [`steady_state`]: ML.ENERGY's steady-state window (server mode) and J/token
//!   over it and over the whole measured window, with the headline named.
//! * [`attribution`]: per-request energy by interval attribution, beside
//!   ML.ENERGY's J/token × output length; the parts sum to the window.
//! * [`flops`]: parameters and FLOPs per token from a Hugging Face
//!   `config.json`, achieved FLOP/s, MFU against a peak table, J/FLOP.
//! * [`memory`]: accelerator memory for weights and KV cache per
//!   tensor-parallel rank (`llem run --dry-run`).
//! * [`carbon`]: gCO2e from energy, grid intensity and PUE.
//! * [`verdict`]: good / caution / poor for a run, with the reasons.
//! * [`stats`]: coefficient of variation (warm-up until stable) and drift
//!   (thermal settle).
//! * [`cycles`]: one figure across a study's cycles: mean, sd, CV, median,
//!   95 % interval ([`cycles::Summary`]), outliers, and warnings when the
//!   intervals cannot separate configurations.
//! * [`compare`]: Welch's t-test of one configuration against another
//!   (`llem compare A B`).
//! * [`bootstrap`]: percentile bootstrap intervals (percentiles across
//!   cycles), reproducible from a seed (SplitMix64).
//! * [`student_t`]: Student's t CDF, two-sided p-value and quantile (for
//!   intervals and tests over a study's cycles).
//!
//! Times are CLOCK_MONOTONIC nanoseconds throughout; energies are joules.
//!
//! How a run uses it (two requests, max_num_seqs 1, 100 W for 4 s):
//!
//! ```
//! use llem_analysis::{attribution, steady_state, EnergySeries, RequestTiming, TokenEvent};
//!
//! const S: u64 = 1_000_000_000;
//! // The total over non-overlapping devices, cumulative joules per device.
//! let gpu = vec![(0, 0.0), (S, 100.0), (2 * S, 200.0), (3 * S, 300.0), (4 * S, 400.0)];
//! let energy = EnergySeries::from_cumulative(&[gpu], &[0, S, 2 * S, 3 * S, 4 * S])?;
//! let request = |id: &str, send: u64, tokens: &[u64], end: u64| RequestTiming {
//!     id: id.into(),
//!     send_ns: send,
//!     first_token_ns: tokens.first().copied(),
//!     tokens: tokens.iter().map(|&t_ns| TokenEvent { t_ns, n: 1 }).collect(),
//!     end_ns: end,
//!     input_tokens: Some(16),
//!     output_tokens: Some(tokens.len() as u32),
//!     success: true,
//! };
//! let requests = vec![
//!     request("0", 0, &[S / 2, S, 3 * S / 2], 3 * S / 2),
//!     request("1", 0, &[2 * S, 5 * S / 2, 3 * S], 3 * S),
//!     request("2", S, &[7 * S / 2, 4 * S], 4 * S),
//! ];
//! // Steady state: from the 1st first token (0.5 s) to the 3 − 1 − 1 = 1st finish (1.5 s).
//! let ss = steady_state::analyse(&requests, Some(1), None, (0, 4 * S), |a, b| {
//!     energy.energy_between(a, b)
//! });
//! // 100 J over the 3 tokens arriving in [0.5 s, 1.5 s].
//! assert_eq!(ss.headline, steady_state::Headline::SteadyState);
//! assert_eq!(ss.headline_j_per_token, Some(100.0 / 3.0));
//! let parts = attribution::attribute(
//!     &energy,
//!     &requests,
//!     attribution::PrefillWeighting::OutputTokensOnly,
//!     ss.headline_j_per_token,
//! )?;
//! parts.check_sum()?; // what the run does before writing result.json
//! # Ok::<(), llem_analysis::AnalysisError>(())
//! ```

pub mod attribution;
pub mod bootstrap;
pub mod carbon;
pub mod compare;
pub mod cycles;
pub mod flops;
pub mod memory;
pub mod stats;
pub mod steady_state;
pub mod student_t;
mod types;
pub mod verdict;

pub use types::{EnergyInterval, EnergySeries, RequestTiming, TokenEvent};

/// An input the maths cannot work with; the message names what and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    #[error("invalid input: {0}")]
    Input(String),
    #[error(
        "per-request energies do not add up: parts {parts_j} J + unattributed {unattributed_j} J \
         = {sum_j} J, but the window holds {window_j} J (relative difference {relative:e}, \
         allowed {allowed:e})"
    )]
    SumMismatch {
        parts_j: f64,
        unattributed_j: f64,
        sum_j: f64,
        window_j: f64,
        relative: f64,
        allowed: f64,
    },
    #[error("config.json: {0}")]
    Config(String),
}
