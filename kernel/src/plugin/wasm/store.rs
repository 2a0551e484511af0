//! One `Store` per plugin instance: its WASI context built from the sandbox
//! grants (deny by default), its memory cap, and the host interface it imports.

use super::bindings::{wit_host, wit_types};
use super::files::{Staged, preopen};
use super::limits::LogBudget;
use crate::plugin::Sandbox;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How much of a plugin's stderr is kept to explain a crash (panic messages land there).
const STDERR_CAPTURE_BYTES: usize = 1 << 20;

pub struct StoreState {
    pub plugin: String,
    /// The manifest table of this instance (`plugins.gpu0`), for fix hints.
    pub manifest_table: Option<String>,
    log_budget: LogBudget,
    /// Private directories behind single-file grants; removed with the store.
    _files: Staged,
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

impl Drop for StoreState {
    fn drop(&mut self) {
        let dropped = self.log_budget.dropped();
        if dropped > 0 {
            tracing::warn!(plugin = %self.plugin, "{dropped} log lines dropped: over the plugin's log budget");
        }
    }
}

impl wit_host::Host for StoreState {
    fn log(&mut self, level: wit_host::LogLevel, message: String) {
        let plugin = self.plugin.as_str();
        // Cut, sanitised and rate-limited: plugin text reaches the terminal.
        let Some(admitted) = self.log_budget.admit(std::time::Instant::now(), &message) else {
            return;
        };
        if admitted.dropped_before > 0 {
            tracing::warn!(
                plugin,
                "{} log lines dropped: over the plugin's log budget",
                admitted.dropped_before
            );
        }
        let message = admitted.line;
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
    let files = preopen(&mut wasi, sandbox)?;
    for name in &sandbox.env {
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }
    let state = StoreState {
        plugin: plugin.to_owned(),
        manifest_table: sandbox.table.clone(),
        log_budget: LogBudget::default(),
        _files: files,
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
    store.set_hostcall_fuel(super::limits::HOSTCALL_BYTES);
    store.epoch_deadline_trap();
    Ok(store)
}
