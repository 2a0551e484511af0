//! `llem` when things go wrong around it: Ctrl-C while an engine starts,
//! engines that fail to start, a wrong Python, a model path that is not
//! there, load options a server refuses, a reader that goes away early, and
//! a help text for every command.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, output, plugin_dir, wasm_artifact};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn plugins() -> tempfile::TempDir {
    plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
    ])
}

/// A manifest in `dir`: the fixture energy source, two prompts, and `backend`
/// (a whole `[plugins.…]` table and anything after it).
fn manifest(dir: &Path, model: &str, backend: &str) -> PathBuf {
    std::fs::write(
        dir.join("prompts.jsonl"),
        "{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\n",
    )
    .unwrap();
    let text = format!(
        "[experiment]\nname = \"robust\"\nmodel = \"{model}\"\nsample_interval_ms = 20\n\n\
         [plugins.fixture]\n\n\
         [plugins.jsonl]\nfile = \"prompts.jsonl\"\nmax_output_tokens = 4\n\n{backend}\n"
    );
    let path = dir.join("experiment.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A `backend-command` table running `script` with `sh -c`, in `mode`.
fn sh_backend(mode: &str, script: &str) -> String {
    format!(
        "[plugins.command]\nmode = \"{mode}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n\
         sandbox = {{ programs = [\"sh\"] }}\n"
    )
}

fn start(plugins: &Path, manifest: &Path, out: &Path) -> Child {
    llem(plugins)
        .arg("run")
        .args(["--set", "measurement.baseline=off"])
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run_to_end(plugins: &Path, manifest: &Path, out: &Path) -> (i32, String, String) {
    output(
        llem(plugins)
            .arg("run")
            .args(["--set", "measurement.baseline=off"])
            .arg(manifest)
            .arg("--output")
            .arg(out),
    )
}

/// The only run directory under `out`, if one was kept.
fn the_run(out: &Path) -> Option<PathBuf> {
    let mut runs = std::fs::read_dir(out.join("robust")).ok()?;
    Some(runs.next()?.unwrap().path())
}

fn result(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap()
}

/// Pids of the processes of group `pgid` still running (zombies excluded:
/// they are gone but for a reaper), read from /proc independently of llem.
fn group_members(pgid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z"
        })
        .collect()
}

/// Wait until `path` exists (the engine wrote it) and return its number.
fn wait_for_number(path: &Path, child: &mut Child) -> i32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(n) = text.trim().parse()
        {
            return n;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "llem ended before the engine wrote {}",
            path.display()
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: plain kill(2) on our own child.
    unsafe { kill(child.id() as i32, signal) };
}

unsafe extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

const SIGINT: i32 = 2;

/// An engine that "loads" for 30 s and has started a child of its own.
const SLOW_ENGINE: &str = "echo $$ > engine.pgid; sleep 30 & sleep 30";

/// SIGINT 1 s into the start-up of an engine in `mode`: llem ends within 2 s
/// with 130, keeps the run directory marked `interrupted`, and no process of
/// the engine's group is left.
fn interrupt_start_up(mode: &str) {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(dir.path(), "fake-model", &sh_backend(mode, SLOW_ENGINE));
    let mut child = start(plugins.path(), &path, dir.path());
    let out = dir.path().join("robust");
    let pgid = loop {
        if let Some(run) = the_run(dir.path()) {
            break wait_for_number(&run.join("engine.pgid"), &mut child);
        }
        assert!(child.try_wait().unwrap().is_none(), "llem ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        group_members(pgid).len() >= 2,
        "the engine and its child run"
    );
    std::thread::sleep(Duration::from_secs(1));
    let sent = Instant::now();
    signal(&child, SIGINT);
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        took < Duration::from_secs(2),
        "{mode}: took {took:?}\n{stderr}"
    );
    assert_eq!(status.code(), Some(130), "{mode}: {stderr}");
    let run = the_run(dir.path()).expect("the run directory is kept");
    assert!(run.starts_with(&out));
    assert_eq!(result(&run)["status"], "interrupted", "{mode}: {stderr}");
    assert!(run.join("engine.log").exists());
    assert_eq!(
        group_members(pgid),
        Vec::<i32>::new(),
        "{mode}: no process of the engine's group is left"
    );
}

#[test]
fn ctrl_c_while_a_server_starts_ends_the_run_at_once() {
    interrupt_start_up("server");
}

#[test]
fn ctrl_c_while_a_worker_loads_its_model_ends_the_run_at_once() {
    interrupt_start_up("offline");
}

#[test]
fn a_second_ctrl_c_kills_an_engine_that_ignores_sigterm() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    // SIGTERM ignored by the engine and (inherited) by its child: the first
    // Ctrl-C's teardown would wait out its whole grace.
    let script = format!("trap '' TERM; {SLOW_ENGINE}");
    let path = manifest(dir.path(), "fake-model", &sh_backend("server", &script));
    let mut child = start(plugins.path(), &path, dir.path());
    let pgid = loop {
        if let Some(run) = the_run(dir.path()) {
            break wait_for_number(&run.join("engine.pgid"), &mut child);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first Ctrl-C waits for the engine's grace"
    );
    let sent = Instant::now();
    signal(&child, SIGINT);
    let status = child.wait().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert_eq!(group_members(pgid), Vec::<i32>::new(), "nothing is left");
    let run = the_run(dir.path()).unwrap();
    assert_eq!(result(&run)["status"], "interrupted");
}

#[test]
fn a_failed_start_up_keeps_the_run_directory_and_names_engine_log() {
    let plugins = plugins();
    for mode in ["server", "offline"] {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo 'loading failed: out of memory' >&2; exit 3";
        let path = manifest(dir.path(), "fake-model", &sh_backend(mode, script));
        // -v: the kernel's own log lines go to stderr too (and carry no
        // colour codes, stderr being a pipe, whatever NO_COLOR says).
        let out = llem(plugins.path())
            .env_remove("NO_COLOR")
            .args(["-v", "run", "--set", "measurement.baseline=off"])
            .arg(&path)
            .arg("--output")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{mode}: {stderr}");
        let run = the_run(dir.path()).expect("the run directory is kept");
        let log = run.join("engine.log");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out of memory"), "{text}");
        assert_eq!(result(&run)["status"], "failed");
        assert!(
            stderr.contains(&log.display().to_string()),
            "{mode}: the error names {}: {stderr}",
            log.display()
        );
        assert!(stderr.contains("engine started"), "-v logs: {stderr}");
        assert!(!stderr.contains("\x1b["), "no ANSI codes: {stderr:?}");
    }
}

/// An executable `python3` in `dir` that has no torch.
fn python_without_torch(dir: &Path) -> PathBuf {
    let path = dir.join("python3");
    std::fs::write(
        &path,
        "#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n\
         echo \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    path
}

#[test]
fn a_python_without_torch_is_told_to_set_the_backends_python() {
    let plugins = plugins();
    for mode in ["offline", "server"] {
        let dir = tempfile::tempdir().unwrap();
        let python = python_without_torch(dir.path());
        let backend = format!(
            "[plugins.pytorch]\nmode = \"{mode}\"\npython = {:?}\n",
            python.display().to_string()
        );
        let path = manifest(dir.path(), "org/tiny-model", &backend);
        let (code, stdout, stderr) = run_to_end(plugins.path(), &path, dir.path());
        assert_eq!(code, 4, "{mode}: {stderr}\n{stdout}");
        assert!(stderr.contains("No module named 'torch'"), "{stderr}");
        assert!(
            stderr.contains("set `pytorch.python`")
                && stderr.contains("python = \"/path/to/venv/bin/python\""),
            "{mode}: says which key to set: {stderr}"
        );
        assert!(the_run(dir.path()).unwrap().join("engine.log").exists());
    }
}

#[test]
fn a_missing_local_model_is_refused_before_anything_starts() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let python = python_without_torch(dir.path());
    let backend = format!(
        "[plugins.pytorch]\npython = {:?}\n",
        python.display().to_string()
    );
    let missing = dir.path().join("models/not-downloaded");
    let path = manifest(dir.path(), &missing.display().to_string(), &backend);
    let (code, _, stderr) = run_to_end(plugins.path(), &path, dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("experiment.model") && stderr.contains("no such local directory"),
        "{stderr}"
    );
    assert!(the_run(dir.path()).is_none(), "no engine, no run directory");
}

#[test]
fn ignore_eos_is_refused_for_transformers_serve_by_key() {
    let plugins = plugins();
    let dir = tempfile::tempdir().unwrap();
    let python = python_without_torch(dir.path());
    let backend = format!(
        "[plugins.pytorch]\nmode = \"server\"\npython = {:?}\n\n[load]\nignore_eos = true\n",
        python.display().to_string()
    );
    let path = manifest(dir.path(), "org/tiny-model", &backend);
    let (code, _, stderr) = run_to_end(plugins.path(), &path, dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("load.ignore_eos") && stderr.contains("backend `pytorch`"),
        "{stderr}"
    );
    assert!(
        the_run(dir.path()).is_none(),
        "refused before the engine started"
    );
    // The offline worker honours it: the same options pass planning there
    // (and fail later, at the fake Python).
    let backend = backend.replace("mode = \"server\"", "mode = \"offline\"");
    let path = manifest(dir.path(), "org/tiny-model", &backend);
    let (code, _, stderr) = run_to_end(plugins.path(), &path, dir.path());
    assert_eq!(code, 4, "{stderr}");
    assert!(!stderr.contains("load.ignore_eos"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_early_is_not_a_panic() {
    let plugins = plugins();
    for args in [
        &["plugins", "list", "--json"][..],
        &["plugins", "list"],
        &["env", "--json"],
        &["env"],
        &["config", "default"],
        &["--help"],
        &["completions", "bash"],
    ] {
        let mut child = llem(plugins.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -c 0`: the pipe's only reader is gone before llem writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Commands listed under "Commands:" in a help text, with their descriptions.
fn commands(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim_start();
            let (name, rest) = l.split_once(' ').unwrap_or((l, ""));
            (name != "help").then(|| (name.to_owned(), rest.trim().to_owned()))
        })
        .collect()
}

#[test]
fn every_command_and_subcommand_has_a_description() {
    let dir = tempfile::tempdir().unwrap();
    let (code, top, _) = output(llem(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    let mut pending: Vec<(Vec<String>, String, String)> = commands(&top)
        .into_iter()
        .map(|(name, about)| (vec![name.clone()], name, about))
        .collect();
    assert!(pending.len() >= 6, "{top}");
    let mut seen = 0;
    while let Some((path, name, about)) = pending.pop() {
        seen += 1;
        assert!(
            !about.is_empty(),
            "`llem {}` has no description",
            path.join(" ")
        );
        let (code, help, _) = output(llem(dir.path()).args(&path).arg("--help"));
        assert_eq!(code, 0, "{name}");
        for (sub, about) in commands(&help) {
            let mut sub_path = path.clone();
            sub_path.push(sub.clone());
            pending.push((sub_path, sub, about));
        }
    }
    assert!(seen >= 12, "walked {seen} commands");
}
