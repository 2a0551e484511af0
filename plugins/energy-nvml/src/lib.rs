//! `energy-nvml`: NVIDIA GPU energy through NVML.
//!
//! - **Energy**: `nvmlDeviceGetTotalEnergyConsumption`, the driver's cumulative
//!   counter (mJ since the driver loaded, Volta and newer), reported raw in µJ.
//!   It refreshes every ~20–100 ms, so two close reads often give the same value;
//!   the kernel turns that into a zero delta. A driver reload restarts it from 0;
//!   the kernel counts that as a reset. It does not wrap in practice
//!   (`counter_wrap_uj: None`). A GPU without the counter (pre-Volta, vGPU) is
//!   reported with `has_energy_counter: false` and the kernel integrates power,
//!   labelled as such.
//! - **Power**: the instantaneous field `NVML_FI_DEV_POWER_INSTANT` where the
//!   driver has it; otherwise `nvmlDeviceGetPowerUsage`, which on Ampere and
//!   newer is a 1 s moving average (the device then says
//!   `power_average_window_ms: 1000`; on older GPUs that value is instantaneous,
//!   so the label is conservative there).
//! - **Telemetry**: utilisation, memory, temperature, clocks, power limit and
//!   throttle reasons, through the slower `telemetry` call.
//! - **Devices**: the `devices` option (NVML indices or UUIDs); when it is empty,
//!   `CUDA_VISIBLE_DEVICES` (indices, `GPU-…` UUIDs or prefixes, `MIG-…`), else
//!   every GPU. Ids are `gpu<NVML index>`. Indices in `CUDA_VISIBLE_DEVICES` are
//!   taken as NVML (PCI bus) indices, which is CUDA's numbering only with
//!   `CUDA_DEVICE_ORDER=PCI_BUS_ID` or identical GPUs: UUIDs are unambiguous. A
//!   MIG instance is measured as its parent GPU (NVML has no per-slice energy),
//!   so its figures include the other slices' work.
//!
//! NVML is initialised once per process (per library path) and never shut down
//! while llem runs: init is expensive, and the driver library starts threads.

mod select;

use llem_sdk::{
    Config, Device, DeviceKind, DeviceTelemetry, EnergySource, ErrorCode, Metric, OptionSpec,
    OptionType, Plugin, PluginError, PluginInfo, PluginKind, Reading, host,
};
use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::SampleValue;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::NVML_FI_DEV_POWER_INSTANT;
use select::{Selector, dedup, parse_cuda_visible_devices, parse_selector};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Mutex, OnceLock, PoisonError};

const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

/// One initialised NVML per library path, for the life of the process.
fn nvml(library: &str) -> Result<&'static Nvml, PluginError> {
    static LOADED: OnceLock<Mutex<HashMap<String, &'static Nvml>>> = OnceLock::new();
    // Held across init so that two instances opening at once init only once.
    let mut loaded = LOADED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(nvml) = loaded.get(library) {
        return Ok(nvml);
    }
    // A failure is not remembered: the driver may be loaded by the next attempt.
    let nvml = Nvml::builder()
        .lib_path(OsStr::new(library))
        .init()
        .map_err(|e| init_failure(library, e))?;
    // Leaked on purpose: never shut down while llem runs.
    let nvml: &'static Nvml = Box::leak(Box::new(nvml));
    loaded.insert(library.to_owned(), nvml);
    Ok(nvml)
}

