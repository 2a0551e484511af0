//! Plugin side of the WASM component: wit-bindgen bindings for the four
//! worlds, generic resource wrappers the export macros name, and conversions
//! between the SDK's types and the generated ones.

use crate::types as sdk;
use crate::{Backend, Config, Dataset, EnergySource, Sink};
use std::cell::RefCell;

/// The energy world of `llem:plugin@0.1.0` plus the optional
/// `llem:plugin-ext/energy-topology` export (device parents and power bounds);
/// hosts that predate it ignore the extra export.
pub mod energy_world {
    wit_bindgen::generate!({
        path: ["../wit/llem-plugin-0.1.0", "../wit/llem-plugin-ext-0.1.0"],
        world: "llem:plugin-ext/energy-plugin@0.1.0",
        // The shared `types`/`host` interfaces live in the 0.1.0 package.
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "llem_sdk::wasm::energy_world",
    });
}

// The other worlds reuse the shared interfaces generated above, so one set of
// conversions serves all four.
pub mod backend_world {
    wit_bindgen::generate!({
        path: "../wit/llem-plugin-0.1.0",
        world: "backend-plugin",
        pub_export_macro: true,
        default_bindings_module: "llem_sdk::wasm::backend_world",
        with: {
            "llem:plugin/types@0.1.0": crate::wasm::energy_world::llem::plugin::types,
            "llem:plugin/host@0.1.0": crate::wasm::energy_world::llem::plugin::host,
        },
    });
}

pub mod dataset_world {
    wit_bindgen::generate!({
        path: "../wit/llem-plugin-0.1.0",
        world: "dataset-plugin",
        pub_export_macro: true,
        default_bindings_module: "llem_sdk::wasm::dataset_world",
        with: {
            "llem:plugin/types@0.1.0": crate::wasm::energy_world::llem::plugin::types,
            "llem:plugin/host@0.1.0": crate::wasm::energy_world::llem::plugin::host,
        },
    });
}

/// The sink world of `llem:plugin@0.1.0` plus the optional
/// `llem:plugin-ext/sink-stream` export (run info, phase events, request
/// records during the run); hosts that predate it ignore the extra export.
pub mod sink_world {
    wit_bindgen::generate!({
        path: ["../wit/llem-plugin-0.1.0", "../wit/llem-plugin-ext-0.1.0"],
        world: "llem:plugin-ext/sink-plugin@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "llem_sdk::wasm::sink_world",
        with: {
            "llem:plugin/types@0.1.0": crate::wasm::energy_world::llem::plugin::types,
            "llem:plugin/host@0.1.0": crate::wasm::energy_world::llem::plugin::host,
        },
    });
}

use backend_world::exports::llem::plugin::backend as wit_backend;
use dataset_world::exports::llem::plugin::dataset as wit_dataset;
use energy_world::exports::llem::plugin::energy as wit_energy;
use energy_world::exports::llem::plugin_ext::energy_topology as wit_topology;
use energy_world::llem::plugin::host as wit_host;
pub use energy_world::llem::plugin::types as wit_types;
use sink_world::exports::llem::plugin::sink as wit_sink;
use sink_world::exports::llem::plugin_ext::sink_stream as wit_stream;

pub(crate) fn host_log(level: crate::host::Level, message: &str) {
    use crate::host::Level;
    let level = match level {
        Level::Trace => wit_host::LogLevel::Trace,
        Level::Debug => wit_host::LogLevel::Debug,
        Level::Info => wit_host::LogLevel::Info,
        Level::Warn => wit_host::LogLevel::Warn,
        Level::Error => wit_host::LogLevel::Error,
    };
    wit_host::log(level, message);
}

pub(crate) fn host_monotonic_now_ns() -> u64 {
    wit_host::monotonic_now_ns()
}

// ------------------------------------------------------------ conversions

impl From<sdk::PluginKind> for wit_types::PluginKind {
    fn from(k: sdk::PluginKind) -> Self {
        match k {
            sdk::PluginKind::Energy => Self::Energy,
            sdk::PluginKind::Backend => Self::Backend,
            sdk::PluginKind::Dataset => Self::Dataset,
            sdk::PluginKind::Sink => Self::Sink,
        }
    }
}

impl From<sdk::OptionType> for wit_types::OptionType {
    fn from(t: sdk::OptionType) -> Self {
        match t {
            sdk::OptionType::String => Self::String,
            sdk::OptionType::Path => Self::Path,
            sdk::OptionType::Integer => Self::Integer,
            sdk::OptionType::Float => Self::Float,
            sdk::OptionType::Boolean => Self::Boolean,
            sdk::OptionType::StringList => Self::StringList,
            sdk::OptionType::IntegerList => Self::IntegerList,
            sdk::OptionType::Table => Self::Table,
            sdk::OptionType::Any => Self::Any,
        }
    }
}

