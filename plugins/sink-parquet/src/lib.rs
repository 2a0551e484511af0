//! `parquet`: an llem sink writing a Parquet dataset that pandas, polars and
//! pyarrow read across runs and studies.
//!
//! One table per kind, one file per run, under `dir` (or the run directory):
//!
//! * `readings/<run_id>.parquet`: every raw reading (`t_ns, source, device,
//!   energy_uj, power_mw`);
//! * `requests/<run_id>.parquet`: every request record (the fields of
//!   requests.jsonl, chunk times as a list column), when the kernel streams
//!   them (`llem:plugin-ext/sink-stream`);
//! * `results/<run_id>.parquet`: one row of the run's headline figures
//!   (`sink_common::HEADLINE`, the figures of sink-csv's result.csv).
//!
//! Every row starts with the run columns (`run_id, experiment, cycle, model,
//! study, config`), so `pd.read_parquet(f"{dir}/requests")` or
//! `pl.read_parquet(f"{dir}/requests/*.parquet")` reads every run of a study
//! as one frame and tells them apart.
//!
//! Memory is bounded: rows are written a row group (`row_group_rows`) at a
//! time as they arrive. The exception is a kernel without the stream, which
//! hands the readings over before the result and so before the sink knows
//! the run's id: those are held until the result names the run.

mod table;
mod tables;
#[cfg(test)]
mod tests;

use llem_sdk::{
    Config, OptionSpec, OptionType, Plugin, PluginError, PluginInfo, PluginKind, RequestRecord,
    ResultDocument, RunInfo, SampleBatch, Sink, Wanted,
};
use parquet::basic::Compression;
use std::path::{Path, PathBuf};
use table::{Settings, TableFile, text};
use tables::RunColumns;

pub const DEFAULT_ROW_GROUP_ROWS: i64 = 16_384;

pub struct ParquetSink {
    dir: PathBuf,
    settings: Settings,
    run: Option<RunColumns>,
    readings: Option<TableFile>,
    /// Only when the kernel streams requests (`begin_run` was called).
    requests: Option<TableFile>,
    /// Readings delivered before the run is known (a kernel without the
    /// stream delivers them before the result).
    pending: Vec<SampleBatch>,
}

impl Plugin for ParquetSink {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sink-parquet".into(),
            kind: PluginKind::Sink,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Readings, requests and headline results as a Parquet dataset (readings/, requests/, results/; one file per run)".into(),
            options: vec![
                OptionSpec::with_default(
                    "dir",
                    OptionType::Path,
                    "",
                    "Dataset directory (must exist; the tables go to readings/, requests/, results/ in it); empty = the run directory. Set it once in a study's base to gather every run",
                ),
                OptionSpec::with_default(
                    "compression",
                    OptionType::String,
                    "snappy",
                    "Page compression: `snappy` or `none`",
                )
                .choices(&["snappy", "none"]),
                OptionSpec::with_default(
                    "row_group_rows",
                    OptionType::Integer,
                    DEFAULT_ROW_GROUP_ROWS,
                    "Rows buffered before a row group is written (bounds the sink's memory)",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let dir = sink_common::target_dir(&config)?;
        let compression = match config
            .choice_or("compression", "snappy", &["snappy", "none"])?
            .as_str()
        {
            "none" => Compression::UNCOMPRESSED,
            _ => Compression::SNAPPY,
        };
        let rows: i64 = config
            .optional("row_group_rows")?
            .unwrap_or(DEFAULT_ROW_GROUP_ROWS);
        let row_group_rows = usize::try_from(rows)
            .ok()
            .filter(|r| (1..=10_000_000).contains(r))
            .ok_or_else(|| {
                PluginError::invalid_config(
                    "row_group_rows",
                    format!("must be 1 to 10000000 rows, found {rows}"),
                )
            })?;
        Ok(ParquetSink {
            dir,
            settings: Settings {
                compression,
                row_group_rows,
            },
            run: None,
            readings: None,
            requests: None,
            pending: Vec::new(),
        })
    }
}

/// A run id as a file name: the kernel's ids are already safe
/// (`2025-01-01T00-00-00Z-…`); anything else is replaced, never a path.
fn file_stem(run_id: &str) -> String {
    let stem: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.starts_with('.') || stem.is_empty() {
        format!("run{stem}")
    } else {
        stem
    }
}

impl ParquetSink {
    /// `<dir>/<table>/`, made if missing.
    fn table_dir(&self, table: &str) -> Result<PathBuf, PluginError> {
        let dir = self.dir.join(table);
        std::fs::create_dir_all(&dir).map_err(|e| {
            PluginError::io(format_args!("creating {}", dir.display()), &e).with_hint(format!(
                "`dir` ({}) must exist and be writable: the grant is that directory",
                self.dir.display()
            ))
        })?;
        Ok(dir)
    }

