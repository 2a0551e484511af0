//! `--prometheus`: a real Prometheus (the Debian package's `/usr/bin/prometheus`)
//! scrapes `llem monitor --prometheus` and returns the fixture's series
//! through its query API, with the values the fixture implies; and a scrape
//! during `llem run --prometheus` carries the run's labels.
//!
//! Without a `prometheus` binary the Prometheus test is skipped with a
//! printed reason, unless `LLEM_REQUIRE_PROMETHEUS=1` (CI) makes it fail.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use backend_common::prometheus::{Sample, parse_line};
use llem_integration_tests::{llem, only_run, plugin_dir, wasm_artifact};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The fixture's counter step (µJ per read) and llem's sampling interval.
const STEP_UJ: u64 = 250_000;
const INTERVAL_S: f64 = 0.1;

/// A child process killed (and reaped) when the test ends, however it ends.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0 (no chunked bodies): (status, body), or `None`
/// if nothing answers.
pub(crate) fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query against Prometheus' HTTP API: the result vector.
fn query(port: u16, promql: &str) -> Vec<Value> {
    let Some((200, body)) = get(
        port,
        &format!("/api/v1/query?query={}", percent_encode(promql)),
    ) else {
        return Vec::new();
    };
    let json: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_ne!(json["status"], "error", "{promql}: {body}");
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn value_of(series: &Value) -> f64 {
    series["value"][1].as_str().unwrap().parse().unwrap()
}

/// Poll `check` every 250 ms until it returns `Some`, or panic after `limit`.
pub(crate) fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The Prometheus binary `name` (on PATH or in /usr/bin); `None` means skip
/// the test (the reason is printed), unless `LLEM_REQUIRE_PROMETHEUS=1`
/// (CI), where a missing binary fails it.
pub(crate) fn prometheus_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| {
        let usr = Path::new("/usr/bin").join(name);
        usr.is_file().then_some(usr)
    });
    if found.is_none() {
        let reason =
            format!("no `{name}` binary on PATH or at /usr/bin/{name} (apt-get install {name})");
        assert!(
            std::env::var("LLEM_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "LLEM_REQUIRE_PROMETHEUS=1 but {reason}"
        );
        eprintln!("skipped: {reason}");
    }
    found
}

