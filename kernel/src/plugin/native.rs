//! Host side of the native C ABI (`sdk/include/llem_plugin.h`).
//!
//! Libraries are loaded with libloading and deliberately never unloaded while
//! llem runs: a plugin may have started threads or registered callbacks (NVML
//! does) and unloading under them crashes the process.

use super::{
    BackendInstance, CallResult, DatasetInstance, EnergyInstance, FailureKind, PluginCode,
    PluginFailure, Sandbox, SinkInstance,
};
use llem_sdk::abi::{
    self, Host, InstancePtr, PluginHeader, PluginV1, RawReading, SinkStreamV1, Status,
};
use llem_sdk::{
    Device, DeviceTelemetry, EnginePlan, LoadRequest, Metric, PhaseEvent, PlanRequest, PluginInfo,
    PluginKind, Prompt, Reading, ResultDocument, RunInfo, SampleBatch, Wanted,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_void};
use std::path::Path;

/// A loaded native plugin library.
pub struct NativePlugin {
    vtable: &'static PluginV1,
    /// A sink's optional `llem_sink_stream_v1` table.
    stream: Option<&'static SinkStreamV1>,
    info: PluginInfo,
}

// SAFETY: the vtable is immutable static data of a library that is never unloaded.
unsafe impl Send for NativePlugin {}
// SAFETY: as above; instances carry their own state.
unsafe impl Sync for NativePlugin {}

/// Per-call scratch space the plugin writes into through the host table.
#[derive(Default)]
struct CallSlot {
    output: Vec<u8>,
    error: Option<Vec<u8>>,
}

/// The host table handed to the plugin plus the slot its `ctx` points to.
/// Boxed so both addresses stay fixed for the instance's life.
struct HostBox {
    plugin: String,
    table: Host,
    slot: UnsafeCell<CallSlot>,
}

impl HostBox {
    fn new(plugin: &str) -> Box<HostBox> {
        let mut boxed = Box::new(HostBox {
            plugin: plugin.to_owned(),
            table: Host {
                abi_version: abi::ABI_VERSION,
                struct_size: std::mem::size_of::<Host>() as u32,
                ctx: std::ptr::null_mut(),
                log: host_log,
                monotonic_ns: host_monotonic_ns,
                set_error: host_set_error,
                write_output: host_write_output,
            },
            slot: UnsafeCell::new(CallSlot::default()),
        });
        let ctx: *mut HostBox = &mut *boxed;
        boxed.table.ctx = ctx.cast();
        boxed
    }

    #[allow(clippy::mut_from_ref)] // the UnsafeCell is the point: see SAFETY
    fn slot(&self) -> &mut CallSlot {
        // SAFETY: one instance is used by one thread at a time (&mut self on every
        // instance method), the plugin writes the slot only during a call, and no
        // caller holds two of these borrows at once.
        unsafe { &mut *self.slot.get() }
    }

    fn begin(&self) {
        let slot = self.slot();
        slot.output.clear();
        slot.error = None;
    }

    /// Turn a status into a result, using the error text the plugin reported.
    fn finish(&self, call: &'static str, status: Status) -> CallResult<()> {
        if status == abi::OK {
            return Ok(());
        }
        let raw = self.slot().error.take().unwrap_or_default();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let error = serde_json::from_str::<llem_sdk::PluginError>(&text).unwrap_or_else(|_| {
            llem_sdk::PluginError::new(
                llem_sdk::ErrorCode::from_abi_status(status),
                if text.is_empty() {
                    format!("failed with status {status} and no message")
                } else {
                    text
                },
            )
        });
        Err(PluginFailure::from_plugin(&self.plugin, call, error))
    }

    fn output<T: DeserializeOwned>(&self, call: &'static str) -> CallResult<T> {
        // A call with nothing to return may write nothing: read that as `null`.
        let output = &self.slot().output;
        let bytes: &[u8] = if output.is_empty() { b"null" } else { output };
        serde_json::from_slice(bytes).map_err(|e| {
            PluginFailure::new(
                &self.plugin,
                call,
                FailureKind::Incompatible,
                format!("returned output llem cannot read: {e}"),
            )
        })
    }
}

