//! `energy-redfish` (WASM, network grant) end to end: `llem run` of an
//! energy-only experiment against `tests/fixtures/redfish/redfish_server.py`,
//! a Redfish test server that logs what it served (sushy-tools serves no
//! power readings). Energy is recomputed from that log; slow refresh, BMC
//! errors and a missing grant must each be named.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, output, plugin_dir, wasm_artifact, workspace_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The test server, killed on drop.
struct Bmc {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Bmc {
    fn start(args: &[&str]) -> Bmc {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("served.jsonl");
        let mut child = Command::new("python3")
            .arg(workspace_root().join("tests/fixtures/redfish/redfish_server.py"))
            .arg("--log")
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the Redfish test server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("server said {line:?}"));
        Bmc {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The log: the header (`t0_ns`, `refresh`) and every request.
    fn served(&self) -> (Value, Vec<Value>) {
        let text = std::fs::read_to_string(&self.log).unwrap();
        let mut lines = text.lines().map(|l| serde_json::from_str(l).unwrap());
        let header = lines.next().unwrap();
        (header, lines.collect())
    }
}

impl Drop for Bmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// `(run dir, result.json)` when the run wrote one.
    result: Option<(PathBuf, Value)>,
    _out: tempfile::TempDir,
}

/// `llem run` measuring only the BMC for `duration` s, the plugin granted
/// `connect` (none when `grant` is false), plus `sets` (`redfish.KEY=VALUE`).
fn run(bmc: &Bmc, grant: bool, duration: &str, sets: &[String], env: &[(&str, &str)]) -> Run {
    let plugins = plugin_dir(&[wasm_artifact("energy-redfish")]);
    let out = tempfile::tempdir().unwrap();
    let mut command = llem(plugins.path());
    command.args([
        "run",
        "--set",
        "measurement.baseline=off",
        "--plugins",
        "redfish",
        "--duration",
        duration,
        "--name",
        "bmc",
    ]);
    command.arg("--output").arg(out.path());
    command
        .arg("--set")
        .arg(format!("redfish.url=\"http://{}\"", bmc.addr()));
    if grant {
        command
            .arg("--set")
            .arg(format!("redfish.sandbox.connect=[\"{}\"]", bmc.addr()));
    }
    for set in sets {
        command.arg("--set").arg(set);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let (code, stdout, stderr) = output(&mut command);
    let dir = out.path().join("bmc");
    let result = std::fs::read_dir(&dir).ok().and_then(|mut entries| {
        let run = entries.next()?.ok()?.path();
        let text = std::fs::read_to_string(run.join("result.json")).ok()?;
        Some((run, serde_json::from_str(&text).unwrap()))
    });
    Run {
        code,
        stdout,
        stderr,
        result,
        _out: out,
    }
}

/// A run that measured: complete (0) or degraded (3: the last reading of a
/// slowly refreshing source may come up to a refresh before the window ends,
/// below `[measurement].min_coverage`). Its run directory and result.
fn measured(r: &Run) -> (PathBuf, Value, String) {
    assert!(
        r.code == 0
            || (r.code == 3
                && r.stdout
                    .contains("degraded: `redfish/1U` readings account for")),
        "exit {}: {}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    let (dir, result) = r.result.clone().unwrap();
    (dir, result, format!("{}{}", r.stdout, r.stderr))
}

fn sets(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, v)| format!("redfish.{k}={v}"))
        .collect()
}

/// `(t_ns, energy_uj, power_mw)` rows llem recorded for `1U`.
fn recorded(run_dir: &Path) -> Vec<(u64, Option<u64>, Option<u64>)> {
    let text = std::fs::read_to_string(run_dir.join("timeseries.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("t_ns,source,device,energy_uj,power_mw"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!((f[1], f[2]), ("redfish", "1U"), "{l}");
            (f[0].parse().unwrap(), f[3].parse().ok(), f[4].parse().ok())
        })
        .collect()
}

fn device(result: &Value) -> &Value {
    let devices = result["energy"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "one chassis reports power: {devices:?}");
    &devices[0]
}

fn check<'a>(result: &'a Value, code: &str) -> Option<&'a Value> {
    result["quality"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == code)
}

