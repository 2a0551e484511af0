//! The native plugin ABI, mirrored from `sdk/include/llem_plugin.h`.
//!
//! Both the kernel (host side) and the SDK's native glue (plugin side) use
//! these definitions, so the Rust and C views cannot drift apart silently:
//! `tests/native_c_plugin.rs` builds a C plugin against the header and loads it.

use std::ffi::{c_char, c_void};

/// The only ABI version this SDK builds plugins for.
pub const ABI_VERSION: u32 = 1;
/// Every ABI version this llem can load (the host refuses others, listing these).
pub const SUPPORTED_ABI_VERSIONS: &[u32] = &[1];
/// The entry symbol every native plugin exports.
pub const ENTRY_SYMBOL: &str = "llem_plugin_v1";
/// The optional entry symbol of a sink that streams (phase events and request
/// records during the run): returns a [`SinkStreamV1`]. A sink without it
/// gets readings and the result only.
pub const SINK_STREAM_SYMBOL: &str = "llem_sink_stream_v1";
/// The version a [`SinkStreamV1`] declares in its `abi_version`.
pub const SINK_STREAM_VERSION: u32 = 1;

pub type Status = i32;
pub const OK: Status = 0;

pub const READING_HAS_ENERGY: u32 = 1;
pub const READING_HAS_POWER: u32 = 2;

#[repr(C)]
#[derive(Debug)]
pub struct Host {
    pub abi_version: u32,
    pub struct_size: u32,
    pub ctx: *mut c_void,
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: i32, msg: *const c_char, len: usize),
    pub monotonic_ns: unsafe extern "C" fn(ctx: *mut c_void) -> u64,
    pub set_error: unsafe extern "C" fn(ctx: *mut c_void, msg: *const c_char, len: usize),
    pub write_output: unsafe extern "C" fn(ctx: *mut c_void, data: *const c_char, len: usize),
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawReading {
    pub device: u32,
    pub flags: u32,
    pub energy_uj: u64,
    pub power_mw: u64,
}

impl From<RawReading> for crate::types::Reading {
    fn from(r: RawReading) -> Self {
        crate::types::Reading {
            device: r.device,
            energy_uj: (r.flags & READING_HAS_ENERGY != 0).then_some(r.energy_uj),
            power_mw: (r.flags & READING_HAS_POWER != 0).then_some(r.power_mw),
        }
    }
}

impl From<crate::types::Reading> for RawReading {
    fn from(r: crate::types::Reading) -> Self {
        let mut flags = 0;
        if r.energy_uj.is_some() {
            flags |= READING_HAS_ENERGY;
        }
        if r.power_mw.is_some() {
            flags |= READING_HAS_POWER;
        }
        RawReading {
            device: r.device,
            flags,
            energy_uj: r.energy_uj.unwrap_or(0),
            power_mw: r.power_mw.unwrap_or(0),
        }
    }
}

pub type InstancePtr = *mut c_void;
pub type JsonCall = unsafe extern "C" fn(InstancePtr, *const c_char, usize) -> Status;
pub type UnitCall = unsafe extern "C" fn(InstancePtr) -> Status;

/// The vtable returned by `llem_plugin_v1()`. Append-only.
#[repr(C)]
#[derive(Debug)]
pub struct PluginV1 {
    pub abi_version: u32,
    pub struct_size: u32,
    pub kind: u32,
    pub reserved: u32,
    pub describe: Option<unsafe extern "C" fn(host: *const Host) -> Status>,
    pub open: Option<
        unsafe extern "C" fn(
            host: *const Host,
            config_json: *const c_char,
            config_len: usize,
            instance: *mut InstancePtr,
        ) -> Status,
    >,
    pub close: Option<unsafe extern "C" fn(InstancePtr)>,
    pub energy_devices: Option<UnitCall>,
    pub energy_read:
        Option<unsafe extern "C" fn(InstancePtr, *mut RawReading, usize, *mut usize) -> Status>,
    pub energy_telemetry: Option<UnitCall>,
    pub backend_plan: Option<JsonCall>,
    pub backend_parse_metrics: Option<JsonCall>,
    pub dataset_load: Option<JsonCall>,
    pub sink_write_samples: Option<JsonCall>,
    pub sink_write_result: Option<JsonCall>,
    pub sink_finish: Option<UnitCall>,
}

/// The table returned by `llem_sink_stream_v1()`. Append-only, like
/// [`PluginV1`]. Every call passes JSON text, as `sink_write_samples` does:
/// `begin_run` gets a `RunInfo` and writes a `Wanted` object with
/// `host->write_output`; `write_events` gets an array of `PhaseEvent`s,
/// `write_requests` an array of `RequestRecord`s (field names as in
/// `llem_sdk::types`).
#[repr(C)]
#[derive(Debug)]
pub struct SinkStreamV1 {
    pub abi_version: u32,
    pub struct_size: u32,
    pub begin_run: Option<JsonCall>,
    pub write_events: Option<JsonCall>,
    pub write_requests: Option<JsonCall>,
}

/// The header fields every ABI version shares; read first, before trusting the rest.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginHeader {
    pub abi_version: u32,
    pub struct_size: u32,
}
