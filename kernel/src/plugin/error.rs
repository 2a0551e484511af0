//! The one error type every plugin call returns, whatever host ran it.

use super::sanitize::{sanitize, sanitize_lines};
use llem_sdk::ErrorCode;
use std::fmt;

/// What went wrong, in terms a user can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin rejected its configuration.
    InvalidConfig,
    /// A device, file or engine the plugin needs is not there.
    Unavailable,
    /// The OS or the sandbox refused access.
    PermissionDenied,
    /// Reading or writing failed.
    Io,
    /// The plugin reported some other failure.
    Other,
    /// The plugin ran past its per-call deadline and was interrupted.
    Deadline,
    /// The plugin tried to use more memory than its cap.
    MemoryLimit,
    /// The plugin crashed (WASM trap, Rust panic).
    Crashed,
    /// The file is missing or is not a plugin.
    NotAPlugin,
    /// The plugin was built for a contract this llem does not speak.
    Incompatible,
    /// The plugin is of another kind than the manifest asks for.
    WrongKind,
}

/// A failed plugin call. `Display` names the plugin and the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFailure {
    pub plugin: String,
    pub call: &'static str,
    pub kind: FailureKind,
    pub message: String,
    /// Manifest key the failure is about, if the plugin said.
    pub key: Option<String>,
    pub hint: Option<String>,
}

impl PluginFailure {
    pub fn new(
        plugin: impl Into<String>,
        call: &'static str,
        kind: FailureKind,
        message: impl Into<String>,
    ) -> Self {
        PluginFailure {
            plugin: plugin.into(),
            call,
            kind,
            message: message.into(),
            key: None,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Wrap an error the plugin itself returned.
    pub fn from_plugin(plugin: &str, call: &'static str, error: llem_sdk::PluginError) -> Self {
        let kind = match error.code {
            ErrorCode::InvalidConfig => FailureKind::InvalidConfig,
            ErrorCode::Unavailable => FailureKind::Unavailable,
            ErrorCode::PermissionDenied => FailureKind::PermissionDenied,
            ErrorCode::Io => FailureKind::Io,
            ErrorCode::Other => FailureKind::Other,
        };
        PluginFailure {
            plugin: plugin.to_owned(),
            call,
            kind,
            message: error.message,
            key: error.key,
            hint: error.hint,
        }
    }
}

/// Plugin-supplied parts are sanitised (they are cut and sanitised at the WASM
/// boundary already; this also covers native plugins and hand-built failures):
/// no escape sequence is executed and no plugin newline starts a line of its own
/// — except in the message, whose line breaks llem lays out (stderr quotes).
impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin `{}`", sanitize(&self.plugin))?;
        if !self.call.is_empty() {
            write!(f, " ({})", self.call)?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{}`: ", sanitize(key))?;
        }
        f.write_str(&sanitize_lines(&self.message))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  fix: {}", sanitize(hint))?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginFailure {}

pub type CallResult<T> = Result<T, PluginFailure>;
