//! # llem-sdk: write an llem plugin once, build it two ways
//!
//! Implement [`Plugin`] plus the trait of your plugin's kind ([`EnergySource`],
//! [`Backend`], [`Dataset`] or [`Sink`]), then invoke the export macro of that
//! kind once:
//!
//! ```ignore
//! llem_sdk::export_energy!(MySource);
//! ```
//!
//! `cargo build --target wasm32-wasip2` turns the crate into a sandboxed WASM
//! component (the macro implements the `llem:plugin` WIT world);
//! a plain `cargo build` of a `cdylib` gives a native library exporting the C
//! ABI of `include/llem_plugin.h`. The kernel loads either and cannot tell them
//! apart above its plugin hosts.

pub mod abi;
mod config;
pub mod host;
#[cfg(not(target_family = "wasm"))]
#[doc(hidden)]
pub mod native;
pub mod types;
#[cfg(target_family = "wasm")]
#[doc(hidden)]
pub mod wasm;

pub use config::Config;
pub use types::*;

/// The WIT package version this SDK implements.
pub const WIT_PACKAGE: &str = "llem:plugin@0.1.0";

/// The name of the metric a backend's `parse_metrics` returns for an expected
/// engine series that the page lacks (see [`Backend::parse_metrics`]). Not a
/// valid Prometheus name on purpose (`/`), so no engine series can clash.
pub const MISSING_METRIC: &str = "llem/missing-metric";

/// What every plugin, of any kind, provides.
pub trait Plugin: Sized + 'static {
    /// Name, kind, version, description and accepted options. Called before
    /// `open`, also by `llem plugins inspect` and `llem config default`.
    fn describe() -> PluginInfo;

    /// Build an instance from the manifest sub-table. The kernel has already
    /// rejected unknown keys and filled every default from `describe().options`.
    fn open(config: Config) -> Result<Self, PluginError>;
}

/// A source of energy (and power) readings.
pub trait EnergySource: Plugin {
    /// The devices this instance measures; fixed for the instance's life.
    fn devices(&self) -> Vec<Device>;
    /// One reading per device, raw. Append to `out` (cleared by the caller).
    fn read(&mut self, out: &mut Vec<Reading>) -> Result<(), PluginError>;
    /// Slower telemetry (utilisation, temperature, clocks, throttling).
    fn telemetry(&mut self) -> Result<Vec<DeviceTelemetry>, PluginError> {
        Ok(Vec::new())
    }
}

/// An inference backend: configuration in, engine plan out. Pure.
pub trait Backend: Plugin {
    fn plan(&mut self, request: &PlanRequest) -> Result<EnginePlan, PluginError>;
    /// Metrics worth keeping from the engine's Prometheus text. A series the
    /// backend expects but this page lacks is reported as a
    /// [`MISSING_METRIC`] entry (labels `metric`: the series, `names`: every
    /// name it was looked for under); the kernel warns about a series missing
    /// from every page of a run and records no such entry.
    fn parse_metrics(&mut self, _prometheus_text: &str) -> Result<Vec<Metric>, PluginError> {
        Ok(Vec::new())
    }
}

/// A source of prompts.
pub trait Dataset: Plugin {
    fn load(&mut self, request: &LoadRequest) -> Result<Vec<Prompt>, PluginError>;
}

/// A destination for samples and results.
pub trait Sink: Plugin {
    fn write_samples(&mut self, batch: &SampleBatch) -> Result<(), PluginError>;
    fn write_result(&mut self, document: &ResultDocument) -> Result<(), PluginError>;
    fn finish(&mut self) -> Result<(), PluginError> {
        Ok(())
    }

    // The stream (`llem:plugin-ext/sink-stream`; natively the optional
    // `llem_sink_stream_v1` table): a sink that keeps these defaults wants
    // nothing beyond readings and the result.

