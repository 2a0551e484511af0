#!/usr/bin/env python3
"""Time from `llem run`'s process start to its first request at the server.

llem attaches (`[load].endpoint`) to a stand-in OpenAI-compatible server that
runs in this script: it notes when the first POST arrives (time.monotonic_ns,
the same clock as the process start taken here just before the spawn),
streams one short completion, and llem is stopped (SIGTERM) once it has arrived. The
run uses every first-party plugin installed next to `llem`: an energy source
(energy-cpu-estimate), a backend (vllm, attached: nothing is started) and a
dataset (jsonl); the others are on the plugin path and must not slow the run.

cold: an empty cache directory ($COLD_RUNS runs, default 1); warm: the cache from an earlier run.
Usage: cargo xtask build --release && python3 bench/first_request.py [runs] [llem]
`llem` defaults to $CARGO_TARGET_DIR (or target/)/release/llem. Prints
median / mean / min in ms, and the load average before and after.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
FIRST_POST = {"ns": None, "cpu_ms": None, "pid": None}
TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    """User + system CPU of every thread of `pid` so far (clock ticks: 10 ms
    steps), None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_MS
    except (OSError, IndexError, ValueError):
        return None
ARRIVED = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        body = b"" if self.path != "/metrics" else b"# nothing\n"
        self.send_response(200 if self.path in ("/health", "/metrics") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if FIRST_POST["ns"] is None:
            FIRST_POST["ns"] = time.monotonic_ns()
            FIRST_POST["cpu_ms"] = cpu_ms(FIRST_POST["pid"])
            ARRIVED.set()
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        done = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        chunks = [{"choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in ("a", "b")]
        try:
            for chunk in chunks + [done]:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # llem was stopped once the request arrived: expected


def manifest(work, port):
    with open(os.path.join(work, "prompts.jsonl"), "w") as f:
        f.write('{"prompt": "hello there"}\n')
    text = f"""[experiment]
name = "first-request"
model = "fake-model"
output_dir = "runs"
sample_interval_ms = 100

[measurement]
baseline = "off"

[plugins.cpu-estimate]

[plugins.vllm]

[plugins.jsonl]
file = "prompts.jsonl"

[load]
endpoint = "http://127.0.0.1:{port}/v1"
num_prompts = 1
max_tokens = 2
"""
    path = os.path.join(work, "experiment.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def one_run(llem, manifest_path, cache_dir):
    FIRST_POST.update(ns=None, cpu_ms=None, pid=None)
    ARRIVED.clear()
    env = dict(os.environ, LLEM_CACHE_DIR=cache_dir, LLEM_PLUGIN_PATH="", NO_COLOR="1")
    env.pop("LLEM_LOG", None)
    start = time.monotonic_ns()
    proc = subprocess.Popen([llem, "run", manifest_path], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    FIRST_POST["pid"] = proc.pid
    # The figure is taken once the request is in: stop the run there (SIGTERM
    # ends it as interrupted) rather than wait for its cool-down.
    arrived = ARRIVED.wait(timeout=60)
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate()
    if not arrived:
        sys.exit(f"no request arrived (exit {proc.returncode}):\n{err}\n{out}")
    CPU.append(FIRST_POST["cpu_ms"])
    return (FIRST_POST["ns"] - start) / 1e6


CPU = []


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def summary(name, samples, cpu):
    print(f"{name:5}  wall: median {statistics.median(samples):7.1f}  mean {statistics.mean(samples):7.1f}  "
          f"min {min(samples):7.1f}  (ms to first request, n={len(samples)})")
    cpu = [c for c in cpu if c is not None]
    if cpu:
        print(f"{'':5}  CPU:  median {statistics.median(cpu):7.1f}  min {min(cpu):7.1f}  "
              "(ms of llem's CPU until then, 10 ms steps; load-independent)")


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    llem = sys.argv[2] if len(sys.argv) > 2 else os.path.join(TARGET, "release", "llem")
    if not os.path.exists(llem):
        sys.exit(f"{llem} is missing: run `cargo xtask build --release` first")
    plugins = sorted(os.listdir(os.path.join(os.path.dirname(llem), "plugins")))
    print(f"llem: {llem}\nplugins ({len(plugins)}): {', '.join(plugins)}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="llem-first-request-")
    path = manifest(work, server.server_address[1])
    print(f"load average before: {loadavg()}")
    cold = []
    for _ in range(int(os.environ.get("COLD_RUNS", "1"))):
        cache = tempfile.mkdtemp(prefix="llem-cold-")
        cold.append(one_run(llem, path, cache))
        shutil.rmtree(cache)
    cold_cpu = CPU[:]
    warm_cache = tempfile.mkdtemp(prefix="llem-warm-")
    one_run(llem, path, warm_cache)
    CPU.clear()
    warm = [one_run(llem, path, warm_cache) for _ in range(runs)]
    print(f"load average after:  {loadavg()}")
    shutil.rmtree(warm_cache)
    shutil.rmtree(work)
    server.shutdown()
    if cold:
        summary("cold", cold, cold_cpu)
    summary("warm", warm, CPU)


if __name__ == "__main__":
    main()