    fn create(&self, table: &str, fields: &[table::Field]) -> Result<TableFile, PluginError> {
        let run = self.known_run()?;
        TableFile::create(
            &self.table_dir(table)?,
            &file_stem(&run.run_id),
            table,
            fields,
            self.settings,
        )
    }

    fn known_run(&self) -> Result<&RunColumns, PluginError> {
        self.run.as_ref().ok_or_else(|| {
            PluginError::other("sink-parquet: the run is not known yet (no begin-run, no result)")
        })
    }

    /// The run is known: open the readings file and write what was held.
    fn start(&mut self, run: RunColumns, with_requests: bool) -> Result<(), PluginError> {
        self.run = Some(run);
        self.readings = Some(self.create("readings", &tables::readings_fields())?);
        if with_requests {
            self.requests = Some(self.create("requests", &tables::requests_fields())?);
        }
        for batch in std::mem::take(&mut self.pending) {
            self.write_readings(&batch)?;
        }
        Ok(())
    }

    fn write_readings(&mut self, batch: &SampleBatch) -> Result<(), PluginError> {
        let (Some(run), Some(file)) = (&self.run, &mut self.readings) else {
            // Not known yet: held until the result names the run.
            self.pending.push(batch.clone());
            return Ok(());
        };
        let source = text(&batch.source);
        let devices: Vec<_> = batch.devices.iter().map(|d| text(d)).collect();
        for sample in &batch.samples {
            let device = devices
                .get(sample.device as usize)
                .cloned()
                .unwrap_or_else(|| text(&sample.device.to_string()));
            file.push(&tables::reading_row(run, &source, &device, sample))?;
        }
        Ok(())
    }
}

fn close(file: Option<TableFile>) -> Result<(), PluginError> {
    file.map(TableFile::close).transpose().map(|_| ())
}

impl Sink for ParquetSink {
    fn begin_run(&mut self, run: &RunInfo) -> Result<Wanted, PluginError> {
        self.start(RunColumns::from_run(run), true)?;
        Ok(Wanted {
            requests: true,
            phase_events: false,
        })
    }

    fn write_samples(&mut self, batch: &SampleBatch) -> Result<(), PluginError> {
        self.write_readings(batch)
    }

    fn write_requests(&mut self, requests: &[RequestRecord]) -> Result<(), PluginError> {
        let (Some(run), Some(file)) = (&self.run, &mut self.requests) else {
            return Err(PluginError::other(
                "sink-parquet: requests arrived before begin-run (a kernel bug)",
            ));
        };
        for record in requests {
            file.push(&tables::request_row(run, record))?;
        }
        Ok(())
    }

    fn write_result(&mut self, document: &ResultDocument) -> Result<(), PluginError> {
        let result = sink_common::parse_result(document)?;
        if self.run.is_none() {
            self.start(RunColumns::from_result(&result)?, false)?;
        }
        let run = self.known_run()?;
        let row = tables::result_row(run, &result)?;
        let mut file = self.create("results", &tables::results_fields())?;
        file.push(&row)?;
        file.close()?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), PluginError> {
        if self.run.is_none() {
            let held: usize = self.pending.iter().map(|b| b.samples.len()).sum();
            return Err(PluginError::other(format!(
                "sink-parquet: the run never became known (no begin-run, no result document): \
                 {held} readings not written"
            )));
        }
        close(self.readings.take())?;
        close(self.requests.take())
    }
}

/// Where the files of `table` for `run_id` go under `dir` (for tests and docs).
pub fn table_path(dir: &Path, table: &str, run_id: &str) -> PathBuf {
    dir.join(table)
        .join(format!("{}.parquet", file_stem(run_id)))
}

llem_sdk::export_sink!(ParquetSink);