fn init_failure(library: &str, err: NvmlError) -> PluginError {
    match err {
        NvmlError::LibloadingError(e) => PluginError::unavailable(format!(
            "cannot load {library}: {e} (no NVIDIA driver on this machine?)"
        ))
        .with_hint(
            "install the NVIDIA driver (it ships libnvidia-ml.so.1), or set `library` to the \
             full path of libnvidia-ml.so.1",
        ),
        NvmlError::FailedToLoadSymbol(e) => PluginError::unavailable(format!(
            "{library} is not a usable NVML library: {e}"
        ))
        .with_hint("set `library` to the NVIDIA driver's libnvidia-ml.so.1"),
        NvmlError::DriverNotLoaded => PluginError::unavailable(format!(
            "{library} loaded, but the NVIDIA kernel driver is not loaded (nvmlInit: driver not loaded)"
        ))
        .with_hint(
            "check that `nvidia-smi` works; load the driver (`sudo modprobe nvidia`), or in a \
             container run with the NVIDIA runtime (`--gpus all`)",
        ),
        NvmlError::NoPermission => PluginError::new(
            ErrorCode::PermissionDenied,
            "NVML may not talk to the NVIDIA driver (nvmlInit: no permission)",
        )
        .with_hint("give this user read/write access to /dev/nvidiactl and /dev/nvidia*"),
        NvmlError::LibRmVersionMismatch => PluginError::unavailable(format!(
            "{library} and the loaded NVIDIA kernel driver are different versions \
             (driver updated without a reboot?)"
        ))
        .with_hint("reboot, or reload the nvidia kernel modules"),
        other => PluginError::unavailable(format!(
            "initialising NVML through {library} failed: {other}"
        )),
    }
}

/// A failed NVML call about one GPU.
fn gpu_failure(gpu: &str, what: &str, err: NvmlError) -> PluginError {
    let message = format!("{gpu}: {what}: {err}");
    match err {
        NvmlError::NoPermission => PluginError::new(ErrorCode::PermissionDenied, message),
        NvmlError::GpuLost => PluginError::unavailable(message).with_hint(
            "the GPU fell off the bus: see `nvidia-smi` and the kernel log; it needs a reset",
        ),
        NvmlError::NotSupported
        | NvmlError::DriverNotLoaded
        | NvmlError::FailedToLoadSymbol(_)
        | NvmlError::ResetRequired => PluginError::unavailable(message),
        _ => PluginError::other(message),
    }
}

