//! `sink-parquet` in real `llem run`s: two runs write into one dataset
//! directory, and pyarrow, polars and pandas (the project's venv) read it back
//! as one frame per table with two run ids, with values equal to each run's
//! result.json (results), timeseries.csv (readings) and requests.jsonl
//! (requests).
//!
//! Requests reach the sink only through the sink stream
//! (`llem:plugin-ext/sink-stream`), as the run goes.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use crate::sinks::{manifest, run_any};
use llem_integration_tests::{plugin_dir, venv_python, wasm_artifact, workspace_root};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn plugins() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
        wasm_artifact("sink-parquet"),
    ])
}

/// `read_dataset.py`'s JSON: per table, rows as pyarrow and polars read them.
fn read_dataset(dir: &Path) -> Value {
    let script = workspace_root().join("tests/fixtures/parquet/read_dataset.py");
    let out = Command::new(venv_python())
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed (pyarrow, polars and pandas come from tests/python/requirements.txt: \
         run `bash tests/python/setup-venv.sh`):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// timeseries.csv's readings as JSON rows (an empty cell is null), sorted.
fn timeseries(run_dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("timeseries.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("t_ns,source,device,energy_uj,power_mw"),
        "timeseries.csv's header changed"
    );
    let number = |cell: &str| -> Value {
        if cell.is_empty() {
            Value::Null
        } else {
            cell.parse::<u64>().unwrap().into()
        }
    };
    let mut rows: Vec<Value> = lines
        .map(|line| {
            // The fixture's source and device names need no CSV quoting.
            let cells: Vec<&str> = line.split(',').collect();
            serde_json::json!([
                number(cells[0]),
                cells[1],
                cells[2],
                number(cells[3]),
                number(cells[4])
            ])
        })
        .collect();
    rows.sort_by_key(Value::to_string);
    rows
}

/// One library's rows of `run_id`, projected on `columns`, sorted.
fn rows_of(rows: &Value, run_id: &str, columns: &[&str]) -> Vec<Value> {
    let mut out: Vec<Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["run_id"] == run_id)
        .map(|r| columns.iter().map(|c| r[*c].clone()).collect())
        .collect();
    out.sort_by_key(Value::to_string);
    out
}

/// requests.jsonl as rows of the requests table's columns, sorted.
fn requests_jsonl(run_dir: &Path, columns: &[&str]) -> Vec<Value> {
    let text = std::fs::read_to_string(run_dir.join("requests.jsonl")).unwrap();
    let mut rows: Vec<Value> = text
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            columns.iter().map(|c| record[*c].clone()).collect()
        })
        .collect();
    rows.sort_by_key(Value::to_string);
    rows
}

const REQUEST_COLUMNS: &[&str] = &llem_integration_tests::REQUEST_FIELDS;

/// A results row against result.json: every headline figure, by the
/// pointer it stands for (numbers compared as f64: polars and pyarrow give
/// counts as integers, measured values as floats).
fn check_result_row(row: &Value, result: &Value, library: &str) {
    for (column, pointer) in sink_common::HEADLINE {
        let expected = result.pointer(pointer).cloned().unwrap_or(Value::Null);
        let got = &row[*column];
        let same = match (got.as_f64(), expected.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => *got == expected,
        };
        assert!(
            same,
            "{library}: results.{column} = {got}, result.json{pointer} = {expected}"
        );
    }
    // And a few by name, so the check does not rest on the shared table alone.
    assert_eq!(row["energy_total_j"], result["energy"]["total_j"]);
    assert_eq!(
        row["requests_succeeded"].as_u64(),
        result["inference"]["requests_succeeded"].as_u64()
    );
    assert_eq!(
        row["ttft_mean_ms"],
        result["inference"]["latency"]["ttft"]["mean"]
    );
}

