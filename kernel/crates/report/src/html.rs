//! The self-contained page: inline SVG charts, tables, a small inline script
//! for SVG/PNG downloads. Nothing is fetched when the page is viewed.

use crate::charts::{self, Chart};
use crate::data::{Point, Report, Run};
use crate::svg::{esc, fmt_sig};
use serde_json::Value;
use std::fmt::Write as _;

const STYLE: &str = r#"
body{font-family:Helvetica,Arial,sans-serif;color:#222;margin:0 auto;max-width:1100px;padding:16px 24px 48px;background:#fafafa}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:2px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:24px 0 6px}.meta{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure.chart{background:#fff;border:1px solid #e2e2e2;border-radius:4px;margin:14px 0;padding:8px 10px}
figure.chart svg{max-width:100%;height:auto;display:block}
figcaption{font-size:12.5px;color:#444;margin:6px 0 2px;max-width:960px}
.dl button{font-size:12px;margin:4px 6px 0 0;padding:2px 10px;border:1px solid #bbb;border-radius:3px;background:#f5f5f5;cursor:pointer}
.good{color:#1a7f37;font-weight:bold}.caution{color:#b26a00;font-weight:bold}.poor{color:#c62828;font-weight:bold}
.warn{color:#8a5a00;font-size:13px}nav a{margin-right:14px;font-size:14px}
"#;

/// Records script errors on the page itself, where a headless browser's DOM
/// dump (and a reader) can see them.
const ERROR_HOOK: &str = r#"window.onerror=function(m,s,l,c,e){var d=document.documentElement;d.setAttribute('data-js-errors',(d.getAttribute('data-js-errors')||'')+String(m)+' (line '+l+'); ');};"#;

const DOWNLOAD_SCRIPT: &str = r#"
(function(){
function save(name,url){var a=document.createElement('a');a.href=url;a.download=name;document.body.appendChild(a);a.click();a.remove();}
document.querySelectorAll('button[data-chart]').forEach(function(b){b.addEventListener('click',function(){
var svg=document.getElementById(b.getAttribute('data-chart'));if(!svg)return;
var text=new XMLSerializer().serializeToString(svg);
var url=URL.createObjectURL(new Blob([text],{type:'image/svg+xml;charset=utf-8'}));
var name=b.getAttribute('data-chart');
if(b.getAttribute('data-fmt')==='svg'){save(name+'.svg',url);setTimeout(function(){URL.revokeObjectURL(url);},2000);return;}
var img=new Image();img.onload=function(){var vb=svg.viewBox.baseVal,k=2,c=document.createElement('canvas');
c.width=vb.width*k;c.height=vb.height*k;var g=c.getContext('2d');g.scale(k,k);g.drawImage(img,0,0,vb.width,vb.height);
URL.revokeObjectURL(url);c.toBlob(function(png){var u=URL.createObjectURL(png);save(name+'.png',u);setTimeout(function(){URL.revokeObjectURL(u);},2000);},'image/png');};
img.src=url;});});
document.body.setAttribute('data-charts',String(document.querySelectorAll('figure.chart svg').length));
})();
"#;

fn figure(out: &mut String, chart: &Chart) {
    let id = esc(&chart.id);
    let _ = write!(
        out,
        r#"<figure class="chart" id="fig-{id}">{}<figcaption><b>{}.</b> {}</figcaption><div class="dl"><button type="button" data-chart="{id}" data-fmt="svg">SVG</button><button type="button" data-chart="{id}" data-fmt="png">PNG</button></div></figure>"#,
        chart.svg,
        esc(&chart.title),
        esc(&chart.caption)
    );
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), fmt_sig)
}

fn quality_cell(level: Option<&str>) -> String {
    match level {
        Some(l @ ("good" | "caution" | "poor")) => format!(r#"<span class="{l}">{l}</span>"#),
        Some(other) => esc(other),
        None => "–".to_owned(),
    }
}

/// The worst quality level among runs.
fn worst_quality<'a>(runs: impl Iterator<Item = &'a Run>) -> Option<&'a str> {
    let rank = |l: &str| match l {
        "good" => 0,
        "caution" => 1,
        "poor" => 2,
        _ => 3,
    };
    runs.filter_map(|r| r.text("/quality/level"))
        .max_by_key(|l| rank(l))
}

/// The whole page.
#[must_use]
pub fn render(report: &Report, sources: &[String], llem_version: &str) -> String {
    let points = report.points();
    let mut s = String::with_capacity(1 << 20);
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>llem report</title><script>{ERROR_HOOK}</script><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        s,
        r#"<h1>llem report</h1><p class="meta">llem {} · {} stud{} · {} run(s) · from {}</p>"#,
        esc(llem_version),
        report.studies.len(),
        if report.studies.len() == 1 {
            "y"
        } else {
            "ies"
        },
        report.all_runs().len(),
        esc(&sources.join(", "))
    );
    s.push_str(r##"<nav><a href="#summary">Summary</a><a href="#pareto">Pareto frontier</a><a href="#studies">Sweeps</a><a href="#latency">Latency</a><a href="#engines">Engines</a><a href="#runs">Runs</a></nav>"##);
    for w in report
        .warnings
        .iter()
        .chain(report.studies.iter().flat_map(|st| st.warnings.iter()))
    {
        let _ = write!(s, r#"<p class="warn">⚠ {}</p>"#, esc(w));
    }

    // Summary table.
    s.push_str(r#"<h2 id="summary">Summary</h2>"#);
    summary_table(&mut s, report, &points);

    // Pareto frontier.
    s.push_str(r#"<h2 id="pareto">Energy–latency Pareto frontier</h2>"#);
    let pareto = charts::pareto::charts(&points);
    if pareto.is_empty() {
        s.push_str("<p>No run with both energy per token and latency figures (energy-only runs have no requests).</p>");
    }
    for c in &pareto {
        figure(&mut s, c);
    }

    // Sweeps.
    s.push_str(r#"<h2 id="studies">Energy per token across each sweep</h2>"#);
    let mut any = false;
    for (n, st) in report.studies.iter().enumerate() {
        let _ = write!(
            s,
            r#"<h3>Study {} <span class="meta">[{}] · {} configuration(s) · {}</span></h3>"#,
            esc(&st.name),
            esc(&st.hash),
            st.configs.len(),
            esc(&st.dir.display().to_string())
        );
        for c in charts::axis::charts(st, n) {
            figure(&mut s, &c);
            any = true;
        }
    }
    if !any {
        s.push_str("<p>No study with energy-per-token figures was given.</p>");
    }

    // Latency distributions.
    s.push_str(r#"<h2 id="latency">Latency distributions (measured phase)</h2>"#);
    let dists = charts::distribution::charts(report);
    if dists.is_empty() {
        s.push_str("<p>No successful measured request in requests.jsonl.</p>");
    }
    for c in &dists {
        figure(&mut s, c);
    }

    // Engines.
    s.push_str(r#"<h2 id="engines">Cross-engine comparison</h2>"#);
    engines_table(&mut s, report);

    // Runs.
    s.push_str(r#"<h2 id="runs">Runs</h2>"#);
    for (n, run) in report.all_runs().into_iter().enumerate() {
        run_section(&mut s, run, n);
    }
    let _ = writeln!(s, "<script>{DOWNLOAD_SCRIPT}</script></body></html>");
    s
}

fn summary_table(s: &mut String, report: &Report, points: &[Point]) {
    if points.is_empty() {
        s.push_str("<p>Nothing to summarise.</p>");
        return;
    }
    let on: Vec<Vec<String>> = charts::pareto::AXES
        .iter()
        .map(|a| charts::pareto::frontier_labels(points, a))
        .collect();
    // Quality and CIs per point, in the order of `points`.
    type Extra<'a> = (Option<&'a str>, Option<(f64, f64)>);
    let mut extra: Vec<Extra> = Vec::new();
    for st in &report.studies {
        for c in &st.configs {
            extra.push((
                worst_quality(c.runs.iter()),
                c.metrics
                    .get("energy_per_output_token_j")
                    .and_then(|m| m.ci95),
            ));
        }
    }
    for r in &report.runs {
        extra.push((r.text("/quality/level"), None));
    }
    s.push_str("<table><tr><th>configuration / run</th><th>backend</th><th>runs</th><th>J / output token</th><th>95 % CI</th><th>net J / token</th><th>TTFT p99 (ms)</th><th>ITL p99 (ms)</th><th>output tok/s</th><th>quality</th><th>Pareto frontier</th></tr>");
    for (i, p) in points.iter().enumerate() {
        let (quality, ci) = extra.get(i).copied().unwrap_or((None, None));
        let fronts: Vec<&str> = charts::pareto::AXES
            .iter()
            .zip(&on)
            .filter(|(_, labels)| labels.contains(&p.label))
            .map(|(a, _)| a.0)
            .collect();
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&p.label),
            esc(p.backend.as_deref().unwrap_or("–")),
            p.runs,
            num(p.j_per_token),
            ci.map_or_else(
                || "–".to_owned(),
                |(a, b)| format!("{}–{}", fmt_sig(a), fmt_sig(b))
            ),
            num(p.j_per_token_net),
            num(p.ttft_p99_ms),
            num(p.itl_p99_ms),
            num(p.throughput_tok_s),
            quality_cell(quality),
            if fronts.is_empty() {
                "–".to_owned()
            } else {
                fronts.join(", ")
            }
        );
    }
    s.push_str("</table>");
}

/// Dataset identity of a run: what "the same prompts" means here.
#[must_use]
pub fn dataset_key(run: &Run) -> String {
    match run.result.get("dataset") {
        Some(Value::Object(d)) => {
            let prompts = d.get("prompts").map_or_else(
                || "?".to_owned(),
                |v| match v {
                    Value::Number(n) => n.to_string(),
                    Value::Array(a) => a.len().to_string(),
                    other => other.to_string(),
                },
            );
            let instance = d.get("instance").and_then(Value::as_str).unwrap_or("?");
            match d.get("prompts_sha256").and_then(Value::as_str) {
                Some(sha) => format!(
                    "{instance} ({prompts} prompts, sha256 {})",
                    &sha[..sha.len().min(12)]
                ),
                None => format!("{instance} ({prompts} prompts)"),
            }
        }
        _ => "no dataset".to_owned(),
    }
}

/// What makes two runs' workloads the same for the cross-engine table: the
/// prompts' fingerprint (result.json `dataset.prompts_sha256`: same bodies
/// and output lengths, in order, whichever dataset plugin made them); for a
/// result without one, the dataset instance and prompt count.
fn workload_key(run: &Run) -> String {
    run.result
        .pointer("/dataset/prompts_sha256")
        .and_then(Value::as_str)
        .map_or_else(|| dataset_key(run), |sha| format!("sha256:{sha}"))
}

/// Per (dataset, engine): runs and mean figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineRow {
    pub dataset: String,
    pub engine: String,
    pub runs: usize,
    pub j_per_token: Option<f64>,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub throughput_tok_s: Option<f64>,
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Rows of the cross-engine comparison: runs grouped by dataset and engine,
/// for the datasets that more than one engine ran.
#[must_use]
pub fn engine_rows(report: &Report) -> Vec<EngineRow> {
    let mut groups: Vec<((String, String), Vec<&Run>)> = Vec::new();
    for r in report.all_runs() {
        let Some(engine) = r.engine() else { continue };
        let key = (workload_key(r), engine);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rs)) => rs.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let datasets_with_several: Vec<String> = groups
        .iter()
        .map(|((d, _), _)| d.clone())
        .filter(|d| groups.iter().filter(|((d2, _), _)| d2 == d).count() > 1)
        .collect();
    groups
        .into_iter()
        .filter(|((d, _), _)| datasets_with_several.contains(d))
        .map(|((_, engine), rs)| {
            let get = |p: &str| -> Vec<f64> { rs.iter().filter_map(|r| r.num(p)).collect() };
            EngineRow {
                dataset: rs.first().map_or_else(String::new, |r| dataset_key(r)),
                engine,
                runs: rs.len(),
                j_per_token: mean(&get("/inference/energy_per_output_token_j")),
                ttft_p50_ms: mean(&get("/inference/latency/ttft/median")),
                ttft_p99_ms: mean(&get("/inference/latency/ttft/p99")),
                throughput_tok_s: mean(&get("/inference/latency/output_token_throughput")),
            }
        })
        .collect()
}

fn engines_table(s: &mut String, report: &Report) {
    let rows = engine_rows(report);
    if rows.is_empty() {
        s.push_str("<p>Every set of prompts given was run by one engine only: give runs of different engines (or one backend in offline and server mode) on the same prompts to compare engines.</p>");
        return;
    }
    s.push_str(r#"<p class="meta">Means over the runs each engine made of the same prompts (same bodies and output lengths, in order: result.json <code>dataset.prompts_sha256</code>); per-run figures from result.json over the measured window.</p><table><tr><th>dataset</th><th>engine</th><th>runs</th><th>J / output token</th><th>TTFT p50 (ms)</th><th>TTFT p99 (ms)</th><th>output tok/s</th></tr>"#);
    for r in rows {
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(&r.dataset),
            esc(&r.engine),
            r.runs,
            num(r.j_per_token),
            num(r.ttft_p50_ms),
            num(r.ttft_p99_ms),
            num(r.throughput_tok_s)
        );
    }
    s.push_str("</table>");
}

fn run_section(s: &mut String, run: &Run, n: usize) {
    let _ = write!(
        s,
        r#"<h3>{} <span class="meta">{} · {} · {}</span></h3>"#,
        esc(&run.label),
        esc(&run.run_id),
        esc(run.text("/status").unwrap_or("?")),
        esc(&run.dir.display().to_string())
    );
    // Quality.
    let reasons: Vec<String> = run
        .result
        .pointer("/quality/reasons")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| match r {
                    Value::String(t) => t.clone(),
                    other => other
                        .get("message")
                        .and_then(Value::as_str)
                        .map_or_else(|| other.to_string(), str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    let _ = write!(
        s,
        "<p>Measurement quality: {}{}</p>",
        quality_cell(run.text("/quality/level")),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" — {}", esc(&reasons.join("; ")))
        }
    );
    // Environment.
    let env = |p: &str| run.text(&format!("/environment/{p}")).map(str::to_owned);
    let devices = run
        .result
        .pointer("/environment/devices")
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .map(|(k, v)| format!("{k} → {}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        });
    let plugins = run
        .result
        .pointer("/environment/plugins")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{} ({} {})",
                        p["instance"].as_str().unwrap_or("?"),
                        p["plugin"].as_str().unwrap_or("?"),
                        p["version"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
    let engine = run
        .result
        .pointer("/environment/engine")
        .filter(|v| !v.is_null())
        .map(|v| match v {
            Value::String(t) => t.clone(),
            other => other.to_string(),
        });
    let rows: Vec<(&str, Option<String>)> = vec![
        ("model", run.text("/experiment/model").map(str::to_owned)),
        ("energy J (window)", run.num("/energy/total_j").map(fmt_sig)),
        ("window (s)", run.num("/duration_s").map(fmt_sig)),
        (
            "J / output token",
            run.num("/inference/energy_per_output_token_j").map(fmt_sig),
        ),
        ("host", env("host")),
        (
            "CPU",
            env("cpu_model").map(|c| {
                format!(
                    "{c} ({} logical CPUs)",
                    run.num("/environment/logical_cpus")
                        .map_or_else(|| "?".to_owned(), |n| n.to_string())
                )
            }),
        ),
        ("devices (GPU, CPU…)", devices),
        (
            "OS / kernel",
            match (env("os"), env("kernel")) {
                (Some(a), Some(b)) => Some(format!("{a} / {b}")),
                (a, b) => a.or(b),
            },
        ),
        (
            "llem",
            match (env("llem_version"), env("llem_commit")) {
                (Some(v), Some(c)) => Some(format!("{v} ({c})")),
                (v, c) => v.or(c),
            },
        ),
        ("plugins", plugins),
        ("engine", engine),
    ];
    s.push_str("<table>");
    for (k, v) in rows {
        if let Some(v) = v {
            let _ = write!(
                s,
                "<tr><th>{}</th><td>{}</td></tr>",
                esc(k),
                esc(&truncate_long(&v))
            );
        }
    }
    s.push_str("</table>");
    for c in charts::timeline::charts(run, n) {
        figure(s, &c);
    }
}

fn truncate_long(v: &str) -> String {
    crate::svg::truncate(v, 600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DeviceSeries, Phase, Request};

    #[test]
    fn strings_from_a_run_are_escaped_everywhere_in_the_page() {
        let evil = "<script>alert(1)</script>";
        let result = serde_json::json!({
            "run_id": evil,
            "status": "complete",
            "experiment": {"name": evil, "model": evil},
            "quality": {"level": evil, "reasons": [{"message": evil}]},
            "environment": {"host": evil, "cpu_model": evil, "devices": {evil: evil},
                            "plugins": [{"instance": evil, "plugin": evil, "version": evil}]},
            "backend": {"instance": evil},
            "dataset": {"instance": evil, "prompts": 1},
            "inference": {"energy_per_output_token_j": 0.5,
                          "latency": {"ttft": {"p99": 10.0}, "itl": {"p99": 1.0},
                                      "output_token_throughput": 100.0}},
        });
        let run = Run {
            dir: evil.into(),
            run_id: evil.into(),
            label: evil.into(),
            result,
            phases: vec![Phase {
                name: evil.into(),
                start_ns: 0,
                end_ns: 2_000_000_000,
            }],
            window: Some((0, 2_000_000_000)),
            series: vec![DeviceSeries {
                source: evil.into(),
                device: evil.into(),
                power: vec![(0, 1.0), (1_000_000_000, 2.0)],
                energy: vec![(0, 0.0), (1_000_000_000, 1.5)],
            }],
            requests: vec![Request {
                ttft_ms: Some(1.0),
                e2el_ms: Some(2.0),
                itl_ms: vec![0.5],
            }],
        };
        let report = Report {
            runs: vec![run],
            studies: Vec::new(),
            warnings: vec![evil.into()],
        };
        let page = render(&report, &[evil.to_owned()], evil);
        // Only the page's own two scripts.
        assert_eq!(page.matches("<script").count(), 2, "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            crate::terminal::summary(&report).contains(evil),
            "plain text in the terminal"
        );
    }
}
