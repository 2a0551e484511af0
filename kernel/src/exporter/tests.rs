#![allow(clippy::unwrap_used)]

use super::*;
use crate::energy::EnergyMethod;
use crate::sampler::{LiveDevice, LiveSourceDevice};
use backend_common::prometheus::parse_line;
use llem_sdk::{Device, DeviceKind, Metric};

fn device(source: &str, id: &str, name: &str, energy_j: Option<f64>) -> LiveSourceDevice {
    LiveSourceDevice {
        info: Device {
            id: id.into(),
            name: name.into(),
            kind: DeviceKind::Gpu,
            has_energy_counter: true,
            counter_wrap_uj: None,
            has_power: true,
            power_average_window_ms: 0,
            estimated: false,
            parent: None,
            max_power_w: None,
        },
        live: LiveDevice {
            t_ns: Some(1),
            source: source.into(),
            device: id.into(),
            estimated: false,
            method: EnergyMethod::Counter,
            energy_j,
            power_w: Some(312.5),
        },
        telemetry: vec![
            Metric {
                name: "sm_clock".into(),
                value: 1410.0,
                unit: "MHz".into(),
                labels: vec![],
            },
            Metric {
                name: "gpu_utilisation".into(),
                value: 0.75,
                unit: "fraction".into(),
                labels: vec![("source".into(), "x".into()), ("__x".into(), "y".into())],
            },
        ],
    }
}

fn source(devices: Vec<LiveSourceDevice>) -> LiveSource {
    LiveSource {
        name: "nvml".into(),
        ticks: 42,
        missed_ticks: 1,
        errors: 0,
        gave_up: false,
        devices,
    }
}

