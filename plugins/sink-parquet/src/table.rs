//! A table written to one Parquet file a row group at a time: rows are
//! buffered column by column and written out every `row_group_rows` rows, so
//! memory stays bounded however long the run is.
//!
//! This uses parquet's low-level column writers (no Arrow): each column is a
//! values vector plus definition levels (nullable columns) and repetition
//! levels (the one list type, `list<uint64>`).

use llem_sdk::PluginError;
use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A column's type as readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// UTF-8 text.
    Text,
    Bool,
    /// `uint32` (request index, token counts, cycle).
    U32,
    /// `uint64` (the kernel's ns timestamps, µJ and mW: its own types).
    U64,
    /// `int64` (counts read from result.json).
    I64,
    F64,
    /// `list<uint64>` (a request's chunk times); never null, maybe empty.
    ListU64,
}

/// One column: name, type, and whether it may be null.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Type,
    pub nullable: bool,
}

impl Field {
    pub const fn required(name: &'static str, ty: Type) -> Self {
        Field {
            name,
            ty,
            nullable: false,
        }
    }
    pub const fn nullable(name: &'static str, ty: Type) -> Self {
        Field {
            name,
            ty,
            nullable: true,
        }
    }

    fn schema_line(&self) -> String {
        let repetition = if self.nullable {
            "optional"
        } else {
            "required"
        };
        let name = self.name;
        match self.ty {
            Type::Text => format!("{repetition} binary {name} (STRING);"),
            Type::Bool => format!("{repetition} boolean {name};"),
            Type::U32 => format!("{repetition} int32 {name} (INTEGER(32,false));"),
            Type::U64 => format!("{repetition} int64 {name} (INTEGER(64,false));"),
            Type::I64 => format!("{repetition} int64 {name};"),
            Type::F64 => format!("{repetition} double {name};"),
            // The standard three-level LIST layout, which pyarrow, polars and
            // Spark read as a list column.
            Type::ListU64 => format!(
                "required group {name} (LIST) {{ repeated group list {{ required int64 element (INTEGER(64,false)); }} }}"
            ),
        }
    }
}

/// One value of a row, in the order of the table's fields.
#[derive(Debug, Clone)]
pub enum Cell<'a> {
    Null,
    Text(ByteArray),
    Bool(bool),
    U32(u32),
    U64(u64),
    I64(i64),
    F64(f64),
    ListU64(&'a [u64]),
}

/// A text cell; `ByteArray` shares its buffer, so a label repeated on every
/// row is one allocation made once and cloned cheaply.
pub fn text(value: &str) -> ByteArray {
    ByteArray::from(value.as_bytes().to_vec())
}

#[derive(Debug)]
enum Values {
    Text(Vec<ByteArray>),
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

#[derive(Debug)]
struct Column {
    field: Field,
    values: Values,
    def: Vec<i16>,
    rep: Vec<i16>,
}

impl Column {
    fn new(field: Field) -> Self {
        let values = match field.ty {
            Type::Text => Values::Text(Vec::new()),
            Type::Bool => Values::Bool(Vec::new()),
            Type::U32 => Values::I32(Vec::new()),
            Type::U64 | Type::I64 | Type::ListU64 => Values::I64(Vec::new()),
            Type::F64 => Values::F64(Vec::new()),
        };
        Column {
            field,
            values,
            def: Vec::new(),
            rep: Vec::new(),
        }
    }

    fn push(&mut self, cell: &Cell<'_>) -> Result<(), PluginError> {
        let mismatch = || {
            PluginError::other(format!(
                "sink-parquet: column `{}` ({:?}) got {cell:?} (a bug in the plugin)",
                self.field.name, self.field.ty
            ))
        };
        if let (Type::ListU64, Cell::ListU64(items), Values::I64(v)) =
            (self.field.ty, cell, &mut self.values)
        {
            // Levels of `required group (LIST) { repeated group list {
            // required element } }`: an empty list is one entry at level 0,
            // each element one at level 1; rep 0 starts a row.
            if items.is_empty() {
                self.def.push(0);
                self.rep.push(0);
            }
            for (i, item) in items.iter().enumerate() {
                self.def.push(1);
                self.rep.push(i16::from(i > 0));
                // Reinterpreted: the column is annotated unsigned.
                v.push(*item as i64);
            }
            return Ok(());
        }
        if matches!(cell, Cell::Null) {
            if !self.field.nullable {
                return Err(mismatch());
            }
            self.def.push(0);
            return Ok(());
        }
        match (&mut self.values, self.field.ty, cell) {
            (Values::Text(v), Type::Text, Cell::Text(x)) => v.push(x.clone()),
            (Values::Bool(v), Type::Bool, Cell::Bool(x)) => v.push(*x),
            // Reinterpreted: the column is annotated unsigned.
            (Values::I32(v), Type::U32, Cell::U32(x)) => v.push(*x as i32),
            (Values::I64(v), Type::U64, Cell::U64(x)) => v.push(*x as i64),
            (Values::I64(v), Type::I64, Cell::I64(x)) => v.push(*x),
            (Values::F64(v), Type::F64, Cell::F64(x)) => v.push(*x),
            _ => return Err(mismatch()),
        }
        if self.field.nullable {
            self.def.push(1);
        }
        Ok(())
    }

