//! The kernel side of the offline worker protocol, version 1: JSON lines over
//! the worker's stdin/stdout (its stderr goes to `engine.log`).
//!
//! kernel → worker: `hello` {protocol, model, options, decoding}, then one
//! `generate` {id, prompt | messages, max_tokens, temperature, top_p, seed?,
//! ignore_eos?} per request, then `shutdown`. Decoding is always explicit
//! ([`Decoding`]: `max_tokens` is the prompt's limit or `[load].max_tokens`;
//! `seed` only when set, `ignore_eos` only when true); `hello.decoding` holds
//! the run's settings ({temperature, top_p, seed, max_tokens, ignore_eos}).
//! worker → kernel: `ready` {protocol, engine, engine_version, device,
//! versions?} once the model is loaded (`versions`: [`SoftwareVersions`]);
//! per request `first_token` {id, t_ns}, `token` {id, t_ns, n},
//! `done` {id, t_ns, input_tokens, output_tokens}; `error` {id|null, message};
//! and per engine step `tokens` {t_ns, ids}: one more token at `t_ns` for each
//! request in `ids` (its first token when it had none) — one line for a step
//! of hundreds of requests instead of one or two each.
//! Every `t_ns` is `time.monotonic_ns()`: CLOCK_MONOTONIC, the sampler's clock.
//! `done`'s `t_ns` is the time of the request's own last token — in a static
//! batch, not the time the batch ended — so a record's E2E, and TPOT =
//! (last token − first token) / (output tokens − 1), are the request's own.
//!
//! The workers' side is one Python module shared by every offline worker,
//! `plugins/backend-common/worker_protocol.py`; tests/worker_protocol.rs runs
//! the assembled PyTorch worker through [`run`].

use super::process::EngineProcess;
pub use super::versions::SoftwareVersions;
use crate::clock::monotonic_ns;
use crate::loadgen::{Decoding, Phase, RequestRecord};
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
    /// Python, torch, engine, CUDA versions and device names, from the
    /// worker's `ready` (absent from workers that do not send them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<SoftwareVersions>,
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

impl WorkerRecord {
    /// The record in the load generator's shape (a measured request, `index`
    /// in its batch), so both modes report alike.
    pub fn into_request_record(self, index: usize) -> RequestRecord {
        RequestRecord {
            index: index as u32,
            prompt_id: self.prompt_id,
            phase: Phase::Measured,
            send_ns: self.send_ns,
            first_token_ns: self.first_token_ns,
            // One timestamp per token: a chunk of n tokens contributes n equal
            // times, so inter-token gaps inside a chunk read as 0, as they
            // arrived together.
            chunk_ns: self
                .chunks
                .iter()
                .flat_map(|&(t, n)| std::iter::repeat_n(t, n.max(1) as usize))
                .collect(),
            end_ns: self.end_ns.unwrap_or(self.send_ns),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            tokens_from_usage: self.output_tokens.is_some(),
            output_text_len: 0,
            output_text: None,
            success: self.error.is_none(),
            error: self.error,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Seconds waited, the engine log's path, its last lines.
    #[error("the worker did not say `ready` within {0} s; last lines of {1}:\n{2}")]
    NotReady(u64, String, String),
    /// Exit status, the engine log's path, its last lines.
    #[error("the worker exited ({0}); last lines of {1}:\n{2}")]
    Exited(String, String, String),
    #[error("the worker speaks protocol {0}; this llem speaks {PROTOCOL}")]
    Protocol(u32),
    #[error("the worker failed: {0}")]
    Failed(String),
    #[error("stopped before the worker was ready")]
    Stopped,
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
        /// Boxed: the other events are small, and every line is one.
        #[serde(default)]
        versions: Option<Box<SoftwareVersions>>,
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
    /// One token at `t_ns` for each of `ids` (a step's requests).
    Tokens {
        t_ns: u64,
        ids: Vec<String>,
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
    /// Sent in `hello` and with every `generate`.
    pub decoding: Decoding,
    /// How long loading the model may take before `ready`.
    pub ready_timeout: Duration,
    /// Most requests submitted to the worker at once (`None`: all of them, and
    /// the engine batches as it likes).
    pub max_concurrency: Option<u32>,
}

/// Run a job through a started worker: wait for `ready`, run every prompt,
/// shut it down. Returns what it said about itself and one record per request
/// (requests cut short by `stop` carry an error).
pub fn run(
    engine: &mut EngineProcess,
    job: Job<'_>,
    stop: &AtomicBool,
    on_done: impl FnMut(usize, usize),
) -> Result<(WorkerInfo, Vec<WorkerRecord>), WorkerError> {
    let mut session = Session::start(
        engine,
        job.model,
        job.options,
        &job.decoding,
        job.ready_timeout,
        stop,
    )?;
    let mut on_done = on_done;
    let records = session.run(
        engine,
        job.prompts,
        &Submit::from(&job),
        stop,
        |done, total, _| on_done(done, total),
    )?;
    let info = session.info.clone();
    session.shutdown();
    Ok((info, records))
}

/// How one batch of prompts is submitted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Submit {
    /// Sent with every `generate`.
    pub decoding: Decoding,
    pub max_concurrency: Option<u32>,
}

impl From<&Job<'_>> for Submit {
    fn from(job: &Job<'_>) -> Self {
        Submit {
            decoding: job.decoding,
            max_concurrency: job.max_concurrency,
        }
    }
}

/// A request the worker has just finished (done or failed): its position in
/// the batch (the order it was submitted in) and its record.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub position: usize,
    pub record: &'a WorkerRecord,
}

