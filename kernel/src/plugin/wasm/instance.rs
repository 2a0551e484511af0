//! Open WASM plugin instances: one store each, every call under a deadline,
//! every failure turned into a [`PluginFailure`] that names the plugin.

use super::bindings::{backend, dataset, energy, sink, topology, wit_types};
use super::store::{StoreState, new_store};
use super::{Code, EPOCH_TICK, convert, limits};
use crate::plugin::{
    BackendInstance, CallResult, DatasetInstance, EnergyInstance, FailureKind, PluginFailure,
    Sandbox, SinkInstance,
};
use llem_sdk::{
    Device, DeviceTelemetry, EnginePlan, LoadRequest, Metric, PlanRequest, PluginInfo, PluginKind,
    Prompt, Reading, ResultDocument, SampleBatch,
};
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

/// Lines of a crashed plugin's stderr quoted in the error (panic messages).
const STDERR_TAIL_LINES: usize = 6;
/// Longest stderr line quoted.
const STDERR_LINE_BYTES: usize = 512;

/// Calls outside any manifest grant (describe) get the default sandbox.
fn describe_sandbox() -> Sandbox {
    Sandbox::default()
}

/// Arm the deadline and forget the last memory refusal before a call.
fn arm(store: &mut Store<StoreState>, timeout: Duration) {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.data_mut().limiter.refused = None;
}

/// The instance's manifest table for fix hints: `plugins.gpu0`.
fn table(state: &StoreState) -> &str {
    state
        .manifest_table
        .as_deref()
        .unwrap_or("plugins.<instance>")
}

/// A value the plugin returned, refused when it is over a limit (see `limits`).
fn limited<T>(
    plugin: &str,
    call: &'static str,
    value: T,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> CallResult<T> {
    check(&value).map_err(|message| {
        PluginFailure::new(plugin, call, FailureKind::Other, message)
            .with_hint("this is a fault of the plugin; report it to its author")
    })?;
    Ok(value)
}

/// Explain a trap: deadline, memory cap, or a crash (with the panic message).
fn explain(
    plugin: &str,
    call: &'static str,
    store: &Store<StoreState>,
    error: &wasmtime::Error,
    timeout: Duration,
) -> PluginFailure {
    let state = store.data();
    if let Some(bytes) = state.limiter.refused {
        return PluginFailure::new(
            plugin,
            call,
            FailureKind::MemoryLimit,
            format!(
                "tried to grow its memory to {} MiB, past its cap of {} MiB, and was stopped",
                bytes >> 20,
                state.limiter.max_bytes >> 20
            ),
        )
        .with_hint(format!(
            "if the plugin really needs more, raise `memory_mib` (at most 4096) in [{}.sandbox]",
            table(state)
        ));
    }
    if matches!(
        error.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        return PluginFailure::new(
            plugin,
            call,
            FailureKind::Deadline,
            format!(
                "did not return within its {} ms deadline and was interrupted",
                timeout.as_millis()
            ),
        )
        .with_hint(format!(
            "if the call is legitimately slow, raise `call_timeout_ms` in [{}.sandbox]",
            table(state)
        ));
    }
    if format!("{error:#}").contains("fuel allocated for hostcalls") {
        return PluginFailure::new(
            plugin,
            call,
            FailureKind::Other,
            format!(
                "returned more than the {} MiB llem copies out of a plugin in one call, and was stopped",
                limits::HOSTCALL_BYTES >> 20
            ),
        )
        .with_hint("this is a fault of the plugin; report it to its author");
    }
    let stderr = state.stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // Plugin text: each line cut and sanitised before it is laid out.
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..]
        .iter()
        .map(|line| limits::text(line, STDERR_LINE_BYTES))
        .collect::<Vec<_>>()
        .join("\n    ");
    let mut message = format!("crashed: {}", root_cause(error));
    if !tail.is_empty() {
        message.push_str(&format!("\n  plugin stderr:\n    {tail}"));
    }
    PluginFailure::new(plugin, call, FailureKind::Crashed, message)
}

