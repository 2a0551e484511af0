//! The load generator against a real local streaming server
//! (`support/stream_server.rs`): timings against the server's schedule and
//! its own send times, token counts, concurrency, arrivals, warm-up, failures,
//! cancellation; and the summary maths on hand-made records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use llem::loadgen::{
    Api, Arrival, ArrivalTimes, LoadConfig, Metric, Phase, RequestRecord, run, run_blocking,
    run_blocking_observed, summarize,
};
use llem_integration_tests::stream_server::{Framing, Schedule, StreamServer};
use llem_sdk::{ChatMessage, Prompt, PromptBody};

const MS: u64 = 1_000_000;

fn prompts(n: usize, max_tokens: Option<u32>) -> Vec<Prompt> {
    (0..n)
        .map(|i| Prompt {
            id: format!("p{i}"),
            body: PromptBody::Text(format!("prompt number {i} here")),
            input_tokens: None,
            max_output_tokens: max_tokens,
        })
        .collect()
}

fn config(server: &StreamServer, api: Api) -> LoadConfig {
    let mut config = LoadConfig::new(server.base_url(), api, "test-model");
    config.request_timeout = Duration::from_secs(30);
    config
}

fn no_stop() -> AtomicBool {
    AtomicBool::new(false)
}

fn prompt_text(prompts: &[Prompt], id: &str) -> String {
    match &prompts.iter().find(|p| p.id == id).expect("prompt").body {
        PromptBody::Text(t) => t.clone(),
        PromptBody::Chat(m) => m.last().expect("a message").content.clone(),
    }
}

#[test]
fn timings_follow_the_server_schedule() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(50),
        interval: Duration::from_millis(10),
        chunks: 8,
        ..Schedule::default()
    });
    let prompts = prompts(4, None);
    let mut config = config(&server, Api::Completions);
    config.max_concurrency = Some(2);
    let records = run_blocking(&config, &prompts, &no_stop(), |_| {}).unwrap();
    assert_eq!(records.len(), 4);

    for r in &records {
        assert!(r.success, "{r:?}");
        assert_eq!(r.phase, Phase::Measured);
        assert_eq!(r.chunk_ns.len(), 8);
        assert_eq!(r.first_token_ns, Some(r.chunk_ns[0]));
        // The server's own clock readings for this request.
        let log = server
            .log()
            .stream(&prompt_text(&prompts, &r.prompt_id))
            .unwrap();
        assert_eq!(log.chunk_ns.len(), 8);
        assert!(log.arrival_ns >= r.send_ns);
        for (client, sent) in r.chunk_ns.iter().zip(&log.chunk_ns) {
            assert!(client >= sent, "received before it was sent");
            assert!(
                client - sent < 20 * MS,
                "received {} ms after sending",
                (client - sent) / MS
            );
        }
        // Against the schedule: TTFT ≈ 50 ms, ITL ≈ 10 ms, E2E ≈ 50 + 7·10 ms.
        // tokio's timer fires on whole milliseconds, after the deadline.
        let ttft = r.chunk_ns[0] - r.send_ns;
        assert!((50 * MS..70 * MS).contains(&ttft), "ttft {ttft} ns");
        for gap in r.chunk_ns.windows(2).map(|w| w[1] - w[0]) {
            assert!((5 * MS..16 * MS).contains(&gap), "itl {gap} ns");
        }
        let e2e = r.end_ns - r.send_ns;
        assert!((120 * MS..145 * MS).contains(&e2e), "e2e {e2e} ns");
        assert!(r.end_ns >= *r.chunk_ns.last().unwrap());
        // Token counts come from the server's usage chunk.
        assert!(r.tokens_from_usage);
        assert_eq!(r.output_tokens, Some(8));
        assert_eq!(r.input_tokens, Some(4));
        assert_eq!(
            r.output_text_len,
            (0..8).map(|i| format!(" tok{i}").len()).sum::<usize>()
        );
        assert_eq!(r.output_text, None);
    }

    let summary = summarize(&records, None, &[]);
    assert_eq!(summary.completed, 4);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.total_output_tokens, 32);
    assert_eq!(summary.itl.count, 4 * 7);
    assert!(
        (50.0..70.0).contains(&summary.ttft.median),
        "{:?}",
        summary.ttft
    );
    // TPOT = (E2E − TTFT) / 7 ≈ 10 ms.
    assert!(
        (9.0..12.5).contains(&summary.tpot.mean),
        "{:?}",
        summary.tpot
    );

    // What went over the wire.
    let bodies = server.log().bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 4);
    for body in &bodies {
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(
            body["prompt"]
                .as_str()
                .unwrap()
                .starts_with("prompt number")
        );
        // Decoding is always explicit: greedy and [load].max_tokens for a
        // prompt without its own limit (an engine's defaults differ).
        assert_eq!(body["max_tokens"], 256, "{body}");
        assert_eq!(
            (&body["temperature"], &body["top_p"]),
            (&serde_json::json!(0.0), &serde_json::json!(1.0))
        );
        assert!(body.get("seed").is_none() && body.get("ignore_eos").is_none());
    }
}

