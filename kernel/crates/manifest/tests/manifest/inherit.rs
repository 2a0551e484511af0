//! A study's whole-table edits: `base` inheritance, taking tables out, dropping
//! plugin instances.

use std::path::PathBuf;

use llem_manifest::{ManifestSource, RawManifest, RawValue};

use crate::common::{render, resolve_raw};

fn parse(name: &str, dir: &str, text: &str) -> RawManifest {
    let source = ManifestSource {
        name: name.to_owned(),
        dir: PathBuf::from(dir),
        text: text.to_owned(),
    };
    match llem_manifest::parse(&source) {
        Ok(raw) => raw,
        Err(e) => panic!("{e}"),
    }
}

const BASE: &str = "[experiment]\nname = \"base\"\noutput_dir = \"runs\"\n\n\
    [plugins.vllm]\nserved_model_name = \"m\"\nmax_num_seqs = 8\ndtype = \"auto\"\n\n\
    [plugins.nvml]\n";

#[test]
fn the_top_file_overrides_the_base_key_by_key() {
    let base = parse("base.toml", "/b", BASE);
    let top = parse(
        "study.toml",
        "/s",
        "[experiment]\nname = \"top\"\n[plugins.vllm]\nmax_num_seqs = 64\n",
    );
    let merged = top.inherit(base);
    assert_eq!(merged.source_name, "study.toml");
    let plan = match resolve_raw(&merged) {
        Ok(plan) => plan,
        Err(e) => panic!("{}", render(&e)),
    };
    assert_eq!(plan.experiment.name, "top");
    // Kept from the base, and relative to the base file's directory.
    assert_eq!(plan.experiment.output_dir, PathBuf::from("/b/runs"));
    assert_eq!(plan.plugins.len(), 2);
    assert_eq!(plan.plugins[0].config["max_num_seqs"], 64);
    assert_eq!(plan.plugins[0].config["served_model_name"], "m");
    assert_eq!(merged.plugin_instances(), ["vllm", "nvml"]);
}

#[test]
fn errors_in_inherited_keys_point_into_the_base_file() {
    let base = parse(
        "base.toml",
        "/b",
        "[plugins.vllm]\nserved_model_name = \"m\"\nmax_num_seq = 8\n",
    );
    let top = parse(
        "study.toml",
        "/s",
        "\n\n[plugins.vllm]\ndtype = \"float32\"\n",
    );
    let errors = match resolve_raw(&top.inherit(base)) {
        Ok(plan) => panic!("expected errors, got {plan:?}"),
        Err(e) => render(&e),
    };
    assert!(
        errors.contains("base.toml:3:1: unknown key `max_num_seq`"),
        "{errors}"
    );
    assert!(errors.contains("study.toml:4:9: "), "{errors}");
}

#[test]
fn tables_are_taken_out_and_plugins_removed() {
    let mut raw = parse(
        "s.toml",
        "/s",
        &format!("{BASE}[sweep]\n\"vllm.x\" = [1, 2]\n"),
    );
    let sweep = raw.take_table("sweep").map(|e| e.item.value);
    assert!(matches!(sweep, Some(RawValue::Table(t)) if t.entries.len() == 1));
    assert!(raw.take_table("sweep").is_none());
    assert!(raw.remove_plugin("vllm").is_some());
    assert!(raw.remove_plugin("vllm").is_none());
    assert_eq!(raw.plugin_instances(), ["nvml"]);
}
