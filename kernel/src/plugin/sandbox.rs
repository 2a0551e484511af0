//! What a plugin may touch. Deny by default: a WASM plugin sees no
//! environment, no stdio, no network and no files beyond these grants. Native
//! plugins are trusted code and ignore the grants (they are documented as such).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// What the plugin may read, at the same path inside the sandbox: a
    /// directory grants its tree; a file grants that file alone (shown in a
    /// private directory at its parent's path, holding nothing else).
    pub read_dirs: Vec<PathBuf>,
    /// One directory the plugin may write, at the same path inside the sandbox;
    /// or one file alone (created in a private directory, moved into place
    /// when the instance closes).
    pub write_dir: Option<PathBuf>,
    /// Environment variables passed through (only those set on the host).
    pub env: Vec<String>,
    /// Linear-memory cap for the plugin instance.
    pub memory_bytes: usize,
    /// Longest a single call may run before it is interrupted.
    pub call_timeout: Duration,
    /// The manifest table these grants belong to (`plugins.gpu0`), named by
    /// fix hints; `None` outside a manifest.
    pub table: Option<String>,
    /// Outgoing TCP connections allowed, as `host:port` (a host name is
    /// resolved by the kernel when the plugin is opened). None by default.
    pub connect: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            read_dirs: Vec::new(),
            write_dir: None,
            env: Vec::new(),
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(5),
            table: None,
            connect: Vec::new(),
        }
    }
}