/// What the server served at each slot: slot → (watts, kWh).
fn slots(served: &[Value]) -> BTreeMap<u64, (f64, Option<f64>)> {
    served
        .iter()
        .filter(|e| e["watts"].is_number())
        .map(|e| {
            (
                e["slot"].as_u64().unwrap(),
                (e["watts"].as_f64().unwrap(), e["kwh"].as_f64()),
            )
        })
        .collect()
}

/// Every recorded value is one the BMC served, converted exactly, and no
/// value is handed over twice within a refresh (`refresh_ns`).
fn assert_recorded_as_served(
    rows: &[(u64, Option<u64>, Option<u64>)],
    served: &BTreeMap<u64, (f64, Option<f64>)>,
    refresh_ns: u64,
) {
    for row in rows {
        let (_, energy, power) = *row;
        let found = served.values().any(|(w, kwh)| {
            power == Some((w * 1000.0).round() as u64)
                && energy == kwh.map(|k| (k * 3.6e12).round() as u64)
        });
        assert!(found, "{row:?} was never served: {served:?}");
    }
    for pair in rows.windows(2) {
        let same = pair[0].1 == pair[1].1 && pair[0].2 == pair[1].2;
        assert!(
            !same || pair[1].0 - pair[0].0 >= refresh_ns,
            "an unchanged value handed over again within the refresh: {pair:?}"
        );
    }
}

#[test]
fn counter_energy_is_the_difference_of_what_the_bmc_served() {
    // EnvironmentMetrics with EnergykWh: power 250/260/270 W in turn, a new
    // value every 250 ms, the counter exact at every refresh.
    let bmc = Bmc::start(&["--refresh", "0.25", "--step", "10"]);
    let r = run(
        &bmc,
        true,
        "3",
        &sets(&[("refresh_s", "0.25"), ("poll_ms", "50")]),
        &[],
    );
    let (dir, result, _) = measured(&r);
    let d = device(&result);
    assert_eq!(d["device"], "1U");
    assert_eq!(d["kind"], "system");
    assert_eq!(d["method"], "counter");
    assert_eq!(d["estimated"], false);
    let (header, served) = bmc.served();
    assert_eq!(header["refresh"], 0.25);
    let served = slots(&served);
    let rows = recorded(&dir);
    assert!(rows.len() >= 8, "{rows:?}");
    assert_recorded_as_served(&rows, &served, 250_000_000);
    // The figure is the counter difference between the first and the last
    // reading, in the BMC's own kWh.
    let kwh_of = |uj: u64| {
        served
            .values()
            .filter_map(|(_, k)| *k)
            .find(|k| (k * 3.6e12).round() as u64 == uj)
            .unwrap()
    };
    let first = kwh_of(rows[0].1.unwrap());
    let last = kwh_of(rows.last().unwrap().1.unwrap());
    let expected_j = (last - first) * 3.6e6;
    let joules = d["energy_j"].as_f64().unwrap();
    assert!(
        (joules - expected_j).abs() < 1e-3,
        "{joules} J recorded, {expected_j} J served"
    );
    // About 260 W over about 3 s, and no slow_refresh label at 0.25 s.
    assert!((600.0..1000.0).contains(&joules), "{joules}");
    assert!(check(&result, "slow_refresh").is_none());
}

