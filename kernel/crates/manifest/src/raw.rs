//! The raw manifest: the TOML tree, owned, with a location on every key and value.
//!
//! Nothing here knows what keys mean; that is [`crate::resolve`]'s job. Keeping
//! the two apart lets the CLI edit the raw tree (`--set`, `--plugins`) before
//! anything is validated, so edits and file contents get the same checks.

use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::ManifestError;
use crate::spans::{LineIndex, Loc};

/// The text of a manifest and where it lives.
#[derive(Debug, Clone)]
pub struct ManifestSource {
    /// The file path as shown to users, or `<default>` / `<command line>`.
    pub name: String,
    /// Directory that relative paths in the manifest are relative to.
    pub dir: PathBuf,
    pub text: String,
}

impl ManifestSource {
    /// A manifest read from `path`; relative paths in it resolve against its
    /// directory, made absolute so the resolved manifest holds absolute paths.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = std::path::absolute(&dir)?;
        Ok(ManifestSource {
            name: path.display().to_string(),
            dir,
            text,
        })
    }

    /// An empty manifest, for runs configured by flags only.
    pub fn empty(name: &str, dir: PathBuf) -> Self {
        ManifestSource {
            name: name.to_owned(),
            dir,
            text: String::new(),
        }
    }
}

/// A TOML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    pub value: RawValue,
    pub loc: Loc,
    /// For values given on the command line: the text as typed, so that
    /// `--set experiment.name=2024` can still be the string "2024" where a string is expected.
    pub literal: Option<String>,
}

/// A TOML value. Datetimes are kept as their TOML text: no key llem defines takes one.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<RawItem>),
    Table(RawTable),
}

/// One `key = value` of a table, in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEntry {
    pub key: String,
    pub key_loc: Loc,
    pub item: RawItem,
}

impl RawEntry {
    /// Where to point for problems with the entry as a whole: the `[header]` of a
    /// table (which comes before its key on the line) or the key of `k = v`.
    pub fn anchor(&self) -> &Loc {
        Loc::earliest(&self.key_loc, &self.item.loc)
    }
}

/// A TOML table; a manifest's tables are small, so a Vec keeps order cheaply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawTable {
    pub entries: Vec<RawEntry>,
}

impl RawTable {
    pub fn get(&self, key: &str) -> Option<&RawEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut RawEntry> {
        self.entries.iter_mut().find(|e| e.key == key)
    }

    /// Replace the value of `key`, or append it.
    pub fn set(&mut self, key: &str, key_loc: Loc, item: RawItem) {
        match self.get_mut(key) {
            Some(entry) => {
                entry.key_loc = key_loc;
                entry.item = item;
            }
            None => self.entries.push(RawEntry {
                key: key.to_owned(),
                key_loc,
                item,
            }),
        }
    }
}

impl RawValue {
    /// How the value reads in a message: "a string (\"three\")", "a list", ….
    pub fn describe(&self) -> String {
        match self {
            RawValue::String(s) => format!("a string ({s:?})"),
            RawValue::Integer(i) => format!("an integer ({i})"),
            RawValue::Float(x) => format!("a float ({x})"),
            RawValue::Boolean(b) => format!("a boolean ({b})"),
            RawValue::Datetime(d) => format!("a datetime ({d})"),
            RawValue::Array(_) => "a list".to_owned(),
            RawValue::Table(_) => "a table".to_owned(),
        }
    }
}

/// A parsed manifest, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RawManifest {
    /// [`ManifestSource::name`]; prefixes file positions in errors.
    pub source_name: String,
    /// Relative paths written in the file resolve against this directory.
    pub dir: PathBuf,
    /// Relative paths given with `--set` resolve against this one: people type
    /// them relative to where they stand, not to the manifest.
    pub command_line_dir: PathBuf,
    pub root: RawTable,
}

