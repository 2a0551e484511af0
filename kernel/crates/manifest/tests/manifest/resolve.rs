//! Resolution: defaults, types, choices, required options, plugins, collected errors.

use std::path::PathBuf;

use llem_sdk::PluginKind;
use serde_json::json;

use crate::common::{errors, only_error, plan, render};

#[test]
fn defaults_are_filled() {
    let plan = plan("[plugins.rapl]\n");
    let e = &plan.experiment;
    assert_eq!(e.name, "llem-run");
    assert_eq!(e.model, None);
    assert_eq!(e.output_dir, PathBuf::from("/work/exp/runs"));
    assert_eq!(e.duration_s, 10.0);
    assert_eq!((e.sample_interval_ms, e.seed, e.cycles), (100, 0, 1));

    assert_eq!(plan.plugins.len(), 1);
    let p = &plan.plugins[0];
    assert_eq!(
        (p.instance.as_str(), p.full_name.as_str()),
        ("rapl", "energy-rapl")
    );
    assert_eq!(p.kind, PluginKind::Energy);
    assert_eq!(p.location, PathBuf::from("/usr/lib/llem/plugins/rapl.wasm"));
    assert_eq!(
        serde_json::Value::Object(p.config.clone()),
        json!({ "domains": ["package", "dram"] })
    );
    assert!(p.sandbox.read_dirs.is_empty() && p.sandbox.env.is_empty());
    assert_eq!(p.sandbox.write_dir, None);
    assert_eq!(
        (p.sandbox.memory_mib, p.sandbox.call_timeout_ms),
        (256, 5000)
    );
}

#[test]
fn every_plugin_option_is_present_in_config() {
    let plan = plan(
        "[plugins.vllm]\nserved_model_name = \"q\"\ndtype = \"bfloat16\"\ngpu_memory_utilization = 1\n",
    );
    let config = serde_json::Value::Object(plan.plugins[0].config.clone());
    assert_eq!(
        config,
        json!({
            "served_model_name": "q", "mode": "server", "dtype": "bfloat16", "max_num_seqs": 256,
            // An integer where a float is expected is accepted, as a float.
            "gpu_memory_utilization": 1.0, "extra_args": {}, "quantization": null,
        })
    );
}

#[test]
fn full_and_short_names_and_two_instances_of_one_plugin() {
    let plan = plan(
        "[plugins.energy-nvml]\n[plugins.cpu]\nplugin = \"rapl\"\n[plugins.dram]\nplugin = \"energy-rapl\"\ndomains = [\"dram\"]\n",
    );
    let names: Vec<_> = plan
        .plugins
        .iter()
        .map(|p| (p.instance.as_str(), p.full_name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("energy-nvml", "energy-nvml"),
            ("cpu", "energy-rapl"),
            ("dram", "energy-rapl")
        ]
    );
    assert_eq!(plan.plugins[2].config["domains"], json!(["dram"]));
}

#[test]
fn unknown_plugin_suggests_and_lists_available() {
    let text = "[experiment]\nname = \"x\"\n\n[plugins.rapl]\n\n\n[plugins.nvmll]\n";
    assert_eq!(
        only_error(text),
        "experiment.toml:7:1: unknown plugin `nvmll` in [plugins.nvmll]\n  \
         help: did you mean `nvml`? available: backend-vllm, dataset-files, dataset-shipped, energy-native, energy-nvml, energy-rapl, sink-clash, sink-out"
    );
}

#[test]
fn unknown_plugin_named_by_plugin_key_points_at_its_value() {
    let msg = only_error("[plugins.gpu]\nplugin = \"energy-nvm\"\n");
    assert!(msg.starts_with("experiment.toml:2:10: unknown plugin `energy-nvm` in [plugins.gpu]\n  help: did you mean `energy-nvml`?"), "{msg}");
}

#[test]
fn plugin_that_fails_to_load_is_reported() {
    assert_eq!(
        only_error("[plugins.broken]\n"),
        "experiment.toml:1:1: plugin `broken` in [plugins.broken] failed to load: wrong ABI version 9 (this llem speaks 1)"
    );
}

