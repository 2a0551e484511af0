//! The environment record: what ran where, so a run can be reproduced and
//! audited — host, CPU, memory, OS and kernel, the energy devices the sources
//! found, the engine's own report of itself, llem's version and commit, and
//! each plugin's version and content hash.

use llem_manifest::PluginPlan;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub host: String,
    /// `PRETTY_NAME` of /etc/os-release.
    pub os: String,
    /// Linux kernel release.
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub memory_gib: Option<f64>,
    pub llem_version: String,
    /// The commit llem was built from (`-dirty` with uncommitted changes).
    pub llem_commit: String,
    /// Energy devices as their sources named them: `source/device → name`.
    pub devices: BTreeMap<String, String>,
    pub plugins: Vec<PluginRecord>,
    /// What the engine said about itself (engine, version, device, library
    /// versions, CUDA…), as reported: untrusted text, kept as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Value>,
    /// Python, torch, transformers, vLLM, TensorRT-LLM and CUDA versions where
    /// the engine runs: from the worker's `ready` (offline) or from the
    /// versions probe run with the server's Python before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_versions: Option<crate::engine::worker::SoftwareVersions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub instance: String,
    pub plugin: String,
    pub version: String,
    pub kind: llem_sdk::PluginKind,
    pub path: String,
    /// SHA-256 of the plugin file.
    pub sha256: Option<String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn os_pretty_name() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

fn memory_gib() -> Option<f64> {
    read("/proc/meminfo").lines().find_map(|l| {
        let kib: f64 = l
            .strip_prefix("MemTotal:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / (1024.0 * 1024.0))
    })
}

fn file_sha256(path: &std::path::Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).ok()?;
    Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The host side of the record; devices and engine are added as the run learns them.
pub fn collect(plugins: &[PluginPlan]) -> Environment {
    Environment {
        host: super::baseline::hostname(),
        os: os_pretty_name(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpu_model: cpu_model(),
        logical_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_gib: memory_gib(),
        llem_version: env!("CARGO_PKG_VERSION").to_owned(),
        llem_commit: env!("LLEM_GIT_COMMIT").to_owned(),
        devices: BTreeMap::new(),
        plugins: plugins
            .iter()
            .map(|p| PluginRecord {
                instance: p.instance.clone(),
                plugin: p.full_name.clone(),
                version: p.info.version.clone(),
                kind: p.info.kind,
                path: p.location.display().to_string(),
                sha256: file_sha256(&p.location),
            })
            .collect(),
        engine: None,
        engine_versions: None,
    }
}