impl RawManifest {
    /// Override the directory that `--set` paths are relative to (the process's
    /// current directory by default).
    pub fn with_command_line_dir(mut self, dir: PathBuf) -> Self {
        self.command_line_dir = dir;
        self
    }

    /// Directory a relative path written at `loc` is relative to.
    pub(crate) fn base_dir<'a>(&'a self, loc: &'a Loc) -> &'a Path {
        match loc {
            Loc::CommandLine(_) => &self.command_line_dir,
            Loc::Included { dir, .. } => dir,
            Loc::File { .. } | Loc::Nowhere => &self.dir,
        }
    }
}

/// Parse TOML text into a [`RawManifest`], keeping the location of every key and value.
pub fn parse(source: &ManifestSource) -> Result<RawManifest, ManifestError> {
    let index = LineIndex::new(&source.text);
    let doc = DeTable::parse(&source.text).map_err(|err| {
        let loc = err
            .span()
            .map_or(Loc::Nowhere, |span| index.loc(span.start));
        // toml's messages can run over several lines ("expected …"); keep them on one.
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ManifestError::at(&source.name, &loc, "", format!("invalid TOML: {message}"))
    })?;
    let conv = Converter {
        locate: Locate::Text(&index),
        source_name: &source.name,
    };
    let root = conv.table(doc.get_ref())?;
    Ok(RawManifest {
        source_name: source.name.clone(),
        dir: source.dir.clone(),
        command_line_dir: std::env::current_dir().unwrap_or_else(|_| source.dir.clone()),
        root,
    })
}

/// How a converted key or value is located.
pub(crate) enum Locate<'a> {
    /// By its span in the manifest text.
    Text(&'a LineIndex<'a>),
    /// Everywhere at one place, e.g. the `--set` flag it was written in.
    Fixed(Loc),
}

impl Locate<'_> {
    fn loc(&self, offset: usize) -> Loc {
        match self {
            Locate::Text(index) => index.loc(offset),
            Locate::Fixed(loc) => loc.clone(),
        }
    }
}

/// Turns toml's borrowed, byte-spanned tree into the owned, located one.
pub(crate) struct Converter<'a> {
    pub(crate) locate: Locate<'a>,
    pub(crate) source_name: &'a str,
}

impl Converter<'_> {
    pub(crate) fn table(&self, table: &DeTable<'_>) -> Result<RawTable, ManifestError> {
        let mut entries = Vec::with_capacity(table.len());
        for (key, value) in table.iter() {
            entries.push(RawEntry {
                key: key.get_ref().to_string(),
                key_loc: self.locate.loc(key.span().start),
                item: self.item(value)?,
            });
        }
        Ok(RawTable { entries })
    }

    pub(crate) fn item(&self, value: &Spanned<DeValue<'_>>) -> Result<RawItem, ManifestError> {
        let loc = self.locate.loc(value.span().start);
        let out_of_range = |what: &str, text: &str| {
            ManifestError::at(
                self.source_name,
                &loc,
                "",
                format!("{what} `{text}` is out of range"),
            )
        };
        let value = match value.get_ref() {
            DeValue::String(s) => RawValue::String(s.to_string()),
            DeValue::Integer(i) => RawValue::Integer(
                i64::from_str_radix(i.as_str(), i.radix())
                    .map_err(|_| out_of_range("integer", &i.to_string()))?,
            ),
            DeValue::Float(x) => RawValue::Float(
                x.as_str()
                    .parse::<f64>()
                    .map_err(|_| out_of_range("float", x.as_str()))?,
            ),
            DeValue::Boolean(b) => RawValue::Boolean(*b),
            DeValue::Datetime(d) => RawValue::Datetime(d.to_string()),
            DeValue::Array(items) => RawValue::Array(
                items
                    .iter()
                    .map(|v| self.item(v))
                    .collect::<Result<_, _>>()?,
            ),
            DeValue::Table(t) => RawValue::Table(self.table(t)?),
        };
        Ok(RawItem {
            value,
            loc,
            literal: None,
        })
    }
}