#[test]
fn chat_api_sends_text_prompts_as_one_user_message_and_ignores_role_only_chunks() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(5),
        interval: Duration::from_millis(1),
        ..Schedule::default()
    });
    let mut prompts = prompts(1, Some(6));
    prompts.push(Prompt {
        id: "conversation".into(),
        body: PromptBody::Chat(vec![
            ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "say hi".into(),
            },
        ]),
        input_tokens: None,
        max_output_tokens: Some(3),
    });
    let mut config = config(&server, Api::Chat);
    config.decoding.ignore_eos = true;
    config.decoding.temperature = 0.6;
    config.decoding.top_p = 0.9;
    config.decoding.seed = Some(11);
    let records = run_blocking(&config, &prompts, &no_stop(), |_| {}).unwrap();
    assert!(records.iter().all(|r| r.success), "{records:?}");
    // The role-only first chunk is not text: 6 and 3 text chunks.
    assert_eq!(records[0].chunk_ns.len(), 6);
    assert_eq!(records[1].chunk_ns.len(), 3);
    assert_eq!(records[1].output_tokens, Some(3));

    let bodies = server.log().bodies.lock().unwrap().clone();
    let by_tokens = |n: u64| {
        bodies
            .iter()
            .find(|b| b["max_tokens"] == n)
            .unwrap()
            .clone()
    };
    let text = by_tokens(6);
    assert_eq!(
        text["messages"],
        serde_json::json!([{"role": "user", "content": "prompt number 0 here"}])
    );
    assert_eq!(text["ignore_eos"], true);
    // The kernel's decoding, explicit in every body (issue 7: one workload).
    for body in &bodies {
        assert_eq!(
            (&body["temperature"], &body["top_p"], &body["seed"]),
            (
                &serde_json::json!(0.6),
                &serde_json::json!(0.9),
                &serde_json::json!(11)
            ),
            "{body}"
        );
    }
    assert_eq!(by_tokens(3)["messages"][0]["role"], "system");
}

#[test]
fn without_usage_the_text_is_kept_for_the_tokenizer() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(1),
        interval: Duration::from_millis(1),
        chunks: 3,
        usage: false,
        ..Schedule::default()
    });
    let records = run_blocking(
        &config(&server, Api::Completions),
        &prompts(1, None),
        &no_stop(),
        |_| {},
    )
    .unwrap();
    let r = &records[0];
    assert!(r.success);
    assert_eq!(
        (r.output_tokens, r.input_tokens, r.tokens_from_usage),
        (None, None, false)
    );
    assert_eq!(r.output_text.as_deref(), Some(" tok0 tok1 tok2"));
    let summary = summarize(&records, None, &[]);
    assert_eq!(summary.missing_token_counts, 1);
    assert_eq!(summary.tpot.count, 0);
    assert!(summary.tpot.mean.is_nan());
}

#[test]
fn closed_loop_never_exceeds_max_concurrency() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(3),
        interval: Duration::from_millis(1),
        chunks: 4,
        ..Schedule::default()
    });
    let mut config = config(&server, Api::Completions);
    config.max_concurrency = Some(3);
    config.num_requests = Some(30);
    let mut max_client_in_flight = 0;
    let records = run_blocking(&config, &prompts(7, None), &no_stop(), |p| {
        max_client_in_flight = max_client_in_flight.max(p.in_flight);
    })
    .unwrap();
    assert_eq!(records.len(), 30);
    assert!(records.iter().all(|r| r.success));
    assert_eq!(server.log().requests.load(Ordering::SeqCst), 30);
    // The server counts a request in flight until it has handed over its last bytes.
    assert_eq!(server.log().max_in_flight.load(Ordering::SeqCst), 3);
    assert_eq!(max_client_in_flight, 3);
    // Prompts are cycled in order.
    let ids: Vec<&str> = records.iter().map(|r| r.prompt_id.as_str()).collect();
    assert_eq!(
        &ids[..9],
        ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p0", "p1"]
    );
    // Indices are send order.
    assert!(records.iter().enumerate().all(|(i, r)| r.index == i as u32));
}

