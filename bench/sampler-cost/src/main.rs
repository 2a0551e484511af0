//! CPU cost of the sampler at 100 Hz with 8 devices (issue #3 / #12 goal:
//! < 0.1 % of one core above the machine's wake-up floor), for a native and a
//! WASM source.
//!
//! Each case reports the sampling thread's own CPU time
//! (CLOCK_THREAD_CPUTIME_ID) and the whole process's over the same wall
//! window (getrusage), which adds the WASM engine's epoch ticker and anything
//! else llem runs meanwhile. The floor is a thread that only sleeps to the
//! same absolute 10 ms deadlines. On a VM one wake-up costs tens of µs and
//! drifts by ±0.05 points of a core between runs a minute apart, so the cases
//! run in interleaved rounds (floor, native, WASM), each compared with its
//! own round's floor, and the medians over rounds are reported.
//!
//! Run (release-built fixtures):
//!   cargo build --release -p energy-fixture
//!   cargo build --release -p energy-fixture --target wasm32-wasip2
//!   cargo run --release -p llem-bench-sampler-cost [-- --rounds 5 --wall 8]
//!       [--wasm-records /abs/path/energy_fixture.wasm]
//! (`--wasm-records`: a third case, the fixture built before the optional
//! `energy-read-flat` export existed, which the kernel reads through
//! `source.read`: the flat read against the record read, same rounds.)
//! (`$CARGO_TARGET_DIR` is honoured.) `-- per-read` instead measures one read
//! alone: the thread's CPU time around the first read after each 10 ms sleep
//! (what a tick pays, cold caches included) and around a second one right
//! after (the call's own work). Prints the load average before and after: on
//! a shared machine, compare figures only at similar load.

use llem::plugin::EnergyInstance;
use llem::sampler::{Sampler, SourceConfig};
use llem::{PluginLoader, Sandbox};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const NATIVE: &str = "release/libenergy_fixture.so";
const WASM: &str = "wasm32-wasip2/release/energy_fixture.wasm";
const TICK: Duration = Duration::from_millis(10);

fn process_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc_rusage = unsafe { std::mem::zeroed() };
    unsafe { getrusage(0, &mut usage) };
    let tv = |t: Timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc_timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec; CLOCK_THREAD_CPUTIME_ID = 3 on Linux.
    unsafe { clock_gettime(3, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Timeval {
    tv_sec: i64,
    tv_usec: i64,
}

#[repr(C)]
struct libc_rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    rest: [i64; 14],
}

#[repr(C)]
struct libc_timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut libc_rusage) -> i32;
    fn clock_gettime(clock: i32, ts: *mut libc_timespec) -> i32;
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The fixture source with 8 devices, opened from `relative` under the target dir.
fn open_fixture(relative: &str) -> Box<dyn EnergyInstance> {
    let path = target_dir().join(relative);
    assert!(
        path.exists(),
        "{} missing: see the build commands at the top",
        path.display()
    );
    let cache = target_dir().join("llem-bench-cache");
    let plugin = PluginLoader::new(Some(cache))
        .load(&path)
        .expect("fixture loads");
    let config = match json!({"devices": 8, "step_uj": 1000, "wrap_uj": 1u64 << 40}) {
        Value::Object(map) => map,
        _ => unreachable!(),
    };
    plugin
        .open_energy(&config, &Sandbox::default())
        .expect("opens")
}

/// Percent of a core: (sampler thread, whole process).
fn measure(label: &str, relative: &str, wall: Duration) -> (f64, f64) {
    let source = open_fixture(relative);
    let sampler_config = SourceConfig {
        name: label.into(),
        interval: TICK,
        telemetry_interval: Duration::ZERO,
    };
    let cpu_before = process_cpu_s();
    let started = Instant::now();
    let sampler = Sampler::start(vec![(sampler_config, source)]).expect("starts");
    std::thread::sleep(wall);
    let collected = sampler.stop();
    let elapsed = started.elapsed().as_secs_f64();
    let process = (process_cpu_s() - cpu_before) / elapsed * 100.0;
    let series = &collected[0].2;
    let thread = series.thread_cpu_ns as f64 / 1e9 / elapsed * 100.0;
    println!(
        "  {label:7} {} ticks ({} missed) in {elapsed:.1} s | sampler thread {thread:.4} % | whole process {process:.4} %",
        series.ticks, series.missed_ticks,
    );
    (thread, process)
}

