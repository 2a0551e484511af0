//! Open WASM plugin instances: one store each, every call under a deadline,
//! every failure turned into a [`PluginFailure`] that names the plugin.

use super::bindings::{backend, dataset, energy, read_flat, sink, stream, topology, wit_types};
use super::store::{StoreState, new_store};
use super::{Code, EPOCH_TICK, EpochTicker, bounded, convert, limits, stream as convert_stream};
use crate::plugin::{
    BackendInstance, CallResult, DatasetInstance, EnergyInstance, FailureKind, PluginFailure,
    Sandbox, SinkInstance,
};
use llem_sdk::{
    Device, DeviceTelemetry, EnginePlan, LoadRequest, Metric, PhaseEvent, PlanRequest, PluginInfo,
    PluginKind, Prompt, Reading, ResultDocument, RunInfo, SampleBatch, Wanted,
};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Store;
use wasmtime::component::ResourceAny;

/// Lines of a crashed plugin's stderr quoted in the error (panic messages).
const STDERR_TAIL_LINES: usize = 6;
/// Longest stderr line quoted.
const STDERR_LINE_BYTES: usize = 512;

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

/// Calls outside any manifest grant (describe) get the default sandbox.
fn describe_sandbox() -> Sandbox {
    Sandbox::default()
}

/// Arm the deadline and forget the last memory refusal before a call.
fn arm(store: &mut Store<StoreState>, timeout: Duration) {
    // In u64: a u128 division is a libcall, and this runs on every read.
    let tick_ns = EPOCH_TICK.as_nanos() as u64;
    let ticks = u64::try_from(timeout.as_nanos())
        .unwrap_or(u64::MAX)
        .div_ceil(tick_ns)
        .saturating_add(1);
    store.set_epoch_deadline(ticks);
    store.data_mut().limiter.refused = None;
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
fn mismatch(plugin: &str, call: &'static str, error: &wasmtime::Error) -> PluginFailure {
    PluginFailure::new(
        plugin,
        call,
        FailureKind::Incompatible,
        format!("its exports do not match the llem:plugin interface this llem hosts: {error:#}"),
    )
    .with_hint("rebuild the plugin against the llem-sdk that ships with this llem")
}

/// The failure of a call abandoned because it did not come back in time
/// (blocked in a host call: a sleep, a FIFO read…).
fn abandoned(plugin: &str, call: &'static str, timeout: Duration) -> PluginFailure {
    PluginFailure::new(
        plugin,
        call,
        FailureKind::Deadline,
        format!(
            "did not return within its {} ms deadline (blocked outside its own code, e.g. sleeping or reading a pipe) and was abandoned",
            timeout.as_millis()
        ),
    )
    .with_hint(format!(
        "if the call is legitimately slow, raise `call_timeout_ms` in [plugins.{plugin}.sandbox]"
    ))
}

/// What a call needs of an instance; moved onto the call's thread and back.
struct Live<B> {
    store: Store<StoreState>,
    /// Kept so optional exports (e.g. `energy-topology`) can be probed.
    instance: wasmtime::component::Instance,
    bindings: B,
    resource: ResourceAny,
    /// Keeps the epoch advancing while this store exists — also on an
    /// abandoned call's thread, so a plugin that wakes up there still traps
    /// at its (expired) deadline instead of running on.
    ticker: Arc<EpochTicker>,
}

/// A store, its bindings and the plugin's resource, poisoned after a trap
/// (wasmtime forbids re-entering an instance that trapped) or after a call
/// that had to be abandoned (its thread still holds the store).
struct Guest<B: Send + 'static> {
    name: String,
    live: Option<Live<B>>,
    timeout: Duration,
    poisoned: Option<String>,
}

