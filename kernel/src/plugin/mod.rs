//! Plugin hosts. Two ways to run plugin code — sandboxed WASM components
//! ([`wasm`]) and native libraries over the C ABI ([`native`]) — behind one
//! Rust interface: nothing above this module knows or cares which one runs a
//! plugin.

pub mod capabilities;
mod describe_cache;
mod error;
mod lazy;
pub mod native;
mod private_dir;
mod sandbox;
pub mod sanitize;
pub mod wasm;

pub use error::{CallResult, FailureKind, PluginFailure};
pub use sandbox::Sandbox;
pub use sanitize::{sanitize, sanitize_lines};

use llem_sdk::{
    Device, DeviceTelemetry, EnginePlan, LoadRequest, Metric, PhaseEvent, PlanRequest, PluginInfo,
    PluginKind, Prompt, Reading, ResultDocument, RunInfo, SampleBatch, Wanted,
};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// An open energy source.
pub trait EnergyInstance: Send {
    fn devices(&self) -> &[Device];
    /// One raw reading per device, appended to `out` (which the caller clears).
    fn read(&mut self, out: &mut Vec<Reading>) -> CallResult<()>;
    fn telemetry(&mut self) -> CallResult<Vec<DeviceTelemetry>>;
}

/// An open inference backend.
pub trait BackendInstance: Send {
    fn plan(&mut self, request: &PlanRequest) -> CallResult<EnginePlan>;
    fn parse_metrics(&mut self, prometheus_text: &str) -> CallResult<Vec<Metric>>;
}

/// An open dataset.
pub trait DatasetInstance: Send {
    fn load(&mut self, request: &LoadRequest) -> CallResult<Vec<Prompt>>;
}

/// An open sink.
pub trait SinkInstance: Send {
    fn write_samples(&mut self, batch: &SampleBatch) -> CallResult<()>;
    fn write_result(&mut self, document: &ResultDocument) -> CallResult<()>;
    fn finish(&mut self) -> CallResult<()>;

    // The optional stream extension (`llem:plugin-ext/sink-stream`, C symbol
    // `llem_sink_stream_v1`). The defaults are a sink without it.

    /// Whether the plugin implements the stream extension.
    fn streams(&self) -> bool {
        false
    }
    /// What the sink wants besides readings and the result; `Wanted::NOTHING`
    /// for a sink without the extension (it is not called).
    fn begin_run(&mut self, _run: &RunInfo) -> CallResult<Wanted> {
        Ok(Wanted::NOTHING)
    }
    fn write_events(&mut self, _events: &[PhaseEvent]) -> CallResult<()> {
        Ok(())
    }
    fn write_requests(&mut self, _requests: &[llem_sdk::RequestRecord]) -> CallResult<()> {
        Ok(())
    }
}

/// Plugin code that can be described and instantiated: one implementation per host.
pub(crate) trait PluginCode: Send + Sync {
    fn info(&self) -> &PluginInfo;
    fn open_energy(&self, config: &str, sandbox: &Sandbox) -> CallResult<Box<dyn EnergyInstance>>;
    fn open_backend(&self, config: &str, sandbox: &Sandbox)
    -> CallResult<Box<dyn BackendInstance>>;
    fn open_dataset(&self, config: &str, sandbox: &Sandbox)
    -> CallResult<Box<dyn DatasetInstance>>;
    fn open_sink(&self, config: &str, sandbox: &Sandbox) -> CallResult<Box<dyn SinkInstance>>;
}

/// How a plugin's code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginFormat {
    /// A WebAssembly component, sandboxed.
    Wasm,
    /// A native shared library, trusted.
    Native,
}

impl PluginFormat {
    /// Decide by the file's first bytes, so a misnamed file still gets the right host
    /// (and a non-plugin gets a clear error).
    pub fn sniff(path: &Path) -> CallResult<PluginFormat> {
        use std::io::Read;
        let name = path.display().to_string();
        let mut magic = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(|e| {
            PluginFailure::new(
                &name,
                "load",
                FailureKind::NotAPlugin,
                format!("cannot open: {e}"),
            )
            .with_hint("check the path, or run `llem plugins list` to see the plugins llem found")
        })?;
        file.read_exact(&mut magic).map_err(|_| {
            PluginFailure::new(
                &name,
                "load",
                FailureKind::NotAPlugin,
                "file is too short to be a plugin",
            )
        })?;
        match &magic {
            b"\0asm" => Ok(PluginFormat::Wasm),
            b"\x7fELF" | [0xcf, 0xfa, 0xed, 0xfe] | [b'M', b'Z', _, _] => Ok(PluginFormat::Native),
            _ => Err(PluginFailure::new(
                &name,
                "load",
                FailureKind::NotAPlugin,
                "neither a WebAssembly component nor a shared library",
            )),
        }
    }
}

/// A plugin: its description and a way to open instances of it. The code
/// itself may not be loaded yet (the description came from the describe
/// cache): it is loaded, and checked against this description, on the first
/// `open_*`.
#[derive(Clone)]
pub struct Plugin {
    path: PathBuf,
    format: PluginFormat,
    info: Arc<PluginInfo>,
    code: Arc<lazy::LazyCode>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info().name)
            .field("path", &self.path)
            .field("format", &self.format)
            .finish()
    }
}

impl Plugin {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Whether the plugin's code is loaded (false while only its cached
    /// description has been used).
    pub fn is_code_loaded(&self) -> bool {
        self.code.is_loaded()
    }

    fn code(&self) -> CallResult<&Arc<dyn PluginCode>> {
        self.code.get(&self.info)
    }

    pub fn name(&self) -> &str {
        &self.info().name
    }

