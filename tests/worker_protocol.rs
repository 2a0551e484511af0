//! The kernel's side of the worker protocol (`kernel/src/engine/worker.rs`)
//! against the real offline worker: backend-pytorch's assembled
//! `WORKER_SCRIPT` (the shared `plugins/backend-common/worker_protocol.py`
//! plus the PyTorch part), planned by the plugin itself and started by the
//! kernel on a tiny random Llama. What the shared module emits, the kernel
//! must read: `ready` with versions, per-request timing, token counts,
//! errors. Needs the Python environment of `tests/python/setup-venv.sh`.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::engine::worker::{self, Job, WorkerError};
use llem::engine::{ConfinementMode, EngineGrants, EngineProcess};
use llem::loadgen::{Decoding, RequestRecord, summarize};
use llem_integration_tests::{tiny_model, venv_python};
use llem_sdk::{Backend, Config, EnginePlan, PlanRequest, Plugin, Prompt, PromptBody};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The offline plan backend-pytorch makes, with `options` over its defaults.
fn plan(run_dir: &Path, options: Value) -> EnginePlan {
    let mut config = json!({"python": venv_python().display().to_string(), "device_map": "cpu"});
    config
        .as_object_mut()
        .unwrap()
        .extend(options.as_object().unwrap().clone());
    let mut pytorch =
        backend_pytorch::Pytorch::open(Config::from_json(&config.to_string()).unwrap()).unwrap();
    pytorch
        .plan(&PlanRequest {
            model: tiny_model().display().to_string(),
            host: "127.0.0.1".into(),
            port: 0,
            run_dir: run_dir.display().to_string(),
        })
        .unwrap()
}

fn start(run_dir: &Path, plan: &EnginePlan) -> EngineProcess {
    // The protocol is under test here, not the confinement.
    let grants = EngineGrants {
        mode: ConfinementMode::None,
        ..EngineGrants::allowing("pytorch", &[plan.program.as_str()])
    };
    EngineProcess::spawn(plan, &grants, run_dir, true).unwrap()
}

fn prompt(id: &str, text: &str, max_output_tokens: u32) -> Prompt {
    Prompt {
        id: id.into(),
        body: PromptBody::Text(text.into()),
        input_tokens: None,
        max_output_tokens: Some(max_output_tokens),
    }
}

/// The plugin's options, as the kernel passes them on in `hello`.
fn options(values: Value) -> Map<String, Value> {
    values.as_object().unwrap().clone()
}

#[test]
fn the_kernel_reads_what_the_assembled_pytorch_worker_says() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), json!({"batch_size": 2}));
    assert_eq!(
        plan.worker_script.as_deref(),
        Some(backend_pytorch::WORKER_SCRIPT)
    );
    let mut engine = start(dir.path(), &plan);
    // Two requests of different lengths in one batch (batch_size 2).
    let prompts = [
        prompt("short", "Once upon a time", 2),
        prompt("long", "The quick brown fox", 9),
    ];
    let hello_options = options(json!({"device_map": "cpu", "batch_size": 2}));
    let stop = AtomicBool::new(false);
    let (info, records) = worker::run(
        &mut engine,
        Job {
            model: &tiny_model().display().to_string(),
            options: &hello_options,
            prompts: &prompts,
            decoding: Decoding {
                max_tokens: 16,
                ignore_eos: true,
                ..Decoding::default()
            },
            ready_timeout: Duration::from_secs(300),
            max_concurrency: None,
        },
        &stop,
        |_, _| {},
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", engine.log_tail()));

    assert_eq!(
        (info.engine.as_str(), info.device.as_str()),
        ("transformers", "cpu")
    );
    let versions = info.versions.expect("ready carries versions");
    assert!(
        versions.python.is_some() && versions.torch.is_some() && versions.transformers.is_some()
    );

    for (record, want) in records.iter().zip([2, 9]) {
        assert_eq!(record.error, None, "{record:?}");
        assert_eq!(record.output_tokens, Some(want));
        assert!(record.input_tokens.unwrap() >= 2, "BOS and the prompt");
        assert_eq!(record.chunks.iter().map(|c| c.1).sum::<u32>(), want);
        let first = record.first_token_ns.unwrap();
        assert!(record.send_ns <= first);
        assert_eq!(
            record.chunks[0].0, first,
            "the first token's step has a token line"
        );
        assert!(record.chunks.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(
            record.end_ns,
            record.chunks.last().map(|c| c.0),
            "done is the request's own last token"
        );
    }
    let (short, long) = (&records[0], &records[1]);
    assert_eq!(
        short.first_token_ns, long.first_token_ns,
        "one batch: shared step times"
    );
    assert!(short.end_ns < long.end_ns, "the short row ended first");

    // TPOT from each request's own timestamps: (own end − first token) / (n − 1).
    let requests: Vec<RequestRecord> = records
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, r)| r.into_request_record(i))
        .collect();
    let tpot_ms = |r: &RequestRecord, n: u64| {
        (r.end_ns - r.first_token_ns.unwrap()) as f64 / 1e6 / (n - 1) as f64
    };
    let (short_tpot, long_tpot) = (tpot_ms(&requests[0], 2), tpot_ms(&requests[1], 9));
    let summary = summarize(&requests, None, &[]);
    assert_eq!(summary.tpot.count, 2);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(
        close(summary.tpot.min, short_tpot.min(long_tpot))
            && close(summary.tpot.max, short_tpot.max(long_tpot)),
        "{:?} vs {short_tpot} and {long_tpot}",
        summary.tpot
    );
    // Had the short request ended with the batch, its TPOT would be this.
    let stretched = (requests[1].end_ns - requests[0].first_token_ns.unwrap()) as f64 / 1e6;
    assert!(short_tpot < stretched);
    assert_eq!(summary.total_output_tokens, 11);
}

#[test]
fn a_model_that_cannot_load_fails_with_the_workers_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), json!({}));
    let mut engine = start(dir.path(), &plan);
    let missing = dir.path().join("no-such-model").display().to_string();
    let stop = AtomicBool::new(false);
    let err = worker::run(
        &mut engine,
        Job {
            model: &missing,
            options: &options(json!({"device_map": "cpu"})),
            prompts: &[prompt("p", "hi", 2)],
            decoding: Decoding::default(),
            ready_timeout: Duration::from_secs(300),
            max_concurrency: None,
        },
        &stop,
        |_, _| {},
    )
    .unwrap_err();
    let WorkerError::Failed(message) = &err else {
        panic!("expected the worker's error line, got {err}");
    };
    assert!(
        // The worker quotes the model as Python's repr does.
        message.starts_with(&format!("cannot load model '{missing}': ")),
        "{message}"
    );
}
