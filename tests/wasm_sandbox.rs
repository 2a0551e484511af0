//! Adversarial WASM plugins fail with a clear error naming the plugin, and the
//! kernel keeps running: after every attack, a well-behaved plugin still
//! loads and works in the same process.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::plugin::{FailureKind, PluginFailure};
use llem::{PluginLoader, Sandbox};
use llem_integration_tests::{loader, native_artifact, wasm_artifact, wasm_command};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

fn hostile(
    loader: &PluginLoader,
    attack: &str,
    target: &str,
    during: &str,
    sandbox: &Sandbox,
) -> PluginFailure {
    let plugin = loader.load(&wasm_artifact("energy-hostile")).unwrap();
    let cfg = match json!({"attack": attack, "target": target, "during": during}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let outcome = plugin
        .open_energy(&cfg, sandbox)
        .and_then(|mut source| source.read(&mut Vec::new()));
    let err = outcome.expect_err("the attack must fail");
    assert_eq!(
        err.plugin, "energy-hostile",
        "error names the plugin: {err}"
    );
    assert!(
        err.to_string().starts_with("plugin `energy-hostile`"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("SANDBOX LEAK"),
        "sandbox leaked: {err}"
    );
    still_works(loader);
    err
}

/// The kernel is unharmed: a good plugin loads and reads.
fn still_works(loader: &PluginLoader) {
    let plugin = loader.load(&wasm_artifact("energy-fixture")).unwrap();
    let cfg = match json!({"devices": 1, "step_uj": 5, "wrap_uj": 100}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let mut source = plugin.open_energy(&cfg, &Sandbox::default()).unwrap();
    let mut out = Vec::new();
    source.read(&mut out).unwrap();
    assert_eq!(out[0].energy_uj, Some(5));
}

#[test]
fn reading_an_ungranted_file_is_refused() {
    let loader = loader();
    let err = hostile(
        &loader,
        "read-file",
        "/etc/passwd",
        "read",
        &Sandbox::default(),
    );
    assert_eq!(err.call, "read");
    assert!(err.message.contains("reading /etc/passwd"), "{err}");
    assert!(!err.message.contains("root:"), "{err}");
}

#[test]
fn granted_directories_are_read_only_and_nothing_else_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let granted = dir.path().join("granted");
    let secret = dir.path().join("secret");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(granted.join("ok.txt"), "fine").unwrap();
    std::fs::write(secret.join("key.txt"), "hunter2").unwrap();
    let sandbox = Sandbox {
        read_dirs: vec![granted.clone()],
        ..Sandbox::default()
    };
    let loader = loader();
    // Reading the granted file works: the fixture reports what it read (as a "leak").
    let plugin = loader.load(&wasm_artifact("energy-hostile")).unwrap();
    let cfg = |attack: &str, target: &std::path::Path| match json!({"attack": attack, "target": target.to_str().unwrap(), "during": "read"})
    {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let err = plugin
        .open_energy(&cfg("read-file", &granted.join("ok.txt")), &sandbox)
        .and_then(|mut s| s.read(&mut Vec::new()))
        .unwrap_err();
    assert!(
        err.message.contains("read 4 bytes: fine"),
        "granted file readable: {err}"
    );
    // A sibling directory, or escaping with `..`, is not.
    hostile(
        &loader,
        "read-file",
        secret.join("key.txt").to_str().unwrap(),
        "read",
        &sandbox,
    );
    let escape = granted.join("../secret/key.txt");
    hostile(
        &loader,
        "read-file",
        escape.to_str().unwrap(),
        "read",
        &sandbox,
    );
    // The read-only grant cannot be written.
    let err = hostile(
        &loader,
        "write-file",
        granted.join("new.txt").to_str().unwrap(),
        "read",
        &sandbox,
    );
    assert!(
        matches!(err.kind, FailureKind::PermissionDenied | FailureKind::Io),
        "{err:?}"
    );
    assert!(!granted.join("new.txt").exists());
}

#[test]
fn environment_variables_are_not_inherited_unless_granted() {
    // PATH is in every test process's environment. Setting a variable of our
    // own instead would race with the other tests of this binary, which read
    // the environment from their threads (spawning processes).
    let secret = std::env::var("PATH").expect("PATH is set for tests");
    let loader = loader();
    let err = hostile(&loader, "read-env", "PATH", "read", &Sandbox::default());
    assert_eq!(err.kind, FailureKind::Unavailable);
    assert!(err.message.contains("PATH"), "{err}");
    assert!(!err.message.contains(&secret));
    // Granted by name, it is visible (the fixture then reports it as a leak).
    let plugin = loader.load(&wasm_artifact("energy-hostile")).unwrap();
    let cfg = match json!({"attack": "read-env", "target": "PATH", "during": "read"}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let sandbox = Sandbox {
        env: vec!["PATH".into()],
        ..Sandbox::default()
    };
    let err = plugin
        .open_energy(&cfg, &sandbox)
        .unwrap()
        .read(&mut Vec::new())
        .unwrap_err();
    assert!(err.message.contains(&format!("PATH={secret}")), "{err}");
}

#[test]
fn an_infinite_loop_is_interrupted_at_the_deadline() {
    let loader = loader();
    let sandbox = Sandbox {
        call_timeout: Duration::from_millis(300),
        ..Sandbox::default()
    };
    for during in ["open", "read"] {
        let started = Instant::now();
        let err = hostile(&loader, "loop", "", during, &sandbox);
        let elapsed = started.elapsed();
        assert_eq!(err.kind, FailureKind::Deadline, "{err}");
        assert_eq!(err.call, during);
        assert!(err.message.contains("300 ms deadline"), "{err}");
        assert!(
            err.hint
                .as_deref()
                .unwrap_or("")
                .contains("call_timeout_ms"),
            "{err:?}"
        );
        // Never early; late by one 50 ms epoch tick at most for `open`, by up
        // to the idle tick (1 s) for the inline `read`, which does not wake
        // the ticker (plugin/wasm/ticker.rs); plus slack for a loaded CI machine.
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let loader = loader();
    let sandbox = Sandbox {
        memory_bytes: 64 << 20,
        ..Sandbox::default()
    };
    let err = hostile(&loader, "memory-bomb", "", "read", &sandbox);
    assert_eq!(err.kind, FailureKind::MemoryLimit, "{err}");
    assert!(err.message.contains("cap of 64 MiB"), "{err}");
    assert!(err.hint.as_deref().unwrap_or("").contains("memory_mib"));
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let loader = loader();
    for during in ["open", "read"] {
        let err = hostile(&loader, "panic", "", during, &Sandbox::default());
        assert_eq!(err.kind, FailureKind::Crashed, "{err}");
        assert!(
            err.message.contains("hostile plugin panicked on purpose"),
            "{err}"
        );
    }
}

#[test]
fn an_instance_that_trapped_is_not_entered_again() {
    let loader = loader();
    let plugin = loader.load(&wasm_artifact("energy-hostile")).unwrap();
    let cfg = match json!({"attack": "panic", "target": "", "during": "read"}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let mut source = plugin.open_energy(&cfg, &Sandbox::default()).unwrap();
    assert_eq!(
        source.read(&mut Vec::new()).unwrap_err().kind,
        FailureKind::Crashed
    );
    let again = source.read(&mut Vec::new()).unwrap_err();
    assert!(
        again.message.contains("after an earlier failure"),
        "{again}"
    );
}

#[test]
fn a_component_exporting_another_world_is_refused() {
    let path = wasm_command("not-a-plugin");
    let err = loader().load(&path).unwrap_err();
    assert_eq!(err.kind, FailureKind::NotAPlugin, "{err}");
    assert!(
        err.plugin.ends_with("not-a-plugin.wasm"),
        "names the file: {err}"
    );
    assert!(err.message.contains("not an llem plugin"), "{err}");
    assert!(
        err.message.contains("wasi:cli/run"),
        "says what it exports: {err}"
    );
    still_works(&loader());
}

#[test]
fn a_component_built_for_another_wit_major_is_refused() {
    let err = loader().load(&wasm_artifact("future-wit")).unwrap_err();
    assert_eq!(err.kind, FailureKind::Incompatible, "{err}");
    assert!(err.message.contains("llem:plugin@1.0.0"), "{err}");
    assert!(
        err.message.contains("this llem hosts llem:plugin@0.1.x"),
        "{err}"
    );
    still_works(&loader());
}

#[test]
fn a_plugin_built_before_energy_topology_loads_with_top_level_devices() {
    // Built against llem:plugin@0.1.0 alone: no `energy-topology` export.
    let plugin = loader().load(&wasm_artifact("energy-v010")).unwrap();
    let mut source = plugin
        .open_energy(&Map::new(), &Sandbox::default())
        .unwrap_or_else(|e| panic!("open: {e}"));
    let devices = source.devices().to_vec();
    assert_eq!(devices.len(), 2);
    assert!(
        devices
            .iter()
            .all(|d| d.parent.is_none() && d.max_power_w.is_none())
    );
    let mut readings = Vec::new();
    source.read(&mut readings).unwrap();
    assert_eq!(readings.len(), 2);
    // Nothing says the core is inside the package: both count, as before.
    let config = llem::sampler::SourceConfig {
        name: "old".into(),
        interval: Duration::from_secs(3600),
        telemetry_interval: Duration::ZERO,
    };
    let sampler = llem::sampler::Sampler::start(vec![(config, source)]).unwrap();
    sampler.sync(Duration::from_secs(60));
    sampler.begin_window("w");
    sampler.sync(Duration::from_secs(60));
    let window = sampler.end_window("w").unwrap();
    assert!(window.devices.iter().all(|d| d.in_total));
    assert_eq!(
        window.total_includes(),
        ["old/package-0", "old/package-0-core"]
    );
}

#[test]
fn garbage_and_core_modules_are_not_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0this is not a component").unwrap();
    let err = loader().load(&garbage).unwrap_err();
    assert_eq!(err.kind, FailureKind::NotAPlugin);
    assert!(
        err.message.contains("not a valid WebAssembly component"),
        "{err}"
    );
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let err = loader().load(&text).unwrap_err();
    assert!(
        err.message
            .contains("neither a WebAssembly component nor a shared library"),
        "{err}"
    );
    let _ = Map::<String, Value>::new();
}

#[test]
fn compiled_components_are_cached_and_a_corrupt_entry_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let wasm = wasm_artifact("energy-fixture");
    let first = Instant::now();
    llem_integration_tests::fresh_loader(&cache)
        .load(&wasm)
        .unwrap();
    let cold = first.elapsed();
    // One compiled entry, and its seal (tests/wasm_grants.rs attacks both).
    let mut files: Vec<_> = std::fs::read_dir(cache.join("components"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "one compiled entry and its seal: {files:?}");
    let entry = files[0].clone();
    assert!(entry.extension().is_some_and(|e| e == "cwasm"), "{entry:?}");
    assert!(files[1].to_string_lossy().ends_with(".cwasm.sha256"));
    // Opened, not just loaded: a load whose description is cached (the
    // describe cache) does not load the code, and so not the compiled entry.
    let load_code = || {
        let config = match json!({"devices": 1, "step_uj": 1000, "wrap_uj": 1u64 << 32}) {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        llem_integration_tests::fresh_loader(&cache)
            .load(&wasm)
            .unwrap()
            .open_energy(&config, &Sandbox::default())
            .unwrap();
    };
    let second = Instant::now();
    load_code();
    let warm = second.elapsed();
    assert!(
        warm < cold,
        "cache hit ({warm:?}) must beat a compile ({cold:?})"
    );
    std::fs::write(&entry, b"corrupt").unwrap();
    load_code();
    assert!(
        std::fs::metadata(&entry).unwrap().len() > 1000,
        "corrupt entry replaced"
    );
    // Native plugins never touch the component cache.
    llem_integration_tests::fresh_loader(&cache)
        .load(&native_artifact("energy-fixture"))
        .unwrap();
}

#[test]
fn deadlines_hold_after_the_loader_is_gone() {
    let plugin = loader().load(&wasm_artifact("energy-hostile")).unwrap();
    // The loader (and its WASM host) is dropped here; the plugin lives on.
    let cfg = match json!({"attack": "loop", "target": "", "during": "read"}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    let sandbox = Sandbox {
        call_timeout: Duration::from_millis(200),
        ..Sandbox::default()
    };
    let mut source = plugin.open_energy(&cfg, &sandbox).unwrap();
    let started = Instant::now();
    let err = source.read(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `energy-flat-hostile` opened with `attack`.
fn flat_source(loader: &PluginLoader, attack: &str) -> Box<dyn llem::plugin::EnergyInstance> {
    let plugin = loader.load(&wasm_artifact("energy-flat-hostile")).unwrap();
    let cfg = match json!({ "attack": attack }) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    plugin
        .open_energy(&cfg, &Sandbox::default())
        .unwrap_or_else(|e| panic!("open: {e}"))
}

#[test]
fn the_flat_read_is_what_the_kernel_reads_when_a_plugin_exports_it() {
    // `source.read` says 1 J per read, `read-flat` 2 J: the sampler's read is
    // the flat one (energy-v010 above covers a plugin without it).
    let loader = loader();
    let mut source = flat_source(&loader, "double");
    let mut out = Vec::new();
    source.read(&mut out).unwrap();
    source.read(&mut out).unwrap();
    let energy: Vec<_> = out
        .iter()
        .map(|r| (r.device, r.energy_uj, r.power_mw))
        .collect();
    assert_eq!(
        energy,
        [(0, Some(2_000_000), None), (0, Some(4_000_000), None)]
    );
    // A device the plugin does not have passes as read: the sampler drops it
    // (kernel/src/sampler/tests.rs, "unknown device index").
    let mut out = Vec::new();
    flat_source(&loader, "unknown-device")
        .read(&mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].device, 7);
}

#[test]
fn a_malformed_flat_read_is_the_plugins_fault_and_nothing_of_it_is_kept() {
    let loader = loader();
    for (attack, says) in [
        ("odd-length", "5 numbers, not a multiple of four"),
        ("bad-bits", "unknown presence bits 0x4"),
        ("huge-device", "device index 4294967296, above u32"),
        ("too-many", "a reading list of 5000, more than the 4096"),
    ] {
        let mut source = flat_source(&loader, attack);
        let mut out = Vec::new();
        let err = source.read(&mut out).unwrap_err();
        assert_eq!(err.plugin, "energy-flat-hostile", "{err}");
        assert_eq!((err.call, err.kind), ("read", FailureKind::Other), "{err}");
        assert!(err.message.contains(says), "{attack}: {err}");
        assert!(
            err.hint
                .as_deref()
                .is_some_and(|h| h.contains("fault of the plugin")),
            "{err}"
        );
        assert!(out.is_empty(), "{attack}: kept {out:?}");
    }
    // A trap inside read-flat is a crash, reported with its message.
    let err = flat_source(&loader, "panic")
        .read(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Crashed, "{err}");
    assert!(
        err.message.contains("read-flat panicked on purpose"),
        "{err}"
    );
    still_works(&loader);
}
