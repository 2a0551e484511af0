//! The part of ROCm's amdsmi C API (`amd_smi/amdsmi.h`) this plugin calls,
//! declared by hand from the documented API, and the library loaded at run
//! time with `libloading`.
//!
//! Signatures are stable from ROCm 5.7 (amdsmi 23.2) to 7.x (amdsmi 26.x):
//!
//! ```c
//! amdsmi_status_t amdsmi_init(uint64_t init_flags);
//! amdsmi_status_t amdsmi_get_socket_handles(uint32_t *socket_count, amdsmi_socket_handle *socket_handles);
//! amdsmi_status_t amdsmi_get_processor_handles(amdsmi_socket_handle socket, uint32_t *processor_count,
//!                                              amdsmi_processor_handle *processor_handles);
//! amdsmi_status_t amdsmi_get_energy_count(amdsmi_processor_handle h, uint64_t *energy_accumulator,
//!                                         float *counter_resolution /* µJ */, uint64_t *timestamp /* ns */);
//! amdsmi_status_t amdsmi_get_gpu_device_bdf(amdsmi_processor_handle h, amdsmi_bdf_t *bdf);
//! amdsmi_status_t amdsmi_get_gpu_asic_info(amdsmi_processor_handle h, amdsmi_asic_info_t *info);
//! amdsmi_status_t amdsmi_get_power_info(amdsmi_processor_handle h, amdsmi_power_info_t *info);
//! amdsmi_status_t amdsmi_get_lib_version(amdsmi_version_t *version);
//! amdsmi_status_t amdsmi_status_code_to_string(amdsmi_status_t status, const char **status_string);
//! ```
//!
//! Handles are `void *`; `amdsmi_status_t` is a C enum whose largest value is
//! `0xFFFFFFFF`, so it is an `unsigned int`. ROCm 5.5/5.6 used other names
//! (`amdsmi_get_device_handles`, `amdsmi_dev_get_energy_count`,
//! `amdsmi_status_string`); those releases are refused with that explanation.
//!
//! The structs changed layout between releases, so they are never declared
//! here as Rust structs. Each is written into a zeroed, over-sized, 8-aligned
//! buffer and only the parts whose position is the same in every release, or
//! that [`PowerLayout`] pins to a library version, are read:
//! - `amdsmi_version_t`: `build` (`const char *`) is at offset 16 in every
//!   release (5.6: major, minor, patch, build, reserved; 5.7–6.4: year, major,
//!   minor, release, build; 7.x: major, minor, release, build).
//! - `amdsmi_asic_info_t`: `market_name` (`char[64]` or `char[256]`) comes first
//!   in every release.
//! - `amdsmi_bdf_t`: a union with `uint64_t as_uint`; function bits 0–2, device
//!   3–7, bus 8–15, domain 16–63.

use libloading::Library;
use std::ffi::{CStr, c_char, c_void};

pub type Status = u32;
pub type Handle = *mut c_void;

pub const STATUS_SUCCESS: Status = 0;
pub const STATUS_NOT_SUPPORTED: Status = 2;
pub const STATUS_NOT_YET_IMPLEMENTED: Status = 3;
pub const STATUS_NO_PERM: Status = 10;
pub const STATUS_DRIVER_NOT_LOADED: Status = 34;

/// `AMDSMI_INIT_AMD_GPUS`.
pub const INIT_AMD_GPUS: u64 = 1 << 1;

type InitFn = unsafe extern "C" fn(u64) -> Status;
type SocketHandlesFn = unsafe extern "C" fn(*mut u32, *mut Handle) -> Status;
type ProcessorHandlesFn = unsafe extern "C" fn(Handle, *mut u32, *mut Handle) -> Status;
type EnergyCountFn = unsafe extern "C" fn(Handle, *mut u64, *mut f32, *mut u64) -> Status;
type BdfFn = unsafe extern "C" fn(Handle, *mut u64) -> Status;
type StructFn = unsafe extern "C" fn(Handle, *mut c_void) -> Status;
type LibVersionFn = unsafe extern "C" fn(*mut c_void) -> Status;
type StatusStringFn = unsafe extern "C" fn(Status, *mut *const c_char) -> Status;

/// Largest struct this plugin lets amdsmi fill: `amdsmi_asic_info_t` is about
/// 450 bytes in 7.x, `amdsmi_power_info_t` 200; 4 KiB leaves room for growth.
const SCRATCH: usize = 4096;

#[repr(C, align(8))]
pub struct Scratch(pub [u8; SCRATCH]);

impl Scratch {
    pub fn zeroed() -> Box<Scratch> {
        Box::new(Scratch([0; SCRATCH]))
    }

