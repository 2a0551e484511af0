//! One engine process: its own process group, output into `engine.log`,
//! terminated as a group (SIGTERM, then SIGKILL) when dropped.

use super::confine::{self, EngineConfinement};
use super::http;
use super::policy::{self, EngineGrants};
use llem_sdk::EnginePlan;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long an engine's process group gets to exit after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);
/// How long SIGKILLed processes get to disappear (it is asynchronous).
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How often a health wait polls (and looks at the stop flag in between).
const HEALTH_POLL: Duration = Duration::from_millis(250);
/// One health request's limit: a server that accepts but does not answer
/// yet is asked again rather than waited on.
const HEALTH_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Process groups of the engines running now, so a second Ctrl-C can kill
/// them from the signal-handling thread while the main thread is elsewhere.
/// Held across `spawn`, so no engine can start unseen by [`hurry_teardown`].
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Set by [`hurry_teardown`]: teardowns skip the SIGTERM grace from now on.
static HURRY: AtomicBool = AtomicBool::new(false);

/// The user asked twice to stop: SIGKILL every engine's process group now and
/// wait (briefly) until none of their processes is left, and skip the grace
/// of any teardown still to come. Never skips a teardown: safe to call from
/// the Ctrl-C handler thread while the run's own teardown is under way.
pub fn hurry_teardown() {
    HURRY.store(true, Ordering::SeqCst);
    let groups = LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for &pgid in &groups {
        // SAFETY: kill(2) on a process group llem started and has not reaped
        // the leader of (the group id cannot have been reused).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + KILL_WAIT;
    while groups.iter().any(|&g| group_alive(g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether any process of group `pgid` still runs (zombies do not count:
/// they hold no resources and wait only for a reaper).
pub fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No /proc: fall back to kill(2), which counts zombies too.
        // SAFETY: signal 0 only checks for existence.
        return unsafe { libc::kill(-pgid, 0) } == 0;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                // After the parenthesised command name: state ppid pgrp …
                let (_, rest) = stat.rsplit_once(") ")?;
                let mut fields = rest.split_whitespace();
                let state = fields.next()?;
                let group: i32 = fields.nth(1)?.parse().ok()?;
                Some(group == pgid && state != "Z" && state != "X")
            })
            .unwrap_or(false)
    })
}
/// Lines of `engine.log` quoted when an engine fails to start.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start `{program}`: {error}")]
    Spawn {
        program: String,
        error: std::io::Error,
    },
    #[error("the engine exited during start-up ({status}); last lines of {log}:\n{tail}{hint}")]
    Exited {
        status: String,
        log: String,
        tail: String,
        /// Empty, or a line saying how to relax the confinement it ran under.
        hint: String,
    },
    #[error(
        "the engine was not ready after {seconds} s (health check {url}: {last}); last lines of {log}:\n{tail}"
    )]
    Timeout {
        seconds: u64,
        url: String,
        last: String,
        log: String,
        tail: String,
    },
    /// The run was stopped (Ctrl-C, SIGTERM) while the engine started.
    #[error("stopped while the engine was starting")]
    Stopped,
    #[error("{0}")]
    Plan(String),
    /// The plan asked for something the user did not allow: nothing was run.
    #[error("refused to start the engine: {0}")]
    Refused(String),
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
}

pub struct EngineProcess {
    child: Child,
    pgid: i32,
    log_path: PathBuf,
    done: bool,
    confinement: EngineConfinement,
    /// How long the group gets between SIGTERM and SIGKILL.
    grace: Duration,
    /// The engine's private TMPDIR: removed after teardown (fields drop after `drop`).
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for EngineProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineProcess")
            .field("pid", &self.child.id())
            .field("log", &self.log_path)
            .finish()
    }
}

/// Extensions of files a plan's `worker_script` may be written to: a Python
/// worker, or an engine's options file (TensorRT-LLM's YAML).
const SCRIPT_EXTENSIONS: [&str; 4] = ["py", "yaml", "yml", "json"];

/// Where a plan's worker script goes: the first argument that is a `.py`
/// (or options) file directly inside the run directory (the backend names it;
/// the kernel writes it, so a plan never needs a shell to write files).
fn worker_path(plan: &EnginePlan, run_dir: &Path) -> Option<PathBuf> {
    plan.args.iter().map(PathBuf::from).find(|p| {
        p.parent() == Some(run_dir)
            && p.extension()
                .is_some_and(|e| SCRIPT_EXTENSIONS.iter().any(|x| e == *x))
    })
}

