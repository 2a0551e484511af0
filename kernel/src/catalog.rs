//! The plugins this llem can use: discovered on the search path, loaded on
//! demand (once each), and looked up by full name, short name or path. The
//! manifest resolver asks it through [`llem_manifest::PluginCatalog`].

use crate::discovery::{self, Discovered, NameError, SearchPath};
use crate::plugin::{Plugin, PluginFailure, PluginLoader};
use llem_manifest::{CatalogEntry, LookupError, PluginCatalog};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Catalog {
    loader: PluginLoader,
    found: Vec<Discovered>,
    search: SearchPath,
    loaded: Mutex<HashMap<PathBuf, Result<Plugin, PluginFailure>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("found", &self.found)
            .finish()
    }
}

impl Catalog {
    pub fn new(search: SearchPath, loader: PluginLoader) -> Self {
        Catalog {
            found: search.discover(),
            search,
            loader,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// `$LLEM_PLUGIN_PATH` + the built-in directory, default compiled-component cache.
    pub fn from_env() -> Self {
        Self::new(SearchPath::from_env(), PluginLoader::with_default_cache())
    }

    pub fn discovered(&self) -> &[Discovered] {
        &self.found
    }

    pub fn search_path(&self) -> &SearchPath {
        &self.search
    }

    pub fn loader(&self) -> &PluginLoader {
        &self.loader
    }

    /// Load (once) the plugin file at `path`.
    pub fn load_path(&self, path: &Path) -> Result<Plugin, PluginFailure> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded
            .entry(path.to_owned())
            .or_insert_with(|| self.loader.load(path))
            .clone()
    }

    /// Resolve a name (full, short) or a path to a discovered plugin file.
    pub fn find(&self, name: &str) -> Result<PathBuf, NameError> {
        if looks_like_path(name) {
            return Ok(PathBuf::from(name));
        }
        discovery::resolve(name, &self.found).map(|d| d.path.clone())
    }

    /// Find and load by name, with a message fit for a user when it fails.
    pub fn load(&self, name: &str) -> Result<Plugin, String> {
        let path = self.find(name).map_err(|e| self.explain(name, e))?;
        self.load_path(&path).map_err(|e| e.to_string())
    }

    /// "unknown plugin `x`" with suggestions and what is available.
    pub fn explain(&self, name: &str, error: NameError) -> String {
        match error {
            NameError::Unknown {
                suggestions,
                available,
            } => {
                let mut text = format!("unknown plugin `{name}`");
                if let Some(best) = suggestions.first() {
                    text.push_str(&format!("\n  help: did you mean `{best}`?"));
                }
                if available.is_empty() {
                    text.push_str(&format!(
                        "\n  no plugins found; searched: {}",
                        self.search_description()
                    ));
                } else {
                    text.push_str(&format!("\n  available: {}", available.join(", ")));
                }
                text
            }
            NameError::Ambiguous(names) => format!(
                "plugin name `{name}` is ambiguous: it could be {}; use the full name",
                names.join(" or ")
            ),
        }
    }

    pub fn search_description(&self) -> String {
        let dirs: Vec<String> = self
            .search
            .dirs()
            .map(|d| d.display().to_string())
            .collect();
        if dirs.is_empty() {
            "nothing (set LLEM_PLUGIN_PATH)".into()
        } else {
            dirs.join(", ")
        }
    }
}

fn looks_like_path(name: &str) -> bool {
    name.contains('/') || discovery::name_from_file(Path::new(name)).is_some()
}

impl PluginCatalog for Catalog {
    fn lookup(
        &self,
        name: &str,
        explicit_path: Option<&Path>,
    ) -> Result<CatalogEntry, LookupError> {
        let path = match explicit_path {
            Some(path) => path.to_owned(),
            None => self.find(name).map_err(|e| match e {
                NameError::Unknown {
                    suggestions,
                    available,
                } => LookupError::Unknown {
                    suggestions,
                    available,
                },
                ambiguous @ NameError::Ambiguous(_) => {
                    LookupError::Broken(self.explain(name, ambiguous))
                }
            })?,
        };
        let plugin = self
            .load_path(&path)
            .map_err(|e| LookupError::Broken(e.to_string()))?;
        Ok(CatalogEntry {
            full_name: plugin.name().to_owned(),
            shipped: discovery::is_shipped(&path),
            location: path,
            info: plugin.info().clone(),
            sandboxed: plugin.format() == crate::plugin::PluginFormat::Wasm,
        })
    }
}
