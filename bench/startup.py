#!/usr/bin/env python3
"""Cold vs warm start of `llem plugins list` with every first-party plugin.

cold: an empty compiled-component cache each run (every WASM plugin is
      compiled by Cranelift); warm: the cache from a previous run.
Usage: cargo xtask build --release && python3 bench/startup.py [runs]
Prints mean / median / min in milliseconds; copy the table into
docs/performance.md with the machine and date.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLEM = os.path.join(ROOT, "target", "release", "llem")


def run(cache_dir):
    env = dict(os.environ, LLEM_CACHE_DIR=cache_dir, LLEM_PLUGIN_PATH="")
    start = time.perf_counter()
    subprocess.run([LLEM, "plugins", "list"], env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


def summary(name, samples):
    print(f"{name:5}  mean {statistics.mean(samples):8.1f}  median {statistics.median(samples):8.1f}  "
          f"min {min(samples):8.1f}  (ms, n={len(samples)})")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if not os.path.exists(LLEM):
        sys.exit(f"{LLEM} is missing: run `cargo xtask build --release` first")
    plugins = sorted(os.listdir(os.path.join(ROOT, "target", "release", "plugins")))
    print(f"plugins: {', '.join(plugins)}")
    cold = []
    for _ in range(runs):
        cache = tempfile.mkdtemp(prefix="llem-cold-")
        cold.append(run(cache))
        shutil.rmtree(cache)
    warm_cache = tempfile.mkdtemp(prefix="llem-warm-")
    run(warm_cache)
    warm = [run(warm_cache) for _ in range(runs)]
    shutil.rmtree(warm_cache)
    summary("cold", cold)
    summary("warm", warm)


if __name__ == "__main__":
    main()