/// A plan's worker script as the run records it: where the kernel writes it
/// and its SHA-256, not its text (a whole Python worker, which would fill
/// result.json; the file itself stays in the run directory).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerScript {
    /// The file in the run directory (`None`: the plan names none, and
    /// starting it fails).
    pub path: Option<PathBuf>,
    /// Of the script's bytes, lowercase hex.
    pub sha256: String,
    pub bytes: usize,
}

impl WorkerScript {
    /// The record of `plan`'s worker script, if it carries one.
    pub fn of(plan: &EnginePlan, run_dir: &Path) -> Option<WorkerScript> {
        use sha2::{Digest, Sha256};
        let script = plan.worker_script.as_ref()?;
        Some(WorkerScript {
            path: worker_path(plan, run_dir),
            sha256: Sha256::digest(script.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            bytes: script.len(),
        })
    }
}

impl EngineProcess {
    /// Start `plan` in `run_dir`, as `grants` allow: only an allowed program,
    /// an allow-listed environment, confined where the kernel supports it (see
    /// [`super::policy`] and [`super::confine`]). With `protocol_pipes`, stdin
    /// and stdout are pipes for the worker protocol (stderr still goes to the log).
    pub fn spawn(
        plan: &EnginePlan,
        grants: &EngineGrants,
        run_dir: &Path,
        protocol_pipes: bool,
    ) -> Result<EngineProcess, StartError> {
        // Checked before anything is written or started: a refused plan runs nothing.
        let program = policy::check_program(&plan.program, grants).map_err(StartError::Refused)?;
        let host_env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        let env = policy::engine_env(host_env, &plan.env, grants);
        if let Some(script) = &plan.worker_script {
            let path = worker_path(plan, run_dir).ok_or_else(|| {
                StartError::Plan(format!(
                    "the `{}` plan carries a worker script but no argument names a .py, .yaml or .json file in the run directory {} to write it to",
                    plan.engine,
                    run_dir.display()
                ))
            })?;
            std::fs::write(&path, script).map_err(|error| StartError::Io {
                context: format!("writing the worker script {}", path.display()),
                error,
            })?;
        }
        let log_path = run_dir.join("engine.log");
        let log = File::create(&log_path).map_err(|error| StartError::Io {
            context: format!("creating {}", log_path.display()),
            error,
        })?;
        let log_err = log.try_clone().map_err(|error| StartError::Io {
            context: "duplicating the log handle".into(),
            error,
        })?;
        let confined =
            confine::prepare(grants, run_dir, &program, &env).map_err(StartError::Refused)?;
        let mut command = Command::new(&program);
        command
            .args(&plan.args)
            .env_clear()
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(run_dir)
            .stderr(Stdio::from(log_err))
            // Its own process group, so teardown reaches every process it starts.
            .process_group(0);
        if protocol_pipes {
            command.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            command.stdin(Stdio::null()).stdout(Stdio::from(log));
        }
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to send the
        // engine SIGTERM if llem dies without tearing it down (e.g. SIGKILL).
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        confined.apply(&mut command);
        // Registered before the lock is released: a second Ctrl-C either
        // waits for this spawn or sees its group.
        let mut live = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn().map_err(|error| StartError::Spawn {
            program: plan.program.clone(),
            error,
        })?;
        let pgid = child.id() as i32;
        live.push(pgid);
        drop(live);
        tracing::info!(pid = pgid, program = %program.display(), "engine started");
        Ok(EngineProcess {
            child,
            pgid,
            log_path,
            done: false,
            confinement: confined.report.clone(),
            grace: TERMINATE_GRACE,
            _temp: confined.temp,
        })
    }

    /// The confinement the engine runs under (recorded in the run's result).
    pub fn confinement(&self) -> &EngineConfinement {
        &self.confinement
    }

    /// How to relax the confinement, for an engine that failed under it.
    fn confinement_hint(&self) -> String {
        if self.confinement.mode != "landlock" {
            return String::new();
        }
        "\n  hint: the engine ran confined by Landlock; if it failed on a file it may not touch (\"Permission denied\"), grant it with `engine_read` / `engine_write` in the backend's [plugins.<instance>.sandbox] table, or set `confinement = \"none\"` there".into()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// `Some(status)` once the engine has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, LOG_TAIL_LINES)
    }

