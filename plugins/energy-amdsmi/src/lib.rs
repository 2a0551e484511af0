//! `energy-amdsmi`: AMD GPU energy through ROCm's amdsmi (`libamd_smi.so`),
//! loaded at run time so that llem builds and runs without ROCm.
//!
//! Per GPU it reports the energy accumulator × its resolution as a raw µJ
//! counter (64-bit, so no wrap: `counter_wrap_uj: None`) and, where the
//! installed amdsmi's `amdsmi_power_info_t` layout is known, socket power in mW.
//! A GPU whose energy counter amdsmi does not support (virtual-machine guests,
//! some consumer cards) is reported with power only, and the kernel integrates
//! it and says so.
//!
//! Known pitfalls, surfaced as warnings and in device names:
//! - the energy counter is wrong on MI100 and with amdsmi older than ROCm 6.3
//!   (ROCm/amdsmi #22, #38);
//! - neither energy nor power is available in VM guests;
//! - amdsmi is not thread-safe before ROCm 7.2: every call in this process goes
//!   through one lock, and the library is initialised once per process;
//! - HIP and amd-smi number GPUs differently: `devices` takes **amd-smi**
//!   indices (`amd-smi list`), and `HIP_VISIBLE_DEVICES`/`ROCR_VISIBLE_DEVICES`
//!   are not applied. Device names carry the PCI address to match them up.

mod ffi;

use ffi::{Api, Handle, LibVersion, LoadError, PowerField, PowerLayout, Status};
use llem_sdk::{
    Config, Device, DeviceKind, EnergySource, ErrorCode, OptionSpec, OptionType, Plugin,
    PluginError, PluginInfo, PluginKind, Reading, host,
};
use std::sync::{Mutex, MutexGuard, PoisonError};

const DEFAULT_LIBRARY: &str = "libamd_smi.so";
const ROCM_LIBRARY: &str = "/opt/rocm/lib/libamd_smi.so";
const INSTALL_HINT: &str = "install ROCm's amd-smi library (ROCm 6.3 or later for correct energy counters) \
     and add /opt/rocm/lib to LD_LIBRARY_PATH, or set `library` to the full path of libamd_smi.so";

/// amdsmi, initialised once for the whole process. The mutex also serialises
/// every amdsmi call: the library is not thread-safe before ROCm 7.2, and
/// several llem instances (or sources) may read from different threads.
/// Only a successful initialisation is kept, so a failed attempt (library
/// missing) can be retried with another `library`.
static AMDSMI: Mutex<Option<Amdsmi>> = Mutex::new(None);

struct Amdsmi {
    api: Api,
    /// The `library` option it was loaded with.
    requested: String,
    /// What was actually loaded (`requested` or a fallback path).
    loaded: String,
    version: Option<String>,
}

fn lock() -> MutexGuard<'static, Option<Amdsmi>> {
    // A panic while holding the lock leaves amdsmi itself intact.
    AMDSMI.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Candidate paths for the `library` option, in order.
fn candidates(library: &str) -> Vec<String> {
    let mut paths = vec![library.to_owned()];
    if library == DEFAULT_LIBRARY {
        if let Some(root) = std::env::var_os("ROCM_PATH") {
            let path = std::path::Path::new(&root)
                .join("lib")
                .join(DEFAULT_LIBRARY);
            paths.push(path.display().to_string());
        }
        paths.push(ROCM_LIBRARY.to_owned());
        paths.dedup();
    }
    paths
}

/// dlopen the first candidate that loads and is an amdsmi library.
fn load(library: &str) -> Result<(Api, String), PluginError> {
    let mut tried = Vec::new();
    for path in candidates(library) {
        match Api::load(&path) {
            Ok(api) => return Ok((api, path)),
            Err(LoadError::Open(e)) => tried.push(format!("{path}: {e}")),
            Err(LoadError::Missing(e)) => {
                return Err(
                    PluginError::unavailable(format!("{path} cannot be used: {e}"))
                        .with_hint(INSTALL_HINT),
                );
            }
        }
    }
    Err(PluginError::unavailable(format!(
        "cannot load the AMD SMI library {library} (tried {})",
        tried.join("; ")
    ))
    .with_hint(INSTALL_HINT))
}