unsafe extern "C" fn host_log(ctx: *mut c_void, level: i32, msg: *const c_char, len: usize) {
    // SAFETY: ctx is the HostBox we created; msg..msg+len is readable per the ABI.
    let (host, text) = unsafe { (&*ctx.cast::<HostBox>(), bytes(msg, len)) };
    let text = String::from_utf8_lossy(text);
    let plugin = host.plugin.as_str();
    match level {
        0 => tracing::trace!(plugin, "{text}"),
        1 => tracing::debug!(plugin, "{text}"),
        2 => tracing::info!(plugin, "{text}"),
        3 => tracing::warn!(plugin, "{text}"),
        _ => tracing::error!(plugin, "{text}"),
    }
}

unsafe extern "C" fn host_monotonic_ns(_ctx: *mut c_void) -> u64 {
    crate::clock::monotonic_ns()
}

unsafe extern "C" fn host_set_error(ctx: *mut c_void, msg: *const c_char, len: usize) {
    // SAFETY: as in host_log.
    let (host, text) = unsafe { (&*ctx.cast::<HostBox>(), bytes(msg, len)) };
    host.slot().error = Some(text.to_vec());
}

unsafe extern "C" fn host_write_output(ctx: *mut c_void, data: *const c_char, len: usize) {
    // SAFETY: as in host_log.
    let (host, data) = unsafe { (&*ctx.cast::<HostBox>(), bytes(data, len)) };
    host.slot().output.extend_from_slice(data);
}

/// # Safety
/// `ptr..ptr+len` readable, or `len == 0`.
unsafe fn bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(ptr.cast(), len) }
    }
}

impl NativePlugin {
    pub fn load(path: &Path) -> CallResult<NativePlugin> {
        let name = path.display().to_string();
        let fail = |kind, message: String| PluginFailure::new(&name, "load", kind, message);
        // SAFETY: loading a library runs its initialisers; native plugins are trusted
        // code by design (the sandboxed route is WASM).
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| {
            fail(
                FailureKind::NotAPlugin,
                format!("cannot load shared library: {e}"),
            )
        })?;
        // Never unloaded: see the module docs.
        let library: &'static libloading::Library = Box::leak(Box::new(library));
        // SAFETY: the symbol's type is fixed by the ABI's entry protocol.
        let entry = unsafe {
            library
                .get::<unsafe extern "C" fn() -> *const PluginHeader>(abi::ENTRY_SYMBOL.as_bytes())
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(_) => {
                let newer = (2..=9).map(|v| format!("llem_plugin_v{v}")).find(|sym| {
                    // SAFETY: only probing for presence; never called.
                    unsafe { library.get::<*const c_void>(sym.as_bytes()) }.is_ok()
                });
                let message = match newer {
                    Some(sym) => format!(
                        "exports `{sym}`, an entry point of a newer llem; this llem loads `{}` (native ABI versions {})",
                        abi::ENTRY_SYMBOL,
                        supported_versions()
                    ),
                    None => format!(
                        "is a shared library but not an llem plugin: it has no `{}` symbol",
                        abi::ENTRY_SYMBOL
                    ),
                };
                return Err(fail(FailureKind::NotAPlugin, message).with_hint(
                    "build plugins with llem-sdk's export macros, or against sdk/include/llem_plugin.h",
                ));
            }
        };
        // SAFETY: calling the entry point is the protocol; it returns static data.
        let header = unsafe { entry() };
        if header.is_null() {
            return Err(fail(
                FailureKind::NotAPlugin,
                format!("`{}` returned NULL", abi::ENTRY_SYMBOL),
            ));
        }
        // SAFETY: every ABI version starts with this header.
        let PluginHeader {
            abi_version,
            struct_size,
        } = unsafe { *header };
        if !abi::SUPPORTED_ABI_VERSIONS.contains(&abi_version) {
            return Err(fail(
                FailureKind::Incompatible,
                format!(
                    "was built for llem native plugin ABI version {abi_version}; this llem supports ABI version(s) {}",
                    supported_versions()
                ),
            )
            .with_hint("rebuild the plugin against the llem-sdk (or llem_plugin.h) that matches this llem"));
        }
        if (struct_size as usize) < std::mem::size_of::<PluginV1>() {
            return Err(fail(
                FailureKind::Incompatible,
                format!(
                    "declares a {struct_size}-byte vtable, smaller than ABI v1's {} bytes",
                    std::mem::size_of::<PluginV1>()
                ),
            ));
        }
        // SAFETY: version and size checked: the struct is a complete PluginV1.
        let vtable: &'static PluginV1 = unsafe { &*header.cast::<PluginV1>() };
        let kind = PluginKind::from_abi_tag(vtable.kind).ok_or_else(|| {
            fail(
                FailureKind::Incompatible,
                format!("declares unknown plugin kind {}", vtable.kind),
            )
        })?;
        check_entries(vtable, kind).map_err(|missing| {
            fail(
                FailureKind::Incompatible,
                format!("is a {kind} plugin but leaves `{missing}` empty in its vtable"),
            )
        })?;
        let describe = vtable.describe.ok_or_else(|| {
            fail(
                FailureKind::Incompatible,
                "leaves `describe` empty in its vtable".into(),
            )
        })?;
        let host = HostBox::new(&name);
        host.begin();
        // SAFETY: host table valid for the call.
        let status = unsafe { describe(&host.table) };
        host.finish("describe", status)?;
        let info: PluginInfo = host.output("describe")?;
        if info.kind != kind {
            return Err(fail(
                FailureKind::Incompatible,
                format!(
                    "describes itself as a {} plugin but its vtable says {kind}",
                    info.kind
                ),
            ));
        }
        let stream = match kind {
            PluginKind::Sink => sink_stream(library).map_err(|message| {
                fail(FailureKind::Incompatible, message).with_hint(
                    "rebuild the plugin against the llem-sdk (or llem_plugin.h) that matches this llem",
                )
            })?,
            _ => None,
        };
        Ok(NativePlugin {
            vtable,
            stream,
            info,
        })
    }

    fn open(&self, config: &str) -> CallResult<Instance> {
        let host = HostBox::new(&self.info.name);
        let open = self.vtable.open.ok_or_else(|| {
            PluginFailure::new(
                &self.info.name,
                "open",
                FailureKind::Incompatible,
                "no `open` entry",
            )
        })?;
        let mut raw: InstancePtr = std::ptr::null_mut();
        host.begin();
        // SAFETY: valid host table, readable config, writable out-pointer.
        let status = unsafe { open(&host.table, config.as_ptr().cast(), config.len(), &mut raw) };
        host.finish("open", status)?;
        if raw.is_null() {
            return Err(PluginFailure::new(
                &self.info.name,
                "open",
                FailureKind::Incompatible,
                "reported success but returned no instance",
            ));
        }
        Ok(Instance {
            vtable: self.vtable,
            raw,
            host,
        })
    }
}