impl From<sdk::PluginInfo> for wit_types::PluginInfo {
    fn from(i: sdk::PluginInfo) -> Self {
        wit_types::PluginInfo {
            name: i.name,
            kind: i.kind.into(),
            version: i.version,
            description: i.description,
            options: i
                .options
                .into_iter()
                .map(|o| wit_types::OptionSpec {
                    name: o.name,
                    ty: o.ty.into(),
                    default_json: o.default.map(|d| d.to_string()),
                    doc: o.doc,
                    choices: o.choices,
                })
                .collect(),
        }
    }
}

impl From<sdk::PluginError> for wit_types::PluginError {
    fn from(e: sdk::PluginError) -> Self {
        wit_types::PluginError {
            code: match e.code {
                sdk::ErrorCode::InvalidConfig => wit_types::ErrorCode::InvalidConfig,
                sdk::ErrorCode::Unavailable => wit_types::ErrorCode::Unavailable,
                sdk::ErrorCode::PermissionDenied => wit_types::ErrorCode::PermissionDenied,
                sdk::ErrorCode::Io => wit_types::ErrorCode::Io,
                sdk::ErrorCode::Other => wit_types::ErrorCode::Other,
            },
            message: e.message,
            key: e.key,
            hint: e.hint,
        }
    }
}

impl From<sdk::Metric> for wit_types::Metric {
    fn from(m: sdk::Metric) -> Self {
        wit_types::Metric {
            name: m.name,
            value: m.value,
            unit: m.unit,
            labels: m.labels,
        }
    }
}

impl From<sdk::Device> for wit_energy::Device {
    fn from(d: sdk::Device) -> Self {
        use sdk::DeviceKind as K;
        use wit_energy::DeviceKind as W;
        wit_energy::Device {
            id: d.id,
            name: d.name,
            kind: match d.kind {
                K::Gpu => W::Gpu,
                K::CpuPackage => W::CpuPackage,
                K::CpuCore => W::CpuCore,
                K::CpuUncore => W::CpuUncore,
                K::Dram => W::Dram,
                K::Psys => W::Psys,
                K::Accelerator => W::Accelerator,
                K::System => W::System,
                K::Other => W::Other,
            },
            has_energy_counter: d.has_energy_counter,
            counter_wrap_uj: d.counter_wrap_uj,
            has_power: d.has_power,
            power_average_window_ms: d.power_average_window_ms,
            estimated: d.estimated,
        }
    }
}

impl From<sdk::EnginePlan> for wit_backend::EnginePlan {
    fn from(p: sdk::EnginePlan) -> Self {
        wit_backend::EnginePlan {
            mode: match p.mode {
                sdk::EngineMode::Server => wit_backend::EngineMode::Server,
                sdk::EngineMode::Offline => wit_backend::EngineMode::Offline,
            },
            engine: p.engine,
            program: p.program,
            args: p.args,
            env: p.env,
            api_base_path: p.api_base_path,
            health_path: p.health_path,
            metrics_path: p.metrics_path,
            worker_script: p.worker_script,
            ready_timeout_s: p.ready_timeout_s,
        }
    }
}

impl From<sdk::Prompt> for wit_dataset::Prompt {
    fn from(p: sdk::Prompt) -> Self {
        wit_dataset::Prompt {
            id: p.id,
            body: match p.body {
                sdk::PromptBody::Text(t) => wit_dataset::PromptBody::Text(t),
                sdk::PromptBody::Chat(messages) => wit_dataset::PromptBody::Chat(
                    messages
                        .into_iter()
                        .map(|m| wit_dataset::ChatMessage {
                            role: m.role,
                            content: m.content,
                        })
                        .collect(),
                ),
            },
            input_tokens: p.input_tokens,
            max_output_tokens: p.max_output_tokens,
        }
    }
}

fn open<T: crate::Plugin>(config: &str) -> Result<T, wit_types::PluginError> {
    Config::from_json(config)
        .and_then(T::open)
        .map_err(Into::into)
}

fn errors<T>(r: Result<T, sdk::PluginError>) -> Result<T, wit_types::PluginError> {
    r.map_err(Into::into)
}

// ------------------------------------------------------------ resources

/// The `source` resource wrapping an [`EnergySource`].
pub struct EnergyGuest<T> {
    inner: RefCell<T>,
    readings: RefCell<Vec<sdk::Reading>>,
}

