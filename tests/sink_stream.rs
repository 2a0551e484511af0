//! Sinks that stream (`llem:plugin-ext/sink-stream`, C `llem_sink_stream_v1`)
//! in a real `llem run`: what they receive is recomputed from the run
//! directory (timeseries.csv, requests.jsonl, result.json `phases`), it
//! arrives while the run goes on, a sink that hangs cannot hold the run, and
//! sinks without the extension work as before.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{
    build_c_plugin, llem, only_run, output, plugin_dir, schema_violations, wasm_artifact,
    workspace_root,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAX_SAMPLES: usize = 10_000;
const MAX_REQUESTS: usize = 1_000;
const MAX_EVENTS: usize = 1_000;

fn plugins(extra: &[PathBuf]) -> tempfile::TempDir {
    let mut files = vec![
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
        wasm_artifact("dataset-jsonl"),
        wasm_artifact("sink-csv"),
        wasm_artifact("sink-stream"),
    ];
    files.extend_from_slice(extra);
    plugin_dir(&files)
}

/// A server run against the fake OpenAI server: `prompts` prompts, each
/// answer `tokens` tokens `token_ms` apart, two warm-up requests, then
/// `tail` (load options, sinks …).
fn manifest(dir: &Path, prompts: usize, tokens: u32, token_ms: u32, tail: &str) -> PathBuf {
    crate::sinks::fake_server_manifest(
        dir,
        "stream",
        prompts,
        tokens,
        token_ms,
        "max_concurrency = 2\nwarmup_requests = 2",
        tail,
    )
}

fn command(plugins: &Path, manifest: &Path, out: &Path) -> std::process::Command {
    let mut command = llem(plugins);
    command
        .arg("run")
        .args(["--set", "measurement.baseline=off"])
        .arg(manifest)
        .arg("--output")
        .arg(out);
    command
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The lines written so far, while the sink may be appending (a partial last
/// line is left for the next look).
fn lines_so_far(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map_while(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Every call of one kind, in the order the sink got them.
fn calls<'a>(calls: &'a [Value], kind: &str) -> Vec<&'a Value> {
    calls.iter().filter(|c| c["call"] == kind).collect()
}

/// timeseries.csv as (t_ns, source, device, energy_uj, power_mw) rows, in file order.
/// One reading: `t_ns, source, device, energy_uj, power_mw`.
type Row = (u64, String, String, Option<u64>, Option<u64>);

fn timeseries(run_dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(run_dir.join("timeseries.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let n = |s: &str| (!s.is_empty()).then(|| s.parse::<u64>().unwrap());
            (
                f[0].parse().unwrap(),
                f[1].to_owned(),
                f[2].to_owned(),
                n(f[3]),
                n(f[4]),
            )
        })
        .collect()
}

/// The readings of `write-samples` batches (JSON, as the SDK serialises
/// them) as timeseries rows; checks every batch's bound.
fn delivered_readings<'a>(batches: impl Iterator<Item = &'a Value>) -> Vec<Row> {
    let mut rows = Vec::new();
    for batch in batches {
        let samples = batch["samples"].as_array().unwrap();
        assert!(
            samples.len() <= MAX_SAMPLES,
            "{} readings in one call",
            samples.len()
        );
        let devices = batch["devices"].as_array().unwrap();
        for s in samples {
            rows.push((
                s["t_ns"].as_u64().unwrap(),
                batch["source"].as_str().unwrap().to_owned(),
                devices[s["device"].as_u64().unwrap() as usize]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                s["energy_uj"].as_u64(),
                s["power_mw"].as_u64(),
            ));
        }
    }
    rows
}

/// result.json's phases as the edges a sink should have been told, in order.
fn phase_edges(result: &Value) -> Vec<Value> {
    result["phases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            [
                json!({"phase": p["name"], "edge": "start", "t_ns": p["start_ns"]}),
                json!({"phase": p["name"], "edge": "end", "t_ns": p["end_ns"]}),
            ]
        })
        .collect()
}

