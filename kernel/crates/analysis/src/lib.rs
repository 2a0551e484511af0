//! llem's measurement maths, kept pure (no I/O, no clocks, no plugins) so each
//! figure can be tested against a hand computation.
//!
//! * [`steady_state`]: ML.ENERGY's steady-state window (server mode) and J/token
//!   over it and over the whole measured window, with the headline named.
//! * [`attribution`]: per-request energy by interval attribution, beside
//!   ML.ENERGY's J/token × output length; the parts sum to the window.
//! * [`flops`]: parameters and FLOPs per token from a Hugging Face
//!   `config.json`, achieved FLOP/s, MFU against a peak table, J/FLOP.
//! * [`carbon`]: gCO2e from energy, grid intensity and PUE.
//! * [`verdict`]: good / caution / poor for a run, with the reasons.
//! * [`stats`]: coefficient of variation (warm-up until stable) and drift
//!   (thermal settle).
//!
//! Times are CLOCK_MONOTONIC nanoseconds throughout; energies are joules.

pub mod attribution;
pub mod carbon;
pub mod flops;
pub mod stats;
pub mod steady_state;
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