impl<T: EnergySource> wit_energy::GuestSource for EnergyGuest<T> {
    fn open(config: String) -> Result<wit_energy::Source, wit_types::PluginError> {
        let inner = open::<T>(&config)?;
        Ok(wit_energy::Source::new(EnergyGuest {
            inner: RefCell::new(inner),
            readings: RefCell::new(Vec::new()),
        }))
    }

    fn devices(&self) -> Vec<wit_energy::Device> {
        self.inner
            .borrow()
            .devices()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn read(&self) -> Result<Vec<wit_energy::Reading>, wit_types::PluginError> {
        let mut readings = self.readings.borrow_mut();
        readings.clear();
        errors(self.inner.borrow_mut().read(&mut readings))?;
        Ok(readings
            .iter()
            .map(|r| wit_energy::Reading {
                device: r.device,
                energy_uj: r.energy_uj,
                power_mw: r.power_mw,
            })
            .collect())
    }

    fn telemetry(&self) -> Result<Vec<wit_energy::DeviceTelemetry>, wit_types::PluginError> {
        Ok(errors(self.inner.borrow_mut().telemetry())?
            .into_iter()
            .map(|t| wit_energy::DeviceTelemetry {
                device: t.device,
                metrics: t.metrics.into_iter().map(Into::into).collect(),
            })
            .collect())
    }
}

/// `energy-read-flat.read-flat`: what `source.read` returns, four numbers a
/// reading ([`sdk::flatten_readings`]): the sampler's hot path builds no
/// records, and the host copies one list of numbers.
pub fn read_flat<T: EnergySource>(
    src: wit_energy::SourceBorrow<'_>,
) -> Result<Vec<u64>, wit_types::PluginError> {
    let guest = src.get::<EnergyGuest<T>>();
    let mut readings = guest.readings.borrow_mut();
    readings.clear();
    errors(guest.inner.borrow_mut().read(&mut readings))?;
    Ok(sdk::flatten_readings(&readings))
}

/// `energy-topology.places`: each device's parent (by index) and power bound,
/// from the SDK's `Device::parent` (an id) and `Device::max_power_w`.
pub fn places<T: EnergySource>(
    src: wit_energy::SourceBorrow<'_>,
) -> Vec<wit_topology::DevicePlace> {
    let guest = src.get::<EnergyGuest<T>>();
    let devices = guest.inner.borrow().devices();
    device_places(&devices)
}

/// Devices with a parent or a bound, as `device-place` records.
fn device_places(devices: &[sdk::Device]) -> Vec<wit_topology::DevicePlace> {
    devices
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let parent = d
                .parent
                .as_ref()
                .and_then(|p| devices.iter().position(|x| &x.id == p))
                .filter(|p| *p != i)
                .map(|p| p as u32);
            let max_power_mw = d
                .max_power_w
                .filter(|w| w.is_finite() && *w > 0.0)
                .map(|w| (w * 1000.0).round() as u64);
            (parent.is_some() || max_power_mw.is_some()).then_some(wit_topology::DevicePlace {
                device: i as u32,
                parent,
                max_power_mw,
            })
        })
        .collect()
}

/// The `backend` resource wrapping a [`Backend`].
pub struct BackendGuest<T>(RefCell<T>);

impl<T: Backend> wit_backend::GuestBackend for BackendGuest<T> {
    fn open(config: String) -> Result<wit_backend::Backend, wit_types::PluginError> {
        Ok(wit_backend::Backend::new(BackendGuest(RefCell::new(
            open::<T>(&config)?,
        ))))
    }

    fn plan(
        &self,
        r: wit_backend::PlanRequest,
    ) -> Result<wit_backend::EnginePlan, wit_types::PluginError> {
        let request = sdk::PlanRequest {
            model: r.model,
            host: r.host,
            port: r.port,
            run_dir: r.run_dir,
        };
        errors(self.0.borrow_mut().plan(&request)).map(Into::into)
    }

