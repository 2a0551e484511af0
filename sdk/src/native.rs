//! Plugin side of the native C ABI: generic `extern "C"` shims the export
//! macros put in a vtable. Panics are caught at the boundary and reported as
//! errors, because unwinding into the host is undefined behaviour.

use crate::abi::{self, Host, InstancePtr, PluginV1, RawReading, SinkStreamV1, Status};
use crate::host::Level;
use crate::types::*;
use crate::{Backend, Config, Dataset, EnergySource, Plugin, Sink};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The most recent host table, for `host::log` calls made outside any call
/// that carries one (all instances of one library share the same functions).
static HOST: AtomicPtr<Host> = AtomicPtr::new(std::ptr::null_mut());

struct Instance<T> {
    host: *const Host,
    inner: T,
    readings: Vec<Reading>,
}

pub(crate) fn host_log(level: Level, message: &str) {
    let host = HOST.load(Ordering::Acquire);
    if host.is_null() {
        return;
    }
    // SAFETY: the host keeps every table it hands out alive while the library is loaded.
    unsafe {
        ((*host).log)(
            (*host).ctx,
            level as i32,
            message.as_ptr().cast(),
            message.len(),
        )
    }
}

pub(crate) fn host_monotonic_now_ns() -> u64 {
    let host = HOST.load(Ordering::Acquire);
    if host.is_null() {
        return 0;
    }
    // SAFETY: as in host_log.
    unsafe { ((*host).monotonic_ns)((*host).ctx) }
}

fn remember(host: *const Host) {
    if !host.is_null() {
        HOST.store(host.cast_mut(), Ordering::Release);
    }
}

/// # Safety
/// `host` must be a valid host table.
unsafe fn write_output(host: *const Host, bytes: &[u8]) {
    // SAFETY: guaranteed by the caller.
    unsafe { ((*host).write_output)((*host).ctx, bytes.as_ptr().cast(), bytes.len()) }
}

/// # Safety
/// `host` must be a valid host table.
unsafe fn fail(host: *const Host, error: &PluginError) -> Status {
    let text = serde_json::to_string(error).unwrap_or_else(|_| error.message.clone());
    // SAFETY: guaranteed by the caller.
    unsafe { ((*host).set_error)((*host).ctx, text.as_ptr().cast(), text.len()) };
    error.code.abi_status()
}

/// Run `body`, turning errors and panics into a status plus a message for the host.
///
/// # Safety
/// `host` must be a valid host table.
unsafe fn guarded(host: *const Host, body: impl FnOnce() -> Result<(), PluginError>) -> Status {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(PluginError::other(format!("plugin panicked: {what}")))
    });
    match outcome {
        Ok(()) => abi::OK,
        // SAFETY: guaranteed by the caller.
        Err(error) => unsafe { fail(host, &error) },
    }
}

/// # Safety
/// `ptr..ptr+len` must be readable (or `len` 0).
unsafe fn text<'a>(ptr: *const c_char, len: usize) -> Result<&'a str, PluginError> {
    if len == 0 {
        return Ok("");
    }
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    std::str::from_utf8(bytes).map_err(|e| PluginError::other(format!("input is not UTF-8: {e}")))
}

/// # Safety
/// as `text`.
unsafe fn json_arg<A: DeserializeOwned>(ptr: *const c_char, len: usize) -> Result<A, PluginError> {
    // SAFETY: guaranteed by the caller.
    let text = unsafe { text(ptr, len) }?;
    serde_json::from_str(text).map_err(|e| PluginError::other(format!("malformed input: {e}")))
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, PluginError> {
    serde_json::to_vec(value).map_err(|e| PluginError::other(format!("cannot encode output: {e}")))
}

/// # Safety
/// `instance` must come from `open::<T>` and not be closed.
unsafe fn instance<'a, T>(instance: InstancePtr) -> &'a mut Instance<T> {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *instance.cast::<Instance<T>>() }
}

unsafe extern "C" fn describe<T: Plugin>(host: *const Host) -> Status {
    remember(host);
    // SAFETY: the host passes a valid table.
    unsafe {
        guarded(host, || {
            let json = to_json(&T::describe())?;
            write_output(host, &json);
            Ok(())
        })
    }
}

unsafe extern "C" fn open<T: Plugin>(
    host: *const Host,
    config_json: *const c_char,
    config_len: usize,
    out: *mut InstancePtr,
) -> Status {
    remember(host);
    // SAFETY: the host passes valid pointers, per the ABI.
    unsafe {
        guarded(host, || {
            let config = Config::from_json(text(config_json, config_len)?)?;
            let inner = T::open(config)?;
            let boxed = Box::new(Instance {
                host,
                inner,
                readings: Vec::new(),
            });
            *out = Box::into_raw(boxed).cast();
            Ok(())
        })
    }
}

unsafe extern "C" fn close<T: Plugin>(instance: InstancePtr) {
    if !instance.is_null() {
        // SAFETY: the pointer came from Box::into_raw in `open::<T>`; the host closes once.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            drop(Box::from_raw(instance.cast::<Instance<T>>()))
        }));
    }
}

/// Shared shape of every call that returns JSON.
///
/// # Safety
/// `raw` must be a live instance of `T`.
unsafe fn json_call<T, R: Serialize>(
    raw: InstancePtr,
    body: impl FnOnce(&mut T) -> Result<R, PluginError>,
) -> Status {
    // SAFETY: guaranteed by the caller.
    let this = unsafe { instance::<T>(raw) };
    let host = this.host;
    // SAFETY: the instance's host table outlives it.
    unsafe {
        guarded(host, || {
            let value = body(&mut this.inner)?;
            write_output(host, &to_json(&value)?);
            Ok(())
        })
    }
}

