//! `--plugins` and `--set`.

use serde_json::json;

use crate::common::{raw, render, resolve_raw};

fn set(raw: &mut llem_manifest::RawManifest, assignment: &str) {
    if let Err(e) = raw.apply_set(assignment) {
        panic!("--set {assignment} failed: {e}");
    }
}

fn add(raw: &mut llem_manifest::RawManifest, name: &str) {
    if let Err(e) = raw.add_plugin(name) {
        panic!("--plugins {name} failed: {e}");
    }
}

#[test]
fn plugins_and_set_build_a_manifest_from_nothing() {
    let mut raw = raw("");
    for name in "vllm, nvml".split(',') {
        add(&mut raw, name);
    }
    set(&mut raw, "vllm.max_num_seqs=64");
    set(&mut raw, "vllm.served_model_name = Qwen/Qwen3-8B");
    set(&mut raw, "vllm.dtype=bfloat16");
    set(&mut raw, "plugins.nvml.devices=[0, 1]");
    set(&mut raw, "experiment.cycles=3");
    // TOML would read 2024 as an integer; where a string is wanted, the typed text is kept.
    set(&mut raw, "experiment.name=2024");
    let plan = match resolve_raw(&raw) {
        Ok(p) => p,
        Err(e) => panic!("{}", render(&e)),
    };
    assert_eq!(plan.experiment.cycles, 3);
    assert_eq!(plan.experiment.name, "2024");
    let vllm = &plan.plugins[0];
    assert_eq!(vllm.full_name, "backend-vllm");
    assert_eq!(vllm.config["max_num_seqs"], json!(64));
    assert_eq!(vllm.config["served_model_name"], json!("Qwen/Qwen3-8B"));
    assert_eq!(vllm.config["dtype"], json!("bfloat16"));
    assert_eq!(plan.plugins[1].config["devices"], json!([0, 1]));
}

#[test]
fn set_overrides_file_values_and_finds_full_names() {
    let mut raw = raw("[plugins.backend-vllm]\nserved_model_name = \"a\"\nmax_num_seqs = 8\n");
    add(&mut raw, "vllm"); // already there under its full name: no second instance
    set(&mut raw, "vllm.max_num_seqs=128");
    let plan = match resolve_raw(&raw) {
        Ok(p) => p,
        Err(e) => panic!("{}", render(&e)),
    };
    assert_eq!(plan.plugins.len(), 1);
    assert_eq!(plan.plugins[0].config["max_num_seqs"], json!(128));
}

#[test]
fn set_errors_name_the_flag() {
    let mut raw = raw("[plugins.vllm]\nserved_model_name = \"a\"\n");
    set(&mut raw, "vllm.max_num_seq=64");
    set(&mut raw, "experiment.cycles=three");
    let errors = match resolve_raw(&raw) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    };
    assert_eq!(
        render(&errors),
        "--set experiment.cycles: `experiment.cycles` must be an integer, found a string (\"three\")\n\
         --set vllm.max_num_seq: unknown key `max_num_seq` in [plugins.vllm]\n  help: did you mean `max_num_seqs`?\n"
    );
    assert_eq!(errors[1].key_path, "plugins.vllm.max_num_seq");
    assert_eq!((errors[1].line, errors[1].column), (None, None));
}

#[test]
fn plugins_flag_errors_name_the_flag() {
    let mut raw = raw("");
    add(&mut raw, "nvmll");
    let errors = match resolve_raw(&raw) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    };
    assert!(render(&errors).starts_with(
        "--plugins: unknown plugin `nvmll` in [plugins.nvmll]\n  help: did you mean `nvml`?"
    ));
}

#[test]
fn malformed_set_is_rejected_at_once() {
    let mut raw = raw("[plugins.nvml]\ndevices = 3\n");
    let msg = |r: Result<(), llem_manifest::ManifestError>| {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert_eq!(
        msg(raw.apply_set("vllm.max_num_seqs")),
        "--set vllm.max_num_seqs: missing `=`\n  help: write `--set <plugin>.<option>=<value>` or `--set experiment.<key>=<value>`"
    );
    assert!(
        msg(raw.apply_set("vllm=1")).starts_with("--set vllm: `vllm` names a table, not a key")
    );
    assert_eq!(
        msg(raw.apply_set("nvml.devices.x=1")),
        "experiment.toml:2:11: `plugins.nvml.devices` is an integer (3), not a table"
    );
    assert!(msg(raw.apply_set(".x=1")).starts_with("--set .x: `.x` is not a valid key"));
    assert_eq!(
        msg(raw.add_plugin(" ")),
        "--plugins: empty plugin name\n  help: write plugin names separated by commas, e.g. `--plugins vllm,nvml`"
    );
}

#[test]
fn set_with_quoted_keys_and_ambiguous_instances() {
    let mut raw = raw("[plugins.a]\nplugin = \"rapl\"\n[plugins.b]\nplugin = \"rapl\"\n");
    let err = raw
        .apply_set("rapl.domains=[\"core\"]")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("--set rapl.domains: `rapl` matches several plugin instances: a, b"),
        "{err}"
    );
    set(&mut raw, "plugins.\"b\".domains=[\"core\"]");
    let plan = match resolve_raw(&raw) {
        Ok(p) => p,
        Err(e) => panic!("{}", render(&e)),
    };
    assert_eq!(plan.plugins[1].config["domains"], json!(["core"]));
}

#[test]
fn set_cannot_add_unknown_experiment_keys() {
    let errors = {
        let mut raw = raw("");
        set(&mut raw, "experiment.cycle=3");
        match resolve_raw(&raw) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        }
    };
    assert_eq!(
        render(&errors),
        "--set experiment.cycle: unknown key `cycle` in [experiment]\n  help: did you mean `cycles`?\n"
    );
    // And the same error from a file, for comparison.
    assert_eq!(
        errors.len(),
        crate::common::errors("[experiment]\ncycle = 3\n").len()
    );
}