fn init_error(api: &Api, status: Status, path: &str) -> PluginError {
    let message = format!(
        "amdsmi_init(AMDSMI_INIT_AMD_GPUS) from {path} failed: {}",
        api.describe(status)
    );
    match status {
        ffi::STATUS_NO_PERM => PluginError::new(ErrorCode::PermissionDenied, message).with_hint(
            "amdsmi needs read access to /dev/kfd and /dev/dri/renderD*: add the user to the `render` and `video` groups",
        ),
        ffi::STATUS_DRIVER_NOT_LOADED => PluginError::unavailable(message)
            .with_hint("the amdgpu kernel driver is not loaded (`modprobe amdgpu`), or this machine has no AMD GPU"),
        _ => PluginError::unavailable(message),
    }
}

/// The process's amdsmi, initialising it on first use.
fn initialised<'a>(
    guard: &'a mut MutexGuard<'static, Option<Amdsmi>>,
    library: &str,
) -> Result<&'a Amdsmi, PluginError> {
    if let Some(current) = guard.as_ref()
        && current.requested != library
    {
        // Another `library` than the one already initialised: fine if it is the
        // same library (another path to it), refused otherwise.
        let (other, path) = load(library)?;
        if other.identity() != current.api.identity() {
            return Err(PluginError::invalid_config(
                "library",
                format!(
                    "this process already initialised amdsmi from {}; {path} is another library, \
                     and amdsmi can be initialised only once per process",
                    current.loaded
                ),
            ));
        }
    }
    if guard.is_none() {
        let (api, path) = load(library)?;
        let status = api.init(ffi::INIT_AMD_GPUS);
        if status != ffi::STATUS_SUCCESS {
            let error = init_error(&api, status, &path);
            api.leak();
            return Err(error);
        }
        let version = api.lib_version();
        host::debug(&format!(
            "amdsmi {} initialised from {path}",
            version.as_deref().unwrap_or("(version unknown)")
        ));
        **guard = Some(Amdsmi {
            api,
            requested: library.to_owned(),
            loaded: path,
            version,
        });
    }
    guard
        .as_ref()
        .ok_or_else(|| PluginError::other("amdsmi state vanished"))
}

/// One GPU this instance measures.
struct Gpu {
    /// The amdsmi processor handle, as an address (handles live as long as amdsmi).
    handle: usize,
    has_energy: bool,
    power: Option<PowerField>,
    /// Already warned that a read of this GPU failed.
    warned_read: bool,
    /// Stuck-counter detection: last value and when it last changed.
    last_change: Option<(u64, u64)>,
    warned_stuck: bool,
}

impl Gpu {
    fn handle(&self) -> Handle {
        self.handle as Handle
    }
}

pub struct AmdSmi {
    library: String,
    power_layout: Option<PowerLayout>,
    gpus: Vec<Gpu>,
    devices: Vec<Device>,
}

/// A counter that has not moved for this long on a powered GPU is stuck
/// (an idle GPU still draws tens of watts: thousands of counts per second).
const STUCK_AFTER_NS: u64 = 10_000_000_000;

fn warn(message: &str) {
    host::warn(&format!("energy-amdsmi: {message}"));
}