fn root_cause(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => format!("{error:#}"),
    }
}

/// The component's exports do not type-check against this llem's WIT: built
/// against another revision of the contract.
fn mismatch(code: &Code, call: &'static str, error: &wasmtime::Error) -> PluginFailure {
    PluginFailure::new(
        &code.name,
        call,
        FailureKind::Incompatible,
        format!("its exports do not match the llem:plugin interface this llem hosts: {error:#}"),
    )
    .with_hint("rebuild the plugin against the llem-sdk that ships with this llem")
}

/// A store, its bindings and the plugin's resource, poisoned after a trap
/// (wasmtime forbids re-entering an instance that trapped).
struct Guest<B> {
    name: String,
    store: Store<StoreState>,
    bindings: B,
    instance: wasmtime::component::Instance,
    resource: ResourceAny,
    timeout: Duration,
    poisoned: Option<String>,
}

impl<B> Guest<B> {
    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(
            &B,
            &mut Store<StoreState>,
            ResourceAny,
        ) -> wasmtime::Result<Result<R, wit_types::PluginError>>,
    ) -> CallResult<R> {
        if let Some(earlier) = &self.poisoned {
            return Err(PluginFailure::new(
                &self.name,
                call,
                FailureKind::Crashed,
                format!("cannot be called again after an earlier failure ({earlier})"),
            ));
        }
        arm(&mut self.store, self.timeout);
        match f(&self.bindings, &mut self.store, self.resource) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PluginFailure::from_plugin(
                &self.name,
                call,
                convert::plugin_error(error),
            )),
            Err(trap) => {
                let failure = explain(&self.name, call, &self.store, &trap, self.timeout);
                self.poisoned = Some(
                    failure
                        .message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
                Err(failure)
            }
        }
    }
}

impl<B> Drop for Guest<B> {
    fn drop(&mut self) {
        if self.poisoned.is_none() {
            arm(&mut self.store, self.timeout);
            if let Err(e) = self.resource.resource_drop(&mut self.store) {
                tracing::debug!(plugin = %self.name, "dropping plugin resource failed: {e:#}");
            }
        }
    }
}

/// Create a store under `sandbox`, instantiate the world and call its `open`.
macro_rules! open_guest {
    ($code:expr, $config:expr, $sandbox:expr, $world:ident :: $pre:ident, $bindings:ident, $accessor:ident, $resource:ident) => {{
        let code: &Code = $code;
        let sandbox: &Sandbox = $sandbox;
        let mut store = new_store(&code.engine, &code.name, sandbox).map_err(|e| {
            PluginFailure::new(&code.name, "open", FailureKind::PermissionDenied, e)
        })?;
        arm(&mut store, sandbox.call_timeout);
        // Type-check the world first (a mismatch is explained as such), then
        // instantiate keeping the `Instance`, so optional exports can be probed.
        let pre = $world::$pre::new(code.pre.clone()).map_err(|e| mismatch(code, "open", &e))?;
        let instance = pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| explain(&code.name, "open", &store, &e, sandbox.call_timeout))?;
        let bindings = $world::$bindings::new(&mut store, &instance)
            .map_err(|e| mismatch(code, "open", &e))?;
        let opened = bindings
            .$accessor()
            .$resource()
            .call_open(&mut store, $config);
        let resource = match opened {
            Ok(Ok(resource)) => resource,
            Ok(Err(error)) => {
                return Err(PluginFailure::from_plugin(
                    &code.name,
                    "open",
                    convert::plugin_error(error),
                ));
            }
            Err(trap) => {
                return Err(explain(
                    &code.name,
                    "open",
                    &store,
                    &trap,
                    sandbox.call_timeout,
                ));
            }
        };
        Guest {
            name: code.name.clone(),
            store,
            bindings,
            instance,
            resource,
            timeout: sandbox.call_timeout,
            poisoned: None,
        }
    }};
}

