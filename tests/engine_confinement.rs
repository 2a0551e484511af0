//! A backend's plan is untrusted: attacked from the plugin's side with
//! `backend-command` (a WASM backend that plans whatever it is told), `llem
//! run` must refuse programs the user did not allow, hand the engine only an
//! allow-listed environment, and confine it with Landlock to the run
//! directory and its temporary space — and `confinement = "none"` must relax
//! exactly that.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, output, plugin_dir, wasm_artifact};
use serde_json::Value;
use std::path::{Path, PathBuf};

const SECRET: &str = "hunter2-not-for-engines";

fn plugins() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
    ])
}

/// A manifest running `command` as an offline worker: the kernel starts it,
/// the worker exits without answering, and the run is written as incomplete
/// with the engine's stderr in `engine.log`.
fn manifest(dir: &Path, command: &[&str], sandbox: &str) -> PathBuf {
    std::fs::write(dir.join("prompts.jsonl"), "{\"prompt\": \"hi\"}\n").unwrap();
    let command = command
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[experiment]\nname = \"confined\"\nmodel = \"fake-model\"\nsample_interval_ms = 20\n\n\
         [plugins.fixture]\n\n\
         [plugins.jsonl]\nfile = \"prompts.jsonl\"\n\n\
         [plugins.command]\nmode = \"offline\"\ncommand = [{command}]\n\n\
         [plugins.command.sandbox]\n{sandbox}\n"
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `llem run` with a fake HOME holding a secret file, and a secret variable.
fn run(dir: &Path, manifest: &Path, home: &Path) -> (i32, String, String) {
    output(
        llem(plugins().path())
            .arg("run")
            .args(["--set", "measurement.baseline=off"])
            .arg(manifest)
            .arg("--output")
            .arg(dir.join("out"))
            .env("HOME", home)
            .env("SECRET", SECRET)
            .env("XDG_CACHE_HOME", home.join(".cache")),
    )
}

fn the_run(dir: &Path) -> Option<(PathBuf, Value)> {
    let run = std::fs::read_dir(dir.join("out/confined"))
        .ok()?
        .next()?
        .unwrap()
        .path();
    let text = std::fs::read_to_string(run.join("result.json")).ok()?;
    Some((run, serde_json::from_str(&text).unwrap()))
}

fn fake_home(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE-KEY-MATERIAL").unwrap();
    home
}

#[test]
fn a_plan_running_a_program_the_user_did_not_allow_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("cat /etc/passwd; echo $SECRET; touch {}", marker.display());
    let path = manifest(dir.path(), &["sh", "-c", &script], "");
    let (code, stdout, stderr) = run(dir.path(), &path, &fake_home(dir.path()));
    assert_ne!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("refused to start the engine")
            && stderr.contains("runs `sh`")
            && stderr.contains("programs")
            && stderr.contains("[plugins.command.sandbox]"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the refused program ran");
    let all = format!("{stdout}{stderr}");
    assert!(!all.contains(SECRET) && !all.contains("root:x:0"), "{all}");
}

#[test]
fn the_engine_gets_an_allow_listed_environment_only() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo \"secret=[$SECRET] path=[${PATH:+set}] home=[$HOME]\" >&2; exit 3";
    let path = manifest(dir.path(), &["sh", "-c", script], "programs = [\"sh\"]");
    let home = fake_home(dir.path());
    let (code, stdout, stderr) = run(dir.path(), &path, &home);
    assert_eq!(
        code, 4,
        "an engine that dies before it is ready makes a failed run (directory kept)\n{stdout}\n{stderr}"
    );
    let (run, result) = the_run(dir.path()).unwrap();
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    assert!(
        log.contains(&format!("secret=[] path=[set] home=[{}]", home.display())),
        "{log}"
    );
    let env = &result["backend"]["confinement"]["env"];
    let names: Vec<&str> = env
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"PATH") && names.contains(&"HOME"),
        "{names:?}"
    );
    assert!(!names.contains(&"SECRET"), "{names:?}");
}

#[test]
fn a_granted_variable_reaches_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo \"secret=[$SECRET]\" >&2; exit 3";
    let path = manifest(
        dir.path(),
        &["sh", "-c", script],
        "programs = [\"sh\"]\nengine_env = [\"SECRET\"]",
    );
    let (_, stdout, stderr) = run(dir.path(), &path, &fake_home(dir.path()));
    let (run, _) = the_run(dir.path()).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    assert!(log.contains(&format!("secret=[{SECRET}]")), "{log}");
}

