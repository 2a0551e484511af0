//! One `Store` per plugin instance: its WASI context built from the sandbox
//! grants (deny by default), its memory cap, and the host interface it imports.

use super::bindings::{wit_host, wit_types};
use crate::plugin::Sandbox;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How much of a plugin's stderr is kept to explain a crash (panic messages land there).
const STDERR_CAPTURE_BYTES: usize = 1 << 20;

pub struct StoreState {
    pub plugin: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryCap,
    pub stderr: MemoryOutputPipe,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit_types::Host for StoreState {}

impl wit_host::Host for StoreState {
    fn log(&mut self, level: wit_host::LogLevel, message: String) {
        let plugin = self.plugin.as_str();
        match level {
            wit_host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            wit_host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            wit_host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            wit_host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            wit_host::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn monotonic_now_ns(&mut self) -> u64 {
        crate::clock::monotonic_ns()
    }
}

/// Caps linear memory and remembers that it refused, so a trap that follows
/// (Rust aborts on allocation failure) can be reported as what it is.
pub struct MemoryCap {
    pub max_bytes: usize,
    pub refused: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Build the store for one plugin instance under `sandbox`.
pub fn new_store(
    engine: &wasmtime::Engine,
    plugin: &str,
    sandbox: &Sandbox,
) -> Result<Store<StoreState>, String> {
    let mut wasi = WasiCtxBuilder::new();
    // Deny by default: stdin closed, stdout discarded, no env, no preopens,
    // no sockets. Only the grants below open anything.
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
    wasi.stderr(stderr.clone());
    wasi.allow_udp(false);
    // TCP only to the addresses `sandbox.connect` grants (none by default).
    super::net::apply(&mut wasi, &sandbox.connect)?;
    for dir in &sandbox.read_dirs {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadOnly)
            .map_err(|e| format!("cannot grant read access to {}: {e}", dir.display()))?;
    }
    if let Some(dir) = &sandbox.write_dir {
        let guest = dir.to_string_lossy();
        wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadWrite)
            .map_err(|e| format!("cannot grant write access to {}: {e}", dir.display()))?;
    }
    for name in &sandbox.env {
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }
    let state = StoreState {
        plugin: plugin.to_owned(),
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limiter: MemoryCap {
            max_bytes: sandbox.memory_bytes,
            refused: None,
        },
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    Ok(store)
}