fn label<'a>(sample: &'a Sample<'_>, key: &str) -> &'a str {
    sample
        .labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no label {key} in {sample:?}"))
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, target_port: u16) -> Guard {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: llem\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    Guard(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn a_real_prometheus_scrapes_llem_monitor_and_returns_the_fixture_energy() {
    let Some(prometheus) = prometheus_binary("prometheus") else {
        return;
    };
    let plugins = plugin_dir(&[wasm_artifact("energy-fixture")]);
    let dir = tempfile::tempdir().unwrap();
    let llem_port = free_port();
    let prom_port = free_port();

    let started = Instant::now();
    let mut monitor = Guard(
        llem(plugins.path())
            .args(["monitor", "--plugins", "fixture", "--interval", "100ms"])
            .args(["--set", &format!("fixture.step_uj={STEP_UJ}")])
            .args(["--prometheus", &format!("127.0.0.1:{llem_port}")])
            .args(["--duration", "300"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // llem answers before Prometheus is pointed at it.
    wait_for(Duration::from_secs(60), "llem's /metrics", || {
        get(llem_port, "/metrics").filter(|(status, _)| *status == 200)
    });
    let _prometheus = start_prometheus(&prometheus, dir.path(), prom_port, llem_port);
    let log = dir.path().join("prometheus.log");
    let prometheus_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The series, with the fixture's device labels, once Prometheus has
    // scraped often enough for a rate to cover its window (with two
    // samples, rate() extrapolates little and divides by the whole window).
    wait_for(Duration::from_secs(90), "6 scrapes in Prometheus", || {
        query(prom_port, "count_over_time(llem_energy_joules_total[6s])")
            .first()
            .map(value_of)
            .filter(|n| *n >= 5.0)
    });
    let rate_query = "rate(llem_energy_joules_total[6s])";
    let rate = query(prom_port, rate_query).into_iter().next().unwrap();
    let series = query(prom_port, "llem_energy_joules_total");
    let elapsed_s = started.elapsed().as_secs_f64();
    assert_eq!(series.len(), 1, "{series:?}\n{}", prometheus_log());
    let energy = &series[0];
    let metric = &energy["metric"];
    assert_eq!(metric["__name__"], "llem_energy_joules_total");
    assert_eq!(metric["job"], "llem");
    assert_eq!(metric["instance"], format!("127.0.0.1:{llem_port}"));
    assert_eq!(metric["source"], "fixture");
    assert_eq!(metric["device"], "fixture0");
    assert_eq!(metric["device_name"], "Fixture device 0");
    assert_eq!(metric["kind"], "other");
    assert_eq!(metric["estimated"], "false");
    assert!(
        metric.get("run_id").is_none(),
        "no run labels in monitor: {metric}"
    );

    // Whole steps of the fixture's counter, no more than llem can have read
    // since it was started (one read per interval, the first one the baseline).
    let joules = value_of(energy);
    let step_j = STEP_UJ as f64 / 1e6;
    let steps = joules / step_j;
    assert!(
        (steps - steps.round()).abs() < 1e-9,
        "{joules} J is not a whole number of {step_j} J steps"
    );
    assert!(joules > 0.0, "{energy}");
    let most = (elapsed_s / INTERVAL_S + 1.0) * step_j;
    assert!(
        joules <= most,
        "{joules} J after {elapsed_s:.1} s: at most {most} J"
    );

    // The rate is the fixture's power by construction: a step per interval.
    let watts = value_of(&rate);
    let expected = step_j / INTERVAL_S;
    assert!(
        (0.4 * expected..=1.6 * expected).contains(&watts),
        "{rate_query} = {watts} W, expected about {expected} W"
    );

    // Power (the fixture reports step_uj as mW), telemetry, the sampler's counters, up.
    let power = query(prom_port, "llem_power_watts{device=\"fixture0\"}");
    assert_eq!(power.len(), 1, "{power:?}");
    assert_eq!(value_of(&power[0]), STEP_UJ as f64 / 1000.0);
    let reads = query(prom_port, "llem_telemetry_reads");
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(value_of(&reads[0]) >= 1.0);
    let samples = query(prom_port, "llem_samples_total{source=\"fixture\"}");
    assert!(value_of(&samples[0]) >= steps, "{samples:?}");
    let up = query(prom_port, "up{job=\"llem\"}");
    assert_eq!(value_of(&up[0]), 1.0, "{up:?}");
    // The J/token shape of query (an energy increase over a count's, per
    // source), with samples for tokens: the fixture's step per read.
    let ratio = query(
        prom_port,
        "sum by (source) (increase(llem_energy_joules_total[6s])) / sum by (source) (increase(llem_samples_total[6s]))",
    );
    assert_eq!(ratio.len(), 1, "{ratio:?}");
    let per_sample = value_of(&ratio[0]);
    assert!(
        (0.5 * step_j..=1.5 * step_j).contains(&per_sample),
        "{per_sample} J per sample, expected about {step_j} J"
    );

    // Ctrl-C ends the exporter cleanly, with its totals.
    // SAFETY: signalling a child this test spawned and still owns.
    unsafe { libc::kill(monitor.0.id() as i32, libc::SIGINT) };
    let child = std::mem::replace(&mut monitor.0, Command::new("true").spawn().unwrap());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("totals over"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "quiet with --prometheus: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_scrape_during_llem_run_has_the_run_labels_and_phase() {
    let plugins = plugin_dir(&[wasm_artifact("energy-fixture")]);
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut run = Guard(
        llem(plugins.path())
            .args(["run", "--plugins", "fixture", "--name", "prom \"run\""])
            .args(["--set", "measurement.baseline=off"])
            .args(["--set", &format!("fixture.step_uj={STEP_UJ}")])
            .args(["--set", "experiment.sample_interval_ms=100"])
            .args(["--duration", "4"])
            .arg("--output")
            .arg(out.path())
            .args(["--prometheus", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // A page from the measured window with energy on it.
    let page = wait_for(
        Duration::from_secs(60),
        "a scrape in the measured phase",
        || {
            let (status, body) = get(port, "/metrics")?;
            assert_eq!(status, 200);
            let measuring = body.lines().filter_map(parse_line).any(|s| {
                s.name == "llem_run_phase" && label(&s, "phase") == "measured" && s.value == 1.0
            });
            let energy = body
                .lines()
                .filter_map(parse_line)
                .any(|s| s.name == "llem_energy_joules_total" && s.value > 0.0);
            (measuring && energy).then_some(body)
        },
    );
    // Only comments and well-formed samples.
    for line in page.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || parse_line(line).is_some(),
            "{line:?}"
        );
    }
    let samples: Vec<Sample<'_>> = page.lines().filter_map(parse_line).collect();
    let energy = samples
        .iter()
        .find(|s| s.name == "llem_energy_joules_total")
        .unwrap();
    let run_id = label(energy, "run_id").to_owned();
    assert_eq!(label(energy, "experiment"), "prom \"run\"");
    assert_eq!(label(energy, "device"), "fixture0");
    for name in [
        "llem_power_watts",
        "llem_samples_total",
        "llem_requests_completed_total",
        "llem_output_tokens_total",
    ] {
        let sample = samples
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} missing:\n{page}"));
        assert_eq!(label(sample, "run_id"), run_id, "{name}");
    }
    let phases: Vec<&Sample<'_>> = samples
        .iter()
        .filter(|s| s.name == "llem_run_phase")
        .collect();
    assert_eq!(phases.len(), 10, "{page}");
    assert_eq!(phases.iter().map(|s| s.value).sum::<f64>(), 1.0, "{page}");

    let child = std::mem::replace(&mut run.0, Command::new("true").spawn().unwrap());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("Prometheus metrics at http://127.0.0.1:"),
        "{stderr}"
    );
    // The label is the run directory's name, which result.json records as run_id.
    let experiment_dir = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let (dir, result) = only_run(&experiment_dir);
    assert_eq!(result["run_id"], run_id.as_str());
    assert_eq!(dir.file_name().unwrap().to_string_lossy(), run_id);
}

#[test]
fn a_port_in_use_is_an_error_naming_the_flag() {
    let plugins = plugin_dir(&[wasm_artifact("energy-fixture")]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for command in ["monitor", "run"] {
        let output = llem(plugins.path())
            .args([command, "--plugins", "fixture", "--duration", "1"])
            .args(["--prometheus", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains(&format!("--prometheus 127.0.0.1:{port}: cannot listen"))
                && stderr.contains("in use"),
            "{command}: {stderr}"
        );
    }
    let output = llem(plugins.path())
        .args([
            "monitor",
            "--plugins",
            "fixture",
            "--prometheus",
            "nonsense",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--prometheus: `nonsense` is not [HOST]:PORT"),
        "{stderr}"
    );
}