unsafe extern "C" fn energy_devices<T: EnergySource>(raw: InstancePtr) -> Status {
    // SAFETY: the host passes a live instance.
    unsafe { json_call::<T, _>(raw, |t| Ok(t.devices())) }
}

unsafe extern "C" fn energy_read<T: EnergySource>(
    raw: InstancePtr,
    out: *mut RawReading,
    capacity: usize,
    count: *mut usize,
) -> Status {
    // SAFETY: the host passes a live instance and `capacity` writable readings.
    let this = unsafe { instance::<T>(raw) };
    let host = this.host;
    // SAFETY: as above.
    unsafe {
        guarded(host, || {
            this.readings.clear();
            this.inner.read(&mut this.readings)?;
            if this.readings.len() > capacity {
                return Err(PluginError::other(format!(
                    "read returned {} readings but the host has room for {capacity}",
                    this.readings.len()
                )));
            }
            for (i, reading) in this.readings.iter().enumerate() {
                out.add(i).write(RawReading::from(*reading));
            }
            *count = this.readings.len();
            Ok(())
        })
    }
}

unsafe extern "C" fn energy_telemetry<T: EnergySource>(raw: InstancePtr) -> Status {
    // SAFETY: the host passes a live instance.
    unsafe { json_call::<T, _>(raw, |t| t.telemetry()) }
}

unsafe extern "C" fn backend_plan<T: Backend>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe { json_call::<T, _>(raw, |t| t.plan(&json_arg(ptr, len)?)) }
}

unsafe extern "C" fn backend_parse_metrics<T: Backend>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe { json_call::<T, _>(raw, |t| t.parse_metrics(text(ptr, len)?)) }
}

unsafe extern "C" fn dataset_load<T: Dataset>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe { json_call::<T, _>(raw, |t| t.load(&json_arg(ptr, len)?)) }
}

unsafe extern "C" fn sink_write_samples<T: Sink>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe { json_call::<T, _>(raw, |t| t.write_samples(&json_arg(ptr, len)?)) }
}

unsafe extern "C" fn sink_write_result<T: Sink>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe { json_call::<T, _>(raw, |t| t.write_result(&json_arg(ptr, len)?)) }
}

unsafe extern "C" fn sink_finish<T: Sink>(raw: InstancePtr) -> Status {
    // SAFETY: the host passes a live instance.
    unsafe { json_call::<T, _>(raw, |t| t.finish()) }
}

unsafe extern "C" fn sink_begin_run<T: Sink>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe { json_call::<T, _>(raw, |t| t.begin_run(&json_arg(ptr, len)?)) }
}

unsafe extern "C" fn sink_write_events<T: Sink>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe {
        json_call::<T, _>(raw, |t| {
            t.write_events(&json_arg::<Vec<PhaseEvent>>(ptr, len)?)
        })
    }
}

unsafe extern "C" fn sink_write_requests<T: Sink>(
    raw: InstancePtr,
    ptr: *const c_char,
    len: usize,
) -> Status {
    // SAFETY: the host passes a live instance and readable input.
    unsafe {
        json_call::<T, _>(raw, |t| {
            t.write_requests(&json_arg::<Vec<RequestRecord>>(ptr, len)?)
        })
    }
}

const fn base<T: Plugin>(kind: PluginKind) -> PluginV1 {
    PluginV1 {
        abi_version: abi::ABI_VERSION,
        struct_size: std::mem::size_of::<PluginV1>() as u32,
        kind: match kind {
            PluginKind::Energy => 1,
            PluginKind::Backend => 2,
            PluginKind::Dataset => 3,
            PluginKind::Sink => 4,
        },
        reserved: 0,
        describe: Some(describe::<T>),
        open: Some(open::<T>),
        close: Some(close::<T>),
        energy_devices: None,
        energy_read: None,
        energy_telemetry: None,
        backend_plan: None,
        backend_parse_metrics: None,
        dataset_load: None,
        sink_write_samples: None,
        sink_write_result: None,
        sink_finish: None,
    }
}

pub const fn energy_vtable<T: EnergySource>() -> PluginV1 {
    PluginV1 {
        energy_devices: Some(energy_devices::<T>),
        energy_read: Some(energy_read::<T>),
        energy_telemetry: Some(energy_telemetry::<T>),
        ..base::<T>(PluginKind::Energy)
    }
}

pub const fn backend_vtable<T: Backend>() -> PluginV1 {
    PluginV1 {
        backend_plan: Some(backend_plan::<T>),
        backend_parse_metrics: Some(backend_parse_metrics::<T>),
        ..base::<T>(PluginKind::Backend)
    }
}

pub const fn dataset_vtable<T: Dataset>() -> PluginV1 {
    PluginV1 {
        dataset_load: Some(dataset_load::<T>),
        ..base::<T>(PluginKind::Dataset)
    }
}

pub const fn sink_vtable<T: Sink>() -> PluginV1 {
    PluginV1 {
        sink_write_samples: Some(sink_write_samples::<T>),
        sink_write_result: Some(sink_write_result::<T>),
        sink_finish: Some(sink_finish::<T>),
        ..base::<T>(PluginKind::Sink)
    }
}

/// The optional stream table of a sink (`llem_sink_stream_v1`).
pub const fn sink_stream_vtable<T: Sink>() -> SinkStreamV1 {
    SinkStreamV1 {
        abi_version: abi::SINK_STREAM_VERSION,
        struct_size: std::mem::size_of::<SinkStreamV1>() as u32,
        begin_run: Some(sink_begin_run::<T>),
        write_events: Some(sink_write_events::<T>),
        write_requests: Some(sink_write_requests::<T>),
    }
}