const FIXED: &str = r#"# HELP llem_build_info llem's version; always 1.
# TYPE llem_build_info gauge
llem_build_info{version="VERSION"} 1
# HELP llem_power_watts Latest power of the device, watts (the source's reading, or the rate of its energy counter).
# TYPE llem_power_watts gauge
llem_power_watts{source="nvml",device="gpu0",device_name="NVIDIA H100",kind="gpu",estimated="false",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 312.5
# HELP llem_energy_joules_total Energy of the device since llem began sampling it, joules (counter deltas, or integrated power where the device has no counter).
# TYPE llem_energy_joules_total counter
llem_energy_joules_total{source="nvml",device="gpu0",device_name="NVIDIA H100",kind="gpu",estimated="false",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 1234.000001
# HELP llem_telemetry_sm_clock_hertz Telemetry `sm_clock` (MHz) reported by the energy source, as the latest value.
# TYPE llem_telemetry_sm_clock_hertz gauge
llem_telemetry_sm_clock_hertz{source="nvml",device="gpu0",device_name="NVIDIA H100",kind="gpu",estimated="false",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 1410000000
# HELP llem_telemetry_gpu_utilisation_ratio Telemetry `gpu_utilisation` (fraction) reported by the energy source, as the latest value.
# TYPE llem_telemetry_gpu_utilisation_ratio gauge
llem_telemetry_gpu_utilisation_ratio{source="nvml",device="gpu0",device_name="NVIDIA H100",kind="gpu",estimated="false",run_id="2025-01-01T00-00-00Z",experiment="smoke",metric_source="x",x="y"} 0.75
# HELP llem_samples_total Sampling ticks of the source (reads on their deadline).
# TYPE llem_samples_total counter
llem_samples_total{source="nvml",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 42
# HELP llem_missed_ticks_total Sampling ticks skipped because a read overran its slot.
# TYPE llem_missed_ticks_total counter
llem_missed_ticks_total{source="nvml",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 1
# HELP llem_source_errors_total Failed reads of the source.
# TYPE llem_source_errors_total counter
llem_source_errors_total{source="nvml",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 0
# HELP llem_source_up 1 while the source is read; 0 once llem gave up on it after repeated failures.
# TYPE llem_source_up gauge
llem_source_up{source="nvml",run_id="2025-01-01T00-00-00Z",experiment="smoke"} 1
# HELP llem_run_phase 1 for the phase the run is in, 0 for the others.
# TYPE llem_run_phase gauge
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="open_sources"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="idle_baseline"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="start_engine"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="warmup"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="thermal_settle"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="measured"} 1
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="cooldown"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="assemble"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="write"} 0
llem_run_phase{run_id="2025-01-01T00-00-00Z",experiment="smoke",phase="done"} 0
# HELP llem_requests_completed_total Requests finished in the run (succeeded or failed), warm-up included.
# TYPE llem_requests_completed_total counter
llem_requests_completed_total{run_id="2025-01-01T00-00-00Z",experiment="smoke"} 17
# HELP llem_output_tokens_total Output tokens the server reported in the run, warm-up included.
# TYPE llem_output_tokens_total counter
llem_output_tokens_total{run_id="2025-01-01T00-00-00Z",experiment="smoke"} 2048
"#;

#[test]
fn the_page_for_a_fixed_input_is_exact() {
    let sources = [source(vec![device(
        "nvml",
        "gpu0",
        "NVIDIA H100",
        Some(1234.000001),
    )])];
    let run = RunView {
        run_id: "2025-01-01T00-00-00Z".into(),
        experiment: "smoke".into(),
        phase: Some("measured"),
        requests_completed: 17,
        output_tokens: 2048,
    };
    let page = render(&sources, Some(&run), &mut HighWater::default());
    assert_eq!(
        page,
        FIXED.replace("VERSION", env!("CARGO_PKG_VERSION")),
        "{page}"
    );
}

#[test]
fn without_a_run_there_are_no_run_labels_or_run_families() {
    let sources = [source(vec![device("nvml", "gpu0", "G", Some(1.0))])];
    let page = render(&sources, None, &mut HighWater::default());
    assert!(!page.contains("run_id"), "{page}");
    assert!(!page.contains("llem_run_phase"), "{page}");
    assert!(
        page.contains(
            "llem_energy_joules_total{source=\"nvml\",device=\"gpu0\",device_name=\"G\",kind=\"gpu\",estimated=\"false\"} 1\n"
        ),
        "{page}"
    );
    // No energy figure yet (fewer than two readings): no sample, the family stays.
    let sources = [source(vec![device("nvml", "gpu0", "G", None)])];
    let page = render(&sources, None, &mut HighWater::default());
    assert!(
        page.contains("# TYPE llem_energy_joules_total counter\n# HELP"),
        "{page}"
    );
}

#[test]
fn hostile_device_names_are_escaped_and_read_back_intact() {
    let hostile = "GPU \"0\"\\ with\na newline} 1\n# TYPE x counter";
    let sources = [source(vec![device("nvml", "gpu\"0", hostile, Some(2.0))])];
    let page = render(&sources, None, &mut HighWater::default());
    assert!(
        page.contains(r#"device_name="GPU \"0\"\\ with\na newline} 1\n# TYPE x counter""#),
        "{page}"
    );
    // Every line is a comment or a well-formed sample; the parser llem uses
    // for engines' pages reads the labels back exactly.
    for line in page.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || parse_line(line).is_some(),
            "malformed line: {line:?}"
        );
    }
    let energy = page
        .lines()
        .filter_map(parse_line)
        .find(|s| s.name == "llem_energy_joules_total")
        .unwrap();
    let label = |k: &str| {
        energy
            .labels
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(label("device_name"), hostile);
    assert_eq!(label("device"), "gpu\"0");
    assert_eq!(energy.value, 2.0);
    assert_eq!(escape_label_value("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
}

#[test]
fn energy_counters_never_go_down() {
    let mut high = HighWater::default();
    let page_with = |joules: f64, high: &mut HighWater| {
        let sources = [source(vec![device("nvml", "gpu0", "G", Some(joules))])];
        render(&sources, None, high)
            .lines()
            .filter_map(parse_line)
            .find(|s| s.name == "llem_energy_joules_total")
            .unwrap()
            .value
    };
    let values: Vec<f64> = [1.0, 5.0, 4.0, 7.5, 0.0]
        .into_iter()
        .map(|j| page_with(j, &mut high))
        .collect();
    assert_eq!(values, [1.0, 5.0, 5.0, 7.5, 7.5]);
    assert!(values.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn telemetry_names_are_sanitised_with_base_units() {
    assert_eq!(
        telemetry_family("sm_clock", "MHz", 1410.0),
        ("llem_telemetry_sm_clock_hertz".into(), 1.41e9)
    );
    assert_eq!(
        telemetry_family("memory_used", "bytes", 3.0),
        ("llem_telemetry_memory_used_bytes".into(), 3.0)
    );
    assert_eq!(
        telemetry_family("Temp (GPU)", "°C", 60.0),
        ("llem_telemetry_temp_gpu_celsius".into(), 60.0)
    );
    assert_eq!(
        telemetry_family("reads", "count", 9.0),
        ("llem_telemetry_reads".into(), 9.0)
    );
    assert_eq!(
        telemetry_family("fan", "%", 50.0),
        ("llem_telemetry_fan_ratio".into(), 0.5)
    );
    assert_eq!(
        telemetry_family("power_limit_watts", "W", 700.0),
        ("llem_telemetry_power_limit_watts".into(), 700.0)
    );
    assert_eq!(
        telemetry_family("9lives\n", "furlongs/fortnight", 1.0),
        ("llem_telemetry__9lives_furlongs_fortnight".into(), 1.0)
    );
}

#[test]
fn listen_addresses_parse() {
    assert_eq!(parse_listen(":9400").unwrap(), "127.0.0.1:9400");
    assert_eq!(parse_listen("9400").unwrap(), "127.0.0.1:9400");
    assert_eq!(parse_listen("0.0.0.0:9400").unwrap(), "0.0.0.0:9400");
    assert_eq!(parse_listen("[::1]:9400").unwrap(), "[::1]:9400");
    assert_eq!(parse_listen("localhost:0").unwrap(), "localhost:0");
    assert!(parse_listen("::1:9400").is_err());
    assert!(parse_listen("host:port").is_err());
    assert!(parse_listen(":70000").is_err());
}

fn get(addr: std::net::SocketAddr, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_server_answers_metrics_404_405_and_bounds_the_head() {
    let exporter = Exporter::start("127.0.0.1:0").unwrap();
    let addr = exporter.local_addr();
    let answer = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains("Content-Type: text/plain; version=0.0.4"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\n\r\n# HELP llem_build_info"),
        "{answer}"
    );
    let answer = get(addr, "GET /metrics?x=1 HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let answer = get(addr, "GET / HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    let answer = get(addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let answer = get(addr, &long);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A port in use is an error, not a second server.
    let again = Exporter::start(&addr.to_string());
    assert_eq!(again.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn run_events_set_labels_phase_and_counters() {
    let exporter = Exporter::start("127.0.0.1:0").unwrap();
    let sampler = crate::sampler::Sampler::start(Vec::new()).unwrap();
    exporter.observe(&crate::experiment::Event::Sampling {
        view: sampler.view(),
        run_id: "r1",
        experiment: "e\"x",
    });
    let requests = |warmup, completed, output_tokens| crate::experiment::Event::Requests {
        warmup,
        completed,
        total: None,
        output_tokens,
    };
    // A warm-up batch of 2, then a measured batch of 3 whose counts restart.
    for event in [
        requests(true, 1, 10),
        requests(true, 2, 20),
        requests(false, 1, 5),
        requests(false, 3, 30),
    ] {
        exporter.observe(&event);
    }
    let page = exporter.render();
    assert!(
        page.contains("llem_requests_completed_total{run_id=\"r1\",experiment=\"e\\\"x\"} 5\n"),
        "{page}"
    );
    assert!(
        page.contains("llem_output_tokens_total{run_id=\"r1\",experiment=\"e\\\"x\"} 50\n"),
        "{page}"
    );
    assert!(
        page.contains("llem_run_phase{run_id=\"r1\",experiment=\"e\\\"x\",phase=\"measured\"} 1\n"),
        "{page}"
    );
    exporter.run_finished();
    assert!(
        exporter
            .render()
            .contains("llem_run_phase{run_id=\"r1\",experiment=\"e\\\"x\",phase=\"done\"} 1\n")
    );
}