impl Plugin for AmdSmi {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "energy-amdsmi".into(),
            kind: PluginKind::Energy,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "AMD GPU energy counters and power through ROCm's amdsmi (libamd_smi.so)"
                .into(),
            options: vec![
                OptionSpec::with_default(
                    "library",
                    OptionType::String,
                    DEFAULT_LIBRARY,
                    "The amdsmi library to load; when the default is not on the loader's path, \
                     $ROCM_PATH/lib/libamd_smi.so and /opt/rocm/lib/libamd_smi.so are tried",
                ),
                OptionSpec::with_default(
                    "devices",
                    OptionType::IntegerList,
                    Vec::<i64>::new(),
                    "amd-smi GPU indices to measure (as `amd-smi list` numbers them, which is \
                     not HIP's numbering; HIP_VISIBLE_DEVICES is not applied); empty = all",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let library = config
            .optional::<String>("library")?
            .unwrap_or_else(|| DEFAULT_LIBRARY.to_owned());
        if library.trim().is_empty() {
            return Err(PluginError::invalid_config("library", "must not be empty"));
        }
        let wanted = config.optional::<Vec<i64>>("devices")?.unwrap_or_default();

        let mut guard = lock();
        let amdsmi = initialised(&mut guard, &library)?;
        let api = &amdsmi.api;
        let handles = api.processors().map_err(|(call, status)| {
            PluginError::unavailable(format!("{call} failed: {}", api.describe(status)))
        })?;
        if handles.is_empty() {
            return Err(PluginError::unavailable(format!(
                "amdsmi ({}) found no AMD GPU",
                amdsmi.loaded
            ))
            .with_hint(
                "check that the amdgpu driver is loaded and `amd-smi list` shows the GPUs",
            ));
        }
        let indices = select(&wanted, handles.len())?;

        let version = amdsmi.version.as_deref().and_then(LibVersion::parse);
        let power_layout = version.and_then(PowerLayout::for_version);
        let counter_trusted = version.is_some_and(LibVersion::energy_counter_trusted);
        match (&amdsmi.version, version) {
            (_, Some(v)) if !v.energy_counter_trusted() => warn(&format!(
                "amdsmi {} predates ROCm 6.3: its energy counter is known to be wrong \
                 (ROCm/amdsmi #22, #38); upgrade ROCm",
                amdsmi.version.as_deref().unwrap_or_default()
            )),
            (Some(text), None) => warn(&format!(
                "cannot parse amdsmi's version `{text}`: power is not read, and the energy \
                 counter may be wrong if it predates ROCm 6.3"
            )),
            (None, _) => warn(
                "amdsmi did not report its version: power is not read, and the energy counter \
                 may be wrong if it predates ROCm 6.3",
            ),
            _ => {}
        }
        if version.is_some() && power_layout.is_none() && api.has_power_info() {
            warn(&format!(
                "amdsmi {}: the layout of amdsmi_power_info_t in this release is not known to \
                 this plugin, so power is not read (energy counters still are)",
                amdsmi.version.as_deref().unwrap_or_default()
            ));
        }
        for variable in [
            "HIP_VISIBLE_DEVICES",
            "ROCR_VISIBLE_DEVICES",
            "CUDA_VISIBLE_DEVICES",
        ] {
            if let Ok(value) = std::env::var(variable) {
                warn(&format!(
                    "{variable}={value} is set, but `devices` takes amd-smi indices and HIP \
                     numbers GPUs differently: match them by the PCI address in the device names \
                     (`amd-smi list`)"
                ));
            }
        }

        let mut gpus = Vec::new();
        let mut devices = Vec::new();
        for index in indices {
            let handle = handles[index];
            let market = api
                .market_name(handle)
                .unwrap_or_else(|| "AMD GPU".to_owned());
            let mut name = match api.bdf(handle) {
                Some(bdf) => format!("{market} ({})", ffi::format_bdf(bdf)),
                None => market.clone(),
            };

            let has_energy = match api.energy_count(handle) {
                Ok(_) => true,
                Err(ffi::STATUS_NOT_SUPPORTED | ffi::STATUS_NOT_YET_IMPLEMENTED) => {
                    warn(&format!(
                        "gpu{index} ({name}): amdsmi does not support its energy counter \
                         (not supported in virtual-machine guests); using power instead"
                    ));
                    false
                }
                Err(status) => {
                    warn(&format!(
                        "gpu{index} ({name}): amdsmi_get_energy_count failed: {}; using power instead",
                        api.describe(status)
                    ));
                    false
                }
            };
            let power = power_layout.and_then(|layout| pick_power(api, handle, layout));

            if has_energy && market.contains("MI100") {
                warn(&format!(
                    "gpu{index} ({name}): the energy counter is known to be wrong on MI100 \
                     (ROCm/amdsmi #38)"
                ));
                name.push_str(" [MI100: energy counter unreliable]");
            } else if has_energy && !counter_trusted {
                name.push_str(" [amdsmi < ROCm 6.3: energy counter unreliable]");
            }
            if !has_energy && power.is_none() {
                warn(&format!(
                    "gpu{index} ({name}): amdsmi reports neither energy nor power for it"
                ));
            }
            devices.push(Device {
                id: format!("gpu{index}"),
                name,
                kind: DeviceKind::Gpu,
                has_energy_counter: has_energy,
                counter_wrap_uj: None,
                has_power: power.is_some(),
                // The averaged socket power is the SMU's running average (about
                // 1 s on the ASICs that report it); amdsmi does not state the window.
                power_average_window_ms: match power {
                    Some(PowerField::Average) => 1000,
                    _ => 0,
                },
                estimated: false,
                parent: None,
                max_power_w: None,
            });
            gpus.push(Gpu {
                handle: handle as usize,
                has_energy,
                power,
                warned_read: false,
                last_change: None,
                warned_stuck: false,
            });
        }
        if gpus.iter().all(|g| !g.has_energy && g.power.is_none()) {
            return Err(PluginError::unavailable(format!(
                "amdsmi ({}) reports neither energy nor power for the selected GPUs \
                 (both are unsupported in virtual-machine guests)",
                amdsmi.loaded
            )));
        }
        Ok(AmdSmi {
            library,
            power_layout,
            gpus,
            devices,
        })
    }
}

/// `devices` option → amd-smi indices.
fn select(wanted: &[i64], available: usize) -> Result<Vec<usize>, PluginError> {
    if wanted.is_empty() {
        return Ok((0..available).collect());
    }
    let mut indices = Vec::new();
    for &index in wanted {
        let ok = usize::try_from(index).ok().filter(|i| *i < available);
        match ok {
            Some(i) if !indices.contains(&i) => indices.push(i),
            Some(_) => {
                return Err(PluginError::invalid_config(
                    "devices",
                    format!("amd-smi index {index} is listed twice"),
                ));
            }
            None => {
                return Err(PluginError::invalid_config(
                    "devices",
                    format!(
                        "there is no amd-smi GPU {index}: amdsmi sees {available} (0-{})",
                        available - 1
                    ),
                )
                .with_hint("`amd-smi list` shows the indices"));
            }
        }
    }
    Ok(indices)
}

/// The first power field this GPU reports a plausible value for.
fn pick_power(api: &Api, handle: Handle, layout: PowerLayout) -> Option<PowerField> {
    let info = api.power_info(handle).ok()?;
    layout
        .candidates()
        .iter()
        .copied()
        .find(|field| layout.read(&info, *field).is_some_and(|w| w > 0))
}

impl EnergySource for AmdSmi {
    fn devices(&self) -> Vec<Device> {
        self.devices.clone()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), PluginError> {
        let guard = lock();
        let amdsmi = guard.as_ref().ok_or_else(|| {
            PluginError::other(format!("amdsmi ({}) is not initialised", self.library))
        })?;
        let api = &amdsmi.api;
        let now_ns = host::monotonic_now_ns();
        let mut failures = Vec::new();
        let mut measured = 0;
        for (index, gpu) in self.gpus.iter_mut().enumerate() {
            let id = &self.devices[index].id;
            let mut errors = Vec::new();
            let mut reading = Reading {
                device: index as u32,
                energy_uj: None,
                power_mw: None,
            };
            if gpu.has_energy {
                match api.energy_count(gpu.handle()) {
                    Ok((accumulator, resolution)) => {
                        reading.energy_uj = ffi::energy_uj(accumulator, resolution);
                        if reading.energy_uj.is_none() {
                            errors.push(format!(
                                "{id}: amdsmi reported counter resolution {resolution} µJ"
                            ));
                        }
                    }
                    Err(status) => errors.push(format!(
                        "{id}: amdsmi_get_energy_count failed: {}",
                        api.describe(status)
                    )),
                }
            }
            if let (Some(field), Some(layout)) = (gpu.power, self.power_layout) {
                match api.power_info(gpu.handle()) {
                    Ok(info) => reading.power_mw = layout.read(&info, field).map(|w| w * 1000),
                    Err(status) => errors.push(format!(
                        "{id}: amdsmi_get_power_info failed: {}",
                        api.describe(status)
                    )),
                }
            }
            if let Some(value) = reading.energy_uj {
                check_stuck(gpu, id, value, now_ns);
            }
            if reading.energy_uj.is_some() || reading.power_mw.is_some() {
                measured += 1;
            }
            if !errors.is_empty() && !gpu.warned_read {
                gpu.warned_read = true;
                warn(&format!(
                    "{} (reported once; the value is left out of this read)",
                    errors.join("; ")
                ));
            }
            failures.extend(errors);
            out.push(reading);
        }
        if measured == 0 && !failures.is_empty() {
            return Err(PluginError::new(ErrorCode::Io, failures.join("; ")));
        }
        Ok(())
    }
}

/// Warn once if a GPU's counter has not moved for [`STUCK_AFTER_NS`]: the
/// MI100 / old-ROCm symptom (ROCm/amdsmi #22, #38).
fn check_stuck(gpu: &mut Gpu, id: &str, value: u64, now_ns: u64) {
    if now_ns == 0 {
        return;
    }
    match gpu.last_change {
        Some((last, since)) if last == value => {
            if !gpu.warned_stuck && now_ns.saturating_sub(since) >= STUCK_AFTER_NS {
                gpu.warned_stuck = true;
                warn(&format!(
                    "{id}: the energy counter has not moved for {} s, which a powered GPU \
                     cannot do: amdsmi's counter is stuck (known on MI100 and ROCm < 6.3, \
                     ROCm/amdsmi #22 #38); this device's energy is wrong",
                    STUCK_AFTER_NS / 1_000_000_000
                ));
            }
        }
        _ => gpu.last_change = Some((value, now_ns)),
    }
}

llem_sdk::export_energy!(AmdSmi);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_declares_both_options_with_defaults() {
        let info = AmdSmi::describe();
        let names: Vec<_> = info.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["library", "devices"]);
        assert!(info.options.iter().all(|o| o.default.is_some()));
    }

    #[test]
    fn the_default_library_falls_back_to_rocm_paths_but_an_explicit_one_does_not() {
        let paths = candidates(DEFAULT_LIBRARY);
        assert_eq!(paths.first().map(String::as_str), Some(DEFAULT_LIBRARY));
        assert_eq!(paths.last().map(String::as_str), Some(ROCM_LIBRARY));
        assert_eq!(candidates("/x/libamd_smi.so"), ["/x/libamd_smi.so"]);
    }

    #[test]
    fn device_selection_checks_indices() {
        assert_eq!(select(&[], 3).unwrap(), [0, 1, 2]);
        assert_eq!(select(&[2, 0], 3).unwrap(), [2, 0]);
        let err = select(&[3], 3).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("devices"));
        assert!(err.message.contains("amdsmi sees 3 (0-2)"), "{err}");
        assert!(select(&[-1], 3).is_err());
        assert!(select(&[1, 1], 3).is_err());
    }

    #[test]
    fn a_missing_library_is_unavailable_and_names_what_was_tried() {
        let err = load("/nonexistent/libamd_smi.so").err().unwrap();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.message.contains("/nonexistent/libamd_smi.so"), "{err}");
        assert!(err.hint.unwrap().contains("/opt/rocm/lib"));
    }

    #[test]
    fn a_stuck_counter_is_noticed_once() {
        let mut gpu = Gpu {
            handle: 0,
            has_energy: true,
            power: None,
            warned_read: false,
            last_change: None,
            warned_stuck: false,
        };
        check_stuck(&mut gpu, "gpu0", 5, 1);
        check_stuck(&mut gpu, "gpu0", 5, STUCK_AFTER_NS / 2);
        assert!(!gpu.warned_stuck);
        check_stuck(&mut gpu, "gpu0", 5, STUCK_AFTER_NS + 1);
        assert!(gpu.warned_stuck);
        check_stuck(&mut gpu, "gpu0", 6, STUCK_AFTER_NS + 2);
        assert_eq!(gpu.last_change, Some((6, STUCK_AFTER_NS + 2)));
    }
}
