//! The one thing resolution needs from the outside world: what a plugin name means.
//!
//! The kernel implements [`PluginCatalog`] by searching its plugin directories and
//! loading plugins to read their [`PluginInfo`]; tests implement it with fixed data.

use std::path::{Path, PathBuf};

use llem_sdk::PluginInfo;

/// Answers "which plugin is `name`?".
pub trait PluginCatalog {
    /// Resolve a plugin name (short like `nvml` or full like `energy-nvml`) or,
    /// when `explicit_path` is given, the plugin file there (already made
    /// absolute against the manifest's directory).
    fn lookup(&self, name: &str, explicit_path: Option<&Path>)
    -> Result<CatalogEntry, LookupError>;
}

/// A plugin the catalog found.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// Full name, e.g. `energy-nvml`.
    pub full_name: String,
    /// File the plugin is loaded from.
    pub location: PathBuf,
    pub info: PluginInfo,
    /// Runs sandboxed (a WASM component); native libraries run in-process, trusted.
    pub sandboxed: bool,
    /// Shipped with llem (in the plugin directory next to the binary): its
    /// `path` defaults are granted like the user's words. Any other plugin's
    /// defaults grant nothing.
    pub shipped: bool,
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No plugin has that name. `suggestions` are close names (best first, see
    /// [`crate::suggest`]); `available` lists every full name the catalog knows.
    #[error("unknown plugin")]
    Unknown {
        suggestions: Vec<String>,
        available: Vec<String>,
    },
    /// The plugin exists but could not be loaded; the message says why.
    #[error("{0}")]
    Broken(String),
}
