//! The three tables and their columns. Every table starts with the same run
//! columns ([`RUN_FIELDS`]) so that rows of many runs, read as one frame, can
//! be told apart; every file of a table has the same schema, so a directory
//! of them reads as one table.

use crate::table::{Cell, Field, Type, text};
use llem_sdk::{PluginError, RequestRecord, RunInfo, Sample};
use parquet::data_type::ByteArray;
use serde_json::Value;
use sink_common::Kind;

/// The columns that say which run a row belongs to.
pub const RUN_FIELDS: [Field; 6] = [
    Field::required("run_id", Type::Text),
    Field::required("experiment", Type::Text),
    Field::required("cycle", Type::U32),
    Field::nullable("model", Type::Text),
    // From the run's labels: set for a run of a study, else null.
    Field::nullable("study", Type::Text),
    Field::nullable("config", Type::Text),
];

pub const READING_FIELDS: [Field; 5] = [
    Field::required("t_ns", Type::U64),
    Field::required("source", Type::Text),
    Field::required("device", Type::Text),
    Field::nullable("energy_uj", Type::U64),
    Field::nullable("power_mw", Type::U64),
];

pub const REQUEST_FIELDS: [Field; 12] = [
    Field::required("index", Type::U32),
    Field::required("prompt_id", Type::Text),
    Field::required("phase", Type::Text),
    Field::required("send_ns", Type::U64),
    Field::nullable("first_token_ns", Type::U64),
    Field::required("chunk_ns", Type::ListU64),
    Field::required("end_ns", Type::U64),
    Field::nullable("input_tokens", Type::U32),
    Field::nullable("output_tokens", Type::U32),
    Field::required("tokens_from_usage", Type::Bool),
    Field::required("success", Type::Bool),
    Field::nullable("error", Type::Text),
];

pub fn readings_fields() -> Vec<Field> {
    RUN_FIELDS.iter().chain(&READING_FIELDS).copied().collect()
}

pub fn requests_fields() -> Vec<Field> {
    RUN_FIELDS.iter().chain(&REQUEST_FIELDS).copied().collect()
}

/// The results table: the run columns, then every headline figure that is
/// not one of them, typed by its kind, nullable (a figure the run does not
/// have is null, never zero).
pub fn results_fields() -> Vec<Field> {
    let figures = sink_common::HEADLINE
        .iter()
        .filter(|(name, _)| !RUN_FIELDS.iter().any(|f| f.name == *name))
        .map(|(name, _)| {
            let ty = match sink_common::kind(name) {
                Kind::Text => Type::Text,
                Kind::Boolean => Type::Bool,
                Kind::Integer => Type::I64,
                Kind::Float => Type::F64,
            };
            Field::nullable(name, ty)
        });
    RUN_FIELDS.iter().copied().chain(figures).collect()
}

/// The run columns' values, made once per run and shared by every row.
#[derive(Debug, Clone)]
pub struct RunColumns {
    pub run_id: String,
    cells: [Cell<'static>; 6],
}

fn opt_text(value: Option<&str>) -> Cell<'static> {
    value.map_or(Cell::Null, |v| Cell::Text(text(v)))
}

impl RunColumns {
    fn new(
        run_id: &str,
        experiment: &str,
        cycle: u32,
        model: Option<&str>,
        study: Option<&str>,
        config: Option<&str>,
    ) -> Self {
        RunColumns {
            run_id: run_id.to_owned(),
            cells: [
                Cell::Text(text(run_id)),
                Cell::Text(text(experiment)),
                Cell::U32(cycle),
                opt_text(model),
                opt_text(study),
                opt_text(config),
            ],
        }
    }

    /// From the stream's `begin-run`.
    pub fn from_run(run: &RunInfo) -> Self {
        let label = |key: &str| {
            run.labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        Self::new(
            &run.run_id,
            &run.experiment,
            run.cycle,
            run.model.as_deref(),
            label("study"),
            label("config"),
        )
    }

    /// From result.json, when the kernel did not call `begin-run` (a kernel
    /// without the stream: no study labels there).
    pub fn from_result(result: &Value) -> Result<Self, PluginError> {
        let missing = |what: &str| {
            PluginError::other(format!(
                "the result document has no {what}: sink-parquet cannot name the run's rows"
            ))
        };
        let run_id = result
            .pointer("/run_id")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("run_id"))?;
        let experiment = result
            .pointer("/experiment/name")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("experiment.name"))?;
        let cycle = result
            .pointer("/experiment/cycle")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok())
            .ok_or_else(|| missing("experiment.cycle"))?;
        let model = result.pointer("/experiment/model").and_then(Value::as_str);
        Ok(Self::new(run_id, experiment, cycle, model, None, None))
    }

    fn row<'a>(&self, rest: impl IntoIterator<Item = Cell<'a>>) -> Vec<Cell<'a>> {
        self.cells.iter().cloned().chain(rest).collect()
    }
}

fn opt_u64(v: Option<u64>) -> Cell<'static> {
    v.map_or(Cell::Null, Cell::U64)
}

fn opt_u32(v: Option<u32>) -> Cell<'static> {
    v.map_or(Cell::Null, Cell::U32)
}

/// One reading's row; `source` and `device` are made once per batch.
pub fn reading_row(
    run: &RunColumns,
    source: &ByteArray,
    device: &ByteArray,
    sample: &Sample,
) -> Vec<Cell<'static>> {
    run.row([
        Cell::U64(sample.t_ns),
        Cell::Text(source.clone()),
        Cell::Text(device.clone()),
        opt_u64(sample.energy_uj),
        opt_u64(sample.power_mw),
    ])
}

pub fn request_row<'a>(run: &RunColumns, r: &'a RequestRecord) -> Vec<Cell<'a>> {
    run.row([
        Cell::U32(r.index),
        Cell::Text(text(&r.prompt_id)),
        Cell::Text(text(&r.phase)),
        Cell::U64(r.send_ns),
        opt_u64(r.first_token_ns),
        Cell::ListU64(&r.chunk_ns),
        Cell::U64(r.end_ns),
        opt_u32(r.input_tokens),
        opt_u32(r.output_tokens),
        Cell::Bool(r.tokens_from_usage),
        Cell::Bool(r.success),
        opt_text(r.error.as_deref()),
    ])
}

/// The results row: the headline figures of result.json, typed.
pub fn result_row(run: &RunColumns, result: &Value) -> Result<Vec<Cell<'static>>, PluginError> {
    let mut figures = Vec::new();
    for (name, value) in sink_common::headline(result) {
        if RUN_FIELDS.iter().any(|f| f.name == name) {
            continue;
        }
        let wrong = || {
            PluginError::other(format!(
                "result.json's `{name}` is {}, not a {:?} value: sink-parquet's results table \
                 does not match this result schema",
                value.map_or("absent".to_owned(), Value::to_string),
                sink_common::kind(name)
            ))
        };
        let cell = match (sink_common::kind(name), value) {
            (_, None) => Cell::Null,
            (Kind::Text, Some(Value::String(s))) => Cell::Text(text(s)),
            (Kind::Boolean, Some(Value::Bool(b))) => Cell::Bool(*b),
            (Kind::Integer, Some(v)) => match (v.as_i64(), v.as_f64()) {
                (Some(i), _) => Cell::I64(i),
                // A count printed as 12.0 is still 12.
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Cell::I64(f as i64),
                _ => return Err(wrong()),
            },
            (Kind::Float, Some(v)) => Cell::F64(v.as_f64().ok_or_else(wrong)?),
            _ => return Err(wrong()),
        };
        figures.push(cell);
    }
    Ok(run.row(figures))
}
