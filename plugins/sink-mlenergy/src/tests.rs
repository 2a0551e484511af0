//! The mapping checked field by field against a table written from ML.ENERGY's
//! documentation (docs/validation.md cites the files and commits):
//!
//! * B = `ml-energy/benchmark` `mlenergy/llm/benchmark.py` @ d6450a39: the
//!   `result` dict written to results.json (seconds, joules, tokens/s, ms).
//! * L = `ml-energy/leaderboard` `scripts/build_data.py` @ 3bcfcfa4:
//!   `extract_metrics`, what the leaderboard derives from results.json.
//! * D = `ml-energy/data` `data_publishing/DATASET_CARD.md` @ 1ecbaa00: the
//!   LLM runs schema (`gpu_model`, `num_gpus`, `max_num_seqs`,
//!   `avg_power_watts`, `mean_itl_ms`, `is_stable`, …).

use super::*;

/// A result.json (schema 0.2) with a steady state, every figure distinct.
fn steady_run() -> Value {
    json!({
        "schema_version": "0.2.0",
        "run_id": "2026-01-01T00-00-00",
        "status": "complete",
        "experiment": {"name": "e", "model": "Qwen/Qwen3-8B", "seed": 0, "cycle": 1},
        "duration_s": 130.0,
        "energy": {
            "total_j": 91000.0,
            "total_includes": ["nvml/0", "nvml/1"],
            "includes_estimates": false,
            "devices": [
                {"source": "nvml", "device": "0", "name": "NVIDIA H100 80GB HBM3", "kind": "gpu", "in_total": true},
                {"source": "nvml", "device": "1", "name": "NVIDIA H100 80GB HBM3", "kind": "gpu", "in_total": true}
            ]
        },
        "backend": {"plan": {"args": ["serve", "Qwen/Qwen3-8B", "--max-num-seqs", "128"]}},
        "inference": {
            "requests_sent": 1024,
            "requests_succeeded": 1020,
            "requests_failed": 4,
            "headline": "steady_state",
            "headline_energy_per_output_token_j": 0.25,
            "steady_state": {
                "steady_state": {
                    "start_ns": 1, "end_ns": 2, "duration_s": 100.0, "energy_j": 70000.0,
                    "output_tokens": 280000, "j_per_token": 0.25,
                    "output_tokens_per_s": 2800.0, "mean_power_w": 700.0,
                    "mean_requests_in_flight": 127.5
                },
                "measured_window": {
                    "duration_s": 128.0, "energy_j": 90000.0, "output_tokens": 300000,
                    "j_per_token": 0.3, "mean_power_w": 703.125
                }
            },
            "latency": {
                "completed": 1020, "failed": 4,
                "total_input_tokens": 500000, "total_output_tokens": 306000,
                "duration_s": 128.0,
                "request_throughput": 7.96875, "output_token_throughput": 2390.625,
                "total_token_throughput": 6296.875,
                "ttft": {"mean": 110.0, "median": 100.0, "std": 11.0, "p90": 190.0, "p95": 195.0, "p99": 199.0},
                "tpot": {"mean": 21.0, "median": 20.0, "std": 2.0, "p90": 29.0, "p95": 29.5, "p99": 29.9},
                "itl": {"mean": 22.0, "median": 21.0, "std": 3.0, "p90": 39.0, "p95": 39.5, "p99": 39.9},
                "e2e": {"mean": 6100.0, "median": 6000.0, "std": 600.0, "p90": 9000.0, "p95": 9500.0, "p99": 9900.0}
            }
        }
    })
}

