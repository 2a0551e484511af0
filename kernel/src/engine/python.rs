//! Running a short Python script with an engine's interpreter, bounded: the
//! versions probe before a server starts (`versions`) and `llem env`'s stack
//! check (`crate::doctor`). Both pipes are read on threads, so a chatty import
//! cannot fill one and block the script.

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the script did.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Why it gave no output; each caller words it for its context.
#[derive(Debug)]
pub enum RunFailure {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    /// Killed after the timeout.
    TimedOut,
    /// Killed because `stop` was set.
    Stopped,
}

/// `python -c script args…` with `env` added, killed after `timeout` or as
/// soon as `stop` is set.
pub fn run_script(
    python: &Path,
    script: &str,
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
    stop: Option<&AtomicBool>,
) -> Result<Ran, RunFailure> {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunFailure::Spawn)?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                let stopped = stop.is_some_and(|s| s.load(Ordering::Relaxed));
                if stopped || started.elapsed() >= timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(if stopped {
                        RunFailure::Stopped
                    } else {
                        RunFailure::TimedOut
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(RunFailure::Wait(e)),
        }
    };
    Ok(Ran {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
