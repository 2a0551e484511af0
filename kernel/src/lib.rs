//! # llem: energy, latency and throughput of LLM inference on your own hardware
//!
//! The kernel library. It owns time, I/O, processes and the measurement maths;
//! plugins own knowledge (how to read a device, drive an engine, read a
//! dataset, store results). The `llem` binary is a thin CLI over this API.

pub mod catalog;
pub mod clock;
pub mod default_workload;
pub mod discovery;
pub mod doctor;
pub mod energy;
pub mod engine;
pub mod experiment;
pub mod exporter;
pub mod loadgen;
pub mod model;
pub mod plugin;
pub mod probe;
pub mod sampler;
pub mod study;

pub use catalog::Catalog;
pub use experiment::{Experiment, RunOutcome, RunResult};
/// The manifest: parsing, resolution, defaults, schema.
pub use llem_manifest as manifest;
pub use plugin::{Plugin, PluginFailure, PluginFormat, PluginLoader, Sandbox};
