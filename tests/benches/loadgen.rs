//! Cost and timestamp accuracy of the load generator's streaming client
//! (issue #4 goals: ≥ 100k streamed tokens/s per client core; p99 timestamp
//! error < 100 µs).
//!
//! The local streaming server (`support/stream_server.rs`) runs on its own
//! thread and runtime and emits one token per chunk on a known schedule,
//! recording when it handed each chunk to its connection. The client runs
//! `llem::loadgen::run` on a single-threaded runtime on another thread; its
//! CPU time is that thread's CLOCK_THREAD_CPUTIME_ID (the whole client: the
//! runtime, hyper's connection tasks, SSE and JSON parsing, bookkeeping).
//!
//! Timestamp error = client receive time − server send time, per chunk, both
//! CLOCK_MONOTONIC: it is what the client adds to every TTFT/ITL figure
//! (loopback, wake-up, reading, parsing), plus the server's write.
//!
//! Run: `cargo bench -p llem-integration-tests --bench loadgen`

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use llem::loadgen::{Api, Arrival, LoadConfig, percentile};
use llem_integration_tests::stream_server::{Schedule, StreamServer};
use llem_sdk::{Prompt, PromptBody};

struct Case {
    name: &'static str,
    streams: u32,
    chunks: u32,
    interval: Duration,
    /// Spread the stream starts evenly over one interval (constant-gap
    /// arrivals) instead of starting them all at once: then the server's
    /// chunks are spread in time rather than emitted in lockstep bursts.
    stagger: bool,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds this thread has spent runnable but waiting for a CPU
/// (`/proc/thread-self/schedstat`, second field; 0 if unavailable).
fn thread_runqueue_wait_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn run_case(case: &Case) {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(20),
        interval: case.interval,
        chunks: case.chunks,
        ..Schedule::default()
    });
    let prompts: Vec<Prompt> = (0..case.streams)
        .map(|i| Prompt {
            id: format!("p{i}"),
            body: PromptBody::Text(format!("stream {i}")),
            input_tokens: None,
            max_output_tokens: Some(case.chunks),
        })
        .collect();
    let mut config = LoadConfig::new(server.base_url(), Api::Completions, "bench");
    config.max_concurrency = Some(case.streams);
    if case.stagger {
        config.arrival = Arrival::Gamma {
            rate: f64::from(case.streams) / case.interval.as_secs_f64(),
            burstiness: f64::INFINITY,
        };
    }
    let (records, cpu_ns, wall_ns, wait_ns) = std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let stop = AtomicBool::new(false);
            let cpu0 = thread_cpu_ns();
            let wait0 = thread_runqueue_wait_ns();
            let wall0 = llem::clock::monotonic_ns();
            let records = runtime
                .block_on(llem::loadgen::run(&config, &prompts, &stop, |_| {}))
                .expect("run");
            (
                records,
                thread_cpu_ns() - cpu0,
                llem::clock::monotonic_ns() - wall0,
                thread_runqueue_wait_ns() - wait0,
            )
        })
        .join()
        .expect("client thread")
    });

    let mut errors_us = Vec::new();
    let mut tokens = 0u64;
    let mut failed = 0;
    for r in &records {
        if !r.success {
            failed += 1;
            continue;
        }
        tokens += r.chunk_ns.len() as u64;
        let key = match &prompts[r.index as usize].body {
            PromptBody::Text(t) => t.clone(),
            PromptBody::Chat(_) => unreachable!(),
        };
        let log = server.log().stream(&key).expect("server log");
        assert_eq!(log.chunk_ns.len(), r.chunk_ns.len(), "chunk counts differ");
        for (client, sent) in r.chunk_ns.iter().zip(&log.chunk_ns) {
            errors_us.push((*client as f64 - *sent as f64) / 1e3);
        }
    }
    errors_us.sort_by(f64::total_cmp);
    let cpu_s = cpu_ns as f64 / 1e9;
    let wall_s = wall_ns as f64 / 1e9;
    println!(
        "| {}{} | {} | {} | {:.0} | {:.2} | {:.1} % | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
        case.name,
        if case.stagger { ", staggered" } else { "" },
        case.streams,
        tokens,
        tokens as f64 / wall_s,
        cpu_s,
        100.0 * cpu_s / wall_s,
        cpu_ns as f64 / tokens.max(1) as f64 / 1e3,
        tokens as f64 / cpu_s,
        percentile(&errors_us, 50.0),
        percentile(&errors_us, 99.0),
        errors_us.last().copied().unwrap_or(f64::NAN),
        wait_ns as f64 / 1e6,
    );
    if failed > 0 {
        println!("  ({failed} requests failed)");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probes
    }
    let cases = [
        Case {
            name: "paced, 1 ms",
            streams: 1,
            chunks: 3000,
            interval: Duration::from_millis(1),
            stagger: false,
        },
        Case {
            name: "paced, 5 ms",
            streams: 64,
            chunks: 600,
            interval: Duration::from_millis(5),
            stagger: false,
        },
        Case {
            name: "paced, 5 ms",
            streams: 64,
            chunks: 600,
            interval: Duration::from_millis(5),
            stagger: true,
        },
        Case {
            name: "paced, 20 ms",
            streams: 1024,
            chunks: 150,
            interval: Duration::from_millis(20),
            stagger: false,
        },
        Case {
            name: "paced, 20 ms",
            streams: 1024,
            chunks: 150,
            interval: Duration::from_millis(20),
            stagger: true,
        },
        Case {
            name: "flat out",
            streams: 1,
            chunks: 200_000,
            interval: Duration::ZERO,
            stagger: false,
        },
        Case {
            name: "flat out",
            streams: 64,
            chunks: 5_000,
            interval: Duration::ZERO,
            stagger: false,
        },
        Case {
            name: "flat out",
            streams: 1024,
            chunks: 300,
            interval: Duration::ZERO,
            stagger: false,
        },
    ];
    println!(
        "| case | streams | tokens | tokens/s | client CPU s | of one core | CPU µs/token | tokens/s per client core | error p50 µs | p99 µs | max µs | client waited for a CPU, ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in &cases {
        run_case(case);
    }
}