#[test]
fn missing_required_option_points_at_the_table_header() {
    let errors = errors("[experiment]\nseed = 3\n\n[plugins.vllm]\nmode = \"offline\"\n");
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    let e = &errors[0];
    assert_eq!((e.line, e.column), (Some(4), Some(1)));
    assert_eq!(e.key_path, "plugins.vllm.served_model_name");
    assert_eq!(
        e.message,
        "missing required option `served_model_name` in [plugins.vllm]"
    );
    assert_eq!(
        e.help.as_deref(),
        Some("add `served_model_name = …` (string): Name the server answers to")
    );
}

#[test]
fn inline_plugin_table_anchors_at_its_key() {
    let errors = errors("[plugins]\nvllm = { mode = \"server\" }\n");
    assert_eq!((errors[0].line, errors[0].column), (Some(2), Some(1)));
}

#[test]
fn string_must_be_one_of_its_choices() {
    let text = "[plugins.vllm]\nserved_model_name = \"q\"\ndtype = \"bfloat61\"\n";
    assert_eq!(
        only_error(text),
        "experiment.toml:3:9: `plugins.vllm.dtype` must be one of `auto`, `bfloat16`, `float16`; found \"bfloat61\"\n  \
         help: did you mean `bfloat16`?"
    );
    // List elements are checked one by one, and the error points at the element.
    let msg = only_error("[plugins.rapl]\ndomains = [\"package\", \"gpu\"]\n");
    assert!(
        msg.starts_with("experiment.toml:2:23: `plugins.rapl.domains` must be one of"),
        "{msg}"
    );
}

#[test]
fn list_elements_are_typed() {
    assert_eq!(
        only_error("[plugins.nvml]\ndevices = [0, \"1\"]\n"),
        "experiment.toml:2:15: `plugins.nvml.devices` must be a list of integers, found a string (\"1\") at index 1"
    );
    assert_eq!(
        only_error("[plugins.nvml]\ndevices = 0\n"),
        "experiment.toml:2:11: `plugins.nvml.devices` must be a list of integers, found an integer (0)"
    );
}

#[test]
fn bounds_are_checked() {
    assert_eq!(
        only_error("[experiment]\nsample_interval_ms = 0\n"),
        "experiment.toml:2:22: `experiment.sample_interval_ms` must be between 1 and 60000, found 0"
    );
    assert_eq!(
        only_error("[experiment]\nduration_s = 0\n"),
        "experiment.toml:2:14: `experiment.duration_s` must be greater than 0, found 0"
    );
    assert_eq!(
        only_error("[experiment]\ncycles = 0\n"),
        "experiment.toml:2:10: `experiment.cycles` must be between 1 and 4294967295, found 0"
    );
}

#[test]
fn float_keys_accept_integers() {
    assert_eq!(
        plan("[experiment]\nduration_s = 5\n").experiment.duration_s,
        5.0
    );
}

#[test]
fn reserved_key_declared_by_a_plugin_is_an_error() {
    let errors = errors("[plugins.clash]\n");
    assert_eq!(errors.len(), 1, "{}", render(&errors));
    assert_eq!(errors[0].key_path, "plugins.clash.path");
    assert_eq!(
        errors[0].message,
        "plugin `sink-clash` declares option `path`, a key llem reserves in every plugin table"
    );
}

#[test]
fn unknown_top_level_table_suggests() {
    assert_eq!(
        only_error("[experimnt]\nname = \"x\"\n"),
        "experiment.toml:1:2: unknown table `experimnt`\n  help: did you mean `experiment`?"
    );
    assert_eq!(
        only_error("verbose = true\n"),
        "experiment.toml:1:1: unknown top-level key `verbose`\n  help: known tables: experiment, load, measurement, plugins"
    );
}

#[test]
fn every_error_is_collected_in_document_order() {
    let text = r#"[experiment]
cycles = "three"
sample_interval_ms = 0
colour = "red"

[plugins.vllm]
max_num_seqs = "many"

[plugins.nvmll]

[plugins.rapl.sandbox]
memory_mib = -1
"#;
    let errors = errors(text);
    let got: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{}:{} {} {}",
                e.line.unwrap_or(0),
                e.column.unwrap_or(0),
                e.key_path,
                e.message
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "2:10 experiment.cycles `experiment.cycles` must be an integer, found a string (\"three\")",
            "3:22 experiment.sample_interval_ms `experiment.sample_interval_ms` must be between 1 and 60000, found 0",
            "4:1 experiment.colour unknown key `colour` in [experiment]",
            "6:1 plugins.vllm.served_model_name missing required option `served_model_name` in [plugins.vllm]",
            "7:16 plugins.vllm.max_num_seqs `plugins.vllm.max_num_seqs` must be an integer, found a string (\"many\")",
            "9:1 plugins.nvmll unknown plugin `nvmll` in [plugins.nvmll]",
            "12:14 plugins.rapl.sandbox.memory_mib `plugins.rapl.sandbox.memory_mib` must be between 1 and 4096, found -1",
        ]
    );
}