/// A worker that has loaded its model and said `ready`: prompts can be run
/// through it, in as many batches as the run has phases (warm-up, measured).
pub struct Session {
    stdin: std::process::ChildStdin,
    events: mpsc::Receiver<Line>,
    pub info: WorkerInfo,
    /// Request ids are unique across batches.
    next_id: usize,
    closed: bool,
}

impl Session {
    /// Send `hello` (with the run's decoding) and wait (up to `ready_timeout`,
    /// or until `stop`) for `ready`.
    pub fn start(
        engine: &mut EngineProcess,
        model: &str,
        options: &Map<String, Value>,
        decoding: &Decoding,
        ready_timeout: Duration,
        stop: &AtomicBool,
    ) -> Result<Session, WorkerError> {
        let mut stdin = engine
            .take_stdin()
            .ok_or_else(|| WorkerError::Failed("the worker has no stdin pipe".into()))?;
        let stdout = engine
            .take_stdout()
            .ok_or_else(|| WorkerError::Failed("the worker has no stdout pipe".into()))?;
        let events = reader(stdout);
        // A worker that died at once closes its stdin: the write fails, and the
        // wait below reports the exit with the log, which says why.
        let hello = json!({"type": "hello", "protocol": PROTOCOL, "model": model,
                           "options": options, "decoding": decoding});
        let _ = writeln!(stdin, "{hello}").and_then(|()| stdin.flush());

        let started = Instant::now();
        let info = loop {
            if stop.load(Ordering::Relaxed) {
                return Err(WorkerError::Stopped);
            }
            let left = ready_timeout.saturating_sub(started.elapsed());
            match events.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(Line::Event(Event::Ready {
                    protocol,
                    engine: name,
                    engine_version,
                    device,
                    versions,
                })) => {
                    if protocol != PROTOCOL {
                        return Err(WorkerError::Protocol(protocol));
                    }
                    break WorkerInfo {
                        engine: name,
                        engine_version,
                        device,
                        versions: versions.map(|v| *v),
                    };
                }
                Ok(Line::Event(Event::Error { message, .. })) => {
                    return Err(WorkerError::Failed(message));
                }
                Ok(Line::Event(_)) | Ok(Line::Garbage(_)) => continue,
                Ok(Line::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_exit(engine);
                    return Err(WorkerError::Exited(
                        status,
                        log_name(engine),
                        engine.log_tail(),
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = engine.exited() {
                        return Err(WorkerError::Exited(
                            status.to_string(),
                            log_name(engine),
                            engine.log_tail(),
                        ));
                    }
                    if started.elapsed() >= ready_timeout {
                        return Err(WorkerError::NotReady(
                            ready_timeout.as_secs(),
                            log_name(engine),
                            engine.log_tail(),
                        ));
                    }
                }
            }
        };
        Ok(Session {
            stdin,
            events,
            info,
            next_id: 0,
            closed: false,
        })
    }

    fn submit(&mut self, prompt: &Prompt, decoding: &Decoding) -> (String, WorkerRecord, bool) {
        let id = format!("r{}", self.next_id);
        self.next_id += 1;
        let mut message = json!({"type": "generate", "id": id});
        if let Value::Object(fields) = &mut message {
            decoding.request_fields(prompt, fields);
        }
        match &prompt.body {
            PromptBody::Text(text) => message["prompt"] = json!(text),
            PromptBody::Chat(turns) => message["messages"] = json!(turns),
        }
        let record = WorkerRecord {
            prompt_id: prompt.id.clone(),
            send_ns: monotonic_ns(),
            first_token_ns: None,
            chunks: Vec::new(),
            end_ns: None,
            input_tokens: None,
            output_tokens: None,
            error: None,
        };
        // A failed write means the worker is gone; the event loop sees its stdout close.
        let sent = writeln!(self.stdin, "{message}")
            .and_then(|()| self.stdin.flush())
            .is_ok();
        (id, record, sent)
    }

    /// Run `prompts` to completion (or until `stop`), keeping at most
    /// `submit.max_concurrency` in flight. `on_done(finished, total)` after each.
    pub fn run(
        &mut self,
        engine: &mut EngineProcess,
        prompts: &[Prompt],
        submit: &Submit,
        stop: &AtomicBool,
        mut on_done: impl FnMut(usize, usize, Finished<'_>),
    ) -> Result<Vec<WorkerRecord>, WorkerError> {
        let limit = submit
            .max_concurrency
            .map_or(prompts.len(), |n| n.max(1) as usize);
        let mut records: Vec<WorkerRecord> = Vec::with_capacity(prompts.len());
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut finished = 0;
        let mut writable = !self.closed;
        while finished < prompts.len() {
            // Keep the worker fed up to the concurrency limit.
            while writable && records.len() < prompts.len() && records.len() - finished < limit {
                let (id, record, sent) = self.submit(&prompts[records.len()], &submit.decoding);
                index_of.insert(id, records.len());
                records.push(record);
                writable = sent;
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            match self.events.recv_timeout(Duration::from_millis(100)) {
                Ok(Line::Event(Event::Tokens { t_ns, ids })) => {
                    for id in &ids {
                        let record = index_of.get(id).and_then(|&p| records.get_mut(p));
                        if let Some(record) = record
                            && record.end_ns.is_none()
                        {
                            record.first_token_ns.get_or_insert(t_ns);
                            record.chunks.push((t_ns, 1));
                        }
                    }
                }
                Ok(Line::Event(event)) => {
                    let id = match &event {
                        Event::FirstToken { id, .. }
                        | Event::Token { id, .. }
                        | Event::Done { id, .. } => Some(id),
                        Event::Error { id, .. } => id.as_ref(),
                        Event::Ready { .. } | Event::Tokens { .. } => None,
                    };
                    let Some(position) = id.and_then(|id| index_of.get(id)).copied() else {
                        if let Event::Error { message, .. } = event {
                            return Err(WorkerError::Failed(message));
                        }
                        continue;
                    };
                    let Some(record) = records.get_mut(position) else {
                        continue;
                    };
                    if record.end_ns.is_some() {
                        continue;
                    }
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
                            on_done(finished, prompts.len(), Finished { position, record });
                        }
                        Event::Error { message, .. } => {
                            record.error = Some(message);
                            record.end_ns = Some(monotonic_ns());
                            finished += 1;
                            on_done(finished, prompts.len(), Finished { position, record });
                        }
                        Event::Ready { .. } | Event::Tokens { .. } => {}
                    }
                }
                Ok(Line::Garbage(line)) => {
                    tracing::debug!("worker wrote a non-protocol line: {line}")
                }
                Ok(Line::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    let status = wait_exit(engine);
                    mark_unfinished(
                        &mut records,
                        &format!("the worker exited ({status}) before finishing"),
                    );
                    return Ok(records);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        mark_unfinished(&mut records, "cancelled");
        Ok(records)
    }

    /// Ask the worker to finish its in-flight requests and exit.
    pub fn shutdown(mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"type": "shutdown"}));
        let _ = self.stdin.flush();
    }
}

/// The engine log's full path, for messages: it is kept in the run directory.
fn log_name(engine: &EngineProcess) -> String {
    engine.log_path().display().to_string()
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
        crate::engine::test_plan(EngineMode::Offline, "fake", "sh", &["-c", script])
    }

