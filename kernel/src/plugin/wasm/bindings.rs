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

pub use energy::llem::plugin::host as wit_host;
pub use energy::llem::plugin::types as wit_types;