#[test]
fn legacy_power_is_integrated_between_bmc_samples() {
    // Only the legacy Power resource: 200/220/240 W in turn every 250 ms.
    let bmc = Bmc::start(&[
        "--no-environment",
        "--refresh",
        "0.25",
        "--power",
        "200",
        "--step",
        "20",
    ]);
    let r = run(
        &bmc,
        true,
        "3",
        &sets(&[("refresh_s", "0.25"), ("poll_ms", "50")]),
        &[],
    );
    let (dir, result, _) = measured(&r);
    let d = device(&result);
    assert_eq!(d["method"], "power-integration");
    let (header, served) = bmc.served();
    let t0 = header["t0_ns"].as_u64().unwrap();
    let slot_ns = 250_000_000u64;
    let served = slots(&served);
    let rows = recorded(&dir);
    assert!(rows.iter().all(|r| r.1.is_none()), "no counter: {rows:?}");
    assert_recorded_as_served(&rows, &served, slot_ns);
    // Trapezoids between the readings llem recorded: the kernel's figure.
    let trapezoid_j: f64 = rows
        .windows(2)
        .map(|w| (w[0].2.unwrap() + w[1].2.unwrap()) as f64 / 2e3 * (w[1].0 - w[0].0) as f64 / 1e9)
        .sum();
    let joules = d["energy_j"].as_f64().unwrap();
    assert!(
        (joules - trapezoid_j).abs() < 1e-6 * trapezoid_j,
        "{joules} J vs {trapezoid_j} J"
    );
    // The truth: the power the BMC served, slot by slot, over the same span.
    let (a, b) = (rows[0].0, rows.last().unwrap().0);
    let mut truth_j = 0.0;
    for (&slot, &(watts, _)) in &served {
        let start = t0 + slot * slot_ns;
        let end = start + slot_ns;
        let overlap = end.min(b).saturating_sub(start.max(a));
        truth_j += watts * overlap as f64 / 1e9;
    }
    // Interpolating between samples spreads each 20–40 W step over one
    // refresh: a few joules of ~600 over a window of whole cycles.
    let error = (joules - truth_j).abs() / truth_j;
    assert!(
        error < 0.03,
        "{joules} J integrated vs {truth_j} J served ({:.2} %)",
        error * 100.0
    );
}

#[test]
fn a_slow_bmc_is_labelled_in_the_verdict() {
    // A BMC refreshing every 2 s at a steady 300 W, polled every 100 ms.
    let bmc = Bmc::start(&["--refresh", "2", "--power", "300"]);
    let r = run(
        &bmc,
        true,
        "3",
        &sets(&[("refresh_s", "2"), ("poll_ms", "100")]),
        &[],
    );
    // Readings every 2 s justify 2 of the 3 s: degraded, and said so.
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let (dir, result, text) = measured(&r);
    // About 30 polls, yet only the new samples were handed over.
    let (_, served) = bmc.served();
    let polls = served.iter().filter(|e| e["watts"].is_number()).count();
    let rows = recorded(&dir);
    assert!(polls >= 15, "{polls} polls");
    assert!(
        (2..=3).contains(&rows.len()),
        "one reading per 2 s refresh, not one per poll: {rows:?}"
    );
    let slow = check(&result, "slow_refresh").expect("a slow_refresh check");
    assert_eq!(slow["level"], "caution");
    assert_eq!(slow["figure"], 2.0);
    assert!(
        slow["message"]
            .as_str()
            .unwrap()
            .contains("redfish/1U refreshes its reading only every 2 s"),
        "{slow}"
    );
    let w = check(&result, "window_vs_refresh").unwrap();
    assert_eq!(w["level"], "poor", "{w}");
    // Judged by the slower of the declared (2000 ms) and the measured refresh:
    // on a loaded machine the readings arrive a little later than declared.
    let each_ms: f64 = w["message"]
        .as_str()
        .unwrap()
        .split(" ms each")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no refresh in {w}"));
    assert!((2000.0..2600.0).contains(&each_ms), "{w}");
    assert_eq!(result["quality"]["level"], "poor");
    assert!(
        text.contains("redfish/1U refreshes its reading only every 2 s"),
        "{text}"
    );
}