/// requests.jsonl lines with the fields of the sink contract, by index.
fn request_lines(run_dir: &Path) -> Vec<Value> {
    const FIELDS: [&str; 12] = llem_integration_tests::REQUEST_FIELDS;
    let mut out: Vec<Value> = lines(&run_dir.join("requests.jsonl"))
        .into_iter()
        .map(|line| {
            let picked: serde_json::Map<String, Value> = FIELDS
                .iter()
                .map(|f| {
                    (
                        (*f).to_owned(),
                        line.get(*f).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect();
            Value::Object(picked)
        })
        .collect();
    out.sort_by_key(|r| r["index"].as_u64());
    out
}

fn sink<'a>(result: &'a Value, instance: &str) -> &'a Value {
    result["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["instance"] == instance)
        .unwrap_or_else(|| panic!("no sink `{instance}` in {}", result["sinks"]))
}

#[test]
fn a_streaming_sink_gets_every_reading_event_and_request_once_in_bounds() {
    let plugins = plugins(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        8,
        8,
        2,
        "[plugins.rec]\nplugin = \"sink-stream\"\n",
    );
    let (code, stdout, stderr) = output(&mut command(plugins.path(), &path, dir.path()));
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run_dir, result) = only_run(&dir.path().join("stream"));
    assert_eq!(result["status"], "complete");
    let calls_seen = lines(&run_dir.join("calls.jsonl"));

    // begin-run first, with this run's identity; the result, then finish, last.
    let first = &calls_seen[0];
    assert_eq!(first["call"], "begin_run");
    assert_eq!(first["run"]["run_id"], result["run_id"]);
    assert_eq!(first["run"]["started_at"], result["started_at"]);
    assert_eq!(first["run"]["experiment"], "stream");
    assert_eq!(first["run"]["model"], "fake-model");
    assert_eq!(first["run"]["cycle"], 1);
    assert_eq!(first["run"]["labels"], json!([]));
    assert_eq!(calls(&calls_seen, "begin_run").len(), 1);
    let n = calls_seen.len();
    assert_eq!(calls_seen[n - 2]["call"], "write_result");
    assert_eq!(calls_seen[n - 2]["run_id"], result["run_id"]);
    assert_eq!(calls_seen[n - 1]["call"], "finish");

    // Readings: exactly timeseries.csv's rows, in its order.
    let readings = delivered_readings(
        calls(&calls_seen, "write_samples")
            .into_iter()
            .map(|c| &c["batch"]),
    );
    let rows = timeseries(&run_dir);
    assert!(rows.len() > 10, "{} readings", rows.len());
    assert_eq!(readings, rows);

    // Phase events: result.json's phases, start and end, in the order they ran.
    let mut events = Vec::new();
    for c in calls(&calls_seen, "write_events") {
        let batch = c["events"].as_array().unwrap();
        assert!(batch.len() <= MAX_EVENTS);
        events.extend(batch.iter().cloned());
    }
    assert_eq!(events, phase_edges(&result));
    assert!(events.iter().any(|e| e["phase"] == "measured"));

    // Requests: requests.jsonl line by line (chunk times included), warm-up
    // ones delivered before measured ones (completion order).
    let mut requests = Vec::new();
    for c in calls(&calls_seen, "write_requests") {
        let batch = c["requests"].as_array().unwrap();
        assert!(!batch.is_empty() && batch.len() <= MAX_REQUESTS);
        requests.extend(batch.iter().cloned());
    }
    let phases: Vec<&str> = requests
        .iter()
        .map(|r| r["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases.iter().filter(|p| **p == "warmup").count(), 2);
    assert!(phases.is_sorted_by_key(|p| *p == "measured"), "{phases:?}");
    requests.sort_by_key(|r| r["index"].as_u64());
    let expected = request_lines(&run_dir);
    assert_eq!(expected.len(), 10);
    assert!(
        expected
            .iter()
            .all(|r| !r["chunk_ns"].as_array().unwrap().is_empty())
    );
    assert_eq!(requests, expected);

    // result.json counts exactly that, per kind, and fits its schema.
    let outcome = sink(&result, "rec");
    assert_eq!(
        outcome["readings"],
        json!({"delivered": rows.len(), "dropped": 0})
    );
    assert_eq!(
        outcome["events"],
        json!({"delivered": events.len(), "dropped": 0})
    );
    assert_eq!(
        outcome["requests"],
        json!({"delivered": expected.len(), "dropped": 0})
    );
    assert_eq!(
        outcome["delivered"],
        json!(rows.len() + events.len() + expected.len() + 1)
    );
    assert_eq!(outcome["dropped"], 0);
    assert!(outcome.get("error").is_none(), "{outcome}");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("docs/result.schema.json")).unwrap(),
    )
    .unwrap();
    let violations = schema_violations(&schema, &result);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn records_reach_the_sink_while_the_run_is_still_going() {
    let plugins = plugins(&[]);
    let dir = tempfile::tempdir().unwrap();
    // 12 requests of 20 tokens 40 ms apart, two at a time: a measured window
    // of about 5 s, then 3 s of cool-down before llem exits.
    let path = manifest(
        dir.path(),
        12,
        20,
        40,
        "[measurement]\ncooldown_s = 3.0\n\n[plugins.rec]\nplugin = \"sink-stream\"\nwant = \"all\"\n",
    );
    let mut child = command(plugins.path(), &path, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let experiment = dir.path().join("stream");
    let started = Instant::now();
    let mut seen_while_running = 0usize;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "llem did not end"
        );
        if let Some(Ok(run)) = std::fs::read_dir(&experiment)
            .ok()
            .and_then(|mut d| d.next())
        {
            let seen = lines_so_far(&run.path().join("calls.jsonl"));
            seen_while_running = seen_while_running.max(
                calls(&seen, "write_requests")
                    .iter()
                    .map(|c| c["requests"].as_array().unwrap().len())
                    .sum(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let (run_dir, result) = only_run(&experiment);
    // Seen while llem was still running: all of them (the cool-down is
    // longer than the delivery period).
    assert_eq!(seen_while_running, 14, "records seen before llem exited");

    // And inside the measured window: the sink had measured records before
    // it was told the window ended.
    let seen = lines(&run_dir.join("calls.jsonl"));
    let first_measured_records = seen
        .iter()
        .position(|c| {
            c["call"] == "write_requests"
                && c["requests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["phase"] == "measured")
        })
        .unwrap();
    let window_end = seen
        .iter()
        .position(|c| {
            c["call"] == "write_events"
                && c["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["phase"] == "measured" && e["edge"] == "end")
        })
        .unwrap();
    assert!(
        first_measured_records < window_end,
        "measured records only after the window closed: call {first_measured_records} vs {window_end}"
    );
    let measured = result["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "measured")
        .unwrap();
    assert!(measured["duration_s"].as_f64().unwrap() > 2.0, "{measured}");
}

#[test]
fn a_sink_that_hangs_cannot_hold_the_run_and_is_recorded_failed() {
    let plugins = plugins(&[]);
    let dir = tempfile::tempdir().unwrap();
    // write-requests sleeps for an hour; its deadline is 1 s.
    let path = manifest(
        dir.path(),
        8,
        8,
        2,
        "[plugins.rec]\nplugin = \"sink-stream\"\nstall = \"write-requests\"\n\
         sandbox = { call_timeout_ms = 1000 }\n\n[plugins.csv]\nplugin = \"sink-csv\"\n",
    );
    let started = Instant::now();
    let (code, stdout, stderr) = output(&mut command(plugins.path(), &path, dir.path()));
    let took = started.elapsed();
    assert_eq!(code, 3, "{stderr}\n{stdout}");
    assert!(took < Duration::from_secs(60), "the run took {took:?}");
    let (run_dir, result) = only_run(&dir.path().join("stream"));
    assert_eq!(result["status"], "degraded");
    let reasons = result["status_reasons"].to_string();
    assert!(reasons.contains("sink `rec` failed"), "{reasons}");
    assert!(stderr.contains("warning: plugin `sink-stream`"), "{stderr}");

    let rec = sink(&result, "rec");
    let error = rec["error"].as_str().unwrap();
    assert!(
        error.contains("write-requests") && error.contains("deadline"),
        "{error}"
    );
    // It took nothing after the call that hung: every request and the result
    // are counted dropped, and the totals add up.
    let requests = request_lines(&run_dir).len() as u64;
    assert_eq!(rec["requests"]["delivered"], 0);
    assert_eq!(rec["requests"]["dropped"], requests);
    let parts = ["readings", "events", "requests"];
    let sum = |field: &str| -> u64 { parts.iter().map(|p| rec[p][field].as_u64().unwrap()).sum() };
    assert_eq!(rec["delivered"].as_u64(), Some(sum("delivered")));
    assert_eq!(rec["dropped"].as_u64(), Some(sum("dropped") + 1));

    // The measurement itself is whole: the other sink got everything, the
    // figures are there, every request is on disk.
    let csv = sink(&result, "csv");
    let rows = timeseries(&run_dir).len() as u64;
    assert_eq!(csv["readings"], json!({"delivered": rows, "dropped": 0}));
    assert!(csv.get("error").is_none(), "{csv}");
    assert_eq!(requests, 10);
    assert!(result["energy"]["total_j"].as_f64().unwrap() > 0.0);
    let measured_ok = request_lines(&run_dir)
        .iter()
        .filter(|r| r["phase"] == "measured" && r["success"] == true)
        .count() as u64;
    assert_eq!(measured_ok, 8);
    assert_eq!(
        result["inference"]["latency"]["completed"].as_u64(),
        Some(measured_ok)
    );
    assert_eq!(
        result["inference"]["requests_succeeded"].as_u64(),
        Some(requests)
    );
    let reasons: Vec<&str> = result["status_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
}

#[test]
fn a_sink_without_the_stream_extension_works_as_before() {
    let plugins = plugins(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(
        dir.path(),
        4,
        4,
        2,
        "[plugins.csv]\nplugin = \"sink-csv\"\n\n[plugins.quiet]\nplugin = \"sink-stream\"\nwant = \"none\"\n",
    );
    let (code, stdout, stderr) = output(&mut command(plugins.path(), &path, dir.path()));
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run_dir, result) = only_run(&dir.path().join("stream"));
    let rows = timeseries(&run_dir);
    // sink-csv (0.1.0 contract): samples.csv holds timeseries.csv's rows.
    let samples = std::fs::read_to_string(run_dir.join("samples.csv")).unwrap();
    let timeseries_text = std::fs::read_to_string(run_dir.join("timeseries.csv")).unwrap();
    let mut ours: Vec<&str> = samples.lines().skip(1).collect();
    let mut theirs: Vec<&str> = timeseries_text.lines().skip(1).collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
    assert!(run_dir.join("result.csv").is_file());
    for instance in ["csv", "quiet"] {
        let outcome = sink(&result, instance);
        assert_eq!(
            outcome["readings"],
            json!({"delivered": rows.len(), "dropped": 0}),
            "{instance}"
        );
        // Nothing asked for, nothing counted: no events or requests entries.
        assert!(outcome.get("events").is_none(), "{outcome}");
        assert!(outcome.get("requests").is_none(), "{outcome}");
        assert_eq!(outcome["delivered"], json!(rows.len() + 1));
    }
    // A stream-aware sink that wants nothing more gets no events or records.
    let seen = lines(&run_dir.join("calls.jsonl"));
    assert!(calls(&seen, "write_events").is_empty());
    assert!(calls(&seen, "write_requests").is_empty());
    assert_eq!(calls(&seen, "begin_run").len(), 1);
}

/// `<call> <json>` lines of the C fixture.
fn c_calls(path: &Path) -> Vec<(String, Value)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let (call, json) = line.split_once(' ').unwrap();
            (call.to_owned(), serde_json::from_str(json).unwrap())
        })
        .collect()
}

#[test]
fn a_native_c_sink_streams_through_the_header_and_one_without_it_still_loads() {
    let build = tempfile::tempdir().unwrap();
    // Discovery names a plugin after its file: `libsink_c_stream.so` is `sink-c-stream`.
    let named = |built: PathBuf, name: &str| {
        let path = build.path().join(name);
        std::fs::rename(built, &path).unwrap();
        path
    };
    let with = named(
        build_c_plugin("sink_stream.c", &[], build.path()),
        "libsink_c_stream.so",
    );
    let without = named(
        build_c_plugin("sink_stream.c", &["LLEM_FIXTURE_NO_STREAM"], build.path()),
        "libsink_c_old.so",
    );
    let plugins = plugins(&[with, without]);
    let dir = tempfile::tempdir().unwrap();
    let out_with = dir.path().join("with.txt");
    let out_without = dir.path().join("without.txt");
    let path = manifest(
        dir.path(),
        4,
        4,
        2,
        &format!(
            "[plugins.c]\nplugin = \"sink-c-stream\"\nout = {:?}\n\n\
             [plugins.old]\nplugin = \"sink-c-old\"\nout = {:?}\n\n\
             [plugins.rec]\nplugin = \"sink-stream\"\n",
            out_with.display().to_string(),
            out_without.display().to_string(),
        ),
    );
    let (code, stdout, stderr) = output(&mut command(plugins.path(), &path, dir.path()));
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let (run_dir, result) = only_run(&dir.path().join("stream"));

    // The C sink got what the WASM recorder got: same run, events, requests
    // and readings.
    let c = c_calls(&out_with);
    assert_eq!(c[0].0, "begin_run");
    assert_eq!(c[0].1["run_id"], result["run_id"]);
    let wasm = lines(&run_dir.join("calls.jsonl"));
    let gather = |calls: &[(String, Value)], kind: &str| -> Vec<Value> {
        calls
            .iter()
            .filter(|(call, _)| call == kind)
            .flat_map(|(_, v)| v.as_array().unwrap().clone())
            .collect()
    };
    let wasm_events: Vec<Value> = calls(&wasm, "write_events")
        .iter()
        .flat_map(|c| c["events"].as_array().unwrap().clone())
        .collect();
    assert_eq!(gather(&c, "write_events"), wasm_events);
    assert_eq!(gather(&c, "write_events"), phase_edges(&result));
    let mut c_requests = gather(&c, "write_requests");
    c_requests.sort_by_key(|r| r["index"].as_u64());
    assert_eq!(c_requests, request_lines(&run_dir));
    let c_readings = delivered_readings(
        c.iter()
            .filter(|(call, _)| call == "write_samples")
            .map(|(_, v)| v),
    );
    assert_eq!(c_readings, timeseries(&run_dir));
    assert_eq!(c[c.len() - 2].0, "write_result");
    assert_eq!(c[c.len() - 1].0, "finish");

    // Without the symbol: readings and the result, nothing else, no error.
    let old = c_calls(&out_without);
    let kinds: std::collections::BTreeSet<&str> = old.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["finish", "write_result", "write_samples"]
            .into_iter()
            .collect()
    );
    let old_outcome = sink(&result, "old");
    assert!(old_outcome.get("error").is_none(), "{old_outcome}");
    assert!(old_outcome.get("events").is_none());
    assert_eq!(sink(&result, "c")["dropped"], 0);
}