/// A sink's optional stream table: `None` when the library does not export
/// `llem_sink_stream_v1` (it streams nothing, as before the extension); an
/// error when it exports one this llem cannot use.
fn sink_stream(
    library: &'static libloading::Library,
) -> Result<Option<&'static SinkStreamV1>, String> {
    // SAFETY: the symbol's type is fixed by the header (`llem_sink_stream_v1`).
    let entry = unsafe {
        library.get::<unsafe extern "C" fn() -> *const SinkStreamV1>(
            abi::SINK_STREAM_SYMBOL.as_bytes(),
        )
    };
    let Ok(entry) = entry else {
        return Ok(None);
    };
    // SAFETY: the entry point returns static data, per the header.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err(format!("`{}` returned NULL", abi::SINK_STREAM_SYMBOL));
    }
    // SAFETY: every version of the table starts with these two fields.
    let PluginHeader {
        abi_version,
        struct_size,
    } = unsafe { *table.cast::<PluginHeader>() };
    if abi_version != abi::SINK_STREAM_VERSION {
        return Err(format!(
            "exports `{}` version {abi_version}; this llem reads version {}",
            abi::SINK_STREAM_SYMBOL,
            abi::SINK_STREAM_VERSION
        ));
    }
    if (struct_size as usize) < std::mem::size_of::<SinkStreamV1>() {
        return Err(format!(
            "declares a {struct_size}-byte `{}` table, smaller than version 1's {} bytes",
            abi::SINK_STREAM_SYMBOL,
            std::mem::size_of::<SinkStreamV1>()
        ));
    }
    // SAFETY: version and size checked: a complete SinkStreamV1 in static data.
    let table: &'static SinkStreamV1 = unsafe { &*table };
    for (name, present) in [
        ("begin_run", table.begin_run.is_some()),
        ("write_events", table.write_events.is_some()),
        ("write_requests", table.write_requests.is_some()),
    ] {
        if !present {
            return Err(format!(
                "leaves `{name}` empty in its `{}` table",
                abi::SINK_STREAM_SYMBOL
            ));
        }
    }
    Ok(Some(table))
}

