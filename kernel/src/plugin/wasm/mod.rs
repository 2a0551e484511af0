//! The WASM plugin host: wasmtime's component model with WASI p2, one `Store`
//! per plugin instance, deny-by-default sandboxing, an epoch-based deadline on
//! every call and a memory cap. A plugin that loops, traps, panics or asks for
//! too much memory becomes a [`PluginFailure`] naming it; the kernel goes on.

mod bindings;
mod bounded;
mod cache;
mod classify;
mod convert;
mod files;
mod instance;
mod limits;
mod net;
mod store;
mod stream;
mod ticker;

pub use cache::default_cache_dir;
/// The `llem:plugin` WIT version this llem hosts (part of a cached description's key).
pub(crate) use classify::HOST_VERSION as HOST_WIT_VERSION;

use super::{
    BackendInstance, CallResult, DatasetInstance, EnergyInstance, FailureKind, PluginCode,
    PluginFailure, Sandbox, SinkInstance,
};
use llem_sdk::{PluginInfo, PluginKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::StoreState;
pub use ticker::EPOCH_TICK;
use ticker::EpochTicker;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine};

/// One wasmtime engine and linker shared by every WASM plugin in the process.
pub struct WasmHost {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: Option<cache::ComponentCache>,
    ticker: Arc<EpochTicker>,
}

impl WasmHost {
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<WasmHost> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::wit_host::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)?;
        bindings::wit_types::add_to_linker::<StoreState, HasSelf<StoreState>>(&mut linker, |s| s)?;
        let ticker = EpochTicker::start(engine.clone())?;
        let cache = cache_dir.map(|dir| cache::ComponentCache::new(dir, &engine));
        Ok(WasmHost {
            engine,
            linker,
            cache,
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compile (or fetch from cache), check the contract, and describe a component.
    pub fn load(&self, path: &Path) -> CallResult<WasmPlugin> {
        let name = path.display().to_string();
        let fail = |kind, message: String| PluginFailure::new(&name, "load", kind, message);
        let bytes = std::fs::read(path)
            .map_err(|e| fail(FailureKind::NotAPlugin, format!("cannot read: {e}")))?;
        let compiled = match &self.cache {
            Some(cache) => cache.load(&self.engine, &bytes),
            None => Component::from_binary(&self.engine, &bytes),
        };
        let component = compiled.map_err(|e| {
            fail(FailureKind::NotAPlugin, format!("is not a valid WebAssembly component: {e:#}"))
                .with_hint("build plugins with `cargo build --target wasm32-wasip2` and llem-sdk's export macros")
        })?;
        let kind = classify::plugin_kind(&self.engine, &component).map_err(|e| {
            let hint = match e.0 {
                FailureKind::Incompatible => {
                    "rebuild it against the llem-sdk that ships with this llem"
                }
                _ => "remove it from the plugin path, or build it with llem-sdk's export macros",
            };
            fail(e.0, e.1).with_hint(hint)
        })?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            fail(
                FailureKind::Incompatible,
                format!("imports something this llem does not provide: {e:#}"),
            )
            .with_hint("plugins may import only WASI 0.2 and llem:plugin/host; rebuild against this llem's SDK")
        })?;
        let code = Arc::new(Code {
            engine: self.engine.clone(),
            pre,
            kind,
            name: name.clone(),
            ticker: self.ticker.clone(),
        });
        let info = instance::describe(&code)?;
        if info.kind != kind {
            return Err(fail(
                FailureKind::Incompatible,
                format!(
                    "describes itself as a {} plugin but exports the {kind} world",
                    info.kind
                ),
            ));
        }
        Ok(WasmPlugin {
            code: Arc::new(Code {
                name: info.name.clone(),
                engine: code.engine.clone(),
                pre: code.pre.clone(),
                kind,
                ticker: self.ticker.clone(),
            }),
            info,
        })
    }
}

/// What every instance of one component shares.
pub(crate) struct Code {
    /// The plugin's name once described (its path before that).
    name: String,
    engine: Engine,
    pre: InstancePre<StoreState>,
    kind: PluginKind,
    ticker: Arc<EpochTicker>,
}

/// A loaded WASM plugin.
pub struct WasmPlugin {
    code: Arc<Code>,
    info: PluginInfo,
}

impl PluginCode for WasmPlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn open_energy(&self, config: &str, sandbox: &Sandbox) -> CallResult<Box<dyn EnergyInstance>> {
        Ok(Box::new(instance::WasmEnergy::open(
            &self.code, config, sandbox,
        )?))
    }

    fn open_backend(
        &self,
        config: &str,
        sandbox: &Sandbox,
    ) -> CallResult<Box<dyn BackendInstance>> {
        Ok(Box::new(instance::WasmBackend::open(
            &self.code, config, sandbox,
        )?))
    }

    fn open_dataset(
        &self,
        config: &str,
        sandbox: &Sandbox,
    ) -> CallResult<Box<dyn DatasetInstance>> {
        Ok(Box::new(instance::WasmDataset::open(
            &self.code, config, sandbox,
        )?))
    }

    fn open_sink(&self, config: &str, sandbox: &Sandbox) -> CallResult<Box<dyn SinkInstance>> {
        Ok(Box::new(instance::WasmSink::open(
            &self.code, config, sandbox,
        )?))
    }
}
