#!/usr/bin/env python3
"""Cold vs warm start of `llem plugins list` with every first-party plugin.

cold: an empty compiled-component cache each run (every WASM plugin is
      compiled by Cranelift); warm: the cache from a previous run.
warm (uncached descriptions) repeats warm with the describe cache removed
      before each run: what every start cost before descriptions were cached.
Usage: cargo xtask build --release && python3 bench/startup.py [runs] [llem]
$COLD_RUNS sets the number of cold runs (default 3).
`llem` defaults to $CARGO_TARGET_DIR (or target/)/release/llem; its plugins
are the ones in the `plugins` directory next to it.
Prints mean / median / min in milliseconds and the load average before and
after; copy the table into docs/performance.md with the machine and date.
"""
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
LLEM = os.path.join(TARGET, "release", "llem")


CPU_MS = {}


def children_cpu_s():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cache_dir):
    """Wall ms of one `llem plugins list`; its CPU ms (user + system, all
    threads) is appended to CPU_MS[cache_dir]: on a loaded machine the wall
    time is mostly waiting for a CPU, the CPU time is not."""
    env = dict(os.environ, LLEM_CACHE_DIR=cache_dir, LLEM_PLUGIN_PATH="")
    cpu = children_cpu_s()
    start = time.perf_counter()
    subprocess.run([LLEM, "plugins", "list"], env=env, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - start) * 1000.0
    CPU_MS.setdefault(cache_dir, []).append((children_cpu_s() - cpu) * 1000.0)
    return wall


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summary(name, samples, cpu=None):
    print(f"{name:5}  wall: mean {statistics.mean(samples):8.1f}  median {statistics.median(samples):8.1f}  "
          f"min {min(samples):8.1f}  (ms, n={len(samples)})")
    if cpu:
        print(f"{'':5}  CPU:  median {statistics.median(cpu):8.1f}  min {min(cpu):8.1f}  (ms, user + system)")


def main():
    global LLEM
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if len(sys.argv) > 2:
        LLEM = sys.argv[2]
    if not os.path.exists(LLEM):
        sys.exit(f"{LLEM} is missing: run `cargo xtask build --release` first")
    plugins = sorted(os.listdir(os.path.join(os.path.dirname(LLEM), "plugins")))
    print(f"llem: {LLEM}\nplugins ({len(plugins)}): {', '.join(plugins)}")
    print(f"load average before: {loadavg()}")
    cold = []
    # A cold start compiles every WASM plugin (seconds each): a few suffice
    # ($COLD_RUNS, default 3; 0 skips them).
    for _ in range(min(runs, int(os.environ.get("COLD_RUNS", "3")))):
        cache = tempfile.mkdtemp(prefix="llem-cold-")
        cold.append(run(cache))
        shutil.rmtree(cache)
    warm_cache = tempfile.mkdtemp(prefix="llem-warm-")
    run(warm_cache)
    CPU_MS.pop(warm_cache)
    warm = [run(warm_cache) for _ in range(runs)]
    warm_cpu = CPU_MS.pop(warm_cache)
    uncached = []
    for _ in range(runs):
        shutil.rmtree(os.path.join(warm_cache, "described"), ignore_errors=True)
        uncached.append(run(warm_cache))
    uncached_cpu = CPU_MS.pop(warm_cache, [])
    print(f"load average after:  {loadavg()}")
    shutil.rmtree(warm_cache)
    if cold:
        summary("cold", cold)
    summary("warm", warm, warm_cpu)
    summary("warm (uncached descriptions)", uncached, uncached_cpu)


if __name__ == "__main__":
    main()