impl<B: Send + 'static> Guest<B> {
    fn poison(&mut self, failure: &PluginFailure) {
        self.poisoned = Some(
            failure
                .message
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
    }

    fn live(&mut self, call: &'static str) -> CallResult<&mut Live<B>> {
        if let Some(earlier) = &self.poisoned {
            return Err(PluginFailure::new(
                &self.name,
                call,
                FailureKind::Crashed,
                format!("cannot be called again after an earlier failure ({earlier})"),
            ));
        }
        self.live.as_mut().ok_or_else(|| {
            PluginFailure::new(&self.name, call, FailureKind::Other, "has no live instance")
        })
    }

    /// Sort a call's outcome: the plugin's own error, or a trap explained.
    fn outcome<R>(
        &mut self,
        call: &'static str,
        result: wasmtime::Result<Result<R, wit_types::PluginError>>,
    ) -> CallResult<R> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PluginFailure::from_plugin(
                &self.name,
                call,
                convert::plugin_error(error),
            )),
            Err(trap) => {
                let failure = match &self.live {
                    Some(live) => explain(&self.name, call, &live.store, &trap, self.timeout),
                    None => PluginFailure::new(
                        &self.name,
                        call,
                        FailureKind::Crashed,
                        format!("{trap:#}"),
                    ),
                };
                self.poison(&failure);
                Err(failure)
            }
        }
    }

    /// A call on the caller's thread: the energy hot path, whose deadline
    /// (for blocking host calls) the sampler's own thread handles.
    fn call_inline<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(
            &B,
            &mut Store<StoreState>,
            ResourceAny,
        ) -> wasmtime::Result<Result<R, wit_types::PluginError>>,
    ) -> CallResult<R> {
        let timeout = self.timeout;
        let live = self.live(call)?;
        arm(&mut live.store, timeout);
        // In flight without waking the ticker: see `ticker`'s doc.
        let in_flight = live.ticker.call(false);
        let result = f(&live.bindings, &mut live.store, live.resource);
        drop(in_flight);
        self.outcome(call, result)
    }

    /// A call on its own thread, abandoned (and the instance poisoned) if it
    /// is not back by its deadline plus a grace period.
    fn call<R: Send + 'static>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(
            &B,
            &mut Store<StoreState>,
            ResourceAny,
        ) -> wasmtime::Result<Result<R, wit_types::PluginError>>
        + Send
        + 'static,
    ) -> CallResult<R> {
        let timeout = self.timeout;
        self.live(call)?;
        let Some(mut live) = self.live.take() else {
            return Err(PluginFailure::new(
                &self.name,
                call,
                FailureKind::Other,
                "has no live instance",
            ));
        };
        arm(&mut live.store, timeout);
        let ran = bounded::run(timeout, move || {
            let ticker = live.ticker.clone();
            let in_flight = ticker.call(true);
            let result = f(&live.bindings, &mut live.store, live.resource);
            drop(in_flight);
            (live, result)
        });
        match ran {
            Ok((live, result)) => {
                self.live = Some(live);
                self.outcome(call, result)
            }
            Err(_) => {
                let failure = abandoned(&self.name, call, timeout);
                self.poison(&failure);
                Err(failure)
            }
        }
    }
}

impl<B: Send + 'static> Drop for Guest<B> {
    fn drop(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        if self.poisoned.is_some() {
            return;
        }
        // The plugin's destructor runs plugin code too: bounded like any call,
        // and not waited for beyond that.
        let name = self.name.clone();
        arm(&mut live.store, self.timeout);
        let dropped = bounded::run(self.timeout, move || {
            let ticker = live.ticker.clone();
            let _in_flight = ticker.call(true);
            live.resource
                .resource_drop(&mut live.store)
                .err()
                .map(|e| format!("{e:#}"))
        });
        match dropped {
            Ok(None) => {}
            Ok(Some(e)) => tracing::debug!(plugin = %name, "dropping plugin resource failed: {e}"),
            Err(_) => {
                tracing::warn!(plugin = %name, "dropping the plugin's resource did not finish in time; abandoned")
            }
        }
    }
}

/// Everything an `open` needs, owned, so it can run on the call's thread.
struct OpenJob {
    name: String,
    engine: wasmtime::Engine,
    pre: wasmtime::component::InstancePre<StoreState>,
    config: String,
    sandbox: Sandbox,
    ticker: Arc<EpochTicker>,
}

impl OpenJob {
    fn new(code: &Code, config: &str, sandbox: &Sandbox) -> OpenJob {
        OpenJob {
            name: code.name.clone(),
            engine: code.engine.clone(),
            pre: code.pre.clone(),
            config: config.to_owned(),
            sandbox: sandbox.clone(),
            ticker: code.ticker.clone(),
        }
    }

    /// Run `body` (store, instantiate, `open`) on its own thread under the
    /// instance's deadline; the result becomes a [`Guest`].
    fn run<B: Send + 'static>(
        self,
        body: impl FnOnce(OpenJob) -> CallResult<Live<B>> + Send + 'static,
    ) -> CallResult<Guest<B>> {
        let name = self.name.clone();
        let timeout = self.sandbox.call_timeout;
        let live = bounded::run(timeout, move || body(self))
            .map_err(|_| abandoned(&name, "open", timeout))??;
        Ok(Guest {
            name,
            live: Some(live),
            timeout,
            poisoned: None,
        })
    }
}