fn supported_versions() -> String {
    abi::SUPPORTED_ABI_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_entries(v: &PluginV1, kind: PluginKind) -> Result<(), &'static str> {
    let common = [
        ("describe", v.describe.is_some()),
        ("open", v.open.is_some()),
        ("close", v.close.is_some()),
    ];
    let specific: &[(&'static str, bool)] = match kind {
        PluginKind::Energy => &[
            ("energy_devices", v.energy_devices.is_some()),
            ("energy_read", v.energy_read.is_some()),
            ("energy_telemetry", v.energy_telemetry.is_some()),
        ],
        PluginKind::Backend => &[
            ("backend_plan", v.backend_plan.is_some()),
            ("backend_parse_metrics", v.backend_parse_metrics.is_some()),
        ],
        PluginKind::Dataset => &[("dataset_load", v.dataset_load.is_some())],
        PluginKind::Sink => &[
            ("sink_write_samples", v.sink_write_samples.is_some()),
            ("sink_write_result", v.sink_write_result.is_some()),
            ("sink_finish", v.sink_finish.is_some()),
        ],
    };
    match common.iter().chain(specific).find(|(_, present)| !present) {
        Some((name, _)) => Err(name),
        None => Ok(()),
    }
}

/// One open instance of a native plugin.
struct Instance {
    vtable: &'static PluginV1,
    raw: InstancePtr,
    host: Box<HostBox>,
}

// SAFETY: the ABI requires instances to be usable from any one thread at a time;
// every method here takes &mut self.
unsafe impl Send for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(close) = self.vtable.close {
            // SAFETY: raw came from open and is closed exactly once.
            unsafe { close(self.raw) };
        }
    }
}

impl Instance {
    fn plugin(&self) -> &str {
        &self.host.plugin
    }

    fn missing(&self, call: &'static str) -> PluginFailure {
        PluginFailure::new(
            self.plugin(),
            call,
            FailureKind::Incompatible,
            "entry missing from vtable",
        )
    }

    fn unit_call<R: DeserializeOwned>(
        &mut self,
        call: &'static str,
        entry: Option<abi::UnitCall>,
    ) -> CallResult<R> {
        let entry = entry.ok_or_else(|| self.missing(call))?;
        self.host.begin();
        // SAFETY: live instance; host table valid.
        let status = unsafe { entry(self.raw) };
        self.host.finish(call, status)?;
        self.host.output(call)
    }

    fn json_call<A: Serialize, R: DeserializeOwned>(
        &mut self,
        call: &'static str,
        entry: Option<abi::JsonCall>,
        arg: &A,
    ) -> CallResult<R> {
        let text = serde_json::to_string(arg).map_err(|e| {
            PluginFailure::new(
                self.plugin(),
                call,
                FailureKind::Other,
                format!("cannot encode input: {e}"),
            )
        })?;
        self.text_call(call, entry, &text)
    }

    fn text_call<R: DeserializeOwned>(
        &mut self,
        call: &'static str,
        entry: Option<abi::JsonCall>,
        text: &str,
    ) -> CallResult<R> {
        let entry = entry.ok_or_else(|| self.missing(call))?;
        self.host.begin();
        // SAFETY: live instance; readable input; host table valid.
        let status = unsafe { entry(self.raw, text.as_ptr().cast(), text.len()) };
        self.host.finish(call, status)?;
        self.host.output(call)
    }
}

struct NativeEnergy {
    instance: Instance,
    devices: Vec<Device>,
    buffer: Vec<RawReading>,
}

