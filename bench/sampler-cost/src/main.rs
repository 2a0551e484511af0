//! CPU cost of the sampler at 100 Hz with 8 devices (issue #3 goal: < 0.1 %
//! of one core), for a native and a WASM source.
//!
//! Reports the sampling thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) and the
//! whole process's CPU time over the same wall window (getrusage), which adds
//! the WASM engine's epoch ticker and everything else llem runs meanwhile.
//! Run (release-built fixtures):
//!   cargo build --release -p energy-fixture
//!   cargo build --release -p energy-fixture --target wasm32-wasip2
//!   cargo run --release -p llem-bench-sampler-cost
//! (`$CARGO_TARGET_DIR` is honoured.) `-- native`, `-- wasm` or `-- floor`
//! runs only those cases (e.g. under `perf record`). Prints the load average
//! before and after: on a shared machine, compare figures only at similar load.

use llem::sampler::{Sampler, SourceConfig};
use llem::{PluginLoader, Sandbox};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WALL: Duration = Duration::from_secs(20);

fn process_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut usage: libc_rusage = unsafe { std::mem::zeroed() };
    unsafe { getrusage(0, &mut usage) };
    let tv = |t: Timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
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

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut libc_rusage) -> i32;
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

fn measure(label: &str, relative: &str) {
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
    let source = plugin
        .open_energy(&config, &Sandbox::default())
        .expect("opens");
    let sampler_config = SourceConfig {
        name: label.into(),
        interval: Duration::from_millis(10),
        telemetry_interval: Duration::ZERO,
    };
    let cpu_before = process_cpu_s();
    let started = Instant::now();
    let sampler = Sampler::start(vec![(sampler_config, source)]).expect("starts");
    std::thread::sleep(WALL);
    let collected = sampler.stop();
    let wall = started.elapsed().as_secs_f64();
    let process = process_cpu_s() - cpu_before;
    let series = &collected[0].2;
    let thread = series.thread_cpu_ns as f64 / 1e9;
    println!(
        "{label:7} 8 devices @ 100 Hz for {wall:.1} s: {} ticks, {} missed, {} readings | sampler thread {:.4} % of a core | whole process {:.4} % of a core",
        series.ticks,
        series.missed_ticks,
        series.readings.len(),
        thread / wall * 100.0,
        process / wall * 100.0,
    );
}

/// The floor: a thread that only sleeps to absolute 10 ms deadlines, as the
/// sampler does between reads. What the sampler costs above this is its own.
fn baseline() -> f64 {
    let handle = std::thread::spawn(|| {
        let start = Instant::now();
        let mut deadline = start;
        while start.elapsed() < WALL {
            deadline += Duration::from_millis(10);
            if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut ts = libc_timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid timespec; CLOCK_THREAD_CPUTIME_ID = 3 on Linux.
        unsafe { clock_gettime(3, &mut ts) };
        (ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9) / start.elapsed().as_secs_f64()
    });
    let share = handle.join().expect("baseline thread");
    println!(
        "floor   a thread waking at 100 Hz and doing nothing: {:.4} % of a core",
        share * 100.0
    );
    share
}

#[repr(C)]
struct libc_timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut libc_timespec) -> i32;
}

fn main() {
    let cases: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |case: &str| cases.is_empty() || cases.iter().any(|c| c == case);
    println!("load average before: {}", loadavg());
    if wanted("floor") {
        baseline();
    }
    if wanted("native") {
        measure("native", "release/libenergy_fixture.so");
    }
    if wanted("wasm") {
        measure("wasm", "wasm32-wasip2/release/energy_fixture.wasm");
    }
    println!("load average after:  {}", loadavg());
}