    pub fn kind(&self) -> PluginKind {
        self.info().kind
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> PluginFormat {
        self.format
    }

    fn expect_kind(&self, wanted: PluginKind) -> CallResult<()> {
        if self.kind() == wanted {
            return Ok(());
        }
        Err(PluginFailure::new(
            self.name(),
            "open",
            FailureKind::WrongKind,
            format!(
                "is {} plugin, not {} plugin",
                article(self.kind()),
                article(wanted)
            ),
        ))
    }

    fn config_text(&self, config: &Map<String, Value>) -> String {
        Value::Object(config.clone()).to_string()
    }

    pub fn open_energy(
        &self,
        config: &Map<String, Value>,
        sandbox: &Sandbox,
    ) -> CallResult<Box<dyn EnergyInstance>> {
        self.expect_kind(PluginKind::Energy)?;
        self.code()?.open_energy(&self.config_text(config), sandbox)
    }

    pub fn open_backend(
        &self,
        config: &Map<String, Value>,
        sandbox: &Sandbox,
    ) -> CallResult<Box<dyn BackendInstance>> {
        self.expect_kind(PluginKind::Backend)?;
        self.code()?
            .open_backend(&self.config_text(config), sandbox)
    }

    pub fn open_dataset(
        &self,
        config: &Map<String, Value>,
        sandbox: &Sandbox,
    ) -> CallResult<Box<dyn DatasetInstance>> {
        self.expect_kind(PluginKind::Dataset)?;
        self.code()?
            .open_dataset(&self.config_text(config), sandbox)
    }

    pub fn open_sink(
        &self,
        config: &Map<String, Value>,
        sandbox: &Sandbox,
    ) -> CallResult<Box<dyn SinkInstance>> {
        self.expect_kind(PluginKind::Sink)?;
        self.code()?.open_sink(&self.config_text(config), sandbox)
    }
}

/// "an energy", "a backend"...
fn article(kind: PluginKind) -> String {
    match kind {
        PluginKind::Energy => "an energy".to_owned(),
        other => format!("a {other}"),
    }
}

/// Loads plugin files with the right host. The WASM engine is created on first
/// use, so a run with only native plugins (or only cached descriptions) never
/// pays for it. Cheap to clone: clones share the engine and caches.
#[derive(Clone, Default)]
pub struct PluginLoader {
    inner: Arc<LoaderInner>,
}

#[derive(Default)]
struct LoaderInner {
    wasm: OnceLock<Result<wasm::WasmHost, String>>,
    cache_dir: Option<PathBuf>,
    described: Option<describe_cache::DescribeCache>,
}

impl std::fmt::Debug for PluginLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLoader")
            .field("cache_dir", &self.inner.cache_dir)
            .finish()
    }
}

impl PluginLoader {
    /// A loader caching compiled components and plugin descriptions in
    /// `cache_dir` (`None`: no disk cache, every plugin is loaded to be described).
    pub fn new(cache_dir: Option<PathBuf>) -> Self {
        PluginLoader {
            inner: Arc::new(LoaderInner {
                wasm: OnceLock::new(),
                described: cache_dir.as_deref().map(describe_cache::DescribeCache::new),
                cache_dir,
            }),
        }
    }

    /// A loader using the default cache directory (`$LLEM_CACHE_DIR`,
    /// `$XDG_CACHE_HOME/llem` or `~/.cache/llem`).
    pub fn with_default_cache() -> Self {
        Self::new(wasm::default_cache_dir())
    }

    pub fn wasm_host(&self) -> CallResult<&wasm::WasmHost> {
        self.inner
            .wasm
            .get_or_init(|| {
                wasm::WasmHost::new(self.inner.cache_dir.clone()).map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| {
                PluginFailure::new(
                    "llem",
                    "start",
                    FailureKind::Other,
                    format!("cannot start the WASM engine: {e}"),
                )
            })
    }

    /// The plugin at `path`, described: from the describe cache when it holds
    /// a description of this very file by this llem (the code is then loaded
    /// on first use), else by loading it and asking it (and caching the answer).
    pub fn load(&self, path: &Path) -> CallResult<Plugin> {
        let format = PluginFormat::sniff(path)?;
        let stamp = match self.inner.described.as_ref().map(|c| c.lookup(path)) {
            Some(describe_cache::Lookup::Hit(info)) => {
                return Ok(Plugin {
                    path: path.to_owned(),
                    format,
                    info: Arc::new(info),
                    code: Arc::new(lazy::LazyCode::deferred(
                        self.clone(),
                        path.to_owned(),
                        format,
                    )),
                });
            }
            Some(describe_cache::Lookup::Miss(stamp)) => stamp,
            None => None,
        };
        let code = self.load_code(path, format)?;
        let info = code.info().clone();
        if let (Some(cache), Some(stamp)) = (&self.inner.described, stamp) {
            cache.store(stamp, &info);
        }
        Ok(Plugin {
            path: path.to_owned(),
            format,
            info: Arc::new(info),
            code: Arc::new(lazy::LazyCode::loaded(
                self.clone(),
                path.to_owned(),
                format,
                code,
            )),
        })
    }

    /// Load the code with the host for `format` (which describes it).
    fn load_code(&self, path: &Path, format: PluginFormat) -> CallResult<Arc<dyn PluginCode>> {
        Ok(match format {
            PluginFormat::Wasm => Arc::new(self.wasm_host()?.load(path)?),
            PluginFormat::Native => Arc::new(native::NativePlugin::load(path)?),
        })
    }

    fn forget_description(&self, path: &Path) {
        if let Some(cache) = &self.inner.described {
            cache.forget(path);
        }
    }
}