    pub fn u32_at(&self, offset: usize) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.0[offset..offset + 4]);
        u32::from_ne_bytes(bytes)
    }

    pub fn u64_at(&self, offset: usize) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.0[offset..offset + 8]);
        u64::from_ne_bytes(bytes)
    }

    /// A NUL-terminated string at the start, at most `max` bytes, printable ASCII only.
    pub fn c_string_prefix(&self, max: usize) -> String {
        self.0[..max.min(SCRATCH)]
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| {
                if b.is_ascii_graphic() || *b == b' ' {
                    char::from(*b)
                } else {
                    '?'
                }
            })
            .collect::<String>()
            .trim()
            .to_owned()
    }
}

/// The amdsmi library version, `major.minor` of `amdsmi_get_lib_version`'s
/// build string: 23.2 = ROCm 5.7, 23.4 = 6.0, 24.5 = 6.1, 24.6 = 6.2,
/// 24.7 = 6.3, 25.x = 6.4, 26.x = 7.x.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LibVersion {
    pub major: u32,
    pub minor: u32,
}

impl LibVersion {
    /// Parse `24.7.0.0`, `26.0.2`, `26.0.2+abc123`.
    pub fn parse(text: &str) -> Option<LibVersion> {
        let mut parts = text.trim().split(['.', '+', '-']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(LibVersion { major, minor })
    }

    /// ROCm 6.3 ships amdsmi 24.7, the first release whose energy counter is trusted.
    pub fn energy_counter_trusted(self) -> bool {
        self >= LibVersion {
            major: 24,
            minor: 7,
        }
    }
}

/// Where a library version keeps the power fields of `amdsmi_power_info_t`
/// (all in watts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLayout {
    /// ROCm 5.7 (23.2): `uint32_t average_socket_power` first.
    Rocm57,
    /// ROCm 6.0–6.3 (23.4–24.x): `uint32_t current_socket_power, average_socket_power`.
    Rocm60,
    /// ROCm 6.4–7.x (25.x–26.x): `uint64_t socket_power` then
    /// `uint32_t current_socket_power, average_socket_power`.
    Rocm64,
}

/// Which power figure a device reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerField {
    /// Instantaneous socket power (MI300 and later).
    Current,
    /// The SMU's averaged socket power (MI200 and earlier, Navi).
    Average,
    /// 7.x `socket_power`, a `uint64_t`.
    Socket,
}

impl PowerLayout {
    /// `None`: a release whose layout this plugin has not pinned (power is not read).
    pub fn for_version(version: LibVersion) -> Option<PowerLayout> {
        match (version.major, version.minor) {
            (23, 2) => Some(PowerLayout::Rocm57),
            (23, 4..) | (24, _) => Some(PowerLayout::Rocm60),
            (25 | 26, _) => Some(PowerLayout::Rocm64),
            _ => None,
        }
    }

    /// Watts of `field` in a filled `amdsmi_power_info_t`; `None` when the
    /// layout has no such field or the library marks it unsupported.
    pub fn read(self, info: &Scratch, field: PowerField) -> Option<u64> {
        let raw = match (self, field) {
            (PowerLayout::Rocm57, PowerField::Average) => u64::from(info.u32_at(0)),
            (PowerLayout::Rocm60, PowerField::Current) => u64::from(info.u32_at(0)),
            (PowerLayout::Rocm60, PowerField::Average) => u64::from(info.u32_at(4)),
            (PowerLayout::Rocm64, PowerField::Current) => u64::from(info.u32_at(8)),
            (PowerLayout::Rocm64, PowerField::Average) => u64::from(info.u32_at(12)),
            (PowerLayout::Rocm64, PowerField::Socket) => info.u64_at(0),
            _ => return None,
        };
        // Unsupported members are UINT32_MAX (UINT16_MAX in some gpu_metrics paths).
        if raw == u64::from(u32::MAX) || raw == u64::from(u16::MAX) || raw == u64::MAX {
            None
        } else {
            Some(raw)
        }
    }

    /// The fields to try, best first, for picking one when a device is opened.
    pub fn candidates(self) -> &'static [PowerField] {
        match self {
            PowerLayout::Rocm57 => &[PowerField::Average],
            PowerLayout::Rocm60 => &[PowerField::Current, PowerField::Average],
            PowerLayout::Rocm64 => &[PowerField::Current, PowerField::Average, PowerField::Socket],
        }
    }
}

