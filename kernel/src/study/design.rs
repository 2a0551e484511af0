//! `design.json`: what a study runs, fixed when the study directory is made.
//!
//! The design holds every configuration as a resolved plan, so a run (locally
//! or as a Slurm array task on another node) needs only the study directory,
//! not the study file. Its hash identifies the design: a study directory is
//! never resumed with another one unless the user asks for it.

use llem_manifest::Plan;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in a study directory that holds the design.
pub const DESIGN_FILE: &str = "design.json";

/// One configuration of the study, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Short stable id (from the configuration's settings).
    pub id: String,
    /// What sets it apart, e.g. `max_num_seqs=8 max_concurrency=1`.
    pub label: String,
    /// The `--set`-style overrides that made it from the base, as written.
    #[serde(default)]
    pub sets: Vec<String>,
    pub plan: Plan,
}

/// A point of the sweep that is not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub label: String,
    pub reason: String,
}

/// One run of the study: configuration `config` (index into `configs`) in cycle `cycle` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub config: usize,
    pub cycle: u32,
}

/// Gaps, time limits and the circuit breaker of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Controls {
    /// Idle between two runs (cool-down), seconds.
    pub gap_s: f64,
    /// Idle between two cycles, seconds (instead of `gap_s` there).
    pub cycle_gap_s: f64,
    /// A run still going after this long is stopped and counted as failed.
    pub run_timeout_s: Option<f64>,
    /// No run starts after this long (per invocation), and the running one is stopped.
    pub timeout_s: Option<f64>,
    /// This many failed runs in a row stop the study (0: never).
    pub max_consecutive_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    pub name: String,
    /// The design hash (see `llem_study::design_hash`), shown as 12 hex digits.
    pub hash: String,
    pub cycles: u32,
    /// sequential | interleave | shuffle | reverse | latin-square.
    pub order: String,
    /// The seed the order was drawn with (recorded even when chosen by llem).
    pub seed: u64,
    pub controls: Controls,
    pub configs: Vec<Config>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// The runs, in the order they run.
    pub schedule: Vec<Slot>,
}

impl Design {
    pub fn load(study_dir: &Path) -> Result<Design, String> {
        let path = study_dir.join(DESIGN_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a study design llem can read: {e}",
                path.display()
            )
        })
    }

    pub fn save(&self, study_dir: &Path) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        super::state::write_atomically(&study_dir.join(DESIGN_FILE), &json)
    }

    /// The run directory name of slot `index`: `0003-<config id>-c2`.
    pub fn run_name(&self, index: usize) -> String {
        let slot = self.schedule[index];
        format!(
            "{index:04}-{}-c{}",
            self.configs[slot.config].id, slot.cycle
        )
    }

    /// The engine key of each configuration (`None`: no backend).
    pub fn engine_keys(&self) -> Vec<Option<String>> {
        self.configs
            .iter()
            .map(|c| crate::experiment::engine_key(&c.plan))
            .collect()
    }

    /// For each slot, the earlier slot whose engine it would use if the study
    /// ran straight through: consecutive runs with the same engine key share
    /// one engine (the plan shows this).
    pub fn engine_sharing(&self) -> Vec<Option<usize>> {
        let keys = self.engine_keys();
        let mut out = vec![None; self.schedule.len()];
        for i in 1..self.schedule.len() {
            let (a, b) = (self.schedule[i - 1].config, self.schedule[i].config);
            if keys[b].is_some() && keys[a] == keys[b] {
                out[i] = Some(out[i - 1].unwrap_or(i - 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A design of `plans`, run in `order` (config indices), cycle 1.
    fn design(plans: Vec<Plan>, order: &[usize]) -> Design {
        Design {
            name: "d".into(),
            hash: "h".into(),
            cycles: 1,
            order: "sequential".into(),
            seed: 0,
            controls: Controls {
                gap_s: 0.0,
                cycle_gap_s: 0.0,
                run_timeout_s: None,
                timeout_s: None,
                max_consecutive_failures: 3,
            },
            configs: plans
                .into_iter()
                .enumerate()
                .map(|(i, plan)| Config {
                    id: format!("c{i}"),
                    label: format!("config {i}"),
                    sets: Vec::new(),
                    plan,
                })
                .collect(),
            skipped: Vec::new(),
            schedule: order
                .iter()
                .map(|&config| Slot { config, cycle: 1 })
                .collect(),
        }
    }

    fn plan(batch: u32, concurrency: u32, backend: bool) -> Plan {
        let mut value = serde_json::json!({
            "source_name": "m.toml",
            "experiment": {"name": "e", "model": "m", "output_dir": "runs", "duration_s": 1.0,
                           "sample_interval_ms": 100, "seed": 0, "cycles": 1},
            "load": {"api": "completions", "max_concurrency": concurrency, "burstiness": 1.0,
                     "warmup_requests": 0, "ignore_eos": false, "request_timeout_s": 60.0},
            "plugins": []
        });
        if backend {
            value["plugins"] = serde_json::json!([{
                "instance": "vllm", "full_name": "backend-vllm", "location": "/p/backend-vllm.wasm",
                "kind": "backend",
                "info": {"name": "backend-vllm", "kind": "backend", "version": "0.1.0", "description": ""},
                "config": {"max_num_seqs": batch},
                "sandbox": {"read": [], "env": [], "memory_mib": 256, "call_timeout_ms": 1000}
            }]);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn consecutive_runs_with_the_same_engine_share_it_and_the_chain_names_its_first_run() {
        let d = design(
            vec![plan(8, 1, true), plan(8, 4, true), plan(32, 1, true)],
            // 8/1, 8/4 (load only: shares), 8/1 again (shares), 32/1 (restart), 8/4 (restart).
            &[0, 1, 0, 2, 1],
        );
        assert_eq!(d.engine_sharing(), vec![None, Some(0), Some(0), None, None]);
        assert_eq!(d.run_name(3), "0003-c2-c1");
    }

    #[test]
    fn energy_only_runs_share_no_engine() {
        let d = design(vec![plan(0, 1, false), plan(0, 2, false)], &[0, 1]);
        assert_eq!(d.engine_sharing(), vec![None, None]);
    }

    #[test]
    fn a_design_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = design(vec![plan(8, 1, true)], &[0]);
        d.save(dir.path()).unwrap();
        assert_eq!(Design::load(dir.path()).unwrap(), d);
        let err = Design::load(&dir.path().join("nowhere")).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
    }
}