    fn clear(&mut self) {
        match &mut self.values {
            Values::Text(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::I32(v) => v.clear(),
            Values::I64(v) => v.clear(),
            Values::F64(v) => v.clear(),
        }
        self.def.clear();
        self.rep.clear();
    }
}

/// How the file is written: compression and row-group size.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub compression: Compression,
    pub row_group_rows: usize,
}

/// A table being written to `<dir>/.<name>.parquet.partial`, renamed to
/// `<dir>/<name>.parquet` when closed: readers (pyarrow's dataset, a polars
/// `*.parquet` glob) skip the hidden partial file, so a run that dies
/// half-way never leaves a file without its footer among the finished ones.
pub struct TableFile {
    columns: Vec<Column>,
    rows: usize,
    settings: Settings,
    writer: SerializedFileWriter<File>,
    partial: PathBuf,
    path: PathBuf,
}

fn parquet_error(what: &Path, e: impl std::fmt::Display) -> PluginError {
    PluginError::other(format!("writing {}: {e}", what.display()))
}

impl TableFile {
    pub fn create(
        dir: &Path,
        name: &str,
        message: &str,
        fields: &[Field],
        settings: Settings,
    ) -> Result<Self, PluginError> {
        let path = dir.join(format!("{name}.parquet"));
        let partial = dir.join(format!(".{name}.parquet.partial"));
        let schema_text = format!(
            "message {message} {{ {} }}",
            fields
                .iter()
                .map(Field::schema_line)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let schema = parse_message_type(&schema_text).map_err(|e| parquet_error(&path, e))?;
        let properties = WriterProperties::builder()
            .set_compression(settings.compression)
            .set_created_by(concat!("llem sink-parquet ", env!("CARGO_PKG_VERSION")).into())
            .build();
        let file = File::create(&partial)
            .map_err(|e| PluginError::io(format_args!("creating {}", partial.display()), &e))?;
        let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))
            .map_err(|e| parquet_error(&path, e))?;
        Ok(TableFile {
            columns: fields.iter().copied().map(Column::new).collect(),
            rows: 0,
            settings,
            writer,
            partial,
            path,
        })
    }

    /// Add one row (cells in field order); writes a row group when full.
    pub fn push(&mut self, row: &[Cell<'_>]) -> Result<(), PluginError> {
        if row.len() != self.columns.len() {
            return Err(PluginError::other(format!(
                "sink-parquet: a row of {} cells for {} columns in {} (a bug in the plugin)",
                row.len(),
                self.columns.len(),
                self.path.display()
            )));
        }
        for (column, cell) in self.columns.iter_mut().zip(row) {
            column.push(cell)?;
        }
        self.rows += 1;
        if self.rows >= self.settings.row_group_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Write the buffered rows as one row group.
    pub fn flush(&mut self) -> Result<(), PluginError> {
        if self.rows == 0 {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |e| parquet_error(&path, e);
        let mut group = self.writer.next_row_group().map_err(err)?;
        for column in &self.columns {
            let Some(mut writer) = group.next_column().map_err(err)? else {
                return Err(PluginError::other(format!(
                    "sink-parquet: the schema of {} has fewer columns than the table (a bug in the plugin)",
                    path.display()
                )));
            };
            let def = (column.field.nullable || column.field.ty == Type::ListU64)
                .then_some(column.def.as_slice());
            let rep = (column.field.ty == Type::ListU64).then_some(column.rep.as_slice());
            match &column.values {
                Values::Text(v) => writer.typed::<ByteArrayType>().write_batch(v, def, rep),
                Values::Bool(v) => writer.typed::<BoolType>().write_batch(v, def, rep),
                Values::I32(v) => writer.typed::<Int32Type>().write_batch(v, def, rep),
                Values::I64(v) => writer.typed::<Int64Type>().write_batch(v, def, rep),
                Values::F64(v) => writer.typed::<DoubleType>().write_batch(v, def, rep),
            }
            .map_err(err)?;
            writer.close().map_err(err)?;
        }
        group.close().map_err(err)?;
        for column in &mut self.columns {
            column.clear();
        }
        self.rows = 0;
        Ok(())
    }

    /// Write what is buffered and the footer, then give the file its name.
    pub fn close(mut self) -> Result<PathBuf, PluginError> {
        self.flush()?;
        self.writer
            .close()
            .map_err(|e| parquet_error(&self.path, e))?;
        // Never replace a finished file: run ids name a second, and two runs
        // started in the same second into one dataset would otherwise lose
        // the first run's rows. The later file takes the next free name.
        let mut n = 2;
        while self.path.exists() {
            let stem = self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let stem = stem
                .rsplit_once('~')
                .map_or(stem.as_str(), |(base, _)| base)
                .to_owned();
            self.path = self.path.with_file_name(format!("{stem}~{n}.parquet"));
            n += 1;
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            PluginError::io(
                format_args!(
                    "renaming {} to {}",
                    self.partial.display(),
                    self.path.display()
                ),
                &e,
            )
        })?;
        Ok(self.path)
    }
}
