//! Host bindings for the four plugin worlds of `wit/llem-plugin-0.1.0`. The
//! shared `types` and `host` interfaces are generated once (with the energy
//! world) and reused by the others, so one set of conversions serves all.

pub mod energy {
    wasmtime::component::bindgen!({
        path: "../wit/llem-plugin-0.1.0",
        world: "energy-plugin",
    });
}

pub mod backend {
    wasmtime::component::bindgen!({
        path: "../wit/llem-plugin-0.1.0",
        world: "backend-plugin",
        with: {
            "llem:plugin/types": crate::plugin::wasm::bindings::energy::llem::plugin::types,
            "llem:plugin/host": crate::plugin::wasm::bindings::energy::llem::plugin::host,
        },
    });
}

pub mod dataset {
    wasmtime::component::bindgen!({
        path: "../wit/llem-plugin-0.1.0",
        world: "dataset-plugin",
        with: {
            "llem:plugin/types": crate::plugin::wasm::bindings::energy::llem::plugin::types,
            "llem:plugin/host": crate::plugin::wasm::bindings::energy::llem::plugin::host,
        },
    });
}

pub mod sink {
    wasmtime::component::bindgen!({
        path: "../wit/llem-plugin-0.1.0",
        world: "sink-plugin",
        with: {
            "llem:plugin/types": crate::plugin::wasm::bindings::energy::llem::plugin::types,
            "llem:plugin/host": crate::plugin::wasm::bindings::energy::llem::plugin::host,
        },
    });
}

/// The optional `llem:plugin-ext` energy exports (`energy-topology`: device
/// parents and power bounds; `energy-read-flat`: the sampler's cheaper read),
/// added beside the published 0.1.0 package. Only its export
/// is used: plugins are instantiated through the 0.1.0 world and probed for
/// it, so plugins built before it load unchanged.
pub mod energy_ext {
    wasmtime::component::bindgen!({
        path: ["../wit/llem-plugin-0.1.0", "../wit/llem-plugin-ext-0.1.0"],
        world: "llem:plugin-ext/energy-plugin@0.1.0",
        with: {
            "llem:plugin/types": crate::plugin::wasm::bindings::energy::llem::plugin::types,
            "llem:plugin/host": crate::plugin::wasm::bindings::energy::llem::plugin::host,
        },
    });
}

/// The optional `llem:plugin-ext/sink-stream` export (run info, phase
/// events, request records during the run), probed like `energy_ext`.
pub mod sink_ext {
    wasmtime::component::bindgen!({
        path: ["../wit/llem-plugin-0.1.0", "../wit/llem-plugin-ext-0.1.0"],
        world: "llem:plugin-ext/sink-plugin@0.1.0",
        with: {
            "llem:plugin/types": crate::plugin::wasm::bindings::energy::llem::plugin::types,
            "llem:plugin/host": crate::plugin::wasm::bindings::energy::llem::plugin::host,
        },
    });
}

pub use energy::llem::plugin::host as wit_host;
pub use energy::llem::plugin::types as wit_types;
pub use energy_ext::exports::llem::plugin_ext::energy_read_flat as read_flat;
pub use energy_ext::exports::llem::plugin_ext::energy_topology as topology;
pub use sink_ext::exports::llem::plugin_ext::sink_stream as stream;