#[test]
fn two_runs_into_one_dataset_read_back_with_pyarrow_polars_and_pandas() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    std::fs::create_dir_all(&dataset).unwrap();
    let path = manifest(
        dir.path(),
        &format!(
            "[plugins.pq]\nplugin = \"sink-parquet\"\ndir = {:?}\nrow_group_rows = 16\n",
            dataset.display().to_string()
        ),
    );
    let mut runs = Vec::new();
    for out in ["out1", "out2"] {
        // Run ids name the second a run started: two runs in one second into
        // different output directories share an id (the sink then keeps both
        // files, `<id>.parquet` and `<id>~2.parquet`; unit-tested). Start the
        // second run in the next second so the rows tell the runs apart.
        if !runs.is_empty() {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_millis();
            std::thread::sleep(std::time::Duration::from_millis(u64::from(1_050 - ms)));
        }
        let (code, stdout, stderr, run) = run_any(plugins.path(), &path, &dir.path().join(out));
        assert!(code == 0 || code == 3, "exit {code}\n{stderr}\n{stdout}");
        let sink = run.1["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["instance"] == "pq")
            .cloned()
            .unwrap();
        assert!(sink.get("error").is_none(), "{sink}\n{stderr}");
        runs.push(run);
    }
    let ids: Vec<&str> = runs
        .iter()
        .map(|(_, r)| r["run_id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    // One file per run and table; no partial file left behind.
    for table in ["readings", "results"] {
        let mut names: Vec<String> = std::fs::read_dir(dataset.join(table))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_unstable();
        let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}.parquet")).collect();
        expected.sort_unstable();
        assert_eq!(
            names, expected,
            "{table}/ holds more than one finished file per run"
        );
    }

    let data = read_dataset(&dataset);
    for library in ["pyarrow", "polars"] {
        // Results: one row per run, the figures of its result.json.
        let results = data["results"][library].as_array().unwrap();
        assert_eq!(results.len(), 2, "{library}: {results:?}");
        for (_, result) in &runs {
            let row = results
                .iter()
                .find(|r| r["run_id"] == result["run_id"])
                .unwrap();
            check_result_row(row, result, library);
        }
        // Readings: exactly each run's timeseries.csv.
        let columns = ["t_ns", "source", "device", "energy_uj", "power_mw"];
        for (run_dir, result) in &runs {
            let id = result["run_id"].as_str().unwrap();
            let ours = rows_of(&data["readings"][library], id, &columns);
            let theirs = timeseries(run_dir);
            assert!(!theirs.is_empty());
            assert_eq!(
                ours, theirs,
                "{library}: readings of {id} differ from timeseries.csv"
            );
            let row = data["readings"][library]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["run_id"] == id)
                .unwrap();
            assert_eq!(row["experiment"], "sinks");
            assert_eq!(row["model"], "fake-model");
            assert_eq!(row["cycle"], result["experiment"]["cycle"]);
        }
        // Requests, streamed during the run: the records of requests.jsonl.
        for (run_dir, result) in &runs {
            let id = result["run_id"].as_str().unwrap();
            let ours = rows_of(&data["requests"][library], id, REQUEST_COLUMNS);
            let theirs = requests_jsonl(run_dir, REQUEST_COLUMNS);
            assert!(!theirs.is_empty());
            assert_eq!(
                ours, theirs,
                "{library}: requests of {id} differ from requests.jsonl"
            );
        }
    }
    // Types as a reader sees them: unsigned kernel integers, list of chunk times.
    let types = &data["readings"]["pyarrow_types"];
    assert_eq!(types["t_ns"], "uint64");
    assert_eq!(types["power_mw"], "uint64");
    assert_eq!(data["results"]["pyarrow_types"]["energy_total_j"], "double");
    assert_eq!(
        data["requests"]["pyarrow_types"]["chunk_ns"],
        "list<element: uint64 not null>"
    );
    // pandas reads each table directory as one frame of both runs.
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    for table in ["readings", "requests", "results"] {
        assert_eq!(
            data[table]["pandas"]["run_ids"],
            serde_json::json!(sorted),
            "{table}"
        );
        assert_eq!(
            data[table]["pandas"]["rows"].as_u64().unwrap() as usize,
            data[table]["pyarrow"].as_array().unwrap().len()
        );
    }
}

#[test]
fn by_default_the_dataset_goes_into_the_run_directory() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "[plugins.pq]\nplugin = \"sink-parquet\"\n");
    let (code, stdout, stderr, (run_dir, result)) = run_any(plugins.path(), &path, dir.path());
    assert!(code == 0 || code == 3, "exit {code}\n{stderr}\n{stdout}");
    let id = result["run_id"].as_str().unwrap();
    let data = read_dataset(&run_dir);
    assert_eq!(
        data["readings"]["polars"].as_array().unwrap().len(),
        timeseries(&run_dir).len()
    );
    assert!(run_dir.join(format!("results/{id}.parquet")).is_file());
    let results = data["results"]["polars"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["run_id"], id);
}