/// (part, ML.ENERGY field, expected value, where the field is documented).
fn table() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    vec![
        // results.json (B): seconds, joules, tokens, req/s, tok/s.
        (
            "results",
            "duration",
            json!(128.0),
            "B: benchmark_duration, s",
        ),
        (
            "results",
            "completed",
            json!(1020.0),
            "B: metrics.completed",
        ),
        (
            "results",
            "num_prompts",
            json!(1024.0),
            "L: required field, requests",
        ),
        (
            "results",
            "steady_state_duration",
            json!(100.0),
            "B: steady_state_mes.time, s",
        ),
        (
            "results",
            "steady_state_energy",
            json!(70000.0),
            "B: sum of GPU energy, J",
        ),
        (
            "results",
            "steady_state_energy_per_token",
            json!(0.25),
            "B: energy / steady-state tokens, J",
        ),
        (
            "results",
            "steady_state_prefill_energy",
            Value::Null,
            "B: disaggregated only",
        ),
        (
            "results",
            "steady_state_prefill_energy_per_token",
            Value::Null,
            "B: disaggregated only",
        ),
        (
            "results",
            "steady_state_decode_energy",
            Value::Null,
            "B: disaggregated only",
        ),
        (
            "results",
            "steady_state_decode_energy_per_token",
            Value::Null,
            "B: disaggregated only",
        ),
        (
            "results",
            "total_input_tokens",
            json!(500000.0),
            "B: metrics.total_input",
        ),
        (
            "results",
            "total_output_tokens",
            json!(306000.0),
            "B: metrics.total_output",
        ),
        ("results", "request_throughput", json!(7.96875), "B: req/s"),
        ("results", "output_throughput", json!(2390.625), "B: tok/s"),
        (
            "results",
            "total_token_throughput",
            json!(6296.875),
            "B: tok/s",
        ),
        (
            "results",
            "mean_ttft_ms",
            json!(110.0),
            "B: process_one_metric, ms",
        ),
        ("results", "median_ttft_ms", json!(100.0), "B"),
        ("results", "std_ttft_ms", json!(11.0), "B"),
        (
            "results",
            "p50_ttft_ms",
            json!(100.0),
            "B: metric_percentiles 50,90,95,99",
        ),
        ("results", "p90_ttft_ms", json!(190.0), "B"),
        ("results", "p95_ttft_ms", json!(195.0), "B"),
        ("results", "p99_ttft_ms", json!(199.0), "B"),
        ("results", "mean_tpot_ms", json!(21.0), "B"),
        ("results", "median_tpot_ms", json!(20.0), "B"),
        ("results", "std_tpot_ms", json!(2.0), "B"),
        ("results", "p50_tpot_ms", json!(20.0), "B"),
        ("results", "p90_tpot_ms", json!(29.0), "B"),
        ("results", "p95_tpot_ms", json!(29.5), "B"),
        ("results", "p99_tpot_ms", json!(29.9), "B"),
        ("results", "mean_itl_ms", json!(22.0), "B"),
        ("results", "median_itl_ms", json!(21.0), "B"),
        ("results", "std_itl_ms", json!(3.0), "B"),
        ("results", "p50_itl_ms", json!(21.0), "B"),
        ("results", "p90_itl_ms", json!(39.0), "B"),
        ("results", "p95_itl_ms", json!(39.5), "B"),
        ("results", "p99_itl_ms", json!(39.9), "B"),
        (
            "results",
            "mean_e2el_ms",
            json!(6100.0),
            "B: e2el = llem e2e",
        ),
        ("results", "median_e2el_ms", json!(6000.0), "B"),
        ("results", "std_e2el_ms", json!(600.0), "B"),
        ("results", "p50_e2el_ms", json!(6000.0), "B"),
        ("results", "p90_e2el_ms", json!(9000.0), "B"),
        ("results", "p95_e2el_ms", json!(9500.0), "B"),
        ("results", "p99_e2el_ms", json!(9900.0), "B"),
        // Leaderboard (L, D).
        ("leaderboard", "task", json!("lm-arena-chat"), "D: task"),
        (
            "leaderboard",
            "model_id",
            json!("Qwen/Qwen3-8B"),
            "D: org/model",
        ),
        (
            "leaderboard",
            "nickname",
            Value::Null,
            "D: not llem's to name",
        ),
        (
            "leaderboard",
            "gpu_model",
            json!("H100"),
            "D: GPU model (H100, B200)",
        ),
        ("leaderboard", "num_gpus", json!(2), "D: number of GPUs"),
        (
            "leaderboard",
            "max_num_seqs",
            json!(128),
            "D: maximum batch size",
        ),
        (
            "leaderboard",
            "energy_per_token_joules",
            json!(0.25),
            "L: = steady_state_energy_per_token",
        ),
        (
            "leaderboard",
            "total_energy_joules",
            json!(70000.0),
            "L: = steady_state_energy",
        ),
        (
            "leaderboard",
            "energy_per_request_joules",
            json!(0.25 * 300.0),
            "L: J/token × avg_output_len",
        ),
        (
            "leaderboard",
            "avg_power_watts",
            json!(700.0),
            "D: average GPU power, W",
        ),
        (
            "leaderboard",
            "output_throughput_tokens_per_sec",
            json!(2390.625),
            "L: = output_throughput",
        ),
        (
            "leaderboard",
            "request_throughput_req_per_sec",
            json!(7.96875),
            "L: = request_throughput",
        ),
        (
            "leaderboard",
            "total_token_throughput",
            json!(6296.875),
            "L",
        ),
        ("leaderboard", "total_input_tokens", json!(500000.0), "L"),
        ("leaderboard", "total_output_tokens", json!(306000.0), "L"),
        (
            "leaderboard",
            "avg_output_len",
            json!(300.0),
            "L: total_output_tokens / completed",
        ),
        (
            "leaderboard",
            "duration_seconds",
            json!(128.0),
            "L: = duration",
        ),
        (
            "leaderboard",
            "steady_state_duration_seconds",
            json!(100.0),
            "L: = steady_state_duration",
        ),
        (
            "leaderboard",
            "num_requests",
            json!(1024.0),
            "L: = num_prompts",
        ),
        (
            "leaderboard",
            "completed_requests",
            json!(1020.0),
            "L: = completed",
        ),
        (
            "leaderboard",
            "mean_itl_ms",
            json!(22.0),
            "D: mean inter-token latency, ms",
        ),
        (
            "leaderboard",
            "median_itl_ms",
            json!(21.0),
            "L: = p50_itl_ms",
        ),
        ("leaderboard", "p50_itl_ms", json!(21.0), "L"),
        ("leaderboard", "p90_itl_ms", json!(39.0), "L"),
        ("leaderboard", "p95_itl_ms", json!(39.5), "L"),
        ("leaderboard", "p99_itl_ms", json!(39.9), "L"),
        (
            "leaderboard",
            "avg_batch_size",
            Value::Null,
            "L: vllm:num_requests_running, not measured",
        ),
        (
            "leaderboard",
            "is_stable",
            Value::Null,
            "D: ML.ENERGY's own stability check",
        ),
    ]
}

