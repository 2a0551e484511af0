//! The design hash: what a study runs, in one short string.
//!
//! The executor writes it into the study directory and refuses to resume a
//! directory whose hash differs from the study file's: resuming a changed
//! design would mix runs of two different studies under one name. It covers
//! what the runs are (the base manifest's content, every point, the cycles,
//! the order and — for the orders it changes — the seed), and not how the file
//! is written (key order, whitespace, comments) nor how the study is paced
//! (`gap_s`, timeouts, the failure limit), which may change between resumes.

use llem_manifest::{RawTable, RawValue};
use sha2::{Digest, Sha256};

use crate::spec::Study;
use crate::value::{canonical_text, to_toml};

/// Hex digits of the design hash that are shown and compared.
pub const HASH_LEN: usize = 12;

/// The first [`HASH_LEN`] hex digits of the SHA-256 of the study's canonical
/// design. `seed` is the seed the study runs with (`spec.seed`, or the one the
/// caller picked and recorded); it counts only for orders that use it.
pub fn design_hash(study: &Study, seed: u64) -> String {
    let points: Vec<serde_json::Value> = study
        .points
        .iter()
        .map(|p| {
            let sets: Vec<serde_json::Value> = p
                .sets
                .iter()
                .map(|s| serde_json::json!([s.key, crate::value::canonical(&s.value)]))
                .collect();
            serde_json::json!({ "label": p.label, "backend": p.backend, "sets": sets })
        })
        .collect();
    let order = study.spec.order;
    let design = serde_json::json!({
        "base": canonical_table(&study.base.root),
        "points": points,
        "cycles": study.spec.cycles,
        "order": order.as_str(),
        "seed": order.uses_seed().then_some(seed),
    });
    let digest = Sha256::digest(canonical_text(&design).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..HASH_LEN].to_owned()
}

/// A raw table's content without locations: keys sorted by `canonical_text`.
fn canonical_table(table: &RawTable) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = table
        .entries
        .iter()
        .map(|e| {
            let value = match &e.item.value {
                RawValue::Table(t) => serde_json::json!({ "table": canonical_table(t) }),
                _ => crate::value::canonical(&to_toml(&e.item)),
            };
            (e.key.clone(), value)
        })
        .collect();
    serde_json::Value::Object(map)
}