/// `domain:bus:device.function` from `amdsmi_bdf_t::as_uint`.
pub fn format_bdf(bdf: u64) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        bdf >> 16,
        (bdf >> 8) & 0xff,
        (bdf >> 3) & 0x1f,
        bdf & 0x7
    )
}

/// Energy in µJ: accumulator × resolution (µJ per count). `None` if the
/// resolution is not a positive finite number.
pub fn energy_uj(accumulator: u64, resolution_uj: f32) -> Option<u64> {
    if !(resolution_uj.is_finite() && resolution_uj > 0.0) {
        return None;
    }
    let value = (accumulator as f64 * f64::from(resolution_uj)).round();
    (value < u64::MAX as f64).then_some(value as u64)
}

/// The functions, resolved from one loaded `libamd_smi.so`.
pub struct Api {
    /// Kept loaded for the life of the process (see [`Api::leak`]).
    _library: Library,
    init: InitFn,
    socket_handles: SocketHandlesFn,
    processor_handles: ProcessorHandlesFn,
    energy_count: EnergyCountFn,
    bdf: Option<BdfFn>,
    asic_info: Option<StructFn>,
    power_info: Option<StructFn>,
    lib_version: Option<LibVersionFn>,
    status_string: Option<StatusStringFn>,
}

/// Why a library could not be used.
pub enum LoadError {
    /// dlopen failed.
    Open(String),
    /// A function this plugin needs is missing.
    Missing(String),
}

impl Api {
    /// dlopen `path` and resolve the functions.
    pub fn load(path: &str) -> Result<Api, LoadError> {
        // SAFETY: loading libamd_smi.so runs its initialisers, which only set up
        // the library's own state; this is the library's intended use.
        let library = unsafe { Library::new(path) }.map_err(|e| LoadError::Open(e.to_string()))?;
        Api::resolve(library)
    }

    fn resolve(library: Library) -> Result<Api, LoadError> {
        // SAFETY (every `symbol` call below): each name is resolved with the
        // signature documented in amdsmi.h (module docs); the pointers stay valid
        // because `library` is stored in the returned Api.
        macro_rules! symbol {
            ($name:literal) => {
                unsafe { library.get::<_>(concat!($name, "\0").as_bytes()) }
                    .ok()
                    .map(|s| *s)
            };
        }
        macro_rules! required {
            ($name:literal) => {
                match symbol!($name) {
                    Some(f) => f,
                    None => return Err(Api::missing(&library, $name)),
                }
            };
        }
        let init: InitFn = required!("amdsmi_init");
        let socket_handles: SocketHandlesFn = required!("amdsmi_get_socket_handles");
        let processor_handles: ProcessorHandlesFn = required!("amdsmi_get_processor_handles");
        let energy_count: EnergyCountFn = required!("amdsmi_get_energy_count");
        let bdf: Option<BdfFn> = symbol!("amdsmi_get_gpu_device_bdf");
        let asic_info: Option<StructFn> = symbol!("amdsmi_get_gpu_asic_info");
        let power_info: Option<StructFn> = symbol!("amdsmi_get_power_info");
        let lib_version: Option<LibVersionFn> = symbol!("amdsmi_get_lib_version");
        let status_string: Option<StatusStringFn> = symbol!("amdsmi_status_code_to_string");
        Ok(Api {
            _library: library,
            init,
            socket_handles,
            processor_handles,
            energy_count,
            bdf,
            asic_info,
            power_info,
            lib_version,
            status_string,
        })
    }

    fn missing(library: &Library, name: &str) -> LoadError {
        // SAFETY: only checks that the symbol exists; it is never called.
        let old = unsafe { library.get::<*const c_void>(b"amdsmi_dev_get_energy_count\0") };
        if old.is_ok() {
            LoadError::Missing(format!(
                "it has no `{name}`: this is the amdsmi of ROCm 5.5/5.6 \
                 (`amdsmi_dev_get_energy_count`), whose API differs"
            ))
        } else {
            LoadError::Missing(format!("it has no `{name}`: not an amdsmi library?"))
        }
    }

    /// The address of `amdsmi_init`: the same for two loads of the same library.
    pub fn identity(&self) -> usize {
        self.init as usize
    }

    /// Keep the library mapped even if this value is dropped: amdsmi starts
    /// threads and registers state that must not be unmapped under them.
    pub fn leak(self) {
        std::mem::forget(self);
    }

    pub fn init(&self, flags: u64) -> Status {
        // SAFETY: documented signature; called with the plugin's process-wide lock held.
        unsafe { (self.init)(flags) }
    }

