//! `llem report` (issue 11): a report of a real energy-only run (the
//! energy-fixture plugin) and of a real two-configuration study (the fixture
//! with a stand-in streaming engine: `fast` streams a token every 2 ms and
//! costs 1 mJ per reading, `slow` every 20 ms at 20 mJ per reading), opened in
//! headless Chromium: every chart has drawn data once the page's scripts
//! ran, no script error, a configuration label carrying `<script>` stays
//! text, and the Pareto frontier holds exactly the configurations that no
//! other dominates, recomputed from the runs' result.json files. A
//! screenshot is kept at target/ci-artifacts/report.png.
//!
//! Chromium missing: the test fails when `LLEM_REQUIRE_CHROMIUM=1` (CI),
//! else it is skipped with the reason printed.

#![allow(clippy::unwrap_used)] // test helpers unwrap: a panic is a test failure

use llem_integration_tests::{llem, output, plugin_dir, wasm_artifact};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const HOSTILE: &str = "slow <script>document.title='pwned'</script>";

/// This checkout's root, from this file's own crate (the shared support
/// library may have been compiled from another checkout into a shared
/// target directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap()
}

fn chromium() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("LLEM_CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromium")),
        Some(PathBuf::from("/usr/bin/chromium-browser")),
        Some(PathBuf::from("/usr/bin/google-chrome")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Chromium headless with a throw-away profile and no network of its own.
fn browser(exe: &Path, profile: &Path) -> Command {
    let mut c = Command::new(exe);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_manifests(dir: &Path) {
    let engines = workspace_root().join("tests/fixtures/engines");
    let server = engines.join("fake_openai_server.py").display().to_string();
    let prompts: String = (0..16)
        .map(|i| format!("{{\"prompt\": \"prompt number {i}\"}}\n"))
        .collect();
    std::fs::write(dir.join("prompts.jsonl"), prompts).unwrap();
    std::fs::write(
        dir.join("energy.toml"),
        "[experiment]\nname = \"energy-only\"\nduration_s = 2\nsample_interval_ms = 50\noutput_dir = \"out\"\n\n\
         [measurement]\nbaseline = \"off\"\n\n[plugins.fixture]\ndevices = 2\n",
    )
    .unwrap();
    let command = |token_ms: u32| {
        format!(
            "[\"python3\", {server:?}, \"--port\", \"{{port}}\", \"--token-ms\", \"{token_ms}\"]"
        )
    };
    let study = format!(
        r#"[study]
name = "report-sweep"
cycles = 2
order = "interleave"

[experiment]
model = "fake-model"
sample_interval_ms = 20
output_dir = "out"

[measurement]
baseline = "off"

[plugins.fixture]
devices = 2

[plugins.jsonl]
file = "prompts.jsonl"
max_output_tokens = 16

[plugins.command]
command = {fast}
sandbox = {{ programs = ["python3"], engine_read = [{engines:?}] }}

[[sweep.one_of]]
alternatives = [
  {{ name = "fast", "fixture.step_uj" = 1000, "command.command" = {fast} }},
  {{ name = {hostile:?}, "fixture.step_uj" = 20000, "command.command" = {slow} }},
]
"#,
        fast = command(2),
        slow = command(20),
        engines = format!("{}/", engines.display()),
        hostile = HOSTILE,
    );
    std::fs::write(dir.join("study.toml"), study).unwrap();
}

/// Per configuration label: means over its runs of (J/token, TTFT p99, ITL
/// p99, output throughput), from result.json.
fn figures_from_runs(study: &Path) -> BTreeMap<String, [f64; 4]> {
    let design = read_json(&study.join("design.json"));
    let labels: BTreeMap<String, String> = design["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut sums: BTreeMap<String, ([f64; 4], usize)> = BTreeMap::new();
    for slot in std::fs::read_dir(study.join("runs")).unwrap().flatten() {
        let name = slot.file_name().to_string_lossy().into_owned();
        let id = name.split('-').nth(1).unwrap().to_owned();
        for run in std::fs::read_dir(slot.path()).unwrap().flatten() {
            let r = read_json(&run.path().join("result.json"));
            let f = |p: &str| r.pointer(p).and_then(Value::as_f64).unwrap();
            let entry = sums.entry(labels[&id].clone()).or_insert(([0.0; 4], 0));
            for (k, p) in [
                "/inference/energy_per_output_token_j",
                "/inference/latency/ttft/p99",
                "/inference/latency/itl/p99",
                "/inference/latency/output_token_throughput",
            ]
            .iter()
            .enumerate()
            {
                entry.0[k] += f(p);
            }
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(label, (s, n))| (label, s.map(|v| v / n as f64)))
        .collect()
}

/// Labels no other configuration dominates (J/token minimised; the other
/// figure minimised, or maximised for throughput).
fn expected_frontier(
    figures: &BTreeMap<String, [f64; 4]>,
    k: usize,
    maximise: bool,
) -> Vec<String> {
    let better = |a: f64, b: f64| if maximise { a >= b } else { a <= b };
    figures
        .iter()
        .filter(|(l, f)| {
            !figures.iter().any(|(m, g)| {
                m != *l && g[0] <= f[0] && better(g[k], f[k]) && (g[0] < f[0] || g[k] != f[k])
            })
        })
        .map(|(l, _)| format!("report-sweep: {l}"))
        .collect()
}

/// The `<svg …>…</svg>` elements of a document, by id.
fn svgs(dom: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").unwrap() + start + 6;
        let svg = &rest[start..end];
        let id = svg
            .split("id=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        out.insert(id.to_owned(), svg.to_owned());
        rest = &rest[end..];
    }
    out
}

/// `data-label`s of the frontier circles in one chart, unescaped.
fn frontier_in(svg: &str) -> Vec<String> {
    let mut labels: Vec<String> = svg
        .split("<circle ")
        .skip(1)
        .filter(|c| c.starts_with("class=\"frontier\""))
        .map(|c| {
            c.split("data-label=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#39;", "'")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        })
        .collect();
    labels.sort();
    labels
}

#[test]
fn a_report_of_an_energy_only_run_and_a_study_renders_in_chromium() {
    let Some(exe) = chromium() else {
        let reason = "chromium not found (apt-get install chromium)";
        assert!(
            std::env::var("LLEM_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "LLEM_REQUIRE_CHROMIUM=1 but {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    };
    let plugins = plugin_dir(&[
        wasm_artifact("energy-fixture"),
        wasm_artifact("backend-command"),
        wasm_artifact("dataset-jsonl"),
    ]);
    let work = tempfile::tempdir().unwrap();
    write_manifests(work.path());
    for manifest in ["energy.toml", "study.toml"] {
        let (code, stdout, stderr) = output(
            llem(plugins.path())
                .current_dir(work.path())
                .args(["run", manifest]),
        );
        assert_eq!(code, 0, "{manifest}\n{stdout}\n{stderr}");
    }
    let study = work.path().join("out/report-sweep");
    let html = work.path().join("report.html");
    let (code, summary, stderr) = output(
        llem(plugins.path())
            .current_dir(work.path())
            .args(["report", "out/energy-only", "out/report-sweep", "-o"])
            .arg(&html),
    );
    assert_eq!(code, 0, "{summary}\n{stderr}");
    assert!(summary.contains("configuration / run"), "{summary}");
    assert!(summary.contains("report-sweep: fast"), "{summary}");
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch.
    for remote in ["http://", "https://", "src=\"//"] {
        let hits: Vec<&str> = page
            .match_indices(remote)
            .map(|(i, _)| &page[i..(i + 60).min(page.len())])
            .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
            .collect();
        assert!(hits.is_empty(), "remote reference: {hits:?}");
    }
    // The hostile label is text: the page has only its own two scripts.
    assert_eq!(page.matches("<script").count(), 2, "scripts in the page");
    assert!(page.contains("slow &lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));

    // The frontier the report should draw, recomputed from result.json.
    let figures = figures_from_runs(&study);
    assert_eq!(figures.len(), 2, "{figures:?}");
    assert!(
        figures["fast"][0] < figures[HOSTILE][0],
        "fast costs less per token: {figures:?}"
    );

    // Chromium: the DOM once the scripts ran.
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", html.display());
    let dump = browser(&exe, profile.path())
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dump.stdout).into_owned();
    let log = String::from_utf8_lossy(&dump.stderr).into_owned();
    assert!(dump.status.success(), "chromium --dump-dom failed:\n{log}");
    assert!(!dom.contains("data-js-errors=\""), "script errors: {dom}");
    for bad in ["Uncaught", "SyntaxError", "ReferenceError", "TypeError"] {
        assert!(!log.contains(bad), "console error `{bad}`:\n{log}");
    }
    assert!(dom.contains("<title>llem report</title>"), "title changed");
    let plots = svgs(&dom);
    let drawn = dom
        .split("data-charts=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse::<usize>().ok());
    assert_eq!(
        drawn,
        Some(plots.len()),
        "the page script ran over every chart"
    );
    for id in [
        "pareto-ttft-0",
        "pareto-itl-0",
        "pareto-throughput-0",
        "ecdf-ttft-0",
        "ecdf-itl-0",
        "ecdf-e2e-0",
        "per-config-0",
    ] {
        assert!(plots.contains_key(id), "no chart {id}: {:?}", plots.keys());
    }
    let timelines = plots.keys().filter(|k| k.starts_with("timeline-")).count();
    assert_eq!(
        timelines,
        2 * 5,
        "power and energy for 5 runs: {:?}",
        plots.keys()
    );
    for (id, svg) in &plots {
        let lines = svg.matches("class=\"series\" d=\"M").count();
        let dots = svg.matches("<circle class=\"").count();
        assert!(lines + dots > 0, "{id} has no data drawn: {svg}");
        assert!(
            dom.contains(&format!("data-chart=\"{id}\" data-fmt=\"svg\""))
                && dom.contains(&format!("data-chart=\"{id}\" data-fmt=\"png\"")),
            "{id} lacks its download buttons"
        );
    }
    for (id, k, maximise) in [
        ("pareto-ttft-0", 1, false),
        ("pareto-itl-0", 2, false),
        ("pareto-throughput-0", 3, true),
    ] {
        let mut expected = expected_frontier(&figures, k, maximise);
        expected.sort();
        assert_eq!(frontier_in(&plots[id]), expected, "{id}: {figures:?}");
        // With a run given beside the study, labels carry the study's name.
        assert!(expected.contains(&"report-sweep: fast".to_owned()));
    }
    // ITL: 2 ms against 20 ms per token, and 20× the energy per reading:
    // `fast` dominates.
    assert_eq!(
        frontier_in(&plots["pareto-itl-0"]),
        ["report-sweep: fast"],
        "{figures:?}"
    );

    // The screenshot, kept for people to look at.
    let artifacts = workspace_root().join("target/ci-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("report.png");
    let _ = std::fs::remove_file(&png);
    let shot = browser(&exe, profile.path())
        .args(["--window-size=1200,2600", "--force-device-scale-factor=1"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 50_000,
        "{} bytes",
        bytes.len()
    );
    std::fs::copy(&html, artifacts.join("report.html")).unwrap();
    println!("screenshot: {}", png.display());
    eprintln!("screenshot: {}", png.display());
}