/// Create a store under the job's sandbox, instantiate the world and call its
/// `open` (inside [`OpenJob::run`]).
macro_rules! open_guest {
    ($code:expr, $config:expr, $sandbox:expr, $world:ident :: $pre:ident, $bindings:ident, $accessor:ident, $resource:ident) => {{
        OpenJob::new($code, $config, $sandbox).run(|job: OpenJob| {
            let name = job.name.as_str();
            let timeout = job.sandbox.call_timeout;
            let ticker = job.ticker.clone();
            let _in_flight = ticker.call(true);
            let mut store = new_store(&job.engine, name, &job.sandbox)
                .map_err(|e| PluginFailure::new(name, "open", FailureKind::PermissionDenied, e))?;
            arm(&mut store, timeout);
            // Type-check the world first (a mismatch is explained as such), then
            // instantiate keeping the `Instance`, so optional exports can be probed.
            let pre = $world::$pre::new(job.pre.clone()).map_err(|e| mismatch(name, "open", &e))?;
            let instance = pre
                .instance_pre()
                .instantiate(&mut store)
                .map_err(|e| explain(name, "open", &store, &e, timeout))?;
            let bindings = $world::$bindings::new(&mut store, &instance)
                .map_err(|e| mismatch(name, "open", &e))?;
            let opened = bindings
                .$accessor()
                .$resource()
                .call_open(&mut store, &job.config);
            let resource = match opened {
                Ok(Ok(resource)) => resource,
                Ok(Err(error)) => {
                    return Err(PluginFailure::from_plugin(
                        name,
                        "open",
                        convert::plugin_error(error),
                    ));
                }
                Err(trap) => return Err(explain(name, "open", &store, &trap, timeout)),
            };
            Ok(Live {
                store,
                instance,
                bindings,
                resource,
                ticker: job.ticker.clone(),
            })
        })?
    }};
}

/// Instantiate a fresh, ungranted store and ask the plugin to describe itself,
/// on its own thread under the default deadline: a file on the plugin path
/// that blocks here cannot hang `llem plugins list` or `llem env`.
pub(super) fn describe(code: &Code) -> CallResult<PluginInfo> {
    let sandbox = describe_sandbox();
    let timeout = sandbox.call_timeout;
    let (name, engine, pre, kind) = (
        code.name.clone(),
        code.engine.clone(),
        code.pre.clone(),
        code.kind,
    );
    let plugin = name.clone();
    let ticker = code.ticker.clone();
    bounded::run(timeout, move || {
        let _in_flight = ticker.call(true); // and the epoch advances while this thread runs
        let name = name.as_str();
        let mut store = new_store(&engine, name, &sandbox)
            .map_err(|e| PluginFailure::new(name, "describe", FailureKind::Other, e))?;
        arm(&mut store, timeout);
        macro_rules! call_describe {
            ($world:ident :: $pre:ident) => {
                $world::$pre::new(pre.clone())
                    .map_err(|e| mismatch(name, "describe", &e))?
                    .instantiate(&mut store)
                    .and_then(|bindings| bindings.call_describe(&mut store))
            };
        }
        let described = match kind {
            PluginKind::Energy => call_describe!(energy::EnergyPluginPre),
            PluginKind::Backend => call_describe!(backend::BackendPluginPre),
            PluginKind::Dataset => call_describe!(dataset::DatasetPluginPre),
            PluginKind::Sink => call_describe!(sink::SinkPluginPre),
        };
        let info = described
            .map(convert::plugin_info)
            .map_err(|e| explain(name, "describe", &store, &e, timeout))?;
        limited(name, "describe", info, limits::check_info)
    })
    .map_err(|_| abandoned(&plugin, "describe", timeout))?
}

pub(super) struct WasmEnergy {
    guest: Guest<energy::EnergyPlugin>,
    devices: Vec<Device>,
    /// The optional `energy-read-flat` export, when the plugin has it: the
    /// same readings for less of wasmtime's lifting (issue #12 goal 4).
    flat: Option<read_flat::Guest>,
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
        let flat = flat_read(code, &mut guest)?;
        Ok(WasmEnergy {
            guest,
            devices,
            flat,
        })
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
    let live = guest.live("places")?;
    let exported = indices
        .load(&mut live.store, &live.instance)
        .map_err(|e| mismatch(&code.name, "places", &e))?;
    guest
        .call("places", move |_, store, r| {
            exported.call_places(store, r).map(Ok)
        })
        .map(Some)
}

/// The optional `energy-read-flat.read-flat` export, looked up once; `None`
/// for a plugin built before it existed (read through `source.read`).
fn flat_read(
    code: &Code,
    guest: &mut Guest<energy::EnergyPlugin>,
) -> CallResult<Option<read_flat::Guest>> {
    let Ok(indices) = read_flat::GuestIndices::new(&code.pre) else {
        return Ok(None);
    };
    let live = guest.live("read")?;
    indices
        .load(&mut live.store, &live.instance)
        .map(Some)
        .map_err(|e| mismatch(&code.name, "read", &e))
}

impl EnergyInstance for WasmEnergy {
    fn devices(&self) -> &[Device] {
        &self.devices
    }