    fn parse_metrics(
        &self,
        text: String,
    ) -> Result<Vec<wit_types::Metric>, wit_types::PluginError> {
        Ok(errors(self.0.borrow_mut().parse_metrics(&text))?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

/// The `dataset` resource wrapping a [`Dataset`].
pub struct DatasetGuest<T>(RefCell<T>);

impl<T: Dataset> wit_dataset::GuestDataset for DatasetGuest<T> {
    fn open(config: String) -> Result<wit_dataset::Dataset, wit_types::PluginError> {
        Ok(wit_dataset::Dataset::new(DatasetGuest(RefCell::new(
            open::<T>(&config)?,
        ))))
    }

    fn load(
        &self,
        r: wit_dataset::LoadRequest,
    ) -> Result<Vec<wit_dataset::Prompt>, wit_types::PluginError> {
        let request = sdk::LoadRequest {
            model: r.model,
            tokenizer_path: r.tokenizer_path,
            seed: r.seed,
            limit: r.limit,
        };
        Ok(errors(self.0.borrow_mut().load(&request))?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

/// The `sink` resource wrapping a [`Sink`].
pub struct SinkGuest<T>(RefCell<T>);

impl<T: Sink> wit_sink::GuestSink for SinkGuest<T> {
    fn open(config: String) -> Result<wit_sink::Sink, wit_types::PluginError> {
        Ok(wit_sink::Sink::new(SinkGuest(RefCell::new(open::<T>(
            &config,
        )?))))
    }

    fn write_samples(&self, b: wit_sink::SampleBatch) -> Result<(), wit_types::PluginError> {
        let batch = sdk::SampleBatch {
            source: b.source,
            devices: b.devices,
            samples: b
                .samples
                .into_iter()
                .map(|s| sdk::Sample {
                    device: s.device,
                    t_ns: s.t_ns,
                    energy_uj: s.energy_uj,
                    power_mw: s.power_mw,
                })
                .collect(),
        };
        errors(self.0.borrow_mut().write_samples(&batch))
    }

    fn write_result(&self, d: wit_sink::ResultDocument) -> Result<(), wit_types::PluginError> {
        let document = sdk::ResultDocument {
            schema_version: d.schema_version,
            run_id: d.run_id,
            json: d.json,
        };
        errors(self.0.borrow_mut().write_result(&document))
    }

    fn finish(&self) -> Result<(), wit_types::PluginError> {
        errors(self.0.borrow_mut().finish())
    }
}

// ------------------------------------------------------------ sink stream

/// `sink-stream.begin-run`: the run's description in, the wanted flags out.
pub fn begin_run<T: Sink>(
    s: wit_sink::SinkBorrow<'_>,
    run: wit_stream::RunInfo,
) -> Result<wit_stream::Wanted, wit_types::PluginError> {
    let run = sdk::RunInfo {
        run_id: run.run_id,
        experiment: run.experiment,
        model: run.model,
        cycle: run.cycle,
        started_at: run.started_at,
        labels: run.labels,
    };
    let wanted = errors(s.get::<SinkGuest<T>>().0.borrow_mut().begin_run(&run))?;
    // The bindings' minimal flags type has `|` but no `|=` or `set`.
    let mut flags = wit_stream::Wanted::empty();
    if wanted.phase_events {
        flags = flags | wit_stream::Wanted::PHASE_EVENTS;
    }
    if wanted.requests {
        flags = flags | wit_stream::Wanted::REQUESTS;
    }
    Ok(flags)
}

/// `sink-stream.write-events`.
pub fn write_events<T: Sink>(
    s: wit_sink::SinkBorrow<'_>,
    events: Vec<wit_stream::PhaseEvent>,
) -> Result<(), wit_types::PluginError> {
    let events: Vec<sdk::PhaseEvent> = events
        .into_iter()
        .map(|e| sdk::PhaseEvent {
            phase: e.phase,
            edge: match e.edge {
                wit_stream::PhaseEdge::Start => sdk::PhaseEdge::Start,
                wit_stream::PhaseEdge::End => sdk::PhaseEdge::End,
            },
            t_ns: e.t_ns,
        })
        .collect();
    errors(s.get::<SinkGuest<T>>().0.borrow_mut().write_events(&events))
}

/// `sink-stream.write-requests`.
pub fn write_requests<T: Sink>(
    s: wit_sink::SinkBorrow<'_>,
    requests: Vec<wit_stream::RequestRecord>,
) -> Result<(), wit_types::PluginError> {
    let requests: Vec<sdk::RequestRecord> = requests
        .into_iter()
        .map(|r| sdk::RequestRecord {
            index: r.index,
            prompt_id: r.prompt_id,
            phase: r.phase,
            send_ns: r.send_ns,
            first_token_ns: r.first_token_ns,
            chunk_ns: r.chunk_ns,
            end_ns: r.end_ns,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            tokens_from_usage: r.tokens_from_usage,
            success: r.success,
            error: r.error,
        })
        .collect();
    errors(
        s.get::<SinkGuest<T>>()
            .0
            .borrow_mut()
            .write_requests(&requests),
    )
}