/// Instantiate a fresh, ungranted store and ask the plugin to describe itself.
pub(super) fn describe(code: &Code) -> CallResult<PluginInfo> {
    let sandbox = describe_sandbox();
    let mut store = new_store(&code.engine, &code.name, &sandbox)
        .map_err(|e| PluginFailure::new(&code.name, "describe", FailureKind::Other, e))?;
    arm(&mut store, sandbox.call_timeout);
    macro_rules! call_describe {
        ($world:ident :: $pre:ident) => {
            $world::$pre::new(code.pre.clone())
                .map_err(|e| mismatch(code, "describe", &e))?
                .instantiate(&mut store)
                .and_then(|bindings| bindings.call_describe(&mut store))
        };
    }
    let described = match code.kind {
        PluginKind::Energy => call_describe!(energy::EnergyPluginPre),
        PluginKind::Backend => call_describe!(backend::BackendPluginPre),
        PluginKind::Dataset => call_describe!(dataset::DatasetPluginPre),
        PluginKind::Sink => call_describe!(sink::SinkPluginPre),
    };
    let info = described
        .map(convert::plugin_info)
        .map_err(|e| explain(&code.name, "describe", &store, &e, sandbox.call_timeout))?;
    limited(&code.name, "describe", info, limits::check_info)
}

pub(super) struct WasmEnergy {
    guest: Guest<energy::EnergyPlugin>,
    devices: Vec<Device>,
}

impl WasmEnergy {
    pub fn open(code: &Code, config: &str, sandbox: &Sandbox) -> CallResult<Self> {
        let mut guest = open_guest!(
            code,
            config,
            sandbox,
            energy::EnergyPluginPre,
            EnergyPlugin,
            llem_plugin_energy,
            source
        );
        let devices = guest.call("devices", |b, store, r| {
            b.llem_plugin_energy()
                .source()
                .call_devices(store, r)
                .map(Ok)
        })?;
        let mut devices: Vec<Device> = devices.into_iter().map(convert::device).collect();
        if let Some(places) = places(code, &mut guest)? {
            convert::apply_places(&code.name, &mut devices, places);
        }
        let devices = limited(&code.name, "devices", devices, |d| limits::check_devices(d))?;
        Ok(WasmEnergy { guest, devices })
    }
}

/// The optional `energy-topology.places` export; `None` for a plugin built
/// before it existed (its devices are then all top-level).
fn places(
    code: &Code,
    guest: &mut Guest<energy::EnergyPlugin>,
) -> CallResult<Option<Vec<topology::DevicePlace>>> {
    let Ok(indices) = topology::GuestIndices::new(&code.pre) else {
        return Ok(None);
    };
    let exported = indices
        .load(&mut guest.store, &guest.instance)
        .map_err(|e| mismatch(code, "places", &e))?;
    guest
        .call("places", |_, store, r| {
            exported.call_places(store, r).map(Ok)
        })
        .map(Some)
}