#[test]
fn every_field_matches_the_table() {
    let doc = map(&steady_run(), Some("lm-arena-chat"));
    let table = table();
    for (part, field, want, source) in &table {
        let got = &doc[part][field];
        let close = match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() <= 1e-9 * w.abs().max(1.0),
            _ => got == want,
        };
        assert!(close, "{part}.{field} ({source}): got {got}, want {want}");
        assert!(
            doc[part].as_object().unwrap().contains_key(*field),
            "{part}.{field} missing"
        );
    }
    // Nothing in the document that the table does not name.
    for part in ["results", "leaderboard"] {
        let named = table.iter().filter(|t| t.0 == part).count();
        assert_eq!(
            doc[part].as_object().unwrap().len(),
            named,
            "{part}: unlisted fields"
        );
    }
    assert_eq!(doc["llem"]["energy_per_token_basis"], "steady_state");
    assert_eq!(doc["llem"]["gpu_only"], true);
    assert_eq!(doc["llem"]["notes"], json!([]));
}

#[test]
fn without_a_steady_state_the_window_is_named_and_steady_fields_are_null() {
    let mut run = steady_run();
    run["inference"]["headline"] = json!("measured_window");
    run["inference"]["headline_energy_per_output_token_j"] = json!(0.3);
    run["inference"]["steady_state"]["steady_state"] = Value::Null;
    run["inference"]["steady_state"]["steady_state_missing"] = json!("offline mode");
    let doc = map(&run, None);
    for field in [
        "steady_state_duration",
        "steady_state_energy",
        "steady_state_energy_per_token",
    ] {
        assert_eq!(doc["results"][field], Value::Null, "{field}");
    }
    assert_eq!(doc["leaderboard"]["energy_per_token_joules"], json!(0.3));
    assert_eq!(doc["leaderboard"]["total_energy_joules"], json!(90000.0));
    assert_eq!(doc["leaderboard"]["avg_power_watts"], json!(703.125));
    assert_eq!(doc["leaderboard"]["task"], Value::Null);
    assert_eq!(doc["llem"]["energy_per_token_basis"], "measured_window");
    let notes = doc["llem"]["notes"].to_string();
    assert!(
        notes.contains("whole measured window") && notes.contains("offline mode"),
        "{notes}"
    );
}

#[test]
fn cpu_energy_and_missing_figures_are_said_not_invented() {
    let mut run = steady_run();
    run["energy"]["devices"] = json!([
        {"source": "rapl", "device": "package-0", "name": "package-0", "kind": "cpu", "in_total": true}
    ]);
    run["backend"] = json!({});
    run["inference"]["latency"]["itl"] = Value::Null;
    let doc = map(&run, None);
    assert_eq!(doc["leaderboard"]["gpu_model"], Value::Null);
    assert_eq!(doc["leaderboard"]["num_gpus"], Value::Null);
    assert_eq!(doc["leaderboard"]["max_num_seqs"], Value::Null);
    assert_eq!(doc["leaderboard"]["mean_itl_ms"], Value::Null);
    assert_eq!(doc["results"]["p99_itl_ms"], Value::Null);
    assert_eq!(doc["llem"]["gpu_only"], false);
    assert!(doc["llem"]["notes"].to_string().contains("GPU energy only"));
}

#[test]
fn gpu_model_short_names() {
    for (name, short) in [
        ("NVIDIA H100 80GB HBM3", Some("H100")),
        ("NVIDIA A100-SXM4-80GB", Some("A100")),
        ("NVIDIA B200", Some("B200")),
        ("NVIDIA GeForce RTX 4090", Some("RTX 4090")),
        ("AMD Instinct MI300X", Some("MI300X")),
        ("", None),
    ] {
        assert_eq!(short_gpu_model(name).as_deref(), short, "{name}");
    }
}

#[test]
fn writes_mlenergy_json_into_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config::from_json(
        &json!({"dir": tmp.path().display().to_string(), "task": "gpqa"}).to_string(),
    )
    .unwrap();
    let mut sink = MlEnergySink::open(config).unwrap();
    sink.write_result(&ResultDocument {
        schema_version: "0.2.0".into(),
        run_id: "r".into(),
        json: steady_run().to_string(),
    })
    .unwrap();
    let text = std::fs::read_to_string(tmp.path().join("mlenergy.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["leaderboard"]["task"], "gpqa");
    assert_eq!(doc["format"], FORMAT);
}
