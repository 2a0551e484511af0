//! The sink written natively and read back with parquet's own reader: rows,
//! types, nulls, the list column, row groups, and both ways the kernel may
//! deliver (with and without the stream).

#![allow(clippy::unwrap_used)]

use super::*;
use llem_sdk::Sample;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::{Value, json};

fn open(dir: &Path, extra: &str) -> ParquetSink {
    let config = Config::from_json(&format!(
        r#"{{"dir": {}{extra}}}"#,
        serde_json::to_string(&dir.display().to_string()).unwrap()
    ))
    .unwrap();
    ParquetSink::open(config).unwrap()
}

fn field_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => json!(b),
        Field::Int(i) => json!(i),
        Field::Long(i) => json!(i),
        Field::UInt(i) => json!(i),
        Field::ULong(i) => json!(i),
        Field::Double(f) => json!(f),
        Field::Str(s) => json!(s),
        Field::ListInternal(list) => list.elements().iter().map(field_json).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Every row of a file as a JSON object, and its number of row groups.
fn read(path: &Path) -> (Vec<serde_json::Map<String, Value>>, usize) {
    let reader = SerializedFileReader::try_from(path).unwrap();
    let groups = reader.metadata().num_row_groups();
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            row.unwrap()
                .get_column_iter()
                .map(|(name, field)| (name.clone(), field_json(field)))
                .collect()
        })
        .collect();
    (rows, groups)
}

fn run_info(run_id: &str) -> RunInfo {
    RunInfo {
        run_id: run_id.into(),
        experiment: "exp".into(),
        model: Some("m".into()),
        cycle: 2,
        started_at: "2026-12-01T00:00:00Z".into(),
        labels: vec![
            ("study".into(), "s1".into()),
            ("config".into(), "c3".into()),
        ],
    }
}

fn batch(n: u64) -> SampleBatch {
    SampleBatch {
        source: "gpu".into(),
        devices: vec!["0".into(), "1".into()],
        samples: (0..n)
            .map(|i| Sample {
                device: (i % 2) as u32,
                t_ns: 1_000 + i,
                energy_uj: (i % 3 != 0).then_some(10 * i),
                power_mw: Some(u64::MAX - i),
            })
            .collect(),
    }
}

fn result_doc(run_id: &str) -> ResultDocument {
    let json = json!({
        "run_id": run_id, "status": "complete",
        "experiment": {"name": "exp", "model": "m", "cycle": 2},
        "energy": {"total_j": 12.5, "net_j": null, "includes_estimates": false},
        "inference": {"requests_sent": 3, "latency": {"ttft": {"mean": 4.0}, "total_output_tokens": 7.0}},
        "quality": {"level": "good"}
    });
    ResultDocument {
        schema_version: "0.2.0".into(),
        run_id: run_id.into(),
        json: json.to_string(),
    }
}

fn request(index: u32, chunks: Vec<u64>, error: Option<&str>) -> RequestRecord {
    RequestRecord {
        index,
        prompt_id: format!("p{index}"),
        phase: "measured".into(),
        send_ns: 100,
        first_token_ns: chunks.first().copied(),
        chunk_ns: chunks,
        end_ns: 900,
        input_tokens: Some(5),
        output_tokens: error.is_none().then_some(2),
        tokens_from_usage: true,
        success: error.is_none(),
        error: error.map(str::to_owned),
    }
}