#[test]
fn connections_are_open_before_the_ready_call_and_no_request_is_sent_before_it() {
    // A measured window opens in `on_ready`: the connections it pre-warms
    // must be established by then (their set-up is not in the window), and no
    // request may go out before it. The client is single-threaded and blocked
    // in `on_ready` for a while: a connection the server accepts by the end
    // of that pause was connected before it.
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(2),
        interval: Duration::from_millis(1),
        chunks: 3,
        ..Schedule::default()
    });
    let mut config = config(&server, Api::Completions);
    config.max_concurrency = Some(6);
    config.num_requests = Some(12);
    let mut seen = None;
    let mut ready_ns = 0;
    let records = run_blocking_observed(
        &config,
        &prompts(4, None),
        &no_stop(),
        || {
            std::thread::sleep(Duration::from_millis(300));
            let log = server.log();
            seen = Some((
                log.accepted.load(Ordering::SeqCst),
                log.requests.load(Ordering::SeqCst),
            ));
            ready_ns = llem::clock::monotonic_ns();
        },
        |_| {},
        |_| {},
    )
    .unwrap();
    assert_eq!(seen, Some((6, 0)), "(connections accepted, requests seen)");
    assert_eq!(records.len(), 12);
    assert!(records.iter().all(|r| r.success && r.send_ns >= ready_ns));
    // The measured requests reuse those connections.
    assert_eq!(server.log().accepted.load(Ordering::SeqCst), 6);
}

#[test]
fn poisson_schedule_mean_rate_and_determinism() {
    // The schedule itself: 20,000 arrivals at 50/s.
    let times: Vec<u64> = ArrivalTimes::new(Arrival::Poisson { rate: 50.0 }, None, 42)
        .take(20_001)
        .collect();
    let rate = 20_000.0 / (*times.last().unwrap() as f64 / 1e9);
    assert!((rate - 50.0).abs() < 1.5, "mean rate {rate}");

    // A real run follows the schedule: send times (relative to the first) match
    // the seeded offsets to within a few ms of timer granularity.
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(1),
        interval: Duration::from_millis(1),
        chunks: 1,
        ..Schedule::default()
    });
    let mut config = config(&server, Api::Completions);
    config.arrival = Arrival::Poisson { rate: 100.0 };
    config.num_requests = Some(40);
    config.seed = 7;
    let sends = |config: &LoadConfig| -> Vec<u64> {
        let records = run_blocking(config, &prompts(5, None), &no_stop(), |_| {}).unwrap();
        assert!(records.iter().all(|r| r.success));
        records
            .iter()
            .map(|r| r.send_ns - records[0].send_ns)
            .collect()
    };
    let expected: Vec<u64> = ArrivalTimes::new(config.arrival, None, 7)
        .take(40)
        .collect();
    let first = sends(&config);
    let second = sends(&config);
    for ((a, b), want) in first.iter().zip(&second).zip(&expected) {
        assert!(
            a.abs_diff(*want) < 8 * MS,
            "sent at {a} ns, scheduled at {want} ns"
        );
        assert!(a.abs_diff(*b) < 8 * MS, "same seed: {a} vs {b} ns");
    }
    let observed_rate = 39.0 / (*first.last().unwrap() as f64 / 1e9);
    let scheduled_rate = 39.0 / (expected[39] as f64 / 1e9);
    assert!(
        (observed_rate / scheduled_rate - 1.0).abs() < 0.05,
        "observed {observed_rate}/s, scheduled {scheduled_rate}/s"
    );
    // Another seed, another schedule.
    let other: Vec<u64> = ArrivalTimes::new(config.arrival, None, 8)
        .take(40)
        .collect();
    assert_ne!(other, expected);
}

#[test]
fn duration_stops_sending_and_lets_requests_finish() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(50),
        interval: Duration::from_millis(10),
        chunks: 3,
        ..Schedule::default()
    });
    let mut config = config(&server, Api::Completions);
    config.arrival = Arrival::Gamma {
        rate: 40.0,
        burstiness: f64::INFINITY,
    };
    config.duration = Some(Duration::from_millis(500));
    let started = Instant::now();
    let records = run_blocking(&config, &prompts(3, None), &no_stop(), |_| {}).unwrap();
    // Constant gaps of 25 ms over 500 ms: sends at 0, 25, …, 475 ms.
    assert!((19..=21).contains(&records.len()), "{}", records.len());
    assert!(records.iter().all(|r| r.success));
    assert!(started.elapsed() >= Duration::from_millis(550));
}