#[test]
fn plan_serializes_to_json() {
    let plan = plan("[experiment]\nmodel = \"m\"\n[plugins.nvml]\n");
    let json = serde_json::to_value(&plan).map_err(|e| e.to_string());
    let json = json.unwrap_or_default();
    assert_eq!(json["experiment"]["model"], "m");
    assert_eq!(json["plugins"][0]["full_name"], "energy-nvml");
    assert_eq!(json["plugins"][0]["sandbox"]["memory_mib"], 256);
}

#[test]
fn resolved_manifest_round_trips_through_toml() {
    let first = plan(
        "[experiment]\nmodel = \"m\"\ncycles = 2\n[plugins.gpu]\nplugin = \"nvml\"\ndevices = [0, 1]\n\
         [plugins.vllm]\nserved_model_name = \"q\"\nextra_args = { enforce_eager = true }\n\
         [plugins.vllm.sandbox]\nread = [\"/\"]\n",
    );
    let text = match first.to_toml_string() {
        Ok(t) => t,
        Err(e) => panic!("render failed: {e}"),
    };
    assert!(text.contains("plugin = \"energy-nvml\""), "{text}");
    let second = plan(&text);
    assert_eq!(second.experiment, first.experiment, "{text}");
    // The same things are granted; on the second reading they are the resolved
    // file's own `sandbox` lists (it sets `grant_paths = false`), so only the
    // key that granted them differs.
    let what = |p: &llem_manifest::Plan| -> Vec<Vec<(llem_manifest::GrantAccess, String)>> {
        p.plugins
            .iter()
            .map(|p| {
                p.grants
                    .iter()
                    .map(|g| (g.access, g.target.clone()))
                    .collect()
            })
            .collect()
    };
    assert_eq!(what(&second), what(&first), "{text}");
    let without_grants = |p: &llem_manifest::Plan| -> Vec<llem_manifest::PluginPlan> {
        p.plugins
            .iter()
            .map(|p| llem_manifest::PluginPlan {
                grants: Vec::new(),
                sandbox: llem_manifest::SandboxGrants {
                    grant_paths: true,
                    ..p.sandbox.clone()
                },
                ..p.clone()
            })
            .collect()
    };
    assert_eq!(without_grants(&second), without_grants(&first), "{text}");
}

#[test]
fn decoding_defaults_are_greedy_with_a_256_token_limit_and_no_seed() {
    let load = plan("[plugins.rapl]\n").load;
    assert_eq!(
        (load.temperature, load.top_p, load.seed, load.max_tokens),
        (0.0, 1.0, None, 256)
    );
    assert_eq!(load, llem_manifest::Load::default());
}

#[test]
fn decoding_keys_are_read_checked_and_round_trip() {
    let first = plan("[load]\ntemperature = 0.7\ntop_p = 0.9\nseed = 42\nmax_tokens = 64\n");
    let load = &first.load;
    assert_eq!(
        (load.temperature, load.top_p, load.seed, load.max_tokens),
        (0.7, 0.9, Some(42), 64)
    );
    let text = first.to_toml_string().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan(&text).load, first.load, "{text}");
    assert_eq!(
        only_error("[load]\ntemperature = -0.5\n"),
        "experiment.toml:2:15: `load.temperature` must be at least 0, found -0.5"
    );
    assert_eq!(
        only_error("[load]\ntop_p = 0\n"),
        "experiment.toml:2:9: `load.top_p` must be greater than 0 and at most 1, found 0"
    );
    assert!(only_error("[load]\ntop_p = 1.5\n").contains("`load.top_p` must be"));
    assert!(only_error("[load]\nmax_tokens = 0\n").contains("`load.max_tokens` must be"));
    assert!(only_error("[load]\nseed = -1\n").contains("`load.seed` must be"));
}
