//! `llem monitor`: live per-device power and cumulative energy.

use crate::input::{self, Input};
use crate::output::{CmdResult, Failure, ok};
use llem::sampler::{LiveDevice, Sampler};
use llem::{Catalog, clock::monotonic_ns};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A table refreshed in place (a plain table per refresh when not a terminal).
    Table,
    /// One CSV row per device and interval, after a header row.
    Csv,
    /// One JSON object per device and interval.
    Jsonl,
}

/// Watch power and energy live, or serve them to Prometheus
/// (`--prometheus :9400`). Ctrl-C prints the totals.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A manifest whose energy sources to use (other plugins are ignored).
    manifest: Option<PathBuf>,
    /// Energy sources: `--plugins nvml,rapl` (default: every one that works here).
    #[arg(long, value_delimiter = ',')]
    plugins: Vec<String>,
    /// Override a manifest key: `--set nvml.library=/opt/…/libnvidia-ml.so.1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Sampling interval: `100ms`, `1s`, `0.5s` (a bare number is milliseconds).
    #[arg(long, default_value = "100ms", value_parser = parse_interval)]
    interval: Duration,
    /// How to print readings (default: `table`; with `--prometheus`, nothing).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Serve the live figures as Prometheus metrics at
    /// `http://[HOST]:PORT/metrics` (`:9400` is 127.0.0.1:9400), like a
    /// DCGM exporter; see docs/prometheus.md.
    #[arg(long, value_name = "[HOST]:PORT")]
    prometheus: Option<String>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
}

pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(us) = text.strip_suffix("us") {
        (us, 1e-6)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1e-3)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an interval like 100ms or 1s"))?;
    let seconds = value * scale;
    if !(0.001..=3600.0).contains(&seconds) {
        return Err(format!("interval {text} is outside 1ms..1h"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Start the exporter for `--prometheus`, before anything else starts: a
/// bad address or a port in use fails at once, naming the flag.
pub fn start_exporter(listen: Option<&str>) -> Result<Option<llem::exporter::Exporter>, Failure> {
    let Some(text) = listen else {
        return Ok(None);
    };
    let address = llem::exporter::parse_listen(text)
        .map_err(|e| Failure::bad_input(format!("--prometheus: {e}")))?;
    let exporter = llem::exporter::Exporter::start(&address).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "; another process listens there: pick another port, e.g. `--prometheus :9401`"
        } else {
            ""
        };
        Failure::failed(format!(
            "--prometheus {text}: cannot listen on {address}: {e}{hint}"
        ))
    })?;
    ok(&format!(
        "Prometheus metrics at http://{}/metrics",
        exporter.local_addr()
    ));
    Ok(Some(exporter))
}