    /// Every processor handle, sockets in order then processors in order: the
    /// amd-smi index is the position in this list.
    pub fn processors(&self) -> Result<Vec<Handle>, (&'static str, Status)> {
        let mut count = 0u32;
        // SAFETY: a NULL array asks for the count only (documented).
        let status = unsafe { (self.socket_handles)(&mut count, std::ptr::null_mut()) };
        if status != STATUS_SUCCESS {
            return Err(("amdsmi_get_socket_handles", status));
        }
        let mut sockets = vec![std::ptr::null_mut(); count as usize];
        // SAFETY: `sockets` holds `count` handles.
        let status = unsafe { (self.socket_handles)(&mut count, sockets.as_mut_ptr()) };
        if status != STATUS_SUCCESS {
            return Err(("amdsmi_get_socket_handles", status));
        }
        sockets.truncate(count as usize);
        let mut processors = Vec::new();
        for socket in sockets {
            let mut count = 0u32;
            // SAFETY: as above, count first.
            let status =
                unsafe { (self.processor_handles)(socket, &mut count, std::ptr::null_mut()) };
            if status != STATUS_SUCCESS {
                return Err(("amdsmi_get_processor_handles", status));
            }
            let mut handles = vec![std::ptr::null_mut(); count as usize];
            // SAFETY: `handles` holds `count` handles.
            let status =
                unsafe { (self.processor_handles)(socket, &mut count, handles.as_mut_ptr()) };
            if status != STATUS_SUCCESS {
                return Err(("amdsmi_get_processor_handles", status));
            }
            handles.truncate(count as usize);
            processors.extend(handles);
        }
        Ok(processors)
    }

    /// (accumulator, resolution in µJ).
    pub fn energy_count(&self, handle: Handle) -> Result<(u64, f32), Status> {
        let (mut accumulator, mut resolution, mut timestamp) = (0u64, 0f32, 0u64);
        // SAFETY: documented signature, three valid out-pointers.
        let status = unsafe {
            (self.energy_count)(handle, &mut accumulator, &mut resolution, &mut timestamp)
        };
        if status == STATUS_SUCCESS {
            Ok((accumulator, resolution))
        } else {
            Err(status)
        }
    }

    pub fn bdf(&self, handle: Handle) -> Option<u64> {
        let f = self.bdf?;
        let mut bdf = 0u64;
        // SAFETY: amdsmi_bdf_t is a union over one uint64_t.
        let status = unsafe { f(handle, &mut bdf) };
        (status == STATUS_SUCCESS).then_some(bdf)
    }

    /// `amdsmi_asic_info_t::market_name`, e.g. `AMD Instinct MI300X`.
    pub fn market_name(&self, handle: Handle) -> Option<String> {
        let f = self.asic_info?;
        let mut info = Scratch::zeroed();
        // SAFETY: the buffer is larger than any release's amdsmi_asic_info_t.
        let status = unsafe { f(handle, info.0.as_mut_ptr().cast()) };
        if status != STATUS_SUCCESS {
            return None;
        }
        Some(info.c_string_prefix(256)).filter(|name| !name.is_empty())
    }

    pub fn has_power_info(&self) -> bool {
        self.power_info.is_some()
    }

    /// A filled `amdsmi_power_info_t`, to be read through a [`PowerLayout`].
    pub fn power_info(&self, handle: Handle) -> Result<Box<Scratch>, Status> {
        let f = self.power_info.ok_or(STATUS_NOT_SUPPORTED)?;
        let mut info = Scratch::zeroed();
        // SAFETY: the buffer is larger than any release's amdsmi_power_info_t.
        let status = unsafe { f(handle, info.0.as_mut_ptr().cast()) };
        if status == STATUS_SUCCESS {
            Ok(info)
        } else {
            Err(status)
        }
    }

    /// The build string of `amdsmi_get_lib_version` (e.g. `24.7.1.0`).
    pub fn lib_version(&self) -> Option<String> {
        let f = self.lib_version?;
        let mut version = Scratch::zeroed();
        // SAFETY: the buffer is larger than any release's amdsmi_version_t.
        let status = unsafe { f(version.0.as_mut_ptr().cast()) };
        if status != STATUS_SUCCESS {
            return None;
        }
        let build = version.u64_at(16) as usize as *const c_char;
        if build.is_null() {
            return None;
        }
        // SAFETY: amdsmi points `build` at a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(build) };
        Some(text.to_string_lossy().into_owned())
    }

