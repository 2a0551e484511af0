//! The kernel side of the offline worker protocol, version 1: JSON lines over
//! the worker's stdin/stdout (its stderr goes to `engine.log`).
//!
//! kernel → worker: `hello` {protocol, model, options}, then one `generate`
//! {id, prompt | messages, max_tokens, ignore_eos} per request, then `shutdown`.
//! worker → kernel: `ready` {protocol, engine, engine_version, device} once the
//! model is loaded; per request `first_token` {id, t_ns}, `token` {id, t_ns, n},
//! `done` {id, t_ns, input_tokens, output_tokens}; `error` {id|null, message}.
//! Every `t_ns` is `time.monotonic_ns()`: CLOCK_MONOTONIC, the sampler's clock.

use super::process::EngineProcess;
use crate::clock::monotonic_ns;
use llem_sdk::{Prompt, PromptBody};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const PROTOCOL: u32 = 1;

/// What the worker said about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    pub engine: String,
    pub engine_version: String,
    pub device: String,
}

/// One request as the worker ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub prompt_id: String,
    pub send_ns: u64,
    pub first_token_ns: Option<u64>,
    /// Time of every token chunk, with how many tokens it carried.
    pub chunks: Vec<(u64, u32)>,
    pub end_ns: Option<u64>,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker did not say `ready` within {0} s; last lines of engine.log:\n{1}")]
    NotReady(u64, String),
    #[error("the worker exited ({0}); last lines of engine.log:\n{1}")]
    Exited(String, String),
    #[error("the worker speaks protocol {0}; this llem speaks {PROTOCOL}")]
    Protocol(u32),
    #[error("the worker failed: {0}")]
    Failed(String),
    #[error("talking to the worker: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    Ready {
        protocol: u32,
        #[serde(default)]
        engine: String,
        #[serde(default)]
        engine_version: String,
        #[serde(default)]
        device: String,
    },
    FirstToken {
        id: String,
        t_ns: u64,
    },
    Token {
        id: String,
        t_ns: u64,
        #[serde(default = "one")]
        n: u32,
    },
    Done {
        id: String,
        t_ns: u64,
        input_tokens: Option<u32>,
        output_tokens: Option<u32>,
    },
    Error {
        id: Option<String>,
        message: String,
    },
}

fn one() -> u32 {
    1
}

enum Line {
    Event(Event),
    Garbage(String),
    Closed,
}

/// Read the worker's stdout on a thread, so the kernel can wait with timeouts.
fn reader(stdout: std::process::ChildStdout) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let parsed = match serde_json::from_str::<Event>(&line) {
                Ok(event) => Line::Event(event),
                Err(_) => Line::Garbage(line),
            };
            if tx.send(parsed).is_err() {
                return;
            }
        }
        let _ = tx.send(Line::Closed);
    });
    rx
}

/// What to ask a worker to do.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub model: &'a str,
    /// The backend's resolved options, passed on in `hello`.
    pub options: &'a Map<String, Value>,
    pub prompts: &'a [Prompt],
    pub ignore_eos: bool,
    /// How long loading the model may take before `ready`.
    pub ready_timeout: Duration,
}