    /// Poll `base_url` + `health_path` until it answers 200, the engine exits,
    /// `timeout` passes or `stop` is set (looked at every few milliseconds,
    /// also while a request is out, so Ctrl-C acts at once).
    pub fn wait_healthy(
        &mut self,
        base_url: &str,
        health_path: &str,
        timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<(), StartError> {
        let (authority, _) = http::split_url(base_url).map_err(StartError::Plan)?;
        let url = format!("http://{authority}{health_path}");
        let started = Instant::now();
        let mut last;
        loop {
            if let Some(status) = self.exited() {
                return Err(StartError::Exited {
                    status: status.to_string(),
                    log: self.log_path.display().to_string(),
                    tail: self.log_tail(),
                    hint: self.confinement_hint(),
                });
            }
            if stop.load(Ordering::Relaxed) {
                return Err(StartError::Stopped);
            }
            let limit = HEALTH_REQUEST_TIMEOUT.min(timeout.saturating_sub(started.elapsed()));
            match http::get_unless(&authority, health_path, limit, Some(stop)) {
                Ok(response) if response.status == 200 => return Ok(()),
                Ok(response) => last = format!("HTTP {}", response.status),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    return Err(StartError::Stopped);
                }
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() >= timeout {
                return Err(StartError::Timeout {
                    seconds: timeout.as_secs(),
                    url,
                    last,
                    log: self.log_path.display().to_string(),
                    tail: self.log_tail(),
                });
            }
            let next = Instant::now() + HEALTH_POLL;
            while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stop the whole process group: SIGTERM, a grace period for every
    /// process of the group (not only the leader: an engine's workers hold
    /// the GPU), then SIGKILL for what is left. The grace is skipped after
    /// [`hurry_teardown`]. Idempotent; also called on drop.
    pub fn terminate(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        // The group id stays ours until the leader is reaped (below, last):
        // it cannot name someone else's processes in between.
        // SAFETY: signalling our own child's process group.
        unsafe { libc::kill(-self.pgid, libc::SIGTERM) };
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline && !HURRY.load(Ordering::Relaxed) {
            if !group_alive(self.pgid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left in the group — the leader or processes it started — goes now.
        // SAFETY: as above; ESRCH (nothing left) is fine.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        let deadline = Instant::now() + KILL_WAIT;
        while group_alive(self.pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&g| g != self.pgid);
        let _ = self.child.wait();
        tracing::info!(pid = self.pgid, "engine stopped");
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::EngineMode;

    /// Grants for the tools these tests run, and the variable they pass.
    fn grants() -> EngineGrants {
        let mut g = EngineGrants::allowing(
            "test",
            &["sh", "sleep", "cat", "true", "no-such-engine-xyz"],
        );
        g.env = vec!["LLEM_TEST_ENGINE".into()];
        g
    }

    fn spawn(plan: &EnginePlan, dir: &Path, pipes: bool) -> Result<EngineProcess, StartError> {
        EngineProcess::spawn(plan, &grants(), dir, pipes)
    }

    fn plan(program: &str, args: &[&str]) -> EnginePlan {
        EnginePlan {
            env: vec![("LLEM_TEST_ENGINE".into(), "yes".into())],
            ..crate::engine::test_plan(EngineMode::Server, "test", program, args)
        }
    }

    /// Running (not gone, not a zombie waiting for a reaper that is not us).
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    #[test]
    fn output_goes_to_the_log_and_env_reaches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = spawn(
            &plan("sh", &["-c", "echo out $LLEM_TEST_ENGINE; echo err >&2"]),
            dir.path(),
            false,
        )
        .unwrap();
        while engine.exited().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = std::fs::read_to_string(dir.path().join("engine.log")).unwrap();
        assert!(log.contains("out yes") && log.contains("err"), "{log}");
    }

    #[test]
    fn teardown_kills_the_whole_group_even_children_ignoring_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; while true; do sleep 1; done' & wait",
            pid_file.display()
        );
        let mut engine = spawn(&plan("sh", &["-c", &script]), dir.path(), false).unwrap();
        // Nothing here heeds SIGTERM: no need to wait the full grace.
        engine.grace = Duration::from_millis(300);
        let started = Instant::now();
        while !pid_file.exists() {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchild: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(grandchild));
        let leader = engine.pid() as i32;
        drop(engine);
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(leader), "leader gone");
        assert!(
            !alive(grandchild),
            "a grandchild that ignores SIGTERM is killed too"
        );
    }

    #[test]
    fn an_engine_that_dies_during_start_up_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = spawn(
            &plan("sh", &["-c", "echo 'CUDA out of memory' >&2; exit 3"]),
            dir.path(),
            false,
        )
        .unwrap();
        let port = super::super::free_port().unwrap();
        let err = engine
            .wait_healthy(
                &format!("http://127.0.0.1:{port}/v1"),
                "/health",
                Duration::from_secs(10),
                &AtomicBool::new(false),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited during start-up"), "{text}");
        assert!(text.contains("CUDA out of memory"), "{text}");
    }

    #[test]
    fn a_silent_engine_times_out_with_the_url_it_tried() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = spawn(&plan("sleep", &["30"]), dir.path(), false).unwrap();
        let port = super::super::free_port().unwrap();
        let err = engine
            .wait_healthy(
                &format!("http://127.0.0.1:{port}"),
                "/health",
                Duration::from_millis(600),
                &AtomicBool::new(false),
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("health check http://127.0.0.1:{port}/health")),
            "{err}"
        );
    }