#[test]
fn warmup_requests_come_first_and_are_marked() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(2),
        interval: Duration::from_millis(1),
        chunks: 2,
        ..Schedule::default()
    });
    let mut config = config(&server, Api::Completions);
    config.warmup_requests = 3;
    config.num_requests = Some(5);
    config.max_concurrency = Some(2);
    let mut phases = Vec::new();
    let records = run_blocking(&config, &prompts(4, None), &no_stop(), |p| {
        if phases.last() != Some(&p.phase) {
            phases.push(p.phase);
        }
    })
    .unwrap();
    assert_eq!(phases, [Some(Phase::Warmup), Some(Phase::Measured)]);
    assert_eq!(records.len(), 8);
    let marked: Vec<Phase> = records.iter().map(|r| r.phase).collect();
    assert_eq!(&marked[..3], [Phase::Warmup; 3]);
    assert_eq!(&marked[3..], [Phase::Measured; 5]);
    let last_warmup_end = records[..3].iter().map(|r| r.end_ns).max().unwrap();
    assert!(records[3..].iter().all(|r| r.send_ns >= last_warmup_end));
    let ids: Vec<&str> = records.iter().map(|r| r.prompt_id.as_str()).collect();
    assert_eq!(ids, ["p0", "p1", "p2", "p0", "p1", "p2", "p3", "p0"]);
    assert_eq!(summarize(&records, None, &[]).completed, 5);
}

#[test]
fn http_errors_are_recorded_with_the_body() {
    let server = StreamServer::start(Schedule {
        fail_status: Some(500),
        ..Schedule::default()
    });
    let records = run_blocking(
        &config(&server, Api::Chat),
        &prompts(3, None),
        &no_stop(),
        |_| {},
    )
    .unwrap();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert!(!r.success);
        let error = r.error.as_deref().unwrap();
        assert!(error.starts_with("HTTP 500"), "{error}");
        assert!(error.contains("engine exploded"), "{error}");
        assert!(r.end_ns >= r.send_ns && r.send_ns > 0);
    }
    let summary = summarize(&records, None, &[(Metric::Ttft, 1000.0)]);
    assert_eq!((summary.completed, summary.failed), (0, 3));
    assert_eq!(summary.goodput.unwrap().good, 0);
}

#[test]
fn connection_refused_is_recorded() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut config = LoadConfig::new(format!("http://127.0.0.1:{port}/v1"), Api::Completions, "m");
    config.num_requests = Some(2);
    let records = run_blocking(&config, &prompts(1, None), &no_stop(), |_| {}).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert!(!r.success);
        let error = r.error.as_deref().unwrap();
        assert!(error.contains("connecting to 127.0.0.1"), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }
}

#[test]
fn malformed_events_and_timeouts_are_recorded() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(1),
        interval: Duration::from_millis(1),
        inject_event: Some("{oops".into()),
        ..Schedule::default()
    });
    let records = run_blocking(
        &config(&server, Api::Completions),
        &prompts(1, None),
        &no_stop(),
        |_| {},
    )
    .unwrap();
    let error = records[0].error.as_deref().unwrap();
    assert!(error.starts_with("malformed stream event"), "{error}");
    assert!(error.contains("{oops"), "{error}");
    assert_eq!(records[0].chunk_ns.len(), 1, "what came before is kept");

    let slow = StreamServer::start(Schedule {
        first_token: Duration::from_secs(5),
        ..Schedule::default()
    });
    let mut config = config(&slow, Api::Completions);
    config.request_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let records = run_blocking(&config, &prompts(1, None), &no_stop(), |_| {}).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(records[0].error.as_deref(), Some("timed out after 0.200 s"));
    let e2e = records[0].end_ns - records[0].send_ns;
    assert!((200 * MS..400 * MS).contains(&e2e), "{e2e}");
}

