//! `token-server`: the load generator's token-schedule test server
//! (`support/stream_server.rs`) as a program, so that any client — llem in
//! attach mode, or a peer benchmark tool — can be run against the same
//! schedule and have its timestamps checked against the server's own
//! (`bench/side_by_side.py`).
//!
//! ```text
//! token-server [--addr 127.0.0.1:0] [--ttft-ms 20] [--itl-ms 5] [--chunks 256]
//! ```
//! Answers `/v1/completions` and `/v1/chat/completions` with SSE streams: the
//! first text chunk `ttft` after a request arrives, then one every `itl` at
//! absolute deadlines, `chunks` of them (fewer when the request's
//! `max_tokens` says so, exactly `max_tokens` with `ignore_eos`), then a
//! `usage` chunk and `[DONE]`. Prints `listening http://HOST:PORT/v1` once
//! ready. Reads commands on stdin, one per line:
//! - `dump PATH`: write every stream finished since the last dump to PATH as
//!   JSON lines `{"order", "key", "arrival_ns", "chunk_ns"}` (CLOCK_MONOTONIC
//!   ns: when the request arrived, when each text chunk was handed to the
//!   connection; `order` is the arrival order, `key` the prompt or the last
//!   message's text), then answer `dumped N`;
//! - `quit` or the end of stdin: stop.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use llem_integration_tests::stream_server::{Schedule, StreamServer};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-server: {e}");
            ExitCode::from(2)
        }
    }
}

fn parse_args() -> Result<(SocketAddr, Schedule), String> {
    let mut addr: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let mut schedule = Schedule {
        chunks: 256,
        ..Schedule::default()
    };
    let mut args = std::env::args().skip(1);
    let ms = |v: Option<String>, name: &str| -> Result<Duration, String> {
        let v = v.ok_or(format!("{name} needs a value"))?;
        let ms: f64 = v
            .parse()
            .map_err(|_| format!("{name}: `{v}` is not a number"))?;
        Duration::try_from_secs_f64(ms / 1e3).map_err(|e| format!("{name}: {e}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let v = args.next().ok_or("--addr needs a value")?;
                addr = v
                    .parse()
                    .map_err(|_| format!("--addr: `{v}` is not HOST:PORT"))?;
            }
            "--ttft-ms" => schedule.first_token = ms(args.next(), "--ttft-ms")?,
            "--itl-ms" => schedule.interval = ms(args.next(), "--itl-ms")?,
            "--chunks" => {
                let v = args.next().ok_or("--chunks needs a value")?;
                schedule.chunks = v.parse().map_err(|_| format!("--chunks: `{v}`"))?;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: token-server [--addr 127.0.0.1:0] [--ttft-ms 20] [--itl-ms 5] \
                     [--chunks 256]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((addr, schedule))
}

fn run() -> Result<(), String> {
    let (addr, schedule) = parse_args()?;
    let server = StreamServer::start_on(addr, schedule).map_err(|e| format!("{addr}: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock, line: String| -> Result<(), String> {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))
    };
    say(&mut stdout, format!("listening {}", server.base_url()))?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let line = line.trim();
        if line == "quit" {
            break;
        }
        if let Some(path) = line.strip_prefix("dump ") {
            let streams = server.log().take_history();
            let mut text = String::with_capacity(streams.len() * 4096);
            for (key, stream) in &streams {
                let row = serde_json::json!({
                    "order": stream.order,
                    "key": key,
                    "arrival_ns": stream.arrival_ns,
                    "chunk_ns": stream.chunk_ns,
                });
                text.push_str(&row.to_string());
                text.push('\n');
            }
            std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
            say(&mut stdout, format!("dumped {}", streams.len()))?;
        } else if !line.is_empty() {
            say(&mut stdout, format!("unknown command `{line}`"))?;
        }
    }
    Ok(())
}
