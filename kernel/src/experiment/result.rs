//! The result document written as `result.json` in every run directory.
//! Versioned: readers check `schema_version` (docs/result-schema.md).

use crate::energy::EnergyMethod;
use llem_sdk::{DeviceKind, EnginePlan};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: &str = "0.1.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Ran its full course.
    Complete,
    /// Stopped early (Ctrl-C); everything measured until then is kept.
    Interrupted,
    /// Cut short by a failure (an engine that died, a worker that broke);
    /// everything measured until then is kept, and `warnings` says what happened.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: String,
    pub run_id: String,
    pub llem_version: String,
    pub status: RunStatus,
    pub experiment: ExperimentSummary,
    /// Wall clock, RFC 3339 UTC.
    pub started_at: String,
    /// Measured window, seconds (monotonic clock).
    pub duration_s: f64,
    pub energy: EnergySummary,
    pub sampling: SamplingSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSummary>,
    /// Requests, latency, throughput and energy per token, when an engine ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceSummary>,
    /// Problems met during the run that did not stop it (recorded gaps).
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub name: String,
    pub model: Option<String>,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergySummary {
    /// Sum over devices that produced a figure; `None` when none did (never a silent 0 J).
    pub total_j: Option<f64>,
    /// Whether any device's figure is modelled rather than measured.
    pub includes_estimates: bool,
    pub devices: Vec<DeviceEnergy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEnergy {
    /// Plugin instance that measured it.
    pub source: String,
    pub device: String,
    pub name: String,
    pub kind: DeviceKind,
    pub method: EnergyMethod,
    pub estimated: bool,
    pub energy_j: Option<f64>,
    pub average_power_w: Option<f64>,
    /// Readings inside the measured window (the figure rests on these).
    pub samples: u64,
    pub counter_wraps: u32,
    pub counter_resets: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingSummary {
    pub interval_ms: u32,
    pub ticks: u64,
    /// Ticks skipped because the previous one overran its slot.
    pub missed_ticks: u64,
    /// CPU time all sampling threads used, seconds.
    pub sampler_cpu_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    pub instance: String,
    pub prompts: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    pub instance: String,
    pub plan: EnginePlan,
    /// Whether llem started the engine (false when attached to `[load].endpoint`).
    pub executed: bool,
    /// What the engine reported about itself (offline workers), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_info: Option<crate::engine::worker::WorkerInfo>,
    /// Where requests went (server mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// What the engine was allowed and confined to (`None` when attached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<crate::engine::EngineConfinement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceSummary {
    pub requests_sent: u32,
    pub requests_succeeded: u32,
    pub requests_failed: u32,
    pub warmup_requests: u32,
    /// The measured window (after warm-up to the last request's end), seconds.
    pub window_s: f64,
    /// Energy of every device with a figure over the measured window, joules.
    pub window_energy_j: Option<f64>,
    /// Window energy / output tokens generated in the window.
    pub energy_per_output_token_j: Option<f64>,
    /// Window energy / requests completed in the window.
    pub energy_per_request_j: Option<f64>,
    pub average_power_w: Option<f64>,
    /// How per-request energy in requests.jsonl is attributed.
    pub per_request_energy_method: String,
    /// Latency (ms) and throughput, field names after `vllm bench serve`.
    pub latency: crate::loadgen::LatencySummary,
}