    #[test]
    fn the_health_wait_ends_soon_after_stop_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = spawn(&plan("sleep", &["30"]), dir.path(), false).unwrap();
        // A port that accepts and never answers: the wait is inside a request.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let setter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::SeqCst);
            })
        };
        let started = Instant::now();
        let err = engine
            .wait_healthy(
                &format!("http://127.0.0.1:{port}"),
                "/health",
                Duration::from_secs(60),
                &stop,
            )
            .unwrap_err();
        assert!(matches!(err, StartError::Stopped), "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
        setter.join().unwrap();
    }

    #[test]
    fn teardown_gives_every_process_of_the_group_its_grace() {
        let dir = tempfile::tempdir().unwrap();
        let clean = dir.path().join("child-cleaned-up");
        let ready = dir.path().join("ready");
        // The leader dies at SIGTERM at once; its child takes 0.5 s to clean up.
        let script = format!(
            "sh -c 'trap \"sleep 0.5; touch {clean}; exit 0\" TERM; touch {ready}; while true; do sleep 0.1; done' & wait",
            clean = clean.display(),
            ready = ready.display()
        );
        let engine = spawn(&plan("sh", &["-c", &script]), dir.path(), false).unwrap();
        let pgid = engine.pid() as i32;
        let started = Instant::now();
        while !ready.exists() {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(engine);
        assert!(clean.exists(), "the child finished its SIGTERM handler");
        assert!(!group_alive(pgid), "nothing of the group is left");
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = spawn(&plan("no-such-engine-xyz", &[]), dir.path(), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot start `no-such-engine-xyz`"),
            "{err}"
        );
    }

    #[test]
    fn a_worker_script_is_recorded_by_path_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = plan("python3", &[]);
        assert_eq!(WorkerScript::of(&p, dir.path()), None);
        p.args = vec![dir.path().join("w.py").display().to_string()];
        p.worker_script = Some("abc".into());
        let record = WorkerScript::of(&p, dir.path()).unwrap();
        assert_eq!(record.path, Some(dir.path().join("w.py")));
        // sha256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            record.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(record.bytes, 3);
    }

    #[test]
    fn worker_scripts_are_written_where_the_plan_says() {
        let dir = tempfile::tempdir().unwrap();
        let script_path = dir.path().join("w.py");
        let mut p = plan("cat", &[script_path.to_str().unwrap()]);
        p.worker_script = Some("print('hi')\n".into());
        let mut engine = spawn(&p, dir.path(), false).unwrap();
        while engine.exited().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            std::fs::read_to_string(&script_path).unwrap(),
            "print('hi')\n"
        );
        let mut bad = plan("true", &["/elsewhere/w.py"]);
        bad.worker_script = Some(String::new());
        assert!(spawn(&bad, dir.path(), false).is_err());
    }
}
