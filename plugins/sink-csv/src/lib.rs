//! `csv`: an llem sink writing plain CSV for spreadsheets and data frames.
//!
//! * `samples.csv`: every raw reading, as the kernel delivered it —
//!   `t_ns,source,device,energy_uj,power_mw` (one file, a `source` column; an
//!   empty cell is a reading the device does not give).
//! * `result.csv`: one header line and one row of the run's headline figures
//!   (columns in [`RESULT_COLUMNS`]; an empty cell is a figure the run does
//!   not have, never a zero).
//!
//! Both go to `dir`, or, when it is not set, to the directory the kernel
//! granted (the run directory). Source and device names come from third-party
//! plugins; the CSV writer quotes them.

use llem_sdk::{
    Config, OptionSpec, OptionType, Plugin, PluginError, PluginInfo, PluginKind, ResultDocument,
    SampleBatch, Sink,
};
use serde_json::Value;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

/// `result.csv`'s columns: the headline figures every first-party sink
/// writes (names and result.json pointers in `sink_common::HEADLINE`).
pub use sink_common::HEADLINE as RESULT_COLUMNS;

pub struct CsvSink {
    dir: PathBuf,
    samples: Option<csv::Writer<BufWriter<File>>>,
}

impl Plugin for CsvSink {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sink-csv".into(),
            kind: PluginKind::Sink,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Every sample to samples.csv and the headline figures to result.csv"
                .into(),
            options: vec![OptionSpec::with_default(
                "dir",
                OptionType::Path,
                "",
                "Directory the files go to (must exist); empty = the run directory",
            )],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        Ok(CsvSink {
            dir: sink_common::target_dir(&config)?,
            samples: None,
        })
    }
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `result.csv`'s two lines for a result.json document.
pub fn result_rows(result: &Value) -> (Vec<&'static str>, Vec<String>) {
    sink_common::headline(result)
        .map(|(name, value)| (name, cell(value)))
        .unzip()
}

impl CsvSink {
    fn samples_writer(&mut self) -> Result<&mut csv::Writer<BufWriter<File>>, PluginError> {
        if self.samples.is_none() {
            let path = self.dir.join("samples.csv");
            let file = File::create(&path)
                .map_err(|e| PluginError::io(format_args!("creating {}", path.display()), &e))?;
            let mut writer = csv::Writer::from_writer(BufWriter::new(file));
            writer
                .write_record(["t_ns", "source", "device", "energy_uj", "power_mw"])
                .map_err(csv_error)?;
            self.samples = Some(writer);
        }
        Ok(self.samples.as_mut().expect("just set"))
    }
}

fn csv_error(e: csv::Error) -> PluginError {
    PluginError::other(format!("writing CSV: {e}"))
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl Sink for CsvSink {
    fn write_samples(&mut self, batch: &SampleBatch) -> Result<(), PluginError> {
        let writer = self.samples_writer()?;
        for s in &batch.samples {
            let device = batch
                .devices
                .get(s.device as usize)
                .cloned()
                .unwrap_or_else(|| s.device.to_string());
            writer
                .write_record([
                    s.t_ns.to_string(),
                    batch.source.clone(),
                    device,
                    opt(s.energy_uj),
                    opt(s.power_mw),
                ])
                .map_err(csv_error)?;
        }
        writer
            .flush()
            .map_err(|e| PluginError::io("writing samples.csv", &e))
    }

    fn write_result(&mut self, document: &ResultDocument) -> Result<(), PluginError> {
        let result = sink_common::parse_result(document)?;
        let (header, row) = result_rows(&result);
        let path = self.dir.join("result.csv");
        let mut writer = csv::Writer::from_path(&path).map_err(csv_error)?;
        writer.write_record(header).map_err(csv_error)?;
        writer.write_record(row).map_err(csv_error)?;
        writer
            .flush()
            .map_err(|e| PluginError::io(format_args!("writing {}", path.display()), &e))
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        // A run without samples still leaves a samples.csv with its header.
        let writer = self.samples_writer()?;
        writer
            .flush()
            .map_err(|e| PluginError::io("writing samples.csv", &e))
    }
}

llem_sdk::export_sink!(CsvSink);

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::Sample;

    fn open(dir: &std::path::Path) -> CsvSink {
        let config = Config::from_json(&format!(
            r#"{{"dir": {}}}"#,
            serde_json::to_string(&dir.display().to_string()).unwrap()
        ))
        .unwrap();
        CsvSink::open(config).unwrap()
    }

    #[test]
    fn samples_keep_source_device_and_empty_cells() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = open(tmp.path());
        sink.write_samples(&SampleBatch {
            source: "gpu, \"main\"".into(),
            devices: vec!["0".into(), "1".into()],
            samples: vec![
                Sample {
                    device: 1,
                    t_ns: 10,
                    energy_uj: Some(5),
                    power_mw: None,
                },
                Sample {
                    device: 0,
                    t_ns: 11,
                    energy_uj: None,
                    power_mw: Some(700),
                },
            ],
        })
        .unwrap();
        sink.finish().unwrap();
        let text = std::fs::read_to_string(tmp.path().join("samples.csv")).unwrap();
        assert_eq!(
            text,
            "t_ns,source,device,energy_uj,power_mw\n\
             10,\"gpu, \"\"main\"\"\",1,5,\n\
             11,\"gpu, \"\"main\"\"\",0,,700\n"
        );
    }

    #[test]
    fn result_row_leaves_missing_figures_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = open(tmp.path());
        let json = serde_json::json!({
            "run_id": "r1", "status": "complete",
            "energy": {"total_j": 12.5, "net_j": null},
            "inference": {"latency": {"ttft": {"mean": 4.0}}}
        });
        sink.write_result(&ResultDocument {
            schema_version: "0.2.0".into(),
            run_id: "r1".into(),
            json: json.to_string(),
        })
        .unwrap();
        let text = std::fs::read_to_string(tmp.path().join("result.csv")).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header.len(), RESULT_COLUMNS.len());
        let get = |c: &str| row[header.iter().position(|h| *h == c).unwrap()];
        assert_eq!(get("run_id"), "r1");
        assert_eq!(get("energy_total_j"), "12.5");
        assert_eq!(get("energy_net_j"), "");
        assert_eq!(get("ttft_mean_ms"), "4.0");
        assert_eq!(get("model"), "");
    }

    #[test]
    fn no_dir_in_a_native_build_is_a_config_error() {
        let config = Config::from_json(r#"{"dir": ""}"#).unwrap();
        assert!(CsvSink::open(config).is_err());
    }
}
