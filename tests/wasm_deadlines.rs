//! Deadlines that fire while a plugin blocks outside its own code: fixtures
//! that sleep (`wasi:clocks`) or read a FIFO nobody writes
//! (`wasi:filesystem`) in describe, open, load, plan and write. Each call must
//! come back with a deadline error by its deadline plus a small margin, the
//! instance must be poisoned, and `llem plugins list` / `llem env` must finish
//! with such a file on the plugin path.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem::Sandbox;
use llem::plugin::{FailureKind, PluginFailure};
use llem_integration_tests::{llem, loader, output, plugin_dir, wasm_artifact};
use llem_sdk::{LoadRequest, PlanRequest, ResultDocument};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_millis(400);
/// The kernel waits deadline + 2 epoch ticks + 100 ms (300 ms in all); a
/// little more for a busy CI machine.
const MARGIN: Duration = Duration::from_millis(1500);

/// A fixture's configuration with every option filled (as the manifest would).
fn cfg(value: Value) -> Map<String, Value> {
    let mut map = match json!({"stall": "none", "how": "sleep", "target": "", "connect": ""}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    if let Value::Object(given) = value {
        map.extend(given);
    }
    map
}

/// A FIFO nobody will ever write, in a directory of its own (granted).
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("never-written");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a plain mkfifo(3) on a fresh path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    path
}

fn sandbox(dir: &Path) -> Sandbox {
    Sandbox {
        read_dirs: vec![dir.to_owned()],
        call_timeout: DEADLINE,
        ..Sandbox::default()
    }
}

/// `f` fails with a deadline error of `call`, in time.
fn expect_deadline<T>(what: &str, call: &str, f: impl FnOnce() -> Result<T, PluginFailure>) {
    let started = Instant::now();
    let err = match f() {
        Ok(_) => panic!("{what}: the blocked call returned"),
        Err(e) => e,
    };
    let took = started.elapsed();
    assert_eq!(err.kind, FailureKind::Deadline, "{what}: {err}");
    assert_eq!(err.call, call, "{what}: {err}");
    assert!(err.message.contains("400 ms deadline"), "{what}: {err}");
    assert!(took >= DEADLINE, "{what}: gave up early after {took:?}");
    assert!(took < DEADLINE + MARGIN, "{what}: took {took:?}");
}

fn plan_request() -> PlanRequest {
    PlanRequest {
        model: "m".into(),
        host: "127.0.0.1".into(),
        port: 1,
        run_dir: "/nonexistent".into(),
    }
}

fn load_request() -> LoadRequest {
    LoadRequest {
        model: "m".into(),
        tokenizer_path: None,
        seed: 0,
        limit: None,
    }
}

#[test]
fn open_load_plan_and_write_end_by_their_deadline_when_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo(dir.path());
    let sandbox = sandbox(dir.path());
    let loader = loader();
    let backend = loader.load(&wasm_artifact("backend-stall")).unwrap();
    let dataset = loader.load(&wasm_artifact("dataset-stall")).unwrap();
    let sink = loader.load(&wasm_artifact("sink-stall")).unwrap();
    for how in ["sleep", "fifo"] {
        let config = |stall: &str| {
            cfg(
                json!({"stall": stall, "how": how, "target": fifo.to_str().unwrap(), "connect": ""}),
            )
        };
        expect_deadline(&format!("backend open ({how})"), "open", || {
            backend.open_backend(&config("open"), &sandbox)
        });
        expect_deadline(&format!("dataset open ({how})"), "open", || {
            dataset.open_dataset(&config("open"), &sandbox)
        });
        expect_deadline(&format!("sink open ({how})"), "open", || {
            sink.open_sink(&config("open"), &sandbox)
        });

        let mut planner = backend.open_backend(&config("plan"), &sandbox).unwrap();
        expect_deadline(&format!("plan ({how})"), "plan", || {
            planner.plan(&plan_request())
        });
        // Poisoned: the next call fails at once, naming the earlier failure.
        let started = Instant::now();
        let again = planner.plan(&plan_request()).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(again.message.contains("earlier failure"), "{again}");
        assert!(again.message.contains("deadline"), "{again}");

        let mut loading = dataset.open_dataset(&config("load"), &sandbox).unwrap();
        expect_deadline(&format!("load ({how})"), "load", || {
            loading.load(&load_request())
        });

        let mut writing = sink.open_sink(&config("write"), &sandbox).unwrap();
        expect_deadline(&format!("write ({how})"), "write-result", || {
            writing.write_result(&ResultDocument {
                schema_version: "0".into(),
                run_id: "r".into(),
                json: "{}".into(),
            })
        });
        // Dropping a poisoned instance does not wait for it either.
        let started = Instant::now();
        drop((planner, loading, writing));
        assert!(started.elapsed() < Duration::from_millis(200));
    }
}

#[test]
fn calls_that_do_not_block_still_work_through_the_bounded_path() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = sandbox(dir.path());
    let loader = loader();
    let dataset = loader.load(&wasm_artifact("dataset-stall")).unwrap();
    let mut d = dataset.open_dataset(&cfg(json!({})), &sandbox).unwrap();
    for _ in 0..3 {
        let prompts = d.load(&load_request()).unwrap();
        assert_eq!(prompts.len(), 1);
    }
    let backend = loader.load(&wasm_artifact("backend-stall")).unwrap();
    let mut b = backend.open_backend(&cfg(json!({})), &sandbox).unwrap();
    assert_eq!(b.plan(&plan_request()).unwrap().program, "true");
}

#[test]
fn a_plugin_that_blocks_in_describe_fails_to_load_in_time() {
    // The first load also compiles the component (seconds in debug builds, on
    // a busy machine); the second, from the cache, is the one timed.
    let _ = loader().load(&wasm_artifact("energy-slow-describe"));
    let started = Instant::now();
    let err = loader()
        .load(&wasm_artifact("energy-slow-describe"))
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
    assert_eq!(err.call, "describe", "{err}");
    // describe runs under the default 5 s deadline.
    assert!(took < Duration::from_secs(5) + MARGIN, "{took:?}");
}

#[test]
fn plugins_list_and_env_finish_with_a_blocking_file_on_the_path() {
    let plugins = plugin_dir(&[
        wasm_artifact("energy-slow-describe"),
        wasm_artifact("energy-fixture"),
    ]);
    let _ = loader().load(&wasm_artifact("energy-slow-describe")); // compiled into the shared cache
    for args in [&["plugins", "list"][..], &["env"][..]] {
        let started = Instant::now();
        let (_, stdout, stderr) = output(llem(plugins.path()).args(args));
        let took = started.elapsed();
        // The fixture sleeps an hour; the bound is loose because the command
        // also compiles (debug Cranelift, busy CI) every plugin next to llem
        // that is not in the cache yet.
        assert!(took < Duration::from_secs(120), "{args:?} took {took:?}");
        let all = format!("{stdout}{stderr}");
        assert!(all.contains("energy-slow-describe"), "{args:?}: {all}");
        assert!(all.contains("deadline"), "{args:?}: {all}");
        assert!(all.contains("fixture"), "{args:?}: {all}");
    }
}
