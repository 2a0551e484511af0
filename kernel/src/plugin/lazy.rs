//! A plugin's code, loaded when it is first needed. A plugin whose
//! description came from the describe cache is listed and resolved without
//! loading it; its code (a deserialised and instantiated component, or a
//! `dlopen`ed library) is loaded only when an instance is opened — and then
//! described live, and refused if that description is not the one the caller
//! has been working with (see `describe_cache.rs`).

use super::{CallResult, FailureKind, PluginCode, PluginFailure, PluginFormat, PluginLoader};
use llem_sdk::PluginInfo;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub(crate) struct LazyCode {
    loader: PluginLoader,
    path: PathBuf,
    format: PluginFormat,
    code: OnceLock<CallResult<Arc<dyn PluginCode>>>,
}

impl LazyCode {
    /// Code already loaded (the description is its own).
    pub fn loaded(
        loader: PluginLoader,
        path: PathBuf,
        format: PluginFormat,
        code: Arc<dyn PluginCode>,
    ) -> LazyCode {
        LazyCode {
            loader,
            path,
            format,
            code: OnceLock::from(Ok(code)),
        }
    }

    /// Code to load on first use.
    pub fn deferred(loader: PluginLoader, path: PathBuf, format: PluginFormat) -> LazyCode {
        LazyCode {
            loader,
            path,
            format,
            code: OnceLock::new(),
        }
    }

    /// Whether the code has been loaded (tests, diagnostics).
    pub fn is_loaded(&self) -> bool {
        self.code.get().is_some()
    }

    /// The code, loaded once; `described` is the description the caller has
    /// used so far, which the live one must equal.
    pub fn get(&self, described: &PluginInfo) -> CallResult<&Arc<dyn PluginCode>> {
        self.code
            .get_or_init(|| {
                let code = self.loader.load_code(&self.path, self.format)?;
                if code.info() != described {
                    self.loader.forget_description(&self.path);
                    return Err(changed(&self.path, described));
                }
                Ok(code)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

fn changed(path: &std::path::Path, described: &PluginInfo) -> PluginFailure {
    PluginFailure::new(
        &described.name,
        "load",
        FailureKind::Incompatible,
        format!(
            "describes itself differently from the description llem cached for {} (the file was replaced in a way llem could not see, or the cache was altered); nothing was opened",
            path.display()
        ),
    )
    .with_hint("run the command again: the cached description has been dropped")
}
