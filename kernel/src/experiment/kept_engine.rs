//! An engine kept up between consecutive runs of a study.
//!
//! Starting an engine (loading a 70B model, compiling CUDA graphs) can take
//! minutes, longer than the runs themselves; a concurrency or rate sweep does
//! not change the engine at all. So a study hands the engine of one run to
//! the next when the two agree on everything the engine was started with
//! ([`engine_key`]): the next run only warms it again. Its idle baseline is
//! the first run's (with an engine up, the devices are not idle), and its
//! result says which run directory the engine came from (`backend.
//! engine_kept_from`; that directory's `engine.log` holds the whole log).

use super::PlannedBackend;
use super::baseline::BaselineSummary;
use super::inference::Engine;
use crate::engine::EngineConfinement;
use crate::engine::versions::SoftwareVersions;
use crate::engine::worker::WorkerInfo;
use crate::loadgen::Decoding;
use llem_manifest::Plan;
use llem_sdk::PluginKind;
use std::path::{Path, PathBuf};

/// An engine that outlived its run, ready for the next one with the same key.
pub struct KeptEngine {
    pub(super) key: String,
    pub(super) backend: PlannedBackend,
    pub(super) engine: Engine,
    pub(super) engine_info: Option<WorkerInfo>,
    pub(super) confinement: Option<EngineConfinement>,
    pub(super) engine_versions: Option<SoftwareVersions>,
    pub(super) baseline: Option<BaselineSummary>,
    pub(super) started_in: PathBuf,
}

impl KeptEngine {
    /// The run directory of the run that started the engine.
    pub fn started_in(&self) -> &Path {
        &self.started_in
    }

    /// Whether this engine can serve `plan` as it is.
    pub fn serves(&self, plan: &Plan) -> bool {
        engine_key(plan).as_deref() == Some(self.key.as_str())
    }
}

impl std::fmt::Debug for KeptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptEngine")
            .field("backend", &self.backend.summary.instance)
            .field("started_in", &self.started_in)
            .finish_non_exhaustive()
    }
}

/// What an engine is started with: the model, the backend instance with every
/// option (and its sandbox), the endpoint it attaches to, and the decoding
/// options (an offline worker takes them when it starts). Two plans with the
/// same key can share an engine; `[load]`'s concurrency, rate, prompt count,
/// warm-up and time-outs, `[measurement]`, datasets, sinks and energy sources
/// are not in it. `None` without a backend.
pub fn engine_key(plan: &Plan) -> Option<String> {
    let backend = plan
        .plugins
        .iter()
        .find(|p| p.kind == PluginKind::Backend)?;
    let key = serde_json::json!({
        "model": plan.experiment.model,
        "backend": backend,
        "endpoint": plan.load.endpoint,
        "decoding": Decoding::from_load(&plan.load),
    });
    Some(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::engine_key;
    use llem_manifest::{Plan, PluginPlan};
    use llem_sdk::{PluginInfo, PluginKind};

    fn plan() -> Plan {
        let backend = PluginPlan {
            instance: "vllm".into(),
            full_name: "backend-vllm".into(),
            location: "/plugins/backend-vllm.wasm".into(),
            kind: PluginKind::Backend,
            info: PluginInfo {
                name: "backend-vllm".into(),
                kind: PluginKind::Backend,
                version: "0.1.0".into(),
                description: String::new(),
                options: Vec::new(),
            },
            config: serde_json::Map::from_iter([("max_num_seqs".into(), 8.into())]),
            sandbox: serde_json::from_value(serde_json::json!({
                "read": [], "env": [], "memory_mib": 256,
                "call_timeout_ms": 1000, "connect": []
            }))
            .unwrap(),
            sandboxed: true,
            grants: Vec::new(),
            sample_interval_ms: None,
        };
        let mut plan: Plan = serde_json::from_value(serde_json::json!({
            "source_name": "m.toml",
            "experiment": {"name": "e", "model": "m", "output_dir": "runs", "duration_s": 1.0,
                           "sample_interval_ms": 100, "seed": 0, "cycles": 1},
            "plugins": []
        }))
        .unwrap();
        plan.plugins.push(backend);
        plan
    }

    #[test]
    fn load_options_keep_the_engine_and_engine_options_do_not() {
        let base = plan();
        let key = engine_key(&base).unwrap();
        let mut load_only = base.clone();
        load_only.load.max_concurrency = Some(64);
        load_only.load.num_prompts = Some(10);
        load_only.load.request_rate = Some(2.0);
        load_only.load.warmup_requests = 7;
        load_only.measurement.baseline = "off".into();
        load_only.experiment.name = "other".into();
        assert_eq!(
            engine_key(&load_only).unwrap(),
            key,
            "load-only changes share it"
        );

        let mut engine_option = base.clone();
        engine_option.plugins[0]
            .config
            .insert("max_num_seqs".into(), 32.into());
        let mut model = base.clone();
        model.experiment.model = Some("other".into());
        let mut decoding = base.clone();
        decoding.load.max_tokens += 1;
        for changed in [engine_option, model, decoding] {
            assert_ne!(engine_key(&changed).unwrap(), key);
        }
        let mut no_backend = base;
        no_backend.plugins.clear();
        assert_eq!(engine_key(&no_backend), None);
    }
}
