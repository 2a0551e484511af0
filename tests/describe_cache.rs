//! The describe cache (kernel/src/plugin/describe_cache.rs): a warm start
//! lists plugins from cached descriptions without loading them, a cached
//! description is exactly what the plugin says, a plugin file swapped after
//! caching is described afresh, and an altered entry never gets a plugin
//! opened.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::{Plugin, PluginLoader, Sandbox};
use llem_integration_tests::{fresh_loader, native_artifact, wasm_artifact};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Copies of plugin files, settled: a file changed within the last two
/// seconds is described but not cached (coarse file-system timestamps).
fn settled_copies(dir: &Path, files: &[(&Path, &str)]) -> Vec<PathBuf> {
    let copies = files
        .iter()
        .map(|(from, name)| {
            let to = dir.join(name);
            std::fs::copy(from, &to).unwrap();
            to
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2100));
    copies
}

fn fixture_config() -> Map<String, Value> {
    match json!({"devices": 2, "step_uj": 1000, "wrap_uj": 1u64 << 32}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn live(path: &Path) -> Plugin {
    PluginLoader::new(None).load(path).unwrap()
}

#[test]
fn a_warm_load_reads_the_exact_description_and_loads_code_only_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let plugins = settled_copies(
        dir.path(),
        &[
            (&wasm_artifact("energy-fixture"), "energy-fixture.wasm"),
            (&native_artifact("energy-fixture"), "libenergy_fixture.so"),
        ],
    );
    for path in &plugins {
        let first = fresh_loader(cache.path()).load(path).unwrap();
        assert!(first.is_code_loaded(), "{}: described live", path.display());
        // A new loader (a new llem process) finds the description cached.
        let warm = fresh_loader(cache.path()).load(path).unwrap();
        assert!(
            !warm.is_code_loaded(),
            "{}: described from the cache",
            path.display()
        );
        assert_eq!(warm.info(), live(path).info(), "{}", path.display());
        assert_eq!(warm.format(), first.format());
        // Opening loads the code (and checks it describes itself the same).
        let mut source = warm
            .open_energy(&fixture_config(), &Sandbox::default())
            .unwrap();
        assert!(warm.is_code_loaded());
        let mut readings = Vec::new();
        source.read(&mut readings).unwrap();
        assert_eq!(readings.len(), 2);
    }
}

#[test]
fn a_plugin_file_swapped_after_caching_is_described_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let copies = settled_copies(
        dir.path(),
        &[
            (&wasm_artifact("energy-fixture"), "energy-x.wasm"),
            (&wasm_artifact("energy-loud"), "replacement.wasm"),
        ],
    );
    let (path, replacement) = (&copies[0], &copies[1]);
    let before = fresh_loader(cache.path()).load(path).unwrap();
    assert_eq!(before.name(), "energy-fixture");
    assert!(
        !fresh_loader(cache.path())
            .load(path)
            .unwrap()
            .is_code_loaded()
    );
    // An installer's swap: the new file renamed over the old one.
    std::fs::rename(replacement, path).unwrap();
    let after = fresh_loader(cache.path()).load(path).unwrap();
    assert!(after.is_code_loaded(), "described live, not from the cache");
    assert_eq!(after.info(), live(path).info());
    assert_eq!(after.name(), "energy-loud");
}

/// The one entry in the cache's `described` directory.
fn only_entry(cache: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache.join("described"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().unwrap()
}

#[test]
fn an_altered_entry_is_ignored_or_refused_at_open_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let path = &settled_copies(
        dir.path(),
        &[(&wasm_artifact("energy-fixture"), "energy-fixture.wasm")],
    )[0];
    let truth = fresh_loader(cache.path()).load(path).unwrap();
    let entry = only_entry(cache.path());
    let text = std::fs::read_to_string(&entry).unwrap();
    let (header, body) = text.split_once('\n').unwrap();

    // Altered, digest left as it was: ignored, the plugin is described live.
    std::fs::write(
        &entry,
        format!("{header}\n{}", body.replace("Deterministic", "Forged")),
    )
    .unwrap();
    let plugin = fresh_loader(cache.path()).load(path).unwrap();
    assert!(plugin.is_code_loaded());
    assert_eq!(plugin.info(), truth.info());

    // Altered and resealed (someone who can write llem's private cache
    // directory): shown, but the plugin is never opened on its word — the
    // live description disagrees, the open is refused and the entry dropped.
    let mut doc: Value = serde_json::from_str(body).unwrap();
    doc["info"]["description"] = json!("Forged");
    let forged = doc.to_string();
    let digest: String = Sha256::digest(forged.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let seal = header.rsplit_once(' ').unwrap().0;
    std::fs::write(&entry, format!("{seal} {digest}\n{forged}")).unwrap();
    let plugin = fresh_loader(cache.path()).load(path).unwrap();
    assert!(!plugin.is_code_loaded());
    assert_eq!(plugin.info().description, "Forged");
    let refused = plugin
        .open_energy(&fixture_config(), &Sandbox::default())
        .err()
        .expect("refused");
    assert_eq!(refused.kind, llem::plugin::FailureKind::Incompatible);
    assert!(
        refused.message.contains("describes itself differently"),
        "{refused}"
    );
    assert!(!entry.exists(), "the altered entry is dropped");
    let again = fresh_loader(cache.path()).load(path).unwrap();
    assert_eq!(again.info(), truth.info());
}
