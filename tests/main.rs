//! llem's integration tests, one binary: one module per topic. Run one
//! topic with `cargo test -p llem-integration-tests --test integration <module>::`.
//!
//! They need the plugins and fixtures built first (`cargo xtask build`,
//! `cargo xtask fixtures`; `cargo xtask test` does both).

mod backend_plans;
mod backend_pytorch;
mod bench_offline;
mod cli;
mod datasets;
mod describe_cache;
mod energy_amdsmi;
mod energy_cli;
mod energy_nvml;
mod energy_rapl;
mod energy_redfish;
mod engine_confinement;
mod engine_record;
mod first_run;
mod gpu_validation;
mod inference_e2e;
mod inference_real;
mod loadgen;
mod native_c_plugin;
mod plugin_templates;
mod prometheus;
mod report;
mod robustness;
mod sdk_example_both_ways;
mod sink_parquet;
mod sink_prometheus_push;
mod sink_stream;
mod sinks;
mod slurm;
mod study;
mod study_slurm;
mod wasm_deadlines;
mod wasm_grants;
mod wasm_network;
mod wasm_sandbox;
mod worker_protocol;