    /// `amdsmi_status_code_to_string`, with the numeric code.
    pub fn describe(&self, status: Status) -> String {
        let text = self.status_string.and_then(|f| {
            let mut text: *const c_char = std::ptr::null();
            // SAFETY: documented signature; the string is static in the library.
            let ok = unsafe { f(status, &mut text) } == STATUS_SUCCESS && !text.is_null();
            // SAFETY: non-NULL, NUL-terminated (as documented).
            ok.then(|| {
                unsafe { CStr::from_ptr(text) }
                    .to_string_lossy()
                    .into_owned()
            })
        });
        match text {
            Some(text) => format!("{text} (amdsmi status {status})"),
            None => format!("amdsmi status {status}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_both_build_string_styles() {
        let v = |major, minor| Some(LibVersion { major, minor });
        assert_eq!(LibVersion::parse("24.7.1.0"), v(24, 7));
        assert_eq!(LibVersion::parse("26.0.2+6a1b2c"), v(26, 0));
        assert_eq!(LibVersion::parse("23.4.0.0"), v(23, 4));
        assert_eq!(LibVersion::parse("garbage"), None);
        assert!(
            !LibVersion::parse("24.6.2.0")
                .unwrap()
                .energy_counter_trusted()
        );
        assert!(
            LibVersion::parse("24.7.0.0")
                .unwrap()
                .energy_counter_trusted()
        );
        assert!(
            LibVersion::parse("26.0.2")
                .unwrap()
                .energy_counter_trusted()
        );
    }

    #[test]
    fn power_layouts_are_pinned_to_known_releases_only() {
        let layout = |s| PowerLayout::for_version(LibVersion::parse(s).unwrap());
        assert_eq!(layout("23.2.0.1"), Some(PowerLayout::Rocm57));
        assert_eq!(layout("23.4.0.0"), Some(PowerLayout::Rocm60));
        assert_eq!(layout("24.7.0.0"), Some(PowerLayout::Rocm60));
        assert_eq!(layout("25.3.0"), Some(PowerLayout::Rocm64));
        assert_eq!(layout("26.0.2"), Some(PowerLayout::Rocm64));
        assert_eq!(layout("27.0.0"), None);
        assert_eq!(layout("23.3.0"), None);
    }

    fn power_info(words: &[(usize, u32)]) -> Box<Scratch> {
        let mut info = Scratch::zeroed();
        for (offset, value) in words {
            info.0[*offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
        }
        info
    }

    #[test]
    fn power_fields_are_read_where_each_release_puts_them() {
        // 6.0-6.3: current 750 W at 0, average 700 W at 4.
        let info = power_info(&[(0, 750), (4, 700), (8, 900)]);
        assert_eq!(
            PowerLayout::Rocm60.read(&info, PowerField::Current),
            Some(750)
        );
        assert_eq!(
            PowerLayout::Rocm60.read(&info, PowerField::Average),
            Some(700)
        );
        assert_eq!(PowerLayout::Rocm60.read(&info, PowerField::Socket), None);
        // 6.4+: u64 socket power first, then current and average.
        let info = power_info(&[(0, 123), (8, 640), (12, u32::MAX)]);
        assert_eq!(
            PowerLayout::Rocm64.read(&info, PowerField::Current),
            Some(640)
        );
        assert_eq!(PowerLayout::Rocm64.read(&info, PowerField::Average), None);
        assert_eq!(
            PowerLayout::Rocm64.read(&info, PowerField::Socket),
            Some(123)
        );
        let info = power_info(&[(0, 300)]);
        assert_eq!(
            PowerLayout::Rocm57.read(&info, PowerField::Average),
            Some(300)
        );
    }

    #[test]
    fn bdf_and_energy_conversions() {
        // domain 0, bus 0xc1, device 0, function 0.
        assert_eq!(format_bdf(0xc1 << 8), "0000:c1:00.0");
        assert_eq!(
            format_bdf((1 << 16) | (0x05 << 8) | (0x1f << 3) | 7),
            "0001:05:1f.7"
        );
        assert_eq!(energy_uj(8, 15.625), Some(125));
        // MI300X-like resolution: f32 15.3 is 15.300000190734863.
        assert_eq!(energy_uj(1_000_000, 15.3), Some(15_300_000));
        assert_eq!(energy_uj(5, 0.0), None);
        assert_eq!(energy_uj(5, f32::NAN), None);
    }

    #[test]
    fn c_strings_stop_at_nul_and_are_sanitised() {
        let mut info = Scratch::zeroed();
        info.0[..20].copy_from_slice(b"AMD Instinct MI300X\0");
        info.0[20..24].copy_from_slice(b"junk");
        assert_eq!(info.c_string_prefix(256), "AMD Instinct MI300X");
        info.0[..4].copy_from_slice(b"A\x01B\0");
        assert_eq!(info.c_string_prefix(256), "A?B");
    }
}