#[test]
fn credentials_come_from_a_granted_environment_variable() {
    let bmc = Bmc::start(&["--auth", "monitor:s3cret"]);
    // Without credentials: the BMC's 401, named, with the fix.
    let r = run(&bmc, true, "1", &[], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(r.stderr.contains("`password_env`"), "{}", r.stderr);
    // The variable set but not granted: the plugin cannot see it.
    let with_user = sets(&[
        ("username", "\"monitor\""),
        ("password_env", "\"LLEM_TEST_BMC_PASSWORD\""),
        ("refresh_s", "0.5"),
        ("poll_ms", "100"),
    ]);
    let secret = [("LLEM_TEST_BMC_PASSWORD", "s3cret")];
    let r = run(&bmc, true, "1", &with_user, &secret);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("LLEM_TEST_BMC_PASSWORD is not set, or not granted"),
        "{}",
        r.stderr
    );
    // Granted: it runs.
    let mut granted = with_user.clone();
    granted.push("redfish.sandbox.env=[\"LLEM_TEST_BMC_PASSWORD\"]".into());
    let r = run(&bmc, true, "1", &granted, &secret);
    let (_, result, _) = measured(&r);
    assert!(device(&result)["energy_j"].as_f64().unwrap() > 0.0);
    // A wrong password is the BMC's 401 again.
    let r = run(
        &bmc,
        true,
        "1",
        &granted,
        &[("LLEM_TEST_BMC_PASSWORD", "nope")],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

#[test]
fn bmc_errors_are_named_and_the_run_degrades_or_fails() {
    // Every 4th reading request answers 500: each costs one reading, named.
    let bmc = Bmc::start(&["--error-every", "4", "--refresh", "0.25"]);
    let r = run(
        &bmc,
        true,
        "2",
        &sets(&[("refresh_s", "0.25"), ("poll_ms", "100")]),
        &[],
    );
    let (_, result, text) = measured(&r);
    assert!(
        text.contains("EnvironmentMetrics of chassis `1U`) answered 500 Internal Server Error"),
        "{text}"
    );
    assert!(result.to_string().contains("answered 500"), "{result}");
    assert!(device(&result)["energy_j"].as_f64().unwrap() > 0.0);
    drop(bmc);

    // The BMC fails for good after 1 s: llem stops reading it and says so.
    let bmc = Bmc::start(&["--fail-after", "1", "--refresh", "0.25"]);
    let r = run(
        &bmc,
        true,
        "3",
        &sets(&[("refresh_s", "0.25"), ("poll_ms", "100")]),
        &[],
    );
    let text = format!(
        "{}{}{}",
        r.stdout,
        r.stderr,
        r.result
            .as_ref()
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    );
    assert!(text.contains("answered 500"), "{text}");
    assert!(text.contains("stopped reading `redfish`"), "{text}");
    if let Some((_, result)) = &r.result {
        assert_ne!(result["quality"]["level"], "good", "{result}");
    }
    drop(bmc);

    // A body that is not JSON: refused when the plugin opens.
    let bmc = Bmc::start(&["--garbage"]);
    let r = run(&bmc, true, "1", &[], &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("the body is not JSON"), "{}", r.stderr);
    assert!(r.stderr.contains("BMC busy"), "{}", r.stderr);
    drop(bmc);

    // The counter goes back at 1 s: a reset, not negative energy.
    let bmc = Bmc::start(&["--backwards-at", "1", "--refresh", "0.25"]);
    let r = run(
        &bmc,
        true,
        "2",
        &sets(&[("refresh_s", "0.25"), ("poll_ms", "50")]),
        &[],
    );
    let (_, result, _) = measured(&r);
    let d = device(&result);
    assert_eq!(d["counter_resets"], 1, "{d}");
    assert_eq!(d["gaps"]["count"], 1, "{d}");
    assert!(d["energy_j"].as_f64().unwrap() > 0.0);
    assert_eq!(check(&result, "resets").unwrap()["level"], "caution");

    // https is refused with the way around it.
    let r = run(
        &bmc,
        true,
        "1",
        &["redfish.url=\"https://127.0.0.1:8443\"".to_owned()],
        &[],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("TLS-terminating proxy"), "{}", r.stderr);

    // A chassis that does not exist: 404, naming it.
    let r = run(&bmc, true, "1", &sets(&[("chassis", "[\"2U\"]")]), &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("404"), "{}", r.stderr);
    assert!(r.stderr.contains("chassis `2U`"), "{}", r.stderr);
}

#[test]
fn without_a_grant_the_plugin_cannot_reach_the_bmc() {
    let bmc = Bmc::start(&[]);
    let r = run(&bmc, false, "1", &[], &[]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!("connecting to {}", bmc.addr())),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("connect = [\"{}\"]", bmc.addr())),
        "{}",
        r.stderr
    );
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (_, served) = bmc.served();
    assert!(served.is_empty(), "the BMC saw requests: {served:?}");
}