/// Try to read the fake HOME's key, write outside the run directory, and
/// write inside it and in TMPDIR; report each on stderr.
fn probe_script(outside: &Path) -> String {
    format!(
        "cat \"$HOME/.ssh/id_ed25519\" >&2 && echo READ-HOME >&2; \
         echo x > {0}/pwned && echo WROTE-OUTSIDE >&2; \
         echo y > ./inside.txt && echo WROTE-RUN-DIR >&2; \
         echo z > \"$TMPDIR/t\" && echo WROTE-TMPDIR >&2; \
         cat /etc/hostname > /dev/null && echo READ-ETC >&2; \
         exit 3",
        outside.display()
    )
}

#[test]
fn a_confined_engine_writes_only_its_run_and_temp_directories_and_cannot_read_home() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let script = probe_script(&outside);
    let path = manifest(dir.path(), &["sh", "-c", &script], "programs = [\"sh\"]");
    let (_, stdout, stderr) = run(dir.path(), &path, &fake_home(dir.path()));
    let (run, result) = the_run(dir.path()).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    let confinement = &result["backend"]["confinement"];
    if llem::engine::landlock_abi().is_none() {
        eprintln!("Landlock is not available here: checking the notice only");
        assert_eq!(confinement["mode"], "unavailable", "{confinement}");
        assert!(stderr.contains("Landlock is not available"), "{stderr}");
        return;
    }
    assert_eq!(confinement["mode"], "landlock", "{confinement}");
    assert!(confinement["landlock_abi"].as_u64().unwrap() >= 1);
    // What it may do, it does (so the refusals below are the confinement's).
    assert!(log.contains("WROTE-RUN-DIR"), "{log}");
    assert!(log.contains("WROTE-TMPDIR"), "{log}");
    assert!(log.contains("READ-ETC"), "{log}");
    assert_eq!(
        std::fs::read_to_string(run.join("inside.txt")).unwrap(),
        "y\n"
    );
    // What it may not.
    assert!(
        !log.contains("PRIVATE-KEY-MATERIAL") && !log.contains("READ-HOME"),
        "{log}"
    );
    assert!(!log.contains("WROTE-OUTSIDE"), "{log}");
    assert!(!outside.join("pwned").exists());
    assert!(log.contains("Permission denied"), "{log}");
    assert!(
        stderr.contains("engine confined with Landlock")
            || stdout.contains("engine confined with Landlock"),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn confinement_none_relaxes_the_files_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let script = probe_script(&outside);
    let path = manifest(
        dir.path(),
        &["sh", "-c", &script],
        "programs = [\"sh\"]\nconfinement = \"none\"",
    );
    let (_, stdout, stderr) = run(dir.path(), &path, &fake_home(dir.path()));
    let (run, result) = the_run(dir.path()).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    assert_eq!(result["backend"]["confinement"]["mode"], "none");
    assert!(
        log.contains("PRIVATE-KEY-MATERIAL") && log.contains("WROTE-OUTSIDE"),
        "{log}"
    );
    assert!(stderr.contains("engine not confined"), "{stderr}");
}

#[test]
fn engine_read_grants_a_directory_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("weights.bin"), "WEIGHTS").unwrap();
    let script = format!("cat {}/weights.bin >&2; exit 3", data.display());
    let path = manifest(
        dir.path(),
        &["sh", "-c", &script],
        &format!(
            "programs = [\"sh\"]\nengine_read = [{:?}]",
            data.display().to_string()
        ),
    );
    let (_, stdout, stderr) = run(dir.path(), &path, &fake_home(dir.path()));
    let (run, result) = the_run(dir.path()).unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let log = std::fs::read_to_string(run.join("engine.log")).unwrap();
    assert!(log.contains("WEIGHTS"), "{log}");
    if llem::engine::landlock_abi().is_some() {
        let read = result["backend"]["confinement"]["read"].to_string();
        assert!(read.contains(&data.display().to_string()), "{read}");
    }
}

#[test]
fn plugins_inspect_says_what_a_backend_can_and_cannot_do() {
    let (code, stdout, stderr) =
        output(llem(plugins().path()).args(["plugins", "inspect", "command"]));
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "network: none unless granted (`connect = [\"host:port\"]` in [plugins.command.sandbox]",
        "engine programs: none unless `programs` in [plugins.command.sandbox] names them",
        "engine environment: llem's allow-list (PATH, HOME,",
        "never names with TOKEN, SECRET",
        "engine files (",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