    /// The run starting; called once after `open`, before anything else.
    /// Return what to stream besides readings and the result.
    fn begin_run(&mut self, _run: &RunInfo) -> Result<Wanted, PluginError> {
        Ok(Wanted::NOTHING)
    }
    /// Phase edges in the order they happened (only when wanted).
    fn write_events(&mut self, _events: &[PhaseEvent]) -> Result<(), PluginError> {
        Ok(())
    }
    /// Finished requests in completion order (only when wanted).
    fn write_requests(&mut self, _requests: &[RequestRecord]) -> Result<(), PluginError> {
        Ok(())
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_native {
    ($ty:ty, $vtable:ident) => {
        #[cfg(not(target_family = "wasm"))]
        #[unsafe(no_mangle)]
        pub extern "C" fn llem_plugin_v1() -> *const $crate::abi::PluginV1 {
            static VTABLE: $crate::abi::PluginV1 = $crate::native::$vtable::<$ty>();
            &VTABLE
        }
    };
}

/// Export an [`EnergySource`] as an llem plugin (WASM component or native library).
#[macro_export]
macro_rules! export_energy {
    ($ty:ty) => {
        $crate::__export_native!($ty, energy_vtable);
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct LlemExport;
            impl $crate::wasm::energy_world::Guest for LlemExport {
                fn describe() -> $crate::wasm::wit_types::PluginInfo {
                    <$ty as $crate::Plugin>::describe().into()
                }
            }
            impl $crate::wasm::energy_world::exports::llem::plugin::energy::Guest for LlemExport {
                type Source = $crate::wasm::EnergyGuest<$ty>;
            }
            impl $crate::wasm::energy_world::exports::llem::plugin_ext::energy_topology::Guest
                for LlemExport
            {
                fn places(
                    src: $crate::wasm::energy_world::exports::llem::plugin::energy::SourceBorrow<'_>,
                ) -> ::std::vec::Vec<
                    $crate::wasm::energy_world::exports::llem::plugin_ext::energy_topology::DevicePlace,
                > {
                    $crate::wasm::places::<$ty>(src)
                }
            }
            impl $crate::wasm::energy_world::exports::llem::plugin_ext::energy_read_flat::Guest
                for LlemExport
            {
                fn read_flat(
                    src: $crate::wasm::energy_world::exports::llem::plugin::energy::SourceBorrow<'_>,
                ) -> ::std::result::Result<
                    ::std::vec::Vec<u64>,
                    $crate::wasm::wit_types::PluginError,
                > {
                    $crate::wasm::read_flat::<$ty>(src)
                }
            }
            $crate::wasm::energy_world::export!(LlemExport with_types_in $crate::wasm::energy_world);
        };
    };
}

/// Export a [`Backend`] as an llem plugin.
#[macro_export]
macro_rules! export_backend {
    ($ty:ty) => {
        $crate::__export_native!($ty, backend_vtable);
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct LlemExport;
            impl $crate::wasm::backend_world::Guest for LlemExport {
                fn describe() -> $crate::wasm::wit_types::PluginInfo {
                    <$ty as $crate::Plugin>::describe().into()
                }
            }
            impl $crate::wasm::backend_world::exports::llem::plugin::backend::Guest for LlemExport {
                type Backend = $crate::wasm::BackendGuest<$ty>;
            }
            $crate::wasm::backend_world::export!(LlemExport with_types_in $crate::wasm::backend_world);
        };
    };
}

/// Export a [`Dataset`] as an llem plugin.
#[macro_export]
macro_rules! export_dataset {
    ($ty:ty) => {
        $crate::__export_native!($ty, dataset_vtable);
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct LlemExport;
            impl $crate::wasm::dataset_world::Guest for LlemExport {
                fn describe() -> $crate::wasm::wit_types::PluginInfo {
                    <$ty as $crate::Plugin>::describe().into()
                }
            }
            impl $crate::wasm::dataset_world::exports::llem::plugin::dataset::Guest for LlemExport {
                type Dataset = $crate::wasm::DatasetGuest<$ty>;
            }
            $crate::wasm::dataset_world::export!(LlemExport with_types_in $crate::wasm::dataset_world);
        };
    };
}

/// Export a [`Sink`] as an llem plugin, with the stream extension
/// (`llem:plugin-ext/sink-stream` in WASM, `llem_sink_stream_v1` natively):
/// a sink that keeps [`Sink::begin_run`]'s default asks for nothing more than
/// readings and the result, as a sink without the extension gets.
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        $crate::__export_native!($ty, sink_vtable);
        #[cfg(not(target_family = "wasm"))]
        #[unsafe(no_mangle)]
        pub extern "C" fn llem_sink_stream_v1() -> *const $crate::abi::SinkStreamV1 {
            static VTABLE: $crate::abi::SinkStreamV1 = $crate::native::sink_stream_vtable::<$ty>();
            &VTABLE
        }
        #[cfg(target_family = "wasm")]
        const _: () = {
            struct LlemExport;
            impl $crate::wasm::sink_world::Guest for LlemExport {
                fn describe() -> $crate::wasm::wit_types::PluginInfo {
                    <$ty as $crate::Plugin>::describe().into()
                }
            }
            impl $crate::wasm::sink_world::exports::llem::plugin::sink::Guest for LlemExport {
                type Sink = $crate::wasm::SinkGuest<$ty>;
            }
            impl $crate::wasm::sink_world::exports::llem::plugin_ext::sink_stream::Guest
                for LlemExport
            {
                fn begin_run(
                    s: $crate::wasm::sink_world::exports::llem::plugin::sink::SinkBorrow<'_>,
                    run: $crate::wasm::sink_world::exports::llem::plugin_ext::sink_stream::RunInfo,
                ) -> ::std::result::Result<
                    $crate::wasm::sink_world::exports::llem::plugin_ext::sink_stream::Wanted,
                    $crate::wasm::wit_types::PluginError,
                > {
                    $crate::wasm::begin_run::<$ty>(s, run)
                }
                fn write_events(
                    s: $crate::wasm::sink_world::exports::llem::plugin::sink::SinkBorrow<'_>,
                    events: ::std::vec::Vec<
                        $crate::wasm::sink_world::exports::llem::plugin_ext::sink_stream::PhaseEvent,
                    >,
                ) -> ::std::result::Result<(), $crate::wasm::wit_types::PluginError> {
                    $crate::wasm::write_events::<$ty>(s, events)
                }
                fn write_requests(
                    s: $crate::wasm::sink_world::exports::llem::plugin::sink::SinkBorrow<'_>,
                    requests: ::std::vec::Vec<
                        $crate::wasm::sink_world::exports::llem::plugin_ext::sink_stream::RequestRecord,
                    >,
                ) -> ::std::result::Result<(), $crate::wasm::wit_types::PluginError> {
                    $crate::wasm::write_requests::<$ty>(s, requests)
                }
            }
            $crate::wasm::sink_world::export!(LlemExport with_types_in $crate::wasm::sink_world);
        };
    };
}