    fn job<'a>(model: &'a str, prompts: &'a [Prompt], ready_timeout: Duration) -> Job<'a> {
        static NO_OPTIONS: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        Job {
            model,
            options: NO_OPTIONS.get_or_init(Map::new),
            prompts,
            decoding: Decoding::default(),
            ready_timeout,
            max_concurrency: None,
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

    /// Two prompts run through the scripted worker `script`.
    fn two_requests_through(script: &str) -> Vec<WorkerRecord> {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = EngineProcess::spawn(&plan(script), &sh(), dir.path(), true).unwrap();
        let stop = AtomicBool::new(false);
        let (_, records) = run(
            &mut engine,
            job("tiny", &prompts(2), Duration::from_secs(5)),
            &stop,
            |_, _| {},
        )
        .unwrap();
        records
    }

    /// A worker that answers two generates with per-step `tokens` lines
    /// naming both requests (times 100, 200, 300), one request's own `token`
    /// line in between, and a `done` each; an unknown id and a line for a
    /// request already done are ignored.
    const STEP_WORKER: &str = r#"
read hello
echo '{"type":"ready","protocol":1,"engine":"fake","engine_version":"0.0","device":"cpu"}'
read a; read b
a=$(echo "$a" | sed 's/.*"id":"\([^"]*\)".*/\1/')
b=$(echo "$b" | sed 's/.*"id":"\([^"]*\)".*/\1/')
echo "{\"type\":\"tokens\",\"t_ns\":100,\"ids\":[\"$a\",\"$b\",\"nobody\"]}"
echo "{\"type\":\"tokens\",\"t_ns\":200,\"ids\":[\"$a\",\"$b\"]}"
echo "{\"type\":\"token\",\"id\":\"$b\",\"t_ns\":250,\"n\":2}"
echo "{\"type\":\"done\",\"id\":\"$a\",\"t_ns\":200,\"input_tokens\":5,\"output_tokens\":2}"
echo "{\"type\":\"tokens\",\"t_ns\":300,\"ids\":[\"$a\",\"$b\"]}"
echo "{\"type\":\"done\",\"id\":\"$b\",\"t_ns\":300,\"input_tokens\":5,\"output_tokens\":5}"
read shutdown
"#;

    #[test]
    fn a_tokens_line_gives_each_named_request_one_token_at_its_time() {
        let records = two_requests_through(STEP_WORKER);
        let (p0, p1) = (&records[0], &records[1]);
        assert_eq!(p0.first_token_ns, Some(100));
        assert_eq!(p0.chunks, [(100, 1), (200, 1)], "nothing after its done");
        assert_eq!(p0.end_ns, Some(200));
        assert_eq!(p1.first_token_ns, Some(100));
        assert_eq!(p1.chunks, [(100, 1), (200, 1), (250, 2), (300, 1)]);
        assert_eq!(p1.output_tokens, Some(5));
        assert!(p0.error.is_none() && p1.error.is_none());
    }

    #[test]
    fn hello_and_every_generate_carry_the_kernels_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen.jsonl");
        // FAKE_WORKER, also writing every line it reads to seen.jsonl; its
        // ready line carries versions, as the Python workers' do.
        let script = FAKE_WORKER
            .replace("read hello\n", &format!("read hello\necho \"$hello\" >> '{}'\n", seen.display()))
            .replace("while read line; do\n", &format!("while read line; do\n  echo \"$line\" >> '{}'\n", seen.display()))
            .replace(
                r#""device":"cpu"}'"#,
                r#""device":"cpu","versions":{"python":"3.12.1","torch":"2.9.0","cuda":"12.8","devices":["GPU A"],"future_key":1}}'"#,
            );
        let mut engine = EngineProcess::spawn(&plan(&script), &sh(), dir.path(), true).unwrap();
        let mut prompts = prompts(2);
        prompts[1].max_output_tokens = None;
        let decoding = Decoding {
            temperature: 0.7,
            top_p: 0.9,
            seed: Some(5),
            max_tokens: 40,
            ignore_eos: true,
        };
        let job = Job {
            decoding,
            ..job("tiny", &prompts, Duration::from_secs(5))
        };
        let stop = AtomicBool::new(false);
        let (info, _) = run(&mut engine, job, &stop, |_, _| {}).unwrap();
        let versions = info.versions.unwrap();
        assert_eq!(versions.python.as_deref(), Some("3.12.1"));
        assert_eq!(
            (versions.cuda.as_deref(), versions.devices.len()),
            (Some("12.8"), 1)
        );
        let lines: Vec<Value> = std::fs::read_to_string(&seen)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0]["decoding"],
            json!({"temperature": 0.7, "top_p": 0.9, "seed": 5, "max_tokens": 40, "ignore_eos": true})
        );
        // The prompt's own limit (3), else [load].max_tokens (40); all explicit.
        assert_eq!(
            lines[1],
            json!({"type": "generate", "id": "r0", "prompt": "prompt 0", "max_tokens": 3,
                   "temperature": 0.7, "top_p": 0.9, "seed": 5, "ignore_eos": true})
        );
        assert_eq!(lines[2]["max_tokens"], 40);
    }

    /// A batch of two as the PyTorch worker runs it: both rows share their
    /// step times, `short` stops after 2 tokens, `long` after 5, and each
    /// `done` carries its own last token's time.
    const BATCH_WORKER: &str = r#"