impl EnergyInstance for WasmEnergy {
    fn devices(&self) -> &[Device] {
        &self.devices
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> CallResult<()> {
        let readings = self.guest.call("read", |b, store, r| {
            b.llem_plugin_energy().source().call_read(store, r)
        })?;
        let readings = limited(&self.guest.name, "read", readings, |r| {
            limits::check_count("a reading list", r.len(), limits::MAX_DEVICES)
        })?;
        out.extend(readings.into_iter().map(convert::reading));
        Ok(())
    }

    fn telemetry(&mut self) -> CallResult<Vec<DeviceTelemetry>> {
        let telemetry = self.guest.call("telemetry", |b, store, r| {
            b.llem_plugin_energy().source().call_telemetry(store, r)
        })?;
        let telemetry: Vec<DeviceTelemetry> =
            telemetry.into_iter().map(convert::telemetry).collect();
        limited(&self.guest.name, "telemetry", telemetry, |t| {
            limits::check_count("a telemetry list", t.len(), limits::MAX_DEVICES)?;
            t.iter().try_for_each(|d| limits::check_metrics(&d.metrics))
        })
    }
}

pub(super) struct WasmBackend(Guest<backend::BackendPlugin>);

impl WasmBackend {
    pub fn open(code: &Code, config: &str, sandbox: &Sandbox) -> CallResult<Self> {
        Ok(WasmBackend(open_guest!(
            code,
            config,
            sandbox,
            backend::BackendPluginPre,
            BackendPlugin,
            llem_plugin_backend,
            backend
        )))
    }
}

impl BackendInstance for WasmBackend {
    fn plan(&mut self, request: &PlanRequest) -> CallResult<EnginePlan> {
        let request = convert::plan_request(request);
        let plan = self
            .0
            .call("plan", |b, store, r| {
                b.llem_plugin_backend()
                    .backend()
                    .call_plan(store, r, &request)
            })
            .map(convert::engine_plan)?;
        limited(&self.0.name, "plan", plan, limits::check_plan)
    }

    fn parse_metrics(&mut self, prometheus_text: &str) -> CallResult<Vec<Metric>> {
        let metrics = self.0.call("parse-metrics", |b, store, r| {
            b.llem_plugin_backend()
                .backend()
                .call_parse_metrics(store, r, prometheus_text)
        })?;
        let metrics: Vec<Metric> = metrics.into_iter().map(convert::metric).collect();
        limited(&self.0.name, "parse-metrics", metrics, |m| {
            limits::check_metrics(m)
        })
    }
}

pub(super) struct WasmDataset(Guest<dataset::DatasetPlugin>);

impl WasmDataset {
    pub fn open(code: &Code, config: &str, sandbox: &Sandbox) -> CallResult<Self> {
        Ok(WasmDataset(open_guest!(
            code,
            config,
            sandbox,
            dataset::DatasetPluginPre,
            DatasetPlugin,
            llem_plugin_dataset,
            dataset
        )))
    }
}

impl DatasetInstance for WasmDataset {
    fn load(&mut self, request: &LoadRequest) -> CallResult<Vec<Prompt>> {
        let request = convert::load_request(request);
        let prompts = self.0.call("load", |b, store, r| {
            b.llem_plugin_dataset()
                .dataset()
                .call_load(store, r, &request)
        })?;
        let prompts: Vec<Prompt> = prompts.into_iter().map(convert::prompt).collect();
        limited(&self.0.name, "load", prompts, |p| limits::check_prompts(p))
    }
}

pub(super) struct WasmSink(Guest<sink::SinkPlugin>);

impl WasmSink {
    pub fn open(code: &Code, config: &str, sandbox: &Sandbox) -> CallResult<Self> {
        Ok(WasmSink(open_guest!(
            code,
            config,
            sandbox,
            sink::SinkPluginPre,
            SinkPlugin,
            llem_plugin_sink,
            sink
        )))
    }
}

impl SinkInstance for WasmSink {
    fn write_samples(&mut self, batch: &SampleBatch) -> CallResult<()> {
        let batch = convert::sample_batch(batch);
        self.0.call("write-samples", |b, store, r| {
            b.llem_plugin_sink()
                .sink()
                .call_write_samples(store, r, &batch)
        })
    }

    fn write_result(&mut self, document: &ResultDocument) -> CallResult<()> {
        let document = convert::result_document(document);
        self.0.call("write-result", |b, store, r| {
            b.llem_plugin_sink()
                .sink()
                .call_write_result(store, r, &document)
        })
    }

    fn finish(&mut self) -> CallResult<()> {
        self.0.call("finish", |b, store, r| {
            b.llem_plugin_sink().sink().call_finish(store, r)
        })
    }
}