#[test]
fn a_streamed_run_writes_three_tables_in_row_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(tmp.path(), r#", "row_group_rows": 4"#);
    let wanted = sink.begin_run(&run_info("r1")).unwrap();
    assert_eq!(
        wanted,
        Wanted {
            requests: true,
            phase_events: false
        }
    );
    sink.write_samples(&batch(6)).unwrap();
    sink.write_samples(&batch(3)).unwrap();
    sink.write_requests(&[
        request(0, vec![200, 300, 400], None),
        request(1, vec![], Some("HTTP 500")),
    ])
    .unwrap();
    // Until finish, only hidden partial files: readers skip them.
    let readings = table_path(tmp.path(), "readings", "r1");
    assert!(!readings.exists());
    assert!(tmp.path().join("readings/.r1.parquet.partial").is_file());
    sink.write_result(&result_doc("r1")).unwrap();
    sink.finish().unwrap();
    assert!(!tmp.path().join("readings/.r1.parquet.partial").exists());

    let (rows, groups) = read(&readings);
    assert_eq!(rows.len(), 9);
    // 9 rows of at most 4: 4 + 4 + 1 (memory stays bounded).
    assert_eq!(groups, 3);
    let expected: Vec<Sample> = batch(6)
        .samples
        .into_iter()
        .chain(batch(3).samples)
        .collect();
    for (row, sample) in rows.iter().zip(&expected) {
        assert_eq!(row["run_id"], "r1");
        assert_eq!(row["experiment"], "exp");
        assert_eq!(row["cycle"], 2);
        assert_eq!(row["model"], "m");
        assert_eq!(row["study"], "s1");
        assert_eq!(row["config"], "c3");
        assert_eq!(row["source"], "gpu");
        assert_eq!(row["device"], sample.device.to_string());
        assert_eq!(row["t_ns"], sample.t_ns);
        assert_eq!(row["energy_uj"], json!(sample.energy_uj));
        // Unsigned 64-bit values survive whole.
        assert_eq!(row["power_mw"], json!(sample.power_mw));
    }

    let (rows, _) = read(&table_path(tmp.path(), "requests", "r1"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["chunk_ns"], json!([200, 300, 400]));
    assert_eq!(rows[0]["first_token_ns"], 200);
    assert_eq!(rows[0]["error"], Value::Null);
    assert_eq!(rows[0]["success"], true);
    assert_eq!(rows[0]["output_tokens"], 2);
    assert_eq!(rows[1]["chunk_ns"], json!([]));
    assert_eq!(rows[1]["first_token_ns"], Value::Null);
    assert_eq!(rows[1]["error"], "HTTP 500");
    assert_eq!(rows[1]["output_tokens"], Value::Null);
    assert_eq!(rows[1]["prompt_id"], "p1");

    let (rows, _) = read(&table_path(tmp.path(), "results", "r1"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["study"], "s1");
    assert_eq!(r["energy_total_j"], 12.5);
    assert_eq!(r["energy_net_j"], Value::Null);
    assert_eq!(r["includes_estimates"], false);
    assert_eq!(r["requests_sent"], 3);
    assert_eq!(r["total_output_tokens"], 7);
    assert_eq!(r["ttft_mean_ms"], 4.0);
    assert_eq!(r["quality"], "good");
    assert_eq!(r["model"], "m");
    // Every headline figure is a column.
    assert_eq!(r.len(), sink_common::HEADLINE.len() + 2);
}

#[test]
fn without_the_stream_readings_wait_for_the_result_and_no_requests_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(tmp.path(), r#", "compression": "none""#);
    sink.write_samples(&batch(5)).unwrap();
    assert!(!tmp.path().join("readings").exists());
    sink.write_result(&result_doc("r2")).unwrap();
    sink.finish().unwrap();
    let (rows, _) = read(&table_path(tmp.path(), "readings", "r2"));
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[4]["t_ns"], 1_004);
    assert_eq!(rows[0]["study"], Value::Null);
    assert_eq!(rows[0]["cycle"], 2);
    assert!(!tmp.path().join("requests").exists());
    assert!(table_path(tmp.path(), "results", "r2").is_file());
}

#[test]
fn a_run_without_readings_still_has_a_readable_empty_table() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sink = open(tmp.path(), "");
    sink.begin_run(&run_info("r3")).unwrap();
    sink.write_result(&result_doc("r3")).unwrap();
    sink.finish().unwrap();
    assert_eq!(read(&table_path(tmp.path(), "readings", "r3")).0.len(), 0);
    assert_eq!(read(&table_path(tmp.path(), "requests", "r3")).0.len(), 0);
}

#[test]
fn errors_name_the_option_or_the_missing_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = |extra: &str| {
        Config::from_json(&format!(
            r#"{{"dir": {}{extra}}}"#,
            serde_json::to_string(&tmp.path().display().to_string()).unwrap()
        ))
        .unwrap()
    };
    let err = ParquetSink::open(config(r#", "compression": "zstd""#))
        .err()
        .unwrap();
    assert!(err.to_string().contains("compression"), "{err}");
    let err = ParquetSink::open(config(r#", "row_group_rows": 0"#))
        .err()
        .unwrap();
    assert!(err.to_string().contains("row_group_rows"), "{err}");

    let mut sink = open(tmp.path(), "");
    sink.write_samples(&batch(2)).unwrap();
    let err = sink.finish().unwrap_err();
    assert!(err.to_string().contains("2 readings not written"), "{err}");
    let err = sink
        .write_requests(&[request(0, vec![], None)])
        .unwrap_err();
    assert!(err.to_string().contains("before begin-run"), "{err}");
}

#[test]
fn run_ids_never_become_paths() {
    assert_eq!(file_stem("2026-12-01T00-00-00Z"), "2026-12-01T00-00-00Z");
    assert_eq!(file_stem("../x/y"), "run.._x_y");
    assert_eq!(file_stem(""), "run");
}

#[test]
fn a_second_file_of_the_same_name_never_replaces_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let fields = [table::Field::required("a", table::Type::U64)];
    let settings = table::Settings {
        compression: Compression::UNCOMPRESSED,
        row_group_rows: 16,
    };
    for _ in 0..3 {
        let t = table::TableFile::create(tmp.path(), "r1", "t", &fields, settings).unwrap();
        t.close().unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["r1.parquet", "r1~2.parquet", "r1~3.parquet"]);
}