pub fn run(args: Args) -> CmdResult {
    let exporter = start_exporter(args.prometheus.as_deref())?;
    // With an exporter and no --format, the terminal stays quiet (an exporter
    // is usually a service); a --format prints as well.
    let format = match (args.format, &exporter) {
        (Some(format), _) => Some(format),
        (None, Some(_)) => None,
        (None, None) => Some(Format::Table),
    };
    let catalog = Catalog::from_env();
    let mut plugins = args.plugins.clone();
    if args.manifest.is_none() && plugins.is_empty() {
        plugins =
            llem::probe::auto_energy_sources(&llem::probe::probe_energy(&catalog, &args.sets));
        if plugins.is_empty() {
            return Err(Failure::failed(
                "no energy source works on this machine; `llem env` says why",
            ));
        }
        ok(&format!(
            "energy sources that work on this machine: {}",
            plugins.join(", ")
        ));
    }
    let plan = input::resolve(
        &Input {
            manifest: args.manifest.as_deref(),
            plugins: &plugins,
            sets: &args.sets,
        },
        &catalog,
    )?;
    // The same library code `llem run` opens its sources with (a plugin
    // table's own `sample_interval_ms` wins over `--interval`).
    let sources = llem::experiment::open_energy_sources(
        &plan,
        &catalog,
        None,
        Some(args.interval),
        &mut |_| {},
    )
    .map_err(|e| Failure::failed(e.to_string()))?;
    if sources.is_empty() {
        return Err(Failure::bad_input(
            "no energy source given: name one with `--plugins`",
        ));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let handler = stop.clone();
    let _ = ctrlc::set_handler(move || handler.store(true, Ordering::SeqCst));
    let sampler = Sampler::start(sources)
        .map_err(|e| Failure::failed(format!("cannot start sampling: {e}")))?;
    if let Some(exporter) = &exporter {
        exporter.set_sampler(sampler.view());
    }
    let started = sampler.started_ns();
    // Tables refresh at a readable pace; CSV/JSONL emit every interval.
    let period = match format {
        Some(Format::Table) | None => args.interval.max(Duration::from_millis(500)),
        Some(Format::Csv | Format::Jsonl) => args.interval,
    };
    let live_table = matches!(format, Some(Format::Table)) && std::io::stdout().is_terminal();
    let mut stdout = std::io::stdout().lock();
    if matches!(format, Some(Format::Csv)) {
        let header = [
            "t_s",
            "source",
            "device",
            "power_w",
            "energy_j",
            "method",
            "estimated",
        ];
        let _ = csv_rows([header.map(str::to_owned)]).and_then(|b| stdout.write_all(&b));
    }
    let mut printed_lines = 0;
    let mut next = monotonic_ns();
    loop {
        next += period.as_nanos() as u64;
        while monotonic_ns() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                Duration::from_nanos(next.saturating_sub(monotonic_ns()))
                    .min(Duration::from_millis(50)),
            );
        }
        let t_s = monotonic_ns().saturating_sub(started) as f64 / 1e9;
        // Nothing here reads the raw rows: keep memory flat however long it runs.
        sampler.discard_raw();
        let live = sampler.live();
        let written = match format {
            None => Ok(()),
            Some(Format::Table) => {
                if live_table && printed_lines > 0 {
                    // Move up over the previous table and redraw it in place.
                    let _ = write!(stdout, "\x1b[{printed_lines}A\x1b[J");
                }
                printed_lines = write_table(&mut stdout, t_s, &live);
                Ok(())
            }
            Some(Format::Csv) => csv_rows(live.iter().map(|d| {
                let t_s = d.t_ns.unwrap_or(started).saturating_sub(started) as f64 / 1e9;
                [
                    format!("{t_s:.3}"),
                    d.source.clone(),
                    d.device.clone(),
                    opt(d.power_w, 3),
                    opt(d.energy_j, 6),
                    method(d),
                    d.estimated.to_string(),
                ]
            }))
            .and_then(|bytes| stdout.write_all(&bytes)),
            Some(Format::Jsonl) => live.iter().try_for_each(|d| {
                // t_ns is when the reading behind energy_j was taken, not when the
                // line is printed: a line may trail its reading by up to an interval.
                let t_ns = d.t_ns.unwrap_or(started);
                let line = serde_json::json!({
                    "t_ns": t_ns, "t_s": t_ns.saturating_sub(started) as f64 / 1e9, "source": d.source, "device": d.device,
                    "power_w": d.power_w, "energy_j": d.energy_j, "method": method(d), "estimated": d.estimated,
                });
                writeln!(stdout, "{line}")
            }),
        };
        let _ = stdout.flush();
        // A closed pipe (`llem monitor | head`) ends the monitor quietly.
        if written.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        let done = args.duration.is_some_and(|limit| t_s >= limit);
        if done || stop.load(Ordering::Relaxed) {
            break;
        }
    }
    drop(stdout);
    // Stop serving before the sampler stops: a scrape never sees a stopped source.
    drop(exporter);
    let elapsed = monotonic_ns().saturating_sub(started) as f64 / 1e9;
    let totals = sampler.live();
    let collected = sampler.stop();
    eprintln!("totals over {elapsed:.1} s:");
    for device in &totals {
        let estimated = if device.estimated { " (estimated)" } else { "" };
        eprintln!(
            "  {}/{}: {} J{estimated}",
            device.source,
            device.device,
            opt(device.energy_j, 3)
        );
    }
    for (config, _, series) in &collected {
        for error in &series.errors {
            eprintln!("  {}: {error}", config.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows as CSV text, quoted as needed: source and device names come from
/// plugins and may hold commas, quotes or line breaks.
fn csv_rows<const N: usize>(
    rows: impl IntoIterator<Item = [String; N]>,
) -> std::io::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.write_record(&row)?;
    }
    writer.into_inner().map_err(|e| e.into_error())
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map(|v| format!("{v:.digits$}")).unwrap_or_default()
}

fn method(device: &LiveDevice) -> String {
    serde_json::to_value(device.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Returns how many lines it wrote.
fn write_table(out: &mut impl Write, t_s: f64, live: &[LiveDevice]) -> usize {
    let width = live
        .iter()
        .map(|d| d.source.len() + d.device.len() + 1)
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{t_s:8.1} s  {:<width$}  {:>10}  {:>12}",
        "device", "power", "energy"
    );
    for d in live {
        let estimated = if d.estimated { "  estimated" } else { "" };
        let _ = writeln!(
            out,
            "            {:<width$}  {:>8} W  {:>10} J{estimated}",
            format!("{}/{}", d.source, d.device),
            opt(d.power_w, 1),
            opt(d.energy_j, 3)
        );
    }
    live.len() + 1
}

#[cfg(test)]
mod tests {
    use super::parse_interval;
    use std::time::Duration;

    #[test]
    fn csv_rows_quote_names_with_commas_and_quotes() {
        let rows = super::csv_rows([[
            "1.000".to_owned(),
            "src".to_owned(),
            "GPU 0, \"A\"".to_owned(),
        ]])
        .unwrap();
        assert_eq!(
            String::from_utf8(rows).unwrap(),
            "1.000,src,\"GPU 0, \"\"A\"\"\"\n"
        );
    }

    #[test]
    fn intervals_parse_with_units() {
        assert_eq!(parse_interval("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("250"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("0ms").is_err());
    }
}