/// Run a job through a started worker. Returns what it said about itself and
/// one record per request (requests cut short by `stop` carry an error).
pub fn run(
    engine: &mut EngineProcess,
    job: Job<'_>,
    stop: &AtomicBool,
    mut on_done: impl FnMut(usize, usize),
) -> Result<(WorkerInfo, Vec<WorkerRecord>), WorkerError> {
    let Job {
        model,
        options,
        prompts,
        ignore_eos,
        ready_timeout,
    } = job;
    let mut stdin = engine
        .take_stdin()
        .ok_or_else(|| WorkerError::Failed("the worker has no stdin pipe".into()))?;
    let stdout = engine
        .take_stdout()
        .ok_or_else(|| WorkerError::Failed("the worker has no stdout pipe".into()))?;
    let events = reader(stdout);
    // A worker that died at once closes its stdin: the write fails, and the
    // wait below reports the exit with the log, which says why.
    let hello = json!({"type": "hello", "protocol": PROTOCOL, "model": model, "options": options});
    let _ = writeln!(stdin, "{hello}").and_then(|()| stdin.flush());

    let started = Instant::now();
    let info = loop {
        let left = ready_timeout.saturating_sub(started.elapsed());
        match events.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(Line::Event(Event::Ready {
                protocol,
                engine: name,
                engine_version,
                device,
            })) => {
                if protocol != PROTOCOL {
                    return Err(WorkerError::Protocol(protocol));
                }
                break WorkerInfo {
                    engine: name,
                    engine_version,
                    device,
                };
            }
            Ok(Line::Event(Event::Error { message, .. })) => {
                return Err(WorkerError::Failed(message));
            }
            Ok(Line::Event(_)) | Ok(Line::Garbage(_)) => continue,
            Ok(Line::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_exit(engine);
                return Err(WorkerError::Exited(status, engine.log_tail()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = engine.exited() {
                    return Err(WorkerError::Exited(status.to_string(), engine.log_tail()));
                }
                if started.elapsed() >= ready_timeout {
                    return Err(WorkerError::NotReady(
                        ready_timeout.as_secs(),
                        engine.log_tail(),
                    ));
                }
            }
        }
    };

    // Submit every request; the worker batches them as its engine does best.
    let mut records: Vec<WorkerRecord> = Vec::with_capacity(prompts.len());
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (i, prompt) in prompts.iter().enumerate() {
        let id = format!("r{i}");
        let mut message = json!({
            "type": "generate",
            "id": id,
            "max_tokens": prompt.max_output_tokens,
            "ignore_eos": ignore_eos,
        });
        match &prompt.body {
            PromptBody::Text(text) => message["prompt"] = json!(text),
            PromptBody::Chat(turns) => message["messages"] = json!(turns),
        }
        records.push(WorkerRecord {
            prompt_id: prompt.id.clone(),
            send_ns: monotonic_ns(),
            first_token_ns: None,
            chunks: Vec::new(),
            end_ns: None,
            input_tokens: None,
            output_tokens: None,
            error: None,
        });
        index_of.insert(id, i);
        if writeln!(stdin, "{message}").is_err() {
            // The worker is gone; the event loop below sees its stdout close.
            break;
        }
    }
    let _ = stdin.flush();

    let mut finished = 0;
    while finished < records.len() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(Line::Event(event)) => {
                let id = match &event {
                    Event::FirstToken { id, .. }
                    | Event::Token { id, .. }
                    | Event::Done { id, .. } => Some(id),
                    Event::Error { id, .. } => id.as_ref(),
                    Event::Ready { .. } => None,
                };
                let Some(record) = id.and_then(|id| index_of.get(id)).map(|&i| &mut records[i])
                else {
                    if let Event::Error { message, .. } = event {
                        return Err(WorkerError::Failed(message));
                    }
                    continue;
                };
                match event {
                    Event::FirstToken { t_ns, .. } => record.first_token_ns = Some(t_ns),
                    Event::Token { t_ns, n, .. } => record.chunks.push((t_ns, n)),
                    Event::Done {
                        t_ns,
                        input_tokens,
                        output_tokens,
                        ..
                    } => {
                        record.end_ns = Some(t_ns);
                        record.input_tokens = input_tokens;
                        record.output_tokens = output_tokens;
                        finished += 1;
                        on_done(finished, records.len());
                    }
                    Event::Error { message, .. } => {
                        record.error = Some(message);
                        record.end_ns = Some(monotonic_ns());
                        finished += 1;
                        on_done(finished, records.len());
                    }
                    Event::Ready { .. } => {}
                }
            }
            Ok(Line::Garbage(line)) => tracing::debug!("worker wrote a non-protocol line: {line}"),
            Ok(Line::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_exit(engine);
                mark_unfinished(
                    &mut records,
                    &format!("the worker exited ({status}) before finishing"),
                );
                return Ok((info, records));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    mark_unfinished(&mut records, "cancelled");
    let _ = writeln!(stdin, "{}", json!({"type": "shutdown"}));
    let _ = stdin.flush();
    Ok((info, records))
}

fn mark_unfinished(records: &mut [WorkerRecord], why: &str) {
    for record in records.iter_mut().filter(|r| r.end_ns.is_none()) {
        record.error = Some(why.to_owned());
    }
}

/// The worker's exit status once it has gone (waits briefly for the pipe close to become an exit).
fn wait_exit(engine: &mut EngineProcess) -> String {
    for _ in 0..50 {
        if let Some(status) = engine.exited() {
            return status.to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    "still running, stdout closed".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use llem_sdk::{EngineMode, EnginePlan};

    /// A worker in shell + Python-free tools: answers hello with ready, then
    /// every generate with first_token/token/done carrying 3 tokens.
    const FAKE_WORKER: &str = r#"
read hello
echo '{"type":"ready","protocol":1,"engine":"fake","engine_version":"0.0","device":"cpu"}'
while read line; do
  case "$line" in
    *shutdown*) exit 0 ;;
    *generate*)
      id=$(echo "$line" | sed 's/.*"id":"\([^"]*\)".*/\1/')
      t=$(date +%s%N)
      echo "{\"type\":\"first_token\",\"id\":\"$id\",\"t_ns\":$t}"
      echo "{\"type\":\"token\",\"id\":\"$id\",\"t_ns\":$t,\"n\":1}"
      echo "{\"type\":\"token\",\"id\":\"$id\",\"t_ns\":$t,\"n\":2}"
      echo "{\"type\":\"done\",\"id\":\"$id\",\"t_ns\":$t,\"input_tokens\":5,\"output_tokens\":3}" ;;
  esac
done
"#;

    fn sh() -> crate::engine::EngineGrants {
        crate::engine::EngineGrants::allowing("test", &["sh"])
    }

    fn plan(script: &str) -> EnginePlan {
        EnginePlan {
            mode: EngineMode::Offline,
            engine: "fake".into(),
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            api_base_path: None,
            health_path: None,
            metrics_path: None,
            worker_script: None,
            ready_timeout_s: 5,
        }
    }

    fn job<'a>(model: &'a str, prompts: &'a [Prompt], ready_timeout: Duration) -> Job<'a> {
        static NO_OPTIONS: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        Job {
            model,
            options: NO_OPTIONS.get_or_init(Map::new),
            prompts,
            ignore_eos: false,
            ready_timeout,
        }
    }

    fn prompts(n: usize) -> Vec<Prompt> {
        (0..n)
            .map(|i| Prompt {
                id: format!("p{i}"),
                body: PromptBody::Text(format!("prompt {i}")),
                input_tokens: None,
                max_output_tokens: Some(3),
            })
            .collect()
    }

    #[test]
    fn a_worker_runs_every_request_and_reports_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = EngineProcess::spawn(&plan(FAKE_WORKER), &sh(), dir.path(), true).unwrap();
        let stop = AtomicBool::new(false);
        let mut progress = Vec::new();
        let (info, records) = run(
            &mut engine,
            job("tiny", &prompts(4), Duration::from_secs(5)),
            &stop,
            |done, total| progress.push((done, total)),
        )
        .unwrap();
        assert_eq!(info.engine, "fake");
        assert_eq!(records.len(), 4);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.prompt_id, format!("p{i}"));
            assert_eq!(r.output_tokens, Some(3));
            assert_eq!(r.input_tokens, Some(5));
            assert_eq!(r.chunks.iter().map(|c| c.1).sum::<u32>(), 3);
            assert!(r.error.is_none());
            assert!(r.first_token_ns.is_some() && r.end_ns.is_some());
        }
        assert_eq!(progress.last(), Some(&(4, 4)));
    }

    #[test]
    fn a_worker_that_dies_before_ready_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = EngineProcess::spawn(
            &plan("echo 'ImportError: no module named torch' >&2; exit 1"),
            &sh(),
            dir.path(),
            true,
        )
        .unwrap();
        let stop = AtomicBool::new(false);
        let err = run(
            &mut engine,
            job("m", &prompts(1), Duration::from_secs(5)),
            &stop,
            |_, _| {},
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("the worker exited"), "{text}");
        assert!(text.contains("no module named torch"), "{text}");
    }

    #[test]
    fn a_silent_worker_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = EngineProcess::spawn(&plan("sleep 30"), &sh(), dir.path(), true).unwrap();
        let stop = AtomicBool::new(false);
        let err = run(
            &mut engine,
            job("m", &prompts(1), Duration::from_millis(500)),
            &stop,
            |_, _| {},
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("did not say `ready` within 0 s"),
            "{err}"
        );
    }

    #[test]
    fn a_worker_killed_mid_run_keeps_finished_requests() {
        let dir = tempfile::tempdir().unwrap();
        // Answers the first request, then dies.
        let script = FAKE_WORKER.replace(
            "*shutdown*) exit 0 ;;",
            "*shutdown*) exit 0 ;;\n    *r1*) kill -9 $$ ;;",
        );
        let mut engine = EngineProcess::spawn(&plan(&script), &sh(), dir.path(), true).unwrap();
        let stop = AtomicBool::new(false);
        let (_, records) = run(
            &mut engine,
            job("m", &prompts(3), Duration::from_secs(5)),
            &stop,
            |_, _| {},
        )
        .unwrap();
        assert!(records[0].error.is_none());
        assert!(
            records[1]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("the worker exited"),
            "{:?}",
            records[1]
        );
        assert!(records[2].error.is_some());
    }
}