#[test]
fn sse_split_anywhere_with_crlf_and_comments() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(2),
        interval: Duration::from_millis(2),
        chunks: 5,
        framing: Framing::Awkward,
        ..Schedule::default()
    });
    for api in [Api::Completions, Api::Chat] {
        let records =
            run_blocking(&config(&server, api), &prompts(2, None), &no_stop(), |_| {}).unwrap();
        for r in &records {
            assert!(r.success, "{r:?}");
            assert_eq!(r.chunk_ns.len(), 5);
            assert_eq!(r.output_tokens, Some(5));
            assert_eq!(r.output_text_len, " tok0 tok1 tok2 tok3 tok4".len());
        }
    }
}

#[tokio::test]
async fn stop_flag_cancels_requests_in_flight() {
    let server = StreamServer::start(Schedule {
        first_token: Duration::from_millis(5),
        interval: Duration::from_millis(10),
        ..Schedule::default()
    });
    // p0 finishes after 1 chunk; p1 would take 10 s.
    let mut prompts = prompts(2, Some(1));
    prompts[1].max_output_tokens = Some(1000);
    let mut config = config(&server, Api::Completions);
    config.decoding.ignore_eos = true; // p1 streams all 1000
    config.num_requests = Some(2);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let setter = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        setter.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let records = run(&config, &prompts, &stop, |_| {}).await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(records.len(), 2);
    assert!(records[0].success);
    let cancelled = &records[1];
    assert!(!cancelled.success);
    assert_eq!(cancelled.error.as_deref(), Some("cancelled"));
    assert!(
        !cancelled.chunk_ns.is_empty(),
        "chunks received before the stop are kept"
    );
    assert!(cancelled.end_ns > *cancelled.chunk_ns.last().unwrap());
    // The server sees the stream go away.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.log().in_flight.load(Ordering::SeqCst) != 0 {
        assert!(Instant::now() < deadline, "server still streaming");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stop_before_the_measured_phase_sends_nothing_more() {
    let server = StreamServer::start(Schedule::default());
    let mut config = config(&server, Api::Completions);
    config.warmup_requests = 2;
    let stop = AtomicBool::new(true);
    let records = run_blocking(&config, &prompts(3, None), &stop, |_| {}).unwrap();
    // The flag is seen at the first poll: nothing, or only cancelled warm-ups.
    assert!(
        records
            .iter()
            .all(|r| r.phase == Phase::Warmup && !r.success)
    );
}

#[test]
fn invalid_configurations_are_refused_up_front() {
    let stop = no_stop();
    let config = LoadConfig::new("http://127.0.0.1:9/v1", Api::Completions, "m");
    assert!(run_blocking(&config, &[], &stop, |_| {}).is_err());
    let chat_prompt = Prompt {
        id: "c".into(),
        body: PromptBody::Chat(vec![ChatMessage {
            role: "user".into(),
            content: "x".into(),
        }]),
        input_tokens: None,
        max_output_tokens: None,
    };
    let error = run_blocking(&config, &[chat_prompt], &stop, |_| {}).unwrap_err();
    assert!(error.to_string().contains("chat"), "{error}");
}

// ------------------------------------------------------------ summary maths

fn record(
    index: u32,
    send_ms: u64,
    chunks_ms: &[u64],
    end_ms: u64,
    tokens: Option<u32>,
) -> RequestRecord {
    RequestRecord {
        index,
        prompt_id: format!("p{index}"),
        phase: Phase::Measured,
        send_ns: send_ms * MS,
        first_token_ns: chunks_ms.first().map(|t| t * MS),
        chunk_ns: chunks_ms.iter().map(|t| t * MS).collect(),
        end_ns: end_ms * MS,
        input_tokens: Some(10),
        output_tokens: tokens,
        tokens_from_usage: tokens.is_some(),
        output_text_len: 0,
        output_text: None,
        success: true,
        error: None,
    }
}

#[test]
fn percentiles_are_exact_on_hand_made_records() {
    // TTFT i ms for i = 1..=100, one chunk each, E2E 2i ms, 1 token.
    let records: Vec<RequestRecord> = (1..=100)
        .map(|i| record(i as u32, 1000, &[1000 + i], 1000 + 2 * i, Some(1)))
        .collect();
    let s = summarize(&records, None, &[]);
    // numpy.percentile(range(1, 101), [50, 90, 95, 99]) = 50.5, 90.1, 95.05, 99.01
    assert_eq!(s.ttft.count, 100);
    assert!((s.ttft.mean - 50.5).abs() < 1e-9);
    assert!((s.ttft.median - 50.5).abs() < 1e-9);
    assert!((s.ttft.p90 - 90.1).abs() < 1e-9);
    assert!((s.ttft.p95 - 95.05).abs() < 1e-9);
    assert!((s.ttft.p99 - 99.01).abs() < 1e-9);
    assert_eq!((s.ttft.min, s.ttft.max), (1.0, 100.0));
    assert!((s.e2e.p99 - 198.02).abs() < 1e-9);
    // One token each: no TPOT, no ITL.
    assert_eq!((s.tpot.count, s.itl.count), (0, 0));
    // Duration: first send (1000 ms) to last end (1200 ms).
    assert!((s.duration_s - 0.2).abs() < 1e-12);
    assert!((s.request_throughput - 500.0).abs() < 1e-9);
    assert!((s.output_token_throughput - 500.0).abs() < 1e-9);
    assert_eq!((s.total_output_tokens, s.total_input_tokens), (100, 1000));
}

#[test]
fn itl_and_tpot_are_exact() {
    let records = vec![
        // TTFT 10, chunks at 10, 14, 20 (ITL 4, 6), E2E 30, 5 tokens → TPOT (30-10)/4 = 5
        record(0, 0, &[10, 14, 20], 30, Some(5)),
        // TTFT 20, chunks at 120, 121 (ITL 1), E2E 22, 2 tokens → TPOT 2
        record(1, 100, &[120, 121], 122, Some(2)),
    ];
    let s = summarize(&records, None, &[]);
    assert_eq!(s.itl.count, 3);
    assert!((s.itl.mean - 11.0 / 3.0).abs() < 1e-12);
    assert_eq!((s.itl.median, s.itl.min, s.itl.max), (4.0, 1.0, 6.0));
    assert_eq!(s.tpot.count, 2);
    assert_eq!((s.tpot.mean, s.tpot.median), (3.5, 3.5));
    assert_eq!(s.ttft.mean, 15.0);
    assert_eq!(s.e2e.mean, 26.0);
}

#[test]
fn goodput_is_exact_on_hand_made_records() {
    let mut records = vec![
        // ttft 10, tpot (50-10)/4 = 10, e2e 50
        record(0, 0, &[10, 20], 50, Some(5)),
        // ttft 30 (misses ttft:20)
        record(1, 0, &[30, 40], 60, Some(5)),
        // ttft 5, tpot (105-5)/4 = 25 (misses tpot:20)
        record(2, 0, &[5, 50], 105, Some(5)),
        // ttft 5, one token: tpot counts as 0
        record(3, 0, &[5], 8, Some(1)),
        // unknown token count: tpot unknown, not good
        record(4, 0, &[5, 6], 9, None),
    ];
    let mut failed = record(5, 0, &[], 3, None);
    failed.success = false;
    records.push(failed);
    // A warm-up that would be good is not counted.
    let mut warm = record(6, 0, &[1, 2], 3, Some(2));
    warm.phase = Phase::Warmup;
    records.push(warm);

    let s = summarize(
        &records,
        None,
        &[(Metric::Ttft, 20.0), (Metric::Tpot, 20.0)],
    );
    let g = s.goodput.unwrap();
    assert_eq!(g.good, 2); // records 0 and 3
    assert_eq!((s.completed, s.failed), (5, 1));
    assert!((g.fraction - 2.0 / 6.0).abs() < 1e-12);
    // Duration 0 → 105 ms.
    assert!((g.rate - 2.0 / 0.105).abs() < 1e-9);
    // SLOs are inclusive (vLLM: slo >= value).
    let s = summarize(&records, None, &[(Metric::E2el, 50.0)]);
    assert_eq!(s.goodput.unwrap().good, 3); // e2e 50, 8, 9
    assert!(summarize(&records, None, &[]).goodput.is_none());
}

#[test]
fn window_limits_requests_and_apportions_tokens() {
    let records = vec![
        // Entirely inside [100, 200] ms.
        record(0, 100, &[110, 120], 130, Some(4)),
        // Overlaps: 2 of its 4 chunks inside → half of its 8 tokens.
        record(1, 50, &[60, 90, 150, 190], 250, Some(8)),
        // Outside.
        record(2, 300, &[310], 320, Some(3)),
    ];
    let s = summarize(&records, Some((100 * MS, 200 * MS)), &[]);
    assert_eq!(s.completed, 1);
    assert_eq!(s.ttft.count, 1);
    assert!((s.duration_s - 0.1).abs() < 1e-12);
    assert_eq!(s.total_output_tokens, 4 + 4);
    assert!((s.output_token_throughput - 80.0).abs() < 1e-9);
    assert!((s.request_throughput - 10.0).abs() < 1e-9);
}
