//! Native plugins over the C ABI: a plugin written in C against
//! `sdk/include/llem_plugin.h` loads and works; wrong ABI versions, missing
//! files and libraries that are not plugins are refused with clear errors.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem::plugin::FailureKind;
use llem_integration_tests::{build_c_plugin, loader};
use llem_sdk::{OptionType, PluginKind};
use serde_json::{Map, Value, json};

fn config(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

#[test]
fn a_c_plugin_loads_describes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_c_plugin("energy_counter.c", &[], dir.path());
    let plugin = loader().load(&path).unwrap();
    assert_eq!(plugin.name(), "energy-c-counter");
    assert_eq!(plugin.kind(), PluginKind::Energy);
    assert_eq!(plugin.format(), llem::PluginFormat::Native);
    let option = &plugin.info().options[0];
    assert_eq!(
        (option.name.as_str(), option.ty),
        ("step_uj", OptionType::Integer)
    );
    assert_eq!(option.default, Some(json!(250)));

    let mut source = plugin
        .open_energy(&config(json!({"step_uj": 400_000})), &Sandbox::default())
        .unwrap();
    let devices = source.devices().to_vec();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].counter_wrap_uj, Some(1_000_000));
    assert!(!devices[1].has_energy_counter);
    assert_eq!(devices[1].power_average_window_ms, 1000);

    let mut out = Vec::new();
    for _ in 0..3 {
        source.read(&mut out).unwrap();
    }
    let counter: Vec<Option<u64>> = out
        .iter()
        .filter(|r| r.device == 0)
        .map(|r| r.energy_uj)
        .collect();
    // 400k, 800k, then wraps at 1M: 200k.
    assert_eq!(counter, [Some(400_000), Some(800_000), Some(200_000)]);
    let power: Vec<Option<u64>> = out
        .iter()
        .filter(|r| r.device == 1)
        .map(|r| r.power_mw)
        .collect();
    assert_eq!(power, [Some(42_000); 3]);
    assert!(
        out.iter()
            .filter(|r| r.device == 1)
            .all(|r| r.energy_uj.is_none())
    );
    assert!(source.telemetry().unwrap().is_empty());
}

#[test]
fn a_c_plugin_reports_errors_through_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_c_plugin("energy_counter.c", &[], dir.path());
    let plugin = loader().load(&path).unwrap();
    let err = plugin
        .open_energy(&config(json!({"step_uj": 0})), &Sandbox::default())
        .err()
        .unwrap();
    assert_eq!(err.kind, FailureKind::InvalidConfig);
    assert_eq!(err.key.as_deref(), Some("step_uj"));
    assert_eq!(
        err.to_string(),
        "plugin `energy-c-counter` (open): `step_uj`: must be a positive integer\n  fix: set step_uj = 250"
    );
}

#[test]
fn a_plugin_built_for_another_abi_version_is_refused_with_the_supported_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_c_plugin("energy_counter.c", &["LLEM_FIXTURE_ABI=99"], dir.path());
    let err = loader().load(&path).unwrap_err();
    assert_eq!(err.kind, FailureKind::Incompatible);
    assert!(
        err.message
            .contains("ABI version 99; this llem supports ABI version(s) 1"),
        "{err}"
    );
    assert!(err.plugin.ends_with(".so"), "names the file: {err}");
}

#[test]
fn a_library_with_only_a_newer_entry_point_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_c_plugin("newer_entry.c", &[], dir.path());
    let err = loader().load(&path).unwrap_err();
    assert_eq!(err.kind, FailureKind::NotAPlugin);
    assert!(err.message.contains("exports `llem_plugin_v2`"), "{err}");
    assert!(err.message.contains("native ABI versions 1"), "{err}");
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_c_plugin("not_a_plugin.c", &[], dir.path());
    let err = loader().load(&path).unwrap_err();
    assert_eq!(err.kind, FailureKind::NotAPlugin);
    assert!(
        err.message
            .contains("not an llem plugin: it has no `llem_plugin_v1` symbol"),
        "{err}"
    );
    assert!(err.hint.is_some());
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = loader()
        .load(std::path::Path::new("/nonexistent/libnothing.so"))
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::NotAPlugin);
    assert_eq!(err.plugin, "/nonexistent/libnothing.so");
    assert!(err.message.contains("cannot open"), "{err}");
    assert!(err.message.contains("No such file"), "{err}");
}
