//! Studies: a sweep of experiment configurations, repeated in cycles, in a
//! controlled order. The study file is read and expanded by the `llem-study`
//! crate; here a study directory is run:
//!
//! 1. [`design`]: `design.json`, every configuration resolved, the schedule,
//!    the controls and the design hash; written once, checked on resume.
//! 2. [`state`]: `state/<slot>.json`, one per run, written as it goes.
//! 3. [`runner`]: the local executor (gaps, time limits, circuit breaker,
//!    engine kept up between runs that differ only in load options), and one
//!    slot alone for a Slurm array task.
//! 4. [`slurm`]: `--executor slurm`: the batch script, submission as a job
//!    array, and Slurm's word on each task.
//! 5. [`summary`]: `study.json`, merged from the slots' result.json files,
//!    with statistics across cycles per configuration.

pub mod design;
pub mod runner;
pub mod slurm;
pub mod state;
pub mod summary;
