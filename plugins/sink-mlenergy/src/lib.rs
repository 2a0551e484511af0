//! `mlenergy`: an llem sink writing `mlenergy.json`, a run's figures under the
//! field names and units of the ML.ENERGY benchmark, so a run can be set
//! beside the ML.ENERGY leaderboard.
//!
//! The document has three parts (docs/sinks.md and docs/validation.md name
//! the sources, with their commits):
//!
//! * `results`: the fields of the benchmark's `results.json`
//!   (`mlenergy/llm/benchmark.py` in `ml-energy/benchmark`): `duration`,
//!   `completed`, `steady_state_energy_per_token`, `mean_ttft_ms`, …
//! * `leaderboard`: the per-run fields the leaderboard builds from it
//!   (`scripts/build_data.py` in `ml-energy/leaderboard`) and publishes in its
//!   data set (`data_publishing/DATASET_CARD.md` in `ml-energy/data`):
//!   `energy_per_token_joules`, `output_throughput_tokens_per_sec`,
//!   `gpu_model`, …
//! * `llem`: what the figures rest on: whether J/token is over ML.ENERGY's
//!   steady state or the whole measured window, which devices the energy
//!   counts, and what has no llem figure.
//!
//! A field llem has no figure for is `null`, never an invented value.

use llem_sdk::{
    Config, OptionSpec, OptionType, Plugin, PluginError, PluginInfo, PluginKind, ResultDocument,
    SampleBatch, Sink,
};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

/// Version of this document's layout.
pub const FORMAT: &str = "llem-mlenergy/1";

pub struct MlEnergySink {
    dir: PathBuf,
    task: Option<String>,
}

impl Plugin for MlEnergySink {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sink-mlenergy".into(),
            kind: PluginKind::Sink,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The run's figures under ML.ENERGY's results.json and leaderboard field names, in mlenergy.json".into(),
            options: vec![
                OptionSpec::with_default(
                    "dir",
                    OptionType::Path,
                    "",
                    "Directory mlenergy.json goes to (must exist); empty = the run directory",
                ),
                OptionSpec::with_default(
                    "task",
                    OptionType::String,
                    "",
                    "ML.ENERGY task the workload stands for (e.g. `lm-arena-chat`, `gpqa`); empty = null",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let dir = sink_common::target_dir(&config)?;
        let task: String = config.optional("task")?.unwrap_or_default();
        Ok(MlEnergySink {
            dir,
            task: (!task.is_empty()).then_some(task),
        })
    }
}

impl Sink for MlEnergySink {
    fn write_samples(&mut self, _batch: &SampleBatch) -> Result<(), PluginError> {
        Ok(())
    }

    fn write_result(&mut self, document: &ResultDocument) -> Result<(), PluginError> {
        let result = sink_common::parse_result(document)?;
        let doc = map(&result, self.task.as_deref());
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| PluginError::other(format!("cannot encode mlenergy.json: {e}")))?;
        let path = self.dir.join("mlenergy.json");
        std::fs::write(&path, text)
            .map_err(|e| PluginError::io(format_args!("writing {}", path.display()), &e))
    }
}

llem_sdk::export_sink!(MlEnergySink);

fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|v| !v.is_null())
}

fn num(v: &Value, pointer: &str) -> Option<f64> {
    at(v, pointer).and_then(Value::as_f64)
}

fn f(x: Option<f64>) -> Value {
    x.filter(|x| x.is_finite()).map_or(Value::Null, Value::from)
}

