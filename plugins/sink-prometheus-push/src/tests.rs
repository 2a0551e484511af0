//! The exposition text (read back with the backends' Prometheus reader), the
//! grouping key, and pushes to a one-shot local server that records the
//! request and answers what the test says.

#![allow(clippy::unwrap_used)]

use super::*;
use backend_common::prometheus::parse_line;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;

fn sink(url: &str, extra: &str) -> PushSink {
    let config = Config::from_json(&format!(r#"{{"url": "{url}"{extra}}}"#)).unwrap();
    PushSink::open(config).unwrap()
}

fn result() -> Value {
    json!({
        "run_id": "r1", "status": "complete",
        "experiment": {"name": "exp \"1\"", "model": "m", "cycle": 2},
        "duration_s": 3.25,
        "energy": {"total_j": 12.5, "net_j": null, "includes_estimates": true},
        "inference": {
            "requests_sent": 8, "requests_succeeded": 7, "requests_failed": 1,
            "latency": {"ttft": {"mean": 4.0, "p99": 12.5}, "total_output_tokens": 64}
        },
        "quality": {"level": "good"}
    })
}

#[test]
fn every_headline_figure_is_a_gauge_or_an_info_label() {
    for (column, _) in sink_common::HEADLINE {
        let mapped = metrics::GAUGES.iter().any(|g| g.column == *column)
            || metrics::INFO_LABELS.contains(column)
            || matches!(*column, "run_id" | "experiment");
        assert!(mapped, "headline figure `{column}` is not pushed");
    }
}

#[test]
fn the_result_exposition_has_the_figures_in_base_units_and_omits_missing_ones() {
    let text = metrics::result_exposition(&result(), "exp \"1\"");
    let samples: Vec<_> = text.lines().filter_map(parse_line).collect();
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && label.is_none_or(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.value)
    };
    assert_eq!(value("llem_run_energy_joules", None), Some(12.5));
    assert_eq!(value("llem_run_duration_seconds", None), Some(3.25));
    assert_eq!(value("llem_run_includes_estimates", None), Some(1.0));
    assert_eq!(
        value("llem_run_requests", Some(("outcome", "failed"))),
        Some(1.0)
    );
    assert_eq!(
        value("llem_run_requests", Some(("outcome", "sent"))),
        Some(8.0)
    );
    assert_eq!(
        value("llem_run_ttft_seconds", Some(("stat", "p99"))),
        Some(0.0125)
    );
    assert_eq!(value("llem_run_output_tokens", None), Some(64.0));
    // Null or absent: not pushed at all.
    assert_eq!(value("llem_run_net_energy_joules", None), None);
    assert_eq!(
        value("llem_run_ttft_seconds", Some(("stat", "median"))),
        None
    );
    let info = samples.iter().find(|s| s.name == "llem_run_info").unwrap();
    assert!(
        info.labels.contains(&("quality".into(), "good".into())),
        "{info:?}"
    );
    assert!(
        info.labels.contains(&("cycle".into(), "2".into())),
        "{info:?}"
    );
    // The experiment's quote is escaped and read back whole.
    assert!(
        info.labels
            .contains(&("experiment".into(), "exp \"1\"".into())),
        "{info:?}"
    );
    // One HELP and TYPE per family, even with several series.
    assert_eq!(text.matches("# TYPE llem_run_requests gauge").count(), 1);
    assert_eq!(text.matches("# HELP llem_run_ttft_seconds ").count(), 1);
}

#[test]
fn grouping_keys_and_labels() {
    let s = sink(
        "http://gw:9091",
        r#", "job": "bench", "labels": {"site": "lab 1", "rack": "r7"}"#,
    );
    assert_eq!(
        s.group_path("2026-12-01T00-00-00Z"),
        // Labels in name order; a value with a space goes base64url.
        "/metrics/job/bench/run_id/2026-12-01T00-00-00Z/rack/r7/site@base64/bGFiIDE="
    );
    let err = |extra: &str| {
        PushSink::open(
            Config::from_json(&format!(r#"{{"url": "http://gw:9091"{extra}}}"#)).unwrap(),
        )
        .err()
        .unwrap()
        .to_string()
    };
    assert!(err(r#", "labels": {"run_id": "x"}"#).contains("`run_id` cannot be a grouping label"));
    assert!(err(r#", "labels": {"9x": "x"}"#).contains("labels"));
    assert!(err(r#", "job": """#).contains("job"));
    let https = err(r#", "url": "https://gw""#);
    assert!(https.contains("plain HTTP only"), "{https}");
}

/// Serve one request with `answer`; hand back what was received.
fn one_shot(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        // Read the head, then the body by its Content-Length.
        loop {
            let n = stream.read(&mut buf).unwrap();
            received.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if body.len() >= length {
                    break;
                }
            }
        }
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8(received).unwrap()
    });
    (url, handle)
}

#[test]
fn the_result_is_put_to_the_run_group() {
    let (url, server) = one_shot("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let mut s = sink(&url, "");
    let doc = ResultDocument {
        schema_version: "0.2.0".into(),
        run_id: "r1".into(),
        json: result().to_string(),
    };
    s.write_result(&doc).unwrap();
    let request = server.join().unwrap();
    assert!(
        request.starts_with("PUT /metrics/job/llem/run_id/r1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("Content-Type: text/plain; version=0.0.4"),
        "{request}"
    );
    assert!(
        request.contains("\r\n\r\n# HELP llem_run_info "),
        "{request}"
    );
    assert!(
        request.contains("llem_run_energy_joules{experiment=\"exp \\\"1\\\"\"} 12.5\n"),
        "{request}"
    );
}

#[test]
fn a_refusal_names_the_status_and_the_gateways_reason() {
    let (url, server) =
        one_shot("HTTP/1.1 400 Bad Request\r\nContent-Length: 24\r\n\r\ninconsistent help string");
    let mut s = sink(&url, "");
    let doc = ResultDocument {
        schema_version: "0.2.0".into(),
        run_id: "r1".into(),
        json: result().to_string(),
    };
    let err = s.write_result(&doc).unwrap_err().to_string();
    server.join().unwrap();
    assert!(
        err.contains("answered 400 Bad Request: inconsistent help string"),
        "{err}"
    );
}

#[test]
fn nobody_listening_is_an_error_that_says_how_to_grant() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = sink(&format!("http://127.0.0.1:{port}"), "");
    let doc = ResultDocument {
        schema_version: "0.2.0".into(),
        run_id: "r1".into(),
        json: result().to_string(),
    };
    let err = s.write_result(&doc).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("connection refused"), "{text}");
    assert!(
        err.hint
            .unwrap()
            .contains(&format!("connect = [\"127.0.0.1:{port}\"]"))
    );
}

#[test]
fn live_power_comes_from_readings_or_counter_rates() {
    let mut s = sink("http://127.0.0.1:9", r#", "push_interval_ms": 0"#);
    s.track(&SampleBatch {
        source: "rapl".into(),
        devices: vec!["pkg0".into(), "gpu0".into()],
        samples: vec![
            llem_sdk::Sample {
                device: 0,
                t_ns: 1_000_000_000,
                energy_uj: Some(5_000_000),
                power_mw: None,
            },
            llem_sdk::Sample {
                device: 1,
                t_ns: 1_000_000_000,
                energy_uj: None,
                power_mw: Some(312_500),
            },
            llem_sdk::Sample {
                device: 0,
                t_ns: 1_500_000_000,
                energy_uj: Some(5_050_000),
                power_mw: None,
            },
        ],
    });
    // 50 000 µJ over 0.5 s = 0.1 W.
    assert_eq!(s.power[&("rapl".into(), "pkg0".into())], 0.1);
    assert_eq!(s.power[&("rapl".into(), "gpu0".into())], 312.5);
    let text = metrics::power_exposition(
        "e",
        s.power
            .iter()
            .map(|((a, b), w)| (a.as_str(), b.as_str(), *w)),
    );
    assert!(
        text.contains("llem_power_watts{source=\"rapl\",device=\"gpu0\",experiment=\"e\"} 312.5\n"),
        "{text}"
    );
}