/// `Ok(None)` for a reading this GPU or driver does not offer.
fn optional<T>(result: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PowerSource {
    /// `NVML_FI_DEV_POWER_INSTANT`.
    Instant,
    /// `nvmlDeviceGetPowerUsage` (1 s moving average on Ampere and newer).
    Average,
    None,
}

/// Instantaneous power in mW; `Ok(None)` when the driver does not offer it.
fn instant_power_mw(device: &nvml_wrapper::Device<'static>) -> Result<Option<u64>, NvmlError> {
    let samples = match optional(device.field_values_for(&[FieldId(NVML_FI_DEV_POWER_INSTANT)]))? {
        Some(samples) => samples,
        None => return Ok(None),
    };
    let Some(sample) = samples.into_iter().next() else {
        return Ok(None);
    };
    let value = match sample.and_then(|s| s.value) {
        Ok(value) => value,
        Err(NvmlError::NotSupported | NvmlError::InvalidArg | NvmlError::UnexpectedVariant(_)) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    Ok(match value {
        SampleValue::U32(v) => Some(u64::from(v)),
        SampleValue::U64(v) => Some(v),
        SampleValue::I64(v) => u64::try_from(v).ok(),
        SampleValue::F64(v) if v.is_finite() && v >= 0.0 => Some(v.round() as u64),
        SampleValue::F64(_) => None,
    })
}

struct Gpu {
    handle: nvml_wrapper::Device<'static>,
    index: u32,
    id: String,
    name: String,
    counter: bool,
    power: PowerSource,
}

impl Gpu {
    fn open(nvml: &'static Nvml, index: u32) -> Result<Gpu, PluginError> {
        let id = format!("gpu{index}");
        let handle = nvml
            .device_by_index(index)
            .map_err(|e| gpu_failure(&id, "getting its handle", e))?;
        let name = handle
            .name()
            .map_err(|e| gpu_failure(&id, "reading its name", e))?;
        let counter = optional(handle.total_energy_consumption())
            .map_err(|e| gpu_failure(&id, "reading its total energy counter", e))?
            .is_some();
        let power = if instant_power_mw(&handle)
            .map_err(|e| gpu_failure(&id, "reading instantaneous power", e))?
            .is_some()
        {
            PowerSource::Instant
        } else if optional(handle.power_usage())
            .map_err(|e| gpu_failure(&id, "reading power", e))?
            .is_some()
        {
            PowerSource::Average
        } else {
            PowerSource::None
        };
        if !counter && power == PowerSource::None {
            return Err(PluginError::unavailable(format!(
                "{id} ({name}): NVML supports neither its total energy counter nor its power \
                 reading (not supported on this GPU or driver), so it cannot be measured"
            ))
            .with_hint("leave it out with the `devices` option (NVML indices or UUIDs)"));
        }
        if !counter {
            host::info(&format!(
                "{id} ({name}) has no energy counter (pre-Volta or vGPU): its energy will be \
                 integrated from power"
            ));
        }
        Ok(Gpu {
            handle,
            index,
            id,
            name,
            counter,
            power,
        })
    }

    fn device(&self) -> Device {
        Device {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: DeviceKind::Gpu,
            has_energy_counter: self.counter,
            counter_wrap_uj: None,
            has_power: self.power != PowerSource::None,
            power_average_window_ms: if self.power == PowerSource::Average {
                1000
            } else {
                0
            },
            estimated: false,
            parent: None,
            max_power_w: None,
        }
    }

    fn read(&self, device: u32) -> Result<Reading, PluginError> {
        let energy_uj = if self.counter {
            let mj = self
                .handle
                .total_energy_consumption()
                .map_err(|e| gpu_failure(&self.id, "reading its total energy counter", e))?;
            Some(mj.saturating_mul(1000))
        } else {
            None
        };
        let power_mw = match self.power {
            PowerSource::Instant => Some(
                instant_power_mw(&self.handle)
                    .map_err(|e| gpu_failure(&self.id, "reading instantaneous power", e))?
                    .ok_or_else(|| {
                        PluginError::other(format!(
                            "{}: NVML stopped returning instantaneous power",
                            self.id
                        ))
                    })?,
            ),
            PowerSource::Average => Some(u64::from(
                self.handle
                    .power_usage()
                    .map_err(|e| gpu_failure(&self.id, "reading power", e))?,
            )),
            PowerSource::None => None,
        };
        Ok(Reading {
            device,
            energy_uj,
            power_mw,
        })
    }

    fn telemetry(&self) -> Result<Vec<Metric>, PluginError> {
        fn metric(name: &str, value: f64, unit: &str) -> Metric {
            Metric {
                name: name.to_owned(),
                value,
                unit: unit.to_owned(),
                labels: Vec::new(),
            }
        }
        let fail = |what: &str| {
            let id = self.id.clone();
            let what = what.to_owned();
            move |e| gpu_failure(&id, &what, e)
        };
        let h = &self.handle;
        let mut out = Vec::new();
        if let Some(u) = optional(h.utilization_rates()).map_err(fail("reading utilisation"))? {
            out.push(metric(
                "gpu_utilisation",
                f64::from(u.gpu) / 100.0,
                "fraction",
            ));
            out.push(metric(
                "memory_utilisation",
                f64::from(u.memory) / 100.0,
                "fraction",
            ));
        }
        if let Some(m) = optional(h.memory_info()).map_err(fail("reading memory use"))? {
            out.push(metric("memory_used", m.used as f64, "bytes"));
            out.push(metric("memory_total", m.total as f64, "bytes"));
        }
        if let Some(t) =
            optional(h.temperature(TemperatureSensor::Gpu)).map_err(fail("reading temperature"))?
        {
            out.push(metric("temperature", f64::from(t), "celsius"));
        }
        if let Some(c) = optional(h.clock_info(Clock::SM)).map_err(fail("reading the SM clock"))? {
            out.push(metric("sm_clock", f64::from(c), "MHz"));
        }
        if let Some(c) =
            optional(h.clock_info(Clock::Memory)).map_err(fail("reading the memory clock"))?
        {
            out.push(metric("memory_clock", f64::from(c), "MHz"));
        }
        if let Some(mw) =
            optional(h.enforced_power_limit()).map_err(fail("reading the power limit"))?
        {
            out.push(metric("power_limit", f64::from(mw) / 1000.0, "W"));
        }
        if let Some(reasons) =
            optional(h.current_throttle_reasons()).map_err(fail("reading throttle reasons"))?
        {
            out.push(metric("throttle_reasons", reasons.bits() as f64, "bitmask"));
            for (name, flag) in reasons.iter_names() {
                if !flag.is_empty() {
                    let name = format!("throttle_{}", name.to_ascii_lowercase());
                    out.push(metric(&name, 1.0, "flag"));
                }
            }
        }
        Ok(out)
    }
}

/// Where the GPUs to measure were named, for error messages.
#[derive(Clone, Copy)]
enum Origin {
    Option,
    CudaVisibleDevices,
}

impl Origin {
    fn error(self, message: String) -> PluginError {
        match self {
            Origin::Option => PluginError::invalid_config("devices", message),
            Origin::CudaVisibleDevices => PluginError::unavailable(format!(
                "CUDA_VISIBLE_DEVICES: {message}"
            ))
            .with_hint("fix CUDA_VISIBLE_DEVICES, or name the GPUs with the `devices` option"),
        }
    }
}

fn resolve(
    nvml: &'static Nvml,
    count: u32,
    selectors: &[Selector],
    origin: Origin,
) -> Result<Vec<u32>, PluginError> {
    let mut uuids: Option<Vec<String>> = None;
    let mut indices = Vec::with_capacity(selectors.len());
    for selector in selectors {
        let index = match selector {
            Selector::Index(index) => {
                if *index >= count {
                    return Err(origin.error(format!(
                        "there is no GPU {index}: NVML sees {count} (indices 0 to {})",
                        count - 1
                    )));
                }
                *index
            }
            Selector::Uuid(prefix) => {
                if uuids.is_none() {
                    let mut all = Vec::with_capacity(count as usize);
                    for i in 0..count {
                        let gpu = format!("gpu{i}");
                        let device = nvml
                            .device_by_index(i)
                            .map_err(|e| gpu_failure(&gpu, "getting its handle", e))?;
                        all.push(
                            device
                                .uuid()
                                .map_err(|e| gpu_failure(&gpu, "reading its UUID", e))?,
                        );
                    }
                    uuids = Some(all);
                }
                let all = uuids.as_deref().unwrap_or_default();
                let matches: Vec<u32> = (0..count)
                    .filter(|i| all[*i as usize].starts_with(prefix.as_str()))
                    .collect();
                match matches[..] {
                    [index] => index,
                    [] => {
                        return Err(origin.error(format!(
                            "no GPU has UUID {prefix} (these do: {})",
                            all.join(", ")
                        )));
                    }
                    ref several => {
                        let names: Vec<String> =
                            several.iter().map(|i| format!("gpu{i}")).collect();
                        return Err(origin.error(format!(
                            "{prefix} is the start of more than one GPU's UUID ({}): give more of it",
                            names.join(", ")
                        )));
                    }
                }
            }
            Selector::Mig(uuid) => {
                let instance = nvml.device_by_uuid(uuid.as_str()).map_err(|e| match e {
                    NvmlError::NotFound | NvmlError::InvalidArg => {
                        origin.error(format!("no MIG instance has UUID {uuid}"))
                    }
                    e => gpu_failure(uuid, "finding the MIG instance", e),
                })?;
                let parent = instance
                    .mig_parent_device()
                    .map_err(|e| gpu_failure(uuid, "finding its parent GPU", e))?;
                let index = parent
                    .index()
                    .map_err(|e| gpu_failure(uuid, "reading its parent GPU's index", e))?;
                host::debug(&format!(
                    "{uuid} is a MIG instance of gpu{index}: measuring the whole GPU"
                ));
                index
            }
        };
        indices.push(index);
    }
    Ok(dedup(indices))
}

/// Which NVML indices to measure.
fn select(
    nvml: &'static Nvml,
    count: u32,
    devices: &[String],
    cuda_visible_devices: Option<&str>,
) -> Result<Vec<u32>, PluginError> {
    if !devices.is_empty() {
        let selectors = devices
            .iter()
            .map(|d| {
                parse_selector(d).ok_or_else(|| {
                    PluginError::invalid_config(
                        "devices",
                        format!(
                            "`{d}` is not a GPU: use an NVML index (`0`), a UUID (`GPU-…`) or a \
                             MIG UUID (`MIG-…`)"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return resolve(nvml, count, &selectors, Origin::Option);
    }
    match cuda_visible_devices {
        None => Ok((0..count).collect()),
        Some(value) => {
            let selectors = parse_cuda_visible_devices(value);
            if selectors.is_empty() {
                return Err(Origin::CudaVisibleDevices.error(format!(
                    "`{value}` hides every GPU from CUDA, so there is nothing to measure"
                )));
            }
            if selectors.iter().any(|s| matches!(s, Selector::Index(_)))
                && std::env::var("CUDA_DEVICE_ORDER").as_deref() != Ok("PCI_BUS_ID")
            {
                host::debug(
                    "CUDA_VISIBLE_DEVICES indices are read as NVML (PCI bus) indices; CUDA numbers \
                     the same way only with CUDA_DEVICE_ORDER=PCI_BUS_ID or identical GPUs",
                );
            }
            resolve(nvml, count, &selectors, Origin::CudaVisibleDevices)
        }
    }
}

pub struct NvmlSource {
    gpus: Vec<Gpu>,
}

impl Plugin for NvmlSource {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "energy-nvml".into(),
            kind: PluginKind::Energy,
            version: env!("CARGO_PKG_VERSION").into(),
            description: "NVIDIA GPU energy (NVML total-energy counter), power and telemetry"
                .into(),
            options: vec![
                OptionSpec::with_default(
                    "library",
                    OptionType::String,
                    DEFAULT_LIBRARY,
                    "The NVML library to load: a file name searched the usual dlopen way, or a path",
                ),
                OptionSpec::with_default(
                    "devices",
                    OptionType::StringList,
                    Vec::<String>::new(),
                    "GPUs to measure, as NVML indices or UUIDs (GPU-…, MIG-… for a MIG \
                     instance's parent GPU); empty = those in CUDA_VISIBLE_DEVICES, else all",
                ),
            ],
        }
    }

    fn open(config: Config) -> Result<Self, PluginError> {
        let library: String = config.require("library")?;
        if library.trim().is_empty() {
            return Err(PluginError::invalid_config(
                "library",
                "must name the NVML library, e.g. libnvidia-ml.so.1",
            ));
        }
        let devices: Vec<String> = config.require("devices")?;
        let nvml = nvml(&library)?;
        let count = nvml.device_count().map_err(|e| match e {
            NvmlError::NoPermission => PluginError::new(
                ErrorCode::PermissionDenied,
                "NVML may not count the GPUs (no permission)",
            ),
            e => PluginError::unavailable(format!("NVML cannot count the GPUs: {e}")),
        })?;
        if count == 0 {
            return Err(
                PluginError::unavailable("the NVIDIA driver is loaded but sees no GPU").with_hint(
                    "check `nvidia-smi -L`; in a container, pass the GPUs in (`--gpus all`)",
                ),
            );
        }
        let cuda_visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let indices = select(nvml, count, &devices, cuda_visible.as_deref())?;
        let gpus = indices
            .into_iter()
            .map(|index| Gpu::open(nvml, index))
            .collect::<Result<Vec<_>, _>>()?;
        host::debug(&format!(
            "measuring {}",
            gpus.iter()
                .map(|g| format!("{} ({}, NVML index {})", g.id, g.name, g.index))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(NvmlSource { gpus })
    }
}

impl EnergySource for NvmlSource {
    fn devices(&self) -> Vec<Device> {
        self.gpus.iter().map(Gpu::device).collect()
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), PluginError> {
        for (i, gpu) in self.gpus.iter().enumerate() {
            out.push(gpu.read(i as u32)?);
        }
        Ok(())
    }

    fn telemetry(&mut self) -> Result<Vec<DeviceTelemetry>, PluginError> {
        self.gpus
            .iter()
            .enumerate()
            .map(|(i, gpu)| {
                Ok(DeviceTelemetry {
                    device: i as u32,
                    metrics: gpu.telemetry()?,
                })
            })
            .collect()
    }
}

llem_sdk::export_energy!(NvmlSource);