/// The short GPU model ML.ENERGY files runs under (`H100`, `B200`): the
/// device name without vendor or product line, up to the first space or dash
/// ("NVIDIA H100 80GB HBM3" → "H100", "NVIDIA A100-SXM4-80GB" → "A100",
/// "AMD Instinct MI300X" → "MI300X"; "RTX" keeps its number).
pub fn short_gpu_model(name: &str) -> Option<String> {
    let mut rest = name.trim();
    for prefix in [
        "NVIDIA ",
        "AMD ",
        "Intel ",
        "GeForce ",
        "Tesla ",
        "Instinct ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let mut tokens = rest.split([' ', '-']).filter(|t| !t.is_empty());
    let first = tokens.next()?;
    Some(match (first, tokens.next()) {
        ("RTX", Some(number)) => format!("RTX {number}"),
        _ => first.to_owned(),
    })
}

/// `--max-num-seqs N` (vLLM) from the engine plan's arguments.
fn max_num_seqs(result: &Value) -> Option<u64> {
    let args = at(result, "/backend/plan/args")?.as_array()?;
    args.iter().enumerate().find_map(|(i, a)| {
        let a = a.as_str()?;
        if let Some(v) = a.strip_prefix("--max-num-seqs=") {
            return v.parse().ok();
        }
        (a == "--max-num-seqs")
            .then(|| args.get(i + 1)?.as_str()?.parse().ok())
            .flatten()
    })
}

/// Map a result.json document (schema 0.2) onto ML.ENERGY's fields.
pub fn map(result: &Value, task: Option<&str>) -> Value {
    let lat =
        |metric: &str, stat: &str| num(result, &format!("/inference/latency/{metric}/{stat}"));
    // ML.ENERGY's steady state; llem's figures over it when it found one.
    let steady = at(result, "/inference/steady_state/steady_state");
    let ss = |key: &str| steady.and_then(|s| num(s, &format!("/{key}")));
    let basis = at(result, "/inference/headline")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // The figures the headline rests on: the steady state, else the window.
    let headline_window = match basis.as_deref() {
        Some("steady_state") => steady,
        _ => at(result, "/inference/steady_state/measured_window"),
    };
    let hw = |key: &str| headline_window.and_then(|s| num(s, &format!("/{key}")));

    let duration = num(result, "/inference/latency/duration_s").or(num(result, "/duration_s"));
    let completed = num(result, "/inference/latency/completed");
    let num_prompts = num(result, "/inference/requests_sent");
    let total_input = num(result, "/inference/latency/total_input_tokens");
    let total_output = num(result, "/inference/latency/total_output_tokens");

    let mut results = Map::new();
    results.insert("duration".into(), f(duration));
    results.insert("completed".into(), f(completed));
    results.insert("num_prompts".into(), f(num_prompts));
    results.insert("steady_state_duration".into(), f(ss("duration_s")));
    results.insert("steady_state_energy".into(), f(ss("energy_j")));
    results.insert("steady_state_energy_per_token".into(), f(ss("j_per_token")));
    // Prefill/decode split: only for disaggregated serving; llem has none.
    for key in [
        "steady_state_prefill_energy",
        "steady_state_prefill_energy_per_token",
        "steady_state_decode_energy",
        "steady_state_decode_energy_per_token",
    ] {
        results.insert(key.into(), Value::Null);
    }
    results.insert("total_input_tokens".into(), f(total_input));
    results.insert("total_output_tokens".into(), f(total_output));
    results.insert(
        "request_throughput".into(),
        f(num(result, "/inference/latency/request_throughput")),
    );
    results.insert(
        "output_throughput".into(),
        f(num(result, "/inference/latency/output_token_throughput")),
    );
    results.insert(
        "total_token_throughput".into(),
        f(num(result, "/inference/latency/total_token_throughput")),
    );
    // ML.ENERGY's latency metrics, ms, with its default percentiles 50,90,95,99.
    for (theirs, ours) in [
        ("ttft", "ttft"),
        ("tpot", "tpot"),
        ("itl", "itl"),
        ("e2el", "e2e"),
    ] {
        results.insert(format!("mean_{theirs}_ms"), f(lat(ours, "mean")));
        results.insert(format!("median_{theirs}_ms"), f(lat(ours, "median")));
        results.insert(format!("std_{theirs}_ms"), f(lat(ours, "std")));
        results.insert(format!("p50_{theirs}_ms"), f(lat(ours, "median")));
        for p in ["p90", "p95", "p99"] {
            results.insert(format!("{p}_{theirs}_ms"), f(lat(ours, p)));
        }
    }

    // The GPUs measured: devices of kind `gpu` in the energy figures.
    let gpus: Vec<&Value> = at(result, "/energy/devices")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter(|d| d.get("kind").and_then(Value::as_str) == Some("gpu"))
                .collect()
        })
        .unwrap_or_default();
    let gpu_name = gpus
        .first()
        .and_then(|d| d.get("name"))
        .and_then(Value::as_str);
    let in_total: Vec<&Value> = at(result, "/energy/devices")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter(|d| d.get("in_total").and_then(Value::as_bool) != Some(false))
                .collect()
        })
        .unwrap_or_default();
    let gpu_only = !in_total.is_empty()
        && in_total
            .iter()
            .all(|d| d.get("kind").and_then(Value::as_str) == Some("gpu"));

    let energy_per_token = num(result, "/inference/headline_energy_per_output_token_j");
    let avg_output_len = match (total_output, completed) {
        (Some(t), Some(c)) if c > 0.0 => Some(t / c),
        _ => None,
    };
    let mut board = Map::new();
    board.insert("task".into(), task.map_or(Value::Null, Value::from));
    board.insert(
        "model_id".into(),
        at(result, "/experiment/model")
            .cloned()
            .unwrap_or(Value::Null),
    );
    board.insert("nickname".into(), Value::Null);
    board.insert(
        "gpu_model".into(),
        gpu_name
            .and_then(short_gpu_model)
            .map_or(Value::Null, Value::from),
    );
    board.insert(
        "num_gpus".into(),
        if gpus.is_empty() {
            Value::Null
        } else {
            gpus.len().into()
        },
    );
    board.insert(
        "max_num_seqs".into(),
        max_num_seqs(result).map_or(Value::Null, Value::from),
    );
    board.insert("energy_per_token_joules".into(), f(energy_per_token));
    board.insert("total_energy_joules".into(), f(hw("energy_j")));
    board.insert(
        "energy_per_request_joules".into(),
        f(energy_per_token.zip(avg_output_len).map(|(e, n)| e * n)),
    );
    board.insert("avg_power_watts".into(), f(hw("mean_power_w")));
    board.insert(
        "output_throughput_tokens_per_sec".into(),
        results["output_throughput"].clone(),
    );
    board.insert(
        "request_throughput_req_per_sec".into(),
        results["request_throughput"].clone(),
    );
    board.insert(
        "total_token_throughput".into(),
        results["total_token_throughput"].clone(),
    );
    board.insert("total_input_tokens".into(), f(total_input));
    board.insert("total_output_tokens".into(), f(total_output));
    board.insert("avg_output_len".into(), f(avg_output_len));
    board.insert("duration_seconds".into(), f(duration));
    board.insert("steady_state_duration_seconds".into(), f(ss("duration_s")));
    board.insert("num_requests".into(), f(num_prompts));
    board.insert("completed_requests".into(), f(completed));
    board.insert("mean_itl_ms".into(), f(lat("itl", "mean")));
    board.insert("median_itl_ms".into(), f(lat("itl", "median")));
    for p in ["p90", "p95", "p99"] {
        board.insert(format!("{p}_itl_ms"), f(lat("itl", p)));
    }
    board.insert("p50_itl_ms".into(), f(lat("itl", "median")));
    // ML.ENERGY's server-side running batch (vllm:num_requests_running) and
    // its stability verdict: llem measures neither the same way.
    board.insert("avg_batch_size".into(), Value::Null);
    board.insert("is_stable".into(), Value::Null);

    let mut notes = Vec::<String>::new();
    match basis.as_deref() {
        Some("steady_state") => {}
        _ => notes.push(format!(
            "energy_per_token_joules is over the whole measured window, not ML.ENERGY's steady state ({})",
            at(result, "/inference/steady_state/steady_state_missing")
                .and_then(Value::as_str)
                .unwrap_or("no steady state")
        )),
    }
    if !gpu_only {
        notes.push(
            "the energy counts devices other than GPUs (ML.ENERGY counts GPU energy only)".into(),
        );
    }
    if at(result, "/energy/includes_estimates").and_then(Value::as_bool) == Some(true) {
        notes.push("the energy includes a modelled estimate".into());
    }
    let status = at(result, "/status").and_then(Value::as_str);
    if status != Some("complete") {
        notes.push(format!(
            "the run's status is {}",
            status.unwrap_or("unknown")
        ));
    }

    json!({
        "format": FORMAT,
        "results": results,
        "leaderboard": board,
        "llem": {
            "run_id": at(result, "/run_id"),
            "schema_version": at(result, "/schema_version"),
            "status": status,
            "energy_per_token_basis": basis,
            "energy_devices": at(result, "/energy/total_includes"),
            "gpu_only": gpu_only,
            "gpu_name": gpu_name,
            "notes": notes,
            "not_mapped": [
                "results.steady_state_measurement", "results.entire_benchmark_measurement",
                "results.results", "results.power_timeline",
                "leaderboard.nickname", "leaderboard.avg_batch_size", "leaderboard.is_stable"
            ],
        },
    })
}

#[cfg(test)]
mod tests;