    fn read(&mut self, out: &mut Vec<Reading>) -> CallResult<()> {
        if let Some(flat) = &self.flat {
            // Inline: the hot path; the sampler bounds it from its own thread.
            let numbers = self
                .guest
                .call_inline("read", |_, store, r| flat.call_read_flat(store, r))?;
            return limited(&self.guest.name, "read", (), |_: &()| {
                convert::flat_readings(&numbers, out)
            });
        }
        let readings = self.guest.call_inline("read", |b, store, r| {
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
            .call("plan", move |b, store, r| {
                b.llem_plugin_backend()
                    .backend()
                    .call_plan(store, r, &request)
            })
            .map(convert::engine_plan)?;
        limited(&self.0.name, "plan", plan, limits::check_plan)
    }

    fn parse_metrics(&mut self, prometheus_text: &str) -> CallResult<Vec<Metric>> {
        let text = prometheus_text.to_owned();
        let metrics = self.0.call("parse-metrics", move |b, store, r| {
            b.llem_plugin_backend()
                .backend()
                .call_parse_metrics(store, r, &text)
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
        let prompts = self.0.call("load", move |b, store, r| {
            b.llem_plugin_dataset()
                .dataset()
                .call_load(store, r, &request)
        })?;
        let prompts: Vec<Prompt> = prompts.into_iter().map(convert::prompt).collect();
        limited(&self.0.name, "load", prompts, |p| limits::check_prompts(p))
    }
}

pub(super) struct WasmSink {
    guest: Guest<sink::SinkPlugin>,
    /// Where the optional `sink-stream` export lives; `None` for a sink
    /// built before it (it gets readings and the result only).
    stream: Option<stream::GuestIndices>,
}

impl WasmSink {
    pub fn open(code: &Code, config: &str, sandbox: &Sandbox) -> CallResult<Self> {
        let guest = open_guest!(
            code,
            config,
            sandbox,
            sink::SinkPluginPre,
            SinkPlugin,
            llem_plugin_sink,
            sink
        );
        // A plugin whose export does not type-check against this llem's
        // `sink-stream` is treated as one without it.
        let stream = stream::GuestIndices::new(&code.pre).ok();
        Ok(WasmSink { guest, stream })
    }

    /// Call one function of the `sink-stream` export (present: checked by the caller).
    fn stream_call<R: Send + 'static>(
        &mut self,
        call: &'static str,
        indices: &stream::GuestIndices,
        f: impl FnOnce(
            &stream::Guest,
            &mut Store<StoreState>,
            ResourceAny,
        ) -> wasmtime::Result<Result<R, wit_types::PluginError>>
        + Send
        + 'static,
    ) -> CallResult<R> {
        let live = self.guest.live(call)?;
        let exported = indices
            .load(&mut live.store, &live.instance)
            .map_err(|e| mismatch(&self.guest.name, call, &e))?;
        self.guest
            .call(call, move |_, store, r| f(&exported, store, r))
    }
}

impl SinkInstance for WasmSink {
    fn streams(&self) -> bool {
        self.stream.is_some()
    }

    fn begin_run(&mut self, run: &RunInfo) -> CallResult<Wanted> {
        let Some(indices) = self.stream.clone() else {
            return Ok(Wanted::NOTHING);
        };
        let run = convert_stream::run_info(run);
        self.stream_call("begin-run", &indices, move |g, store, r| {
            g.call_begin_run(store, r, &run)
        })
        .map(convert_stream::wanted)
    }

    fn write_events(&mut self, events: &[PhaseEvent]) -> CallResult<()> {
        let Some(indices) = self.stream.clone() else {
            return Ok(());
        };
        let events = convert_stream::phase_events(events);
        self.stream_call("write-events", &indices, move |g, store, r| {
            g.call_write_events(store, r, &events)
        })
    }

    fn write_requests(&mut self, requests: &[llem_sdk::RequestRecord]) -> CallResult<()> {
        let Some(indices) = self.stream.clone() else {
            return Ok(());
        };
        let requests = convert_stream::request_records(requests);
        self.stream_call("write-requests", &indices, move |g, store, r| {
            g.call_write_requests(store, r, &requests)
        })
    }

    fn write_samples(&mut self, batch: &SampleBatch) -> CallResult<()> {
        let batch = convert::sample_batch(batch);
        self.guest.call("write-samples", move |b, store, r| {
            b.llem_plugin_sink()
                .sink()
                .call_write_samples(store, r, &batch)
        })
    }

    fn write_result(&mut self, document: &ResultDocument) -> CallResult<()> {
        let document = convert::result_document(document);
        self.guest.call("write-result", move |b, store, r| {
            b.llem_plugin_sink()
                .sink()
                .call_write_result(store, r, &document)
        })
    }

    fn finish(&mut self) -> CallResult<()> {
        self.guest.call("finish", |b, store, r| {
            b.llem_plugin_sink().sink().call_finish(store, r)
        })
    }
}