read hello
echo '{"type":"ready","protocol":1,"engine":"fake","engine_version":"0.0","device":"cpu"}'
read a; read b
t=$(date +%s%N)
ms() { echo $((t + $1 * 1000000)); }
for id in r0 r1; do
  echo "{\"type\":\"first_token\",\"id\":\"$id\",\"t_ns\":$t}"
  echo "{\"type\":\"token\",\"id\":\"$id\",\"t_ns\":$t,\"n\":1}"
done
echo "{\"type\":\"token\",\"id\":\"r0\",\"t_ns\":$(ms 1),\"n\":1}"
echo "{\"type\":\"token\",\"id\":\"r1\",\"t_ns\":$(ms 1),\"n\":1}"
echo "{\"type\":\"token\",\"id\":\"r1\",\"t_ns\":$(ms 4),\"n\":3}"
echo "{\"type\":\"done\",\"id\":\"r0\",\"t_ns\":$(ms 1),\"input_tokens\":3,\"output_tokens\":2}"
echo "{\"type\":\"done\",\"id\":\"r1\",\"t_ns\":$(ms 8),\"input_tokens\":3,\"output_tokens\":5}"
read shutdown
"#;

    #[test]
    fn each_request_of_a_batch_has_its_own_end_and_tpot() {
        let records: Vec<RequestRecord> = two_requests_through(BATCH_WORKER)
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.into_request_record(i))
            .collect();
        let (short, long) = (&records[0], &records[1]);
        assert_eq!(short.first_token_ns, long.first_token_ns, "one batch");
        let first = short.first_token_ns.unwrap();
        assert_eq!(short.end_ns, first + 1_000_000);
        assert_eq!(long.end_ns, first + 8_000_000);
        assert_eq!(
            long.chunk_ns.len(),
            5,
            "a chunk of 3 tokens is 3 timestamps"
        );
        // TPOT = (own end − first token) / (output tokens − 1): 1 ms and 2 ms,
        // not the short request's tokens spread over the long one's end.
        let summary = crate::loadgen::summarize(&records, None, &[]);
        assert_eq!(summary.tpot.count, 2);
        assert!((summary.tpot.min - 1.0).abs() < 1e-9, "{:?}", summary.tpot);
        assert!((summary.tpot.max - 2.0).abs() < 1e-9, "{:?}", summary.tpot);
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
        let log = dir.path().join("engine.log").display().to_string();
        assert!(text.contains(&log), "names the log's path: {text}");
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
