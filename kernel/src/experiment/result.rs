//! The result document written as `result.json` in every run directory.
//! Versioned: readers check `schema_version` (docs/result-schema.md).

use crate::energy::EnergyMethod;
use llem_sdk::{DeviceKind, EnginePlan};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: &str = "0.2.0";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Ran its full course and measured what it says.
    Complete,
    /// Measured, but not everything it should have: `status_reasons` says what
    /// (failed requests above the threshold, a source lost, coverage too low…).
    Degraded,
    /// Did not produce a usable measurement (every request failed, the engine
    /// never became ready, no device produced a figure…); `error` says why.
    /// Everything measured until then is kept.
    Failed,
    /// Stopped early by a signal (Ctrl-C, SIGTERM, SIGHUP); everything measured
    /// until then is kept.
    Interrupted,
}

impl RunStatus {
    /// The process exit code `llem run` uses for this status (docs/result-schema.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunStatus::Complete => 0,
            RunStatus::Degraded => 3,
            RunStatus::Failed => 4,
            RunStatus::Interrupted => 130,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: String,
    pub run_id: String,
    pub llem_version: String,
    pub status: RunStatus,
    /// Why the status is not `complete`, one line each.
    #[serde(default)]
    pub status_reasons: Vec<String>,
    /// What made the run fail (status `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub experiment: ExperimentSummary,
    /// Wall clock, RFC 3339 UTC.
    pub started_at: String,
    /// Measured window, seconds (monotonic clock).
    pub duration_s: f64,
    /// The measured window on the monotonic clock (`t_ns` of timeseries.csv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpan>,
    /// The run's phases in the order they ran (docs/result-schema.md).
    #[serde(default)]
    pub phases: Vec<super::phase::PhaseSpan>,
    /// Energy over the measured window.
    pub energy: EnergySummary,
    /// Idle power measured before the engine started, and what it implies for the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<super::baseline::BaselineSummary>,
    pub sampling: SamplingSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSummary>,
    /// The decoding every request was sent with (the same for every engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<super::WorkloadSummary>,
    /// Requests, latency, throughput and energy per token, when an engine ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceSummary>,
    /// How far the figures can be trusted: coverage, methods, gaps, throttling, drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// What ran where: host, OS, CPU, devices, engine, llem and plugin versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<super::environment::Environment>,
    /// Every file, directory and variable sandboxed plugins were granted, and
    /// the manifest key (the user's words) that granted it.
    #[serde(default)]
    pub grants: Vec<llem_manifest::Grant>,
    /// Problems met during the run that did not stop it (recorded gaps).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What each sink was given; absent when the manifest names none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<super::sinks::SinkOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSpan {
    pub start_ns: u64,
    pub end_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub name: String,
    pub model: Option<String>,
    pub seed: u64,
    /// Which cycle of the experiment this run is (1-based).
    #[serde(default = "first_cycle")]
    pub cycle: u32,
}

fn first_cycle() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergySummary {
    /// Gross energy over the measured window: the sum over the devices in
    /// `total_includes` (those with a figure that no other counted figure
    /// contains); `None` when none did (never a silent 0 J).
    pub total_j: Option<f64>,
    /// `source/device` of every device the total adds; each other device says
    /// why not in its `excluded_because`.
    #[serde(default)]
    pub total_includes: Vec<String>,
    /// Idle energy the devices in the total would have used over the same
    /// window (baseline power × window length); `None` without a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_j: Option<f64>,
    /// `total_j − baseline_j`: the energy the workload added (dynamic energy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_j: Option<f64>,
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
    /// The device (same source) whose figure contains this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether `energy.total_j` adds this figure; if not, why.
    #[serde(default)]
    pub in_total: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_because: Option<String>,
    /// Readings in the window that became gaps rather than energy (count,
    /// and the first few with their time and reason).
    #[serde(default)]
    pub gaps: crate::energy::GapLog,
    /// Seconds of the measured window the figure accounts for, and that over
    /// the window's length (1.0 = fully covered); `None` without a figure.
    #[serde(default)]
    pub covered_s: Option<f64>,
    #[serde(default)]
    pub coverage: Option<f64>,
    /// The plausible maximum power readings were judged against, watts.
    #[serde(default)]
    pub max_power_w: f64,
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
    /// Fingerprint of the workload the engine was given: SHA-256 (hex) over
    /// each prompt's body and output length, in order (see
    /// [`prompts_sha256`]). Two runs with the same value sent the same
    /// prompts, whatever dataset plugin or options produced them, so their
    /// engines can be compared (`llem report`'s cross-engine table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts_sha256: Option<String>,
}

