//! The one diagnostic type: every problem with a manifest, from TOML syntax to a
//! plugin option of the wrong type, becomes a [`ManifestError`] that names where
//! it is (file:line:column, or the command-line flag it came from) and the key.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spans::Loc;

/// A problem in a manifest, positioned for a human.
///
/// Display renders it the way compilers do, so editors and terminals can jump to it:
///
/// ```text
/// experiment.toml:14:1: unknown key `max_num_seq` in [plugins.vllm]
///   help: did you mean `max_num_seqs`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file as shown to users, or the flag the value came from (`--set vllm.x`).
    pub origin: String,
    /// 1-based line, when the problem is in a file.
    pub line: Option<u32>,
    /// 1-based column in characters, when the problem is in a file.
    pub column: Option<u32>,
    /// Dotted key path, e.g. `plugins.vllm.max_num_seq`; empty for the whole document.
    pub key_path: String,
    pub message: String,
    pub help: Option<String>,
}

impl ManifestError {
    /// An error at `loc`, where `source_name` names the file for file locations.
    /// Public so that crates reading tables of their own out of a manifest (the
    /// study's `[study]` and `[sweep]`) report problems the same way.
    pub fn at(
        source_name: &str,
        loc: &Loc,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (origin, line, column) = match loc {
            Loc::File { line, column } => (source_name.to_owned(), Some(*line), Some(*column)),
            Loc::Included {
                file, line, column, ..
            } => (file.clone(), Some(*line), Some(*column)),
            Loc::CommandLine(flag) => (flag.clone(), None, None),
            Loc::Nowhere => (source_name.to_owned(), None, None),
        };
        ManifestError {
            origin,
            line,
            column,
            key_path: key_path.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}