impl EnergyInstance for NativeEnergy {
    fn devices(&self) -> &[Device] {
        &self.devices
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> CallResult<()> {
        let entry = self
            .instance
            .vtable
            .energy_read
            .ok_or_else(|| self.instance.missing("read"))?;
        let mut count = 0usize;
        self.instance.host.begin();
        // SAFETY: live instance; buffer has `len` writable readings.
        let status = unsafe {
            entry(
                self.instance.raw,
                self.buffer.as_mut_ptr(),
                self.buffer.len(),
                &mut count,
            )
        };
        self.instance.host.finish("read", status)?;
        let count = count.min(self.buffer.len());
        out.extend(self.buffer[..count].iter().map(|r| Reading::from(*r)));
        Ok(())
    }

    fn telemetry(&mut self) -> CallResult<Vec<DeviceTelemetry>> {
        let entry = self.instance.vtable.energy_telemetry;
        self.instance.unit_call("telemetry", entry)
    }
}

struct NativeBackend(Instance);

impl BackendInstance for NativeBackend {
    fn plan(&mut self, request: &PlanRequest) -> CallResult<EnginePlan> {
        let entry = self.0.vtable.backend_plan;
        self.0.json_call("plan", entry, request)
    }

    fn parse_metrics(&mut self, prometheus_text: &str) -> CallResult<Vec<Metric>> {
        let entry = self.0.vtable.backend_parse_metrics;
        self.0.text_call("parse-metrics", entry, prometheus_text)
    }
}

struct NativeDataset(Instance);

impl DatasetInstance for NativeDataset {
    fn load(&mut self, request: &LoadRequest) -> CallResult<Vec<Prompt>> {
        let entry = self.0.vtable.dataset_load;
        self.0.json_call("load", entry, request)
    }
}

struct NativeSink {
    instance: Instance,
    stream: Option<&'static SinkStreamV1>,
}

impl SinkInstance for NativeSink {
    fn write_samples(&mut self, batch: &SampleBatch) -> CallResult<()> {
        let entry = self.instance.vtable.sink_write_samples;
        self.instance.json_call("write-samples", entry, batch)
    }

    fn write_result(&mut self, document: &ResultDocument) -> CallResult<()> {
        let entry = self.instance.vtable.sink_write_result;
        self.instance.json_call("write-result", entry, document)
    }

    fn finish(&mut self) -> CallResult<()> {
        let entry = self.instance.vtable.sink_finish;
        self.instance.unit_call("finish", entry)
    }

    fn streams(&self) -> bool {
        self.stream.is_some()
    }

    fn begin_run(&mut self, run: &RunInfo) -> CallResult<Wanted> {
        let Some(stream) = self.stream else {
            return Ok(Wanted::NOTHING);
        };
        // Nothing written reads as `null`: the sink wants nothing more.
        let wanted: Option<Wanted> = self
            .instance
            .json_call("begin-run", stream.begin_run, run)?;
        Ok(wanted.unwrap_or(Wanted::NOTHING))
    }

    fn write_events(&mut self, events: &[PhaseEvent]) -> CallResult<()> {
        let Some(stream) = self.stream else {
            return Ok(());
        };
        self.instance
            .json_call("write-events", stream.write_events, &events)
    }

    fn write_requests(&mut self, requests: &[llem_sdk::RequestRecord]) -> CallResult<()> {
        let Some(stream) = self.stream else {
            return Ok(());
        };
        self.instance
            .json_call("write-requests", stream.write_requests, &requests)
    }
}

impl PluginCode for NativePlugin {
    fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn open_energy(&self, config: &str, _: &Sandbox) -> CallResult<Box<dyn EnergyInstance>> {
        let mut instance = self.open(config)?;
        let devices: Vec<Device> = instance.unit_call("devices", self.vtable.energy_devices)?;
        let buffer = vec![RawReading::default(); devices.len().max(1)];
        Ok(Box::new(NativeEnergy {
            instance,
            devices,
            buffer,
        }))
    }

    fn open_backend(&self, config: &str, _: &Sandbox) -> CallResult<Box<dyn BackendInstance>> {
        Ok(Box::new(NativeBackend(self.open(config)?)))
    }

    fn open_dataset(&self, config: &str, _: &Sandbox) -> CallResult<Box<dyn DatasetInstance>> {
        Ok(Box::new(NativeDataset(self.open(config)?)))
    }

    fn open_sink(&self, config: &str, _: &Sandbox) -> CallResult<Box<dyn SinkInstance>> {
        Ok(Box::new(NativeSink {
            instance: self.open(config)?,
            stream: self.stream,
        }))
    }
}
