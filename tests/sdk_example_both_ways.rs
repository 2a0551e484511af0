//! The same plugin source, built as a WASM component and as a native library,
//! loads through the kernel and gives identical results.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::{PluginFormat, Sandbox};
use llem_integration_tests::{fresh_loader, native_artifact, wasm_artifact};
use llem_sdk::{LoadRequest, PluginKind, PromptBody, Reading};
use serde_json::{Map, Value, json};

fn config(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test configs are objects"),
    }
}

#[test]
fn dataset_jsonl_gives_identical_prompts_as_wasm_and_native() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prompts.jsonl");
    std::fs::write(
        &data,
        concat!(
            "{\"id\": \"a\", \"prompt\": \"Explain RAPL in one line.\"}\n",
            "\n",
            "{\"id\": \"b\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n",
            "{\"id\": 7, \"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}\n",
            "{\"id\": \"d\", \"text\": \"plain text\"}\n",
        ),
    )
    .unwrap();
    let loader = fresh_loader(&dir.path().join("cache"));
    let wasm = loader.load(&wasm_artifact("dataset-jsonl")).unwrap();
    let native = loader.load(&native_artifact("dataset-jsonl")).unwrap();
    assert_eq!(wasm.format(), PluginFormat::Wasm);
    assert_eq!(native.format(), PluginFormat::Native);
    assert_eq!(wasm.info(), native.info(), "describe() must agree");
    assert_eq!(wasm.kind(), PluginKind::Dataset);

    let cfg = config(json!({
        "file": data.to_str().unwrap(),
        "prompt_field": "auto",
        "id_field": "id",
        "max_output_tokens": 64,
        "shuffle": true,
    }));
    let sandbox = Sandbox {
        read_dirs: vec![dir.path().to_owned()],
        ..Sandbox::default()
    };
    let request = LoadRequest {
        model: "tiny".into(),
        tokenizer_path: None,
        seed: 42,
        limit: Some(3),
    };
    let from_wasm = wasm
        .open_dataset(&cfg, &sandbox)
        .unwrap()
        .load(&request)
        .unwrap();
    let from_native = native
        .open_dataset(&cfg, &sandbox)
        .unwrap()
        .load(&request)
        .unwrap();
    assert_eq!(from_wasm, from_native);
    assert_eq!(from_wasm.len(), 3, "limit applies after shuffling");

    // Unshuffled, the content is exactly what the file says.
    let mut cfg = cfg;
    cfg.insert("shuffle".into(), json!(false));
    let all = native
        .open_dataset(&cfg, &sandbox)
        .unwrap()
        .load(&LoadRequest {
            limit: None,
            ..request
        })
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "7", "d"]);
    assert_eq!(
        all[0].body,
        PromptBody::Text("Explain RAPL in one line.".into())
    );
    match &all[2].body {
        PromptBody::Chat(turns) => {
            assert_eq!(turns[0].role, "user");
            assert_eq!(turns[1].role, "assistant");
            assert_eq!(turns[1].content, "A");
        }
        other => panic!("expected chat, got {other:?}"),
    }
    assert!(all.iter().all(|p| p.max_output_tokens == Some(64)));
}

#[test]
fn energy_fixture_gives_identical_readings_as_wasm_and_native() {
    let loader = llem_integration_tests::loader();
    let cfg = config(json!({"devices": 3, "step_uj": 700, "wrap_uj": 2000}));
    let mut readings = Vec::new();
    for path in [
        wasm_artifact("energy-fixture"),
        native_artifact("energy-fixture"),
    ] {
        let plugin = loader.load(&path).unwrap();
        let mut source = plugin.open_energy(&cfg, &Sandbox::default()).unwrap();
        assert_eq!(source.devices().len(), 3);
        assert_eq!(source.devices()[2].counter_wrap_uj, Some(2000));
        let mut all: Vec<Reading> = Vec::new();
        for _ in 0..4 {
            source.read(&mut all).unwrap();
        }
        let telemetry = source.telemetry().unwrap();
        assert_eq!(telemetry[0].metrics[0].value, 4.0);
        readings.push(all);
    }
    assert_eq!(readings[0], readings[1]);
    // Device 1 steps by 1400 and wraps at 2000: 1400, 800, 200, 1600.
    let device1: Vec<u64> = readings[0]
        .iter()
        .filter(|r| r.device == 1)
        .map(|r| r.energy_uj.unwrap())
        .collect();
    assert_eq!(device1, [1400, 800, 200, 1600]);
}

#[test]
fn plugin_errors_carry_key_and_plugin_name_both_ways() {
    let loader = llem_integration_tests::loader();
    let cfg = config(json!({"devices": 0, "step_uj": 1, "wrap_uj": 10}));
    for path in [
        wasm_artifact("energy-fixture"),
        native_artifact("energy-fixture"),
    ] {
        let plugin = loader.load(&path).unwrap();
        let err = plugin.open_energy(&cfg, &Sandbox::default()).err().unwrap();
        assert_eq!(err.kind, llem::plugin::FailureKind::InvalidConfig);
        assert_eq!(err.key.as_deref(), Some("devices"));
        assert_eq!(
            err.to_string(),
            "plugin `energy-fixture` (open): `devices`: must be between 1 and 64"
        );
    }
}

#[test]
fn a_plugin_of_one_kind_cannot_be_opened_as_another() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = fresh_loader(dir.path())
        .load(&wasm_artifact("energy-fixture"))
        .unwrap();
    let err = plugin
        .open_dataset(&Map::new(), &Sandbox::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, llem::plugin::FailureKind::WrongKind);
    assert!(
        err.to_string()
            .contains("is an energy plugin, not a dataset plugin"),
        "{err}"
    );
}
