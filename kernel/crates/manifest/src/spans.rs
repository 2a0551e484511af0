//! Where a key or value came from, and the byte-offset → line:column mapping.
//!
//! Positions are computed once while converting toml's borrowed tree into the
//! owned raw tree, so later stages never need the source text again.

use std::path::PathBuf;

/// Where something in the raw manifest came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    /// 1-based line and column (in characters) in the manifest file.
    File { line: u32, column: u32 },
    /// 1-based line and column in another file than the manifest's own: a key
    /// inherited from a study's `base` manifest keeps pointing into that file, and
    /// its relative paths stay relative to that file's directory.
    Included {
        /// The file as shown to users.
        file: String,
        /// The directory relative paths written in `file` resolve against.
        dir: PathBuf,
        line: u32,
        column: u32,
    },
    /// A command-line edit; the string is what users see, e.g. `--set vllm.dtype`.
    CommandLine(String),
    /// Not written anywhere (a table the manifest omits entirely).
    Nowhere,
}

impl Loc {
    /// The earlier of two file locations; used to anchor a table either at its
    /// `[header]` (which precedes the key inside it) or at its key in `k = { … }`.
    pub(crate) fn earliest<'a>(a: &'a Loc, b: &'a Loc) -> &'a Loc {
        match (a.position(), b.position()) {
            (Some(pa), Some(pb)) => {
                if pa <= pb {
                    a
                } else {
                    b
                }
            }
            (Some(_), None) => a,
            _ => b,
        }
    }

    /// Line and column, for locations in a file.
    fn position(&self) -> Option<(u32, u32)> {
        match self {
            Loc::File { line, column } | Loc::Included { line, column, .. } => {
                Some((*line, *column))
            }
            Loc::CommandLine(_) | Loc::Nowhere => None,
        }
    }
}

/// Maps byte offsets of one source text to 1-based line:column.
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, line_starts }
    }

    pub(crate) fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        // partition_point gives the number of line starts <= offset, i.e. the 1-based line.
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        // Columns count characters, not bytes, so non-ASCII keys point at the right place.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Loc::File {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// One key as it appears in a dotted path: bare when TOML allows, quoted otherwise.
pub fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// `parent.key`, quoting `key` when needed.
pub(crate) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key_segment(key)
    } else {
        format!("{parent}.{}", key_segment(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_lines_and_char_columns() {
        let idx = LineIndex::new("a = 1\nb = \"é\" x\n");
        assert_eq!(idx.loc(0), Loc::File { line: 1, column: 1 });
        assert_eq!(idx.loc(6), Loc::File { line: 2, column: 1 });
        // 'x' sits after a two-byte 'é': byte 15, character column 9.
        assert_eq!(idx.loc(15), Loc::File { line: 2, column: 9 });
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(join_path("plugins", "vllm"), "plugins.vllm");
        assert_eq!(join_path("plugins", "a.b"), "plugins.\"a.b\"");
    }
}
