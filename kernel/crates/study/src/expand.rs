//! Factors → configuration points: the cartesian product of the sweep's
//! factors (first factor slowest, as nested loops read), then the explicit
//! experiments; each point with a stable id and a readable label, duplicates
//! dropped with a reason.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::sweep::{BACKEND_KEY, Design, Level, Set};
use crate::value::{canonical, canonical_text, label_text};

/// One configuration of a study: the base manifest with `backend` selected and
/// `sets` applied in order (see [`crate::apply`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigPoint {
    /// 8 hex digits of the SHA-256 of the point's canonical content (backend and
    /// sets, keys sorted, last write wins): the same configuration has the same
    /// id in every study and whatever the file order.
    pub id: String,
    /// `max_num_seqs=8 max_concurrency=1`: the last segment of each key unless two
    /// keys of the study share it, values as written; an explicit `name` wins.
    /// Unique within a study (a repeated label gets ` #2`, ` #3`, …).
    pub label: String,
    /// The `[plugins.<instance>]` backend this point keeps, when it selects one.
    pub backend: Option<String>,
    pub sets: Vec<Set>,
    /// Where `backend` was written, for errors.
    #[serde(skip)]
    pub backend_loc: Option<llem_manifest::Loc>,
}

/// A point the study will not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub label: String,
    pub reason: String,
}

/// All points of `design`, and the duplicates dropped.
pub(crate) fn expand(design: &Design) -> (Vec<ConfigPoint>, Vec<Skipped>) {
    let mut combos: Vec<Vec<&Level>> = Vec::new();
    if !design.factors.is_empty() {
        combos.push(Vec::new());
        for factor in &design.factors {
            combos = combos
                .iter()
                .flat_map(|prefix| {
                    factor.levels.iter().map(move |level| {
                        let mut next = prefix.clone();
                        next.push(level);
                        next
                    })
                })
                .collect();
        }
    }
    combos.extend(design.explicit.iter().map(|level| vec![level]));

    let short = short_names(design);
    let mut points: Vec<ConfigPoint> = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for combo in combos {
        let point = combine(&combo, &short);
        let canon = canonical_content(point.backend.as_deref(), &point.sets);
        if let Some(first) = seen.get(&canon) {
            skipped.push(Skipped {
                label: point.label,
                reason: format!("duplicate of {first}"),
            });
            continue;
        }
        seen.insert(canon, point.label.clone());
        points.push(point);
    }
    make_labels_unique(&mut points);
    (points, skipped)
}

/// One point from one level of each factor: later levels win.
fn combine(levels: &[&Level], short: &BTreeMap<String, String>) -> ConfigPoint {
    let mut backend = None;
    let mut sets = Vec::new();
    let mut parts = Vec::new();
    for level in levels {
        if let Some(b) = &level.backend {
            backend = Some(b.clone());
        }
        sets.extend(level.sets.iter().cloned());
        match &level.name {
            Some(name) => parts.push(name.clone()),
            None => {
                if let Some((b, _)) = &level.backend {
                    parts.push(format!("{BACKEND_KEY}={b}"));
                }
                parts.extend(level.sets.iter().map(|s| {
                    let key = short.get(&s.key).unwrap_or(&s.key);
                    format!("{key}={}", label_text(&s.value))
                }));
            }
        }
    }
    let label = if parts.is_empty() {
        "base".to_owned()
    } else {
        parts.join(" ")
    };
    let id = short_hash(&canonical_content(
        backend.as_ref().map(|(b, _)| b.as_str()),
        &sets,
    ));
    ConfigPoint {
        id,
        label,
        backend: backend.as_ref().map(|(b, _)| b.clone()),
        backend_loc: backend.map(|(_, loc)| loc),
        sets,
    }
}

/// What a point does, independent of the order or repetition of its sets.
pub(crate) fn canonical_content(backend: Option<&str>, sets: &[Set]) -> String {
    let effective: BTreeMap<&str, serde_json::Value> = sets
        .iter()
        .map(|s| (s.key.as_str(), canonical(&s.value)))
        .collect();
    canonical_text(&serde_json::json!({ "backend": backend, "sets": effective }))
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Label key for each key of the design: its last segment, unless another key
/// of the study ends the same way (`vllm.dtype` and `sglang.dtype`).
fn short_names(design: &Design) -> BTreeMap<String, String> {
    let mut keys: Vec<&str> = design
        .factors
        .iter()
        .flat_map(|f| f.levels.iter())
        .chain(design.explicit.iter())
        .flat_map(|l| l.sets.iter().map(|s| s.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let last = |k: &str| {
        k.rsplit('.')
            .next()
            .unwrap_or(k)
            .trim_matches('"')
            .to_owned()
    };
    keys.iter()
        .map(|k| {
            let tail = last(k);
            let clash = keys.iter().any(|other| other != k && last(other) == tail);
            (k.to_string(), if clash { k.to_string() } else { tail })
        })
        .collect()
}

fn make_labels_unique(points: &mut [ConfigPoint]) {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for point in points.iter_mut() {
        let n = count.entry(point.label.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            point.label = format!("{} #{n}", point.label);
        }
    }
}