/// SHA-256 over the prompts as the engine receives them: one line per
/// prompt, the JSON of `[body, max_output_tokens]`, each ending in `\n`.
/// Prompt ids and token-count hints are left out: they name and describe a
/// prompt but do not change what the engine is asked.
#[must_use]
pub fn prompts_sha256(prompts: &[llem_sdk::Prompt]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for prompt in prompts {
        let line =
            serde_json::to_string(&(&prompt.body, prompt.max_output_tokens)).unwrap_or_default();
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    pub instance: String,
    /// The plan, without its worker script's text: that is `worker_script`.
    pub plan: EnginePlan,
    /// Where the kernel wrote the plan's worker script and its SHA-256 (not
    /// when attached: nothing is written then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_script: Option<crate::engine::WorkerScript>,
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
    /// In a study, the run directory whose engine this run used, kept up
    /// because the runs differ only in load options (its `engine.log` holds
    /// the engine's whole log); `None` when this run started its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_kept_from: Option<String>,
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
    /// Window energy less the idle baseline over the window, joules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_energy_net_j: Option<f64>,
    /// Net window energy / output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_per_output_token_net_j: Option<f64>,
    /// Window energy / requests completed in the window.
    pub energy_per_request_j: Option<f64>,
    pub average_power_w: Option<f64>,
    /// How per-request energy in requests.jsonl is attributed.
    pub per_request_energy_method: String,
    /// Which J/token is the headline: `steady_state` (ML.ENERGY's window, server
    /// mode, when it exists) or `measured_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// The headline energy per output token, joules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline_energy_per_output_token_j: Option<f64>,
    /// ML.ENERGY's steady-state window and J/token over it, beside the whole window's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_state: Option<llem_analysis::steady_state::SteadyStateReport>,
    /// Per-request energy by interval attribution: totals and the sum check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<super::figures::Attribution>,
    /// FLOPs from the model's config.json, achieved FLOP/s, MFU, J/FLOP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<Flops>,
    /// gCO2e of the window's energy (with `[measurement].grid_gco2_per_kwh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon: Option<llem_analysis::carbon::CarbonFigures>,
    /// Latency (ms) and throughput, field names after `vllm bench serve`.
    pub latency: crate::loadgen::LatencySummary,
}

/// FLOPs of the measured, successful requests (forward pass, from the model's
/// config.json) and what they imply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flops {
    pub parameters: u64,
    pub prefill_flops: f64,
    pub decode_flops: f64,
    /// Decode FLOPs / output tokens.
    pub flops_per_output_token: Option<f64>,
    pub efficiency: llem_analysis::flops::FlopsEfficiency,
}

/// The quality verdict of a run (good / caution / poor, with reasons).
pub type Quality = llem_analysis::verdict::Verdict;

#[cfg(test)]
mod prompt_fingerprint_tests {
    use super::prompts_sha256;
    use llem_sdk::{Prompt, PromptBody};

    fn prompt(id: &str, text: &str, max: Option<u32>) -> Prompt {
        Prompt {
            id: id.into(),
            body: PromptBody::Text(text.into()),
            input_tokens: None,
            max_output_tokens: max,
        }
    }

    #[test]
    fn the_fingerprint_follows_what_the_engine_is_asked_and_nothing_else() {
        let base = [
            prompt("0", "Hello", Some(12)),
            prompt("1", "Why?", Some(12)),
        ];
        let digest = prompts_sha256(&base);
        // The line form, then the properties that matter.
        assert_eq!(
            serde_json::to_string(&(&base[0].body, base[0].max_output_tokens)).unwrap(),
            r#"[{"text":"Hello"},12]"#
        );
        assert_eq!(digest.len(), 64);
        // Ids and token hints do not change the workload.
        let mut renamed = base.clone();
        renamed[0].id = "other".into();
        renamed[1].input_tokens = Some(3);
        assert_eq!(prompts_sha256(&renamed), digest);
        // Text, output length and order do.
        let mut text = base.clone();
        text[1].body = PromptBody::Text("Why not?".into());
        let mut length = base.clone();
        length[0].max_output_tokens = Some(13);
        let reordered = [base[1].clone(), base[0].clone()];
        for other in [&text[..], &length[..], &reordered[..]] {
            assert_ne!(prompts_sha256(other), digest);
        }
        // The empty workload is SHA-256 of nothing (FIPS 180-2).
        assert_eq!(
            prompts_sha256(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