/// The floor: a thread that only sleeps to absolute 10 ms deadlines, as the
/// sampler does between reads. What the sampler costs above this is its own.
fn floor(wall: Duration) -> f64 {
    let handle = std::thread::spawn(move || {
        let start = Instant::now();
        let mut deadline = start;
        while start.elapsed() < wall {
            deadline += TICK;
            if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        thread_cpu_ns() as f64 / 1e9 / start.elapsed().as_secs_f64() * 100.0
    });
    let share = handle.join().expect("floor thread");
    println!("  floor   a thread waking at 100 Hz and doing nothing: {share:.4} %");
    share
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Each round: the floor, then every case; each case's figures above its
/// own round's floor, medians over rounds.
fn rounds(cases: &[(&str, String)], rounds: usize, wall: Duration) {
    // Per case: (thread, process) above the round's floor.
    let mut above: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); cases.len()];
    for round in 1..=rounds {
        println!("round {round}/{rounds} (load average {})", loadavg());
        let floor = floor(wall);
        for ((label, path), (threads, processes)) in cases.iter().zip(above.iter_mut()) {
            let (thread, process) = measure(label, path, wall);
            threads.push(thread - floor);
            processes.push(process - floor);
        }
    }
    let figures: Vec<String> = cases
        .iter()
        .zip(above.iter_mut())
        .map(|((label, _), (threads, processes))| {
            format!(
                "{label} thread {:.3} % process {:.3} %",
                median(threads),
                median(processes)
            )
        })
        .collect();
    println!(
        "above the floor, medians of {rounds} rounds of {:.0} s: {} (percent of one core)",
        wall.as_secs_f64(),
        figures.join(" | "),
    );
}

/// One read alone (see the module's doc).
fn per_read(label: &str, relative: &str) {
    let mut source = open_fixture(relative);
    let mut out = Vec::with_capacity(8);
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut deadline = Instant::now();
    for _ in 0..1000 {
        deadline += TICK;
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t0 = thread_cpu_ns();
        out.clear();
        source.read(&mut out).expect("reads");
        let t1 = thread_cpu_ns();
        out.clear();
        source.read(&mut out).expect("reads");
        let t2 = thread_cpu_ns();
        cold.push((t1 - t0) as f64 / 1e3);
        warm.push((t2 - t1) as f64 / 1e3);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (cold_mean, warm_mean) = (mean(&cold), mean(&warm));
    println!(
        "{label:7} one read of 8 devices after a 10 ms sleep: median {:.1} µs (mean {cold_mean:.1}) | right after: median {:.1} µs (mean {warm_mean:.1}) | at 100 Hz: {:.3} % of a core",
        median(&mut cold),
        median(&mut warm),
        cold_mean * 100.0 / 1e6 * 100.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str, default: f64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let mut cases = vec![("native", NATIVE.to_owned()), ("wasm", WASM.to_owned())];
    // `--wasm-records PATH`: the same fixture built before `energy-read-flat`
    // existed (read through `source.read`'s records), as a case of its own.
    if let Some(path) = args
        .iter()
        .position(|a| a == "--wasm-records")
        .and_then(|i| args.get(i + 1))
    {
        cases.push(("wasm-rec", path.clone()));
    }
    println!("load average before: {}", loadavg());
    if args.iter().any(|a| a == "per-read") {
        for (label, path) in &cases {
            per_read(label, path);
        }
    } else {
        rounds(
            &cases,
            option("--rounds", 5.0) as usize,
            Duration::from_secs_f64(option("--wall", 8.0)),
        );
    }
    println!("load average after:  {}", loadavg());
}
