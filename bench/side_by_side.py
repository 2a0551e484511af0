#!/usr/bin/env python3
"""llem's load generator beside peer benchmark clients, against one local
token-schedule server (issue #12 goals 1, 2 and 6).

The server (`token-server`, tests/bin/token_server.rs) answers OpenAI-style
streaming requests on a fixed schedule (first chunk TTFT after a request
arrives, then one chunk every ITL) and logs, per request, when it arrived and
when it handed each chunk to the connection (CLOCK_MONOTONIC). Each client
runs against it twice per stream count: a small run (one wave of `streams`
requests) and a large one (`waves` waves), closed loop at `streams`
concurrency. Reported per client and stream count:

* client CPU per streamed chunk: user + sys of the client's whole process
  tree (RUSAGE_CHILDREN around the client's process: every descendant it
  waited for is included), marginal between the small and the large run
  ((CPU_large - CPU_small) / (chunks_large - chunks_small)), which cancels
  start-up, plugin loading and writing results;
* tokens/s of the large run (chunks over first send to last end);
* TTFT error: mean of (client TTFT - server TTFT) per request, where the
  server's TTFT is its first chunk's send time minus the request's arrival;
  mean over the same requests, so it equals mean(client) - mean(server);
* for llem (which records every chunk's arrival and its send time, on the
  server's clock): per-chunk error (client arrival - server send) p50/p99/max
  and send error (client send - server arrival), matched per request by the
  prompt text and per chunk by position.

llem runs as `llem run` in attach mode (`[load].endpoint`) with the
`energy-cpu-estimate` source sampling, the `dataset-jsonl` prompts and the
`backend-vllm` plan: the whole process, energy sampling included. Peers run
when installed (GuideLLM and AIPerf from their own venvs, `vllm bench serve`,
HF `inference-benchmarker`); the others are skipped with a note. `floor` is
`recv-floor` (tests/bin/recv_floor.rs): the kernel's share of a chunk, with
the least user-space work a client can do.

Usage (after building, see docs/performance.md):
  python3 bench/side_by_side.py [--streams 64,256,1024] [--waves 4] [--repeat 3]
      [--chunks 256] [--ttft-ms 20] [--itl-ms 5] [--json results.json]
      [--llem PATH] [--server PATH] [--plugins DIR] [--clients llem,guidellm,...]
"""
import argparse
import datetime
import json
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


class Server:
    """The token-server process: start, dump its log, stop."""

    def __init__(self, path, ttft_ms, itl_ms, chunks):
        self.proc = subprocess.Popen(
            [path, "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--chunks", str(chunks)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            sys.exit(f"token-server did not start: {line!r}")
        self.base_url = line.split(" ", 1)[1]

    def dump(self, path):
        """The streams finished since the last dump: {key: [stream, ...]}."""
        self.proc.stdin.write(f"dump {path}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer.startswith("dumped "):
            sys.exit(f"token-server: {answer!r}")
        streams = {}
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                streams.setdefault(row["key"], []).append(row)
        return streams

    def stop(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_client(argv, env=None, cwd=None, timeout=900):
    """Run one client to completion: (CPU s of its process tree, wall s, output)."""
    cpu0 = children_cpu_s()
    t0 = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    cpu = children_cpu_s() - cpu0
    if done.returncode != 0:
        print(f"  ! {' '.join(argv[:3])}… exited {done.returncode}:\n{done.stderr[-2000:]}\n{done.stdout[-3000:]}",
              file=sys.stderr)
        return None
    return cpu, wall, done.stdout + done.stderr


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---------------------------------------------------------------- llem

class Llem:
    name = "llem"

    def __init__(self, args):
        self.llem = args.llem
        self.plugins = args.plugins
        self.chunks = args.chunks
        self.cache = tempfile.mkdtemp(prefix="llem-sbs-cache-")

    def available(self):
        if not os.path.exists(self.llem):
            return f"{self.llem} is missing (cargo build -p llem-cli --release)"
        for p in ["dataset-jsonl.wasm", "backend-vllm.wasm", "libenergy_cpu_estimate.so"]:
            if not os.path.exists(os.path.join(self.plugins, p)):
                return f"plugin {p} missing in {self.plugins} (see docs/performance.md)"
        return None

    def run(self, server, work, streams, requests, tag):
        prompts = [f"req {tag}-{i} hello" for i in range(requests)]
        with open(os.path.join(work, "prompts.jsonl"), "w") as f:
            for i, text in enumerate(prompts):
                f.write(json.dumps({"id": f"r{i}", "prompt": text}) + "\n")
        manifest = os.path.join(work, "experiment.toml")
        with open(manifest, "w") as f:
            f.write(f"""[experiment]
name = "sbs"
model = "bench-model"

[plugins.cpu-estimate]

[plugins.jsonl]
file = "prompts.jsonl"
id_field = "id"
max_output_tokens = {self.chunks}

[plugins.vllm]

[load]
endpoint = "{server.base_url}"
max_concurrency = {streams}
ignore_eos = true
""")
        env = dict(os.environ, LLEM_PLUGIN_PATH=self.plugins, LLEM_CACHE_DIR=self.cache)
        out = os.path.join(work, "out")
        res = run_client([self.llem, "run", manifest, "--set", "measurement.baseline=off",
                          "--output", out, "--quiet"], env=env, cwd=work)
        if res is None:
            return None
        cpu, wall, _ = res
        runs = [os.path.join(r, d) for r, ds, _ in os.walk(out) for d in ds
                if os.path.exists(os.path.join(r, d, "requests.jsonl"))]
        if len(runs) != 1:
            print(f"  ! expected one run directory under {out}, found {runs}", file=sys.stderr)
            return None
        records = []
        with open(os.path.join(runs[0], "requests.jsonl")) as f:
            for line in f:
                records.append(json.loads(line))
        text_of = {f"r{i}": t for i, t in enumerate(prompts)}
        return cpu, wall, records, text_of


def llem_figures(records, text_of, served):
    """Per-request and per-chunk errors of llem's records against the server log."""
    chunk_err, send_err, ttft_err = [], [], []
    chunks = 0
    unmatched = 0
    first_send, last_end = None, None
    for r in records:
        if r.get("phase") != "measured" or not r.get("success"):
            continue
        key = text_of.get(r["prompt_id"])
        logs = served.get(key)
        if not logs or len(logs) != 1:
            unmatched += 1
            continue
        s = logs[0]
        if len(s["chunk_ns"]) != len(r["chunk_ns"]):
            unmatched += 1
            continue
        chunks += len(r["chunk_ns"])
        send_err.append((r["send_ns"] - s["arrival_ns"]) / 1e3)
        for c, t in zip(r["chunk_ns"], s["chunk_ns"]):
            chunk_err.append((c - t) / 1e3)
        client_ttft = r["first_token_ns"] - r["send_ns"]
        server_ttft = s["chunk_ns"][0] - s["arrival_ns"]
        ttft_err.append((client_ttft - server_ttft) / 1e6)
        first_send = r["send_ns"] if first_send is None else min(first_send, r["send_ns"])
        last_end = r["end_ns"] if last_end is None else max(last_end, r["end_ns"])
    span = (last_end - first_send) / 1e9 if chunks else float("nan")
    return {
        "chunks": chunks,
        "unmatched_requests": unmatched,
        "tokens_per_s": chunks / span if chunks else float("nan"),
        "ttft_err_mean_ms": statistics.mean(ttft_err) if ttft_err else float("nan"),
        "chunk_err_p50_us": pct(chunk_err, 50),
        "chunk_err_p99_us": pct(chunk_err, 99),
        "chunk_err_max_us": max(chunk_err) if chunk_err else float("nan"),
        # The send side: negative means llem stamped the send before the server
        # saw the request (connect + write + the server's own wake-up in between).
        "send_err_mean_us": statistics.mean(send_err) if send_err else float("nan"),
        "send_err_p50_us": pct([-x for x in send_err], 50),
        "send_err_p99_us": pct([-x for x in send_err], 99),
    }


def sample_points(args, server, streams, name, one_run):
    """`args.repeat` × (a small run of one wave, a large one of `args.waves`),
    each in a fresh directory with the server's log emptied first:
    `one_run(work, requests, tag)` gives a run's figures or why it failed.
    ([{"small": figures, "large": figures}, ...], None), or (None, why)."""
    samples = []
    for rep in range(args.repeat):
        point = {}
        for size, requests in [("small", streams), ("large", streams * args.waves)]:
            work = tempfile.mkdtemp(prefix=f"{name}-sbs-{streams}-")
            server.dump(os.path.join(work, "discard.jsonl"))
            figures, why = one_run(work, requests, f"{rep}{size}")
            if why:
                return None, why
            point[size] = figures
            shutil.rmtree(work, ignore_errors=True)
        samples.append(point)
    return samples, None


def run_llem(args, server, streams):
    client = Llem(args)
    why = client.available()
    if why:
        return None, why
    # One run first, not counted: it compiles the WASM plugins into the
    # (per-client) component cache, which later runs only load.
    work = tempfile.mkdtemp(prefix="llem-sbs-warm-")
    client.run(server, work, streams, streams, "warm")
    server.dump(os.path.join(work, "discard.jsonl"))
    shutil.rmtree(work, ignore_errors=True)

    def one_run(work, requests, tag):
        got = client.run(server, work, streams, requests, tag)
        if got is None:
            return None, "llem run failed (see above)"
        cpu, wall, records, text_of = got
        figures = llem_figures(records, text_of, server.dump(os.path.join(work, "server.jsonl")))
        figures.update(cpu_s=cpu, wall_s=wall)
        return figures, None

    samples, why = sample_points(args, server, streams, "llem", one_run)
    shutil.rmtree(client.cache, ignore_errors=True)
    return samples, why


# ---------------------------------------------------------------- peers

def served_figures(served, keys):
    """What the server saw of one peer run: chunks sent and mean server TTFT
    over the streams whose prompt is one of `keys` (a peer's probes and
    warm-up requests carry other text), and tokens/s over the server's own
    span (first arrival .. last chunk sent)."""
    streams = [s for k, logs in served.items() if k in keys for s in logs]
    chunks = sum(len(s["chunk_ns"]) for s in streams)
    ttft = [(s["chunk_ns"][0] - s["arrival_ns"]) / 1e6 for s in streams if s["chunk_ns"]]
    if not streams or not chunks:
        return None
    span = (max(s["chunk_ns"][-1] for s in streams if s["chunk_ns"]) - min(s["arrival_ns"] for s in streams)) / 1e9
    return {"chunks": chunks, "requests": len(streams), "server_ttft_mean_ms": statistics.mean(ttft),
            "tokens_per_s": chunks / span}


def peer_row(client_ttft_ms, served):
    """The table's fields for a peer: the TTFT error as the difference of
    means over the same requests (a peer's per-request records are not all
    matched to the server's here); per-chunk and send errors unknown."""
    nan = float("nan")
    return {"chunks": served["chunks"], "tokens_per_s": served["tokens_per_s"],
            "ttft_err_mean_ms": client_ttft_ms - served["server_ttft_mean_ms"],
            "chunk_err_p50_us": nan, "chunk_err_p99_us": nan, "chunk_err_max_us": nan,
            "send_err_mean_us": nan, "send_err_p50_us": nan, "send_err_p99_us": nan}


def run_peer_client(argv, work, prompts, client_ttft_ms, env=None):
    """One peer run: (CPU s, wall s, its mean TTFT in ms, the prompts it
    sent), or None when it failed."""
    res = run_client(argv, env=env, cwd=work)
    if res is None:
        return None
    cpu, wall, _ = res
    return cpu, wall, client_ttft_ms(), set(prompts)


def find_exe(explicit, name, venv_dirs):
    for exe in [explicit, shutil.which(name)] + [os.path.join(v, "bin", name) for v in venv_dirs]:
        if exe and os.path.exists(exe):
            return exe
    return None


class GuideLLM:
    """GuideLLM (`guidellm run`, 0.8): the concurrent profile at `streams`,
    a JSON-lines file of the same kind of prompts with their output length
    (`output_tokens_count`, which makes it send `max_tokens` + `ignore_eos`),
    the completions API, results as JSON."""
    name = "guidellm"

    def __init__(self, args):
        self.exe = find_exe(args.guidellm, "guidellm", [os.environ.get("PEER_VENV", "/work/peer-venv")])
        self.chunks = args.chunks

    def available(self):
        return None if self.exe else "GuideLLM not installed (bench/install_peers.sh, or --guidellm PATH)"

    def run(self, server, work, streams, requests, tag):
        prompts = [f"req {tag}-{i} hello" for i in range(requests)]
        data = os.path.join(work, "prompts.jsonl")
        with open(data, "w") as f:
            for text in prompts:
                f.write(json.dumps({"prompt": text, "prompt_tokens_count": 3,
                                    "output_tokens_count": self.chunks}) + "\n")
        out = os.path.join(work, "guidellm.json")
        base = server.base_url[:-len("/v1")]
        argv = [self.exe, "run",
                "--backend", f"kind=openai_http,target={base},model=m,request_format=/v1/completions",
                "--profile", f"kind=concurrent,streams={streams}",
                "--constraint", f"kind=max_requests,count={requests}",
                "--data", f"kind=json_file,path={data}",
                "--output", f"kind=json,path={out}",
                "--disable-console"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        return run_peer_client(argv, work, prompts, lambda: self.client_ttft_ms(out), env=env)

    @staticmethod
    def client_ttft_ms(path):
        with open(path) as f:
            report = json.load(f)
        bench = report["benchmarks"][0]
        ttft = bench["metrics"]["time_to_first_token_ms"]["successful"]["mean"]
        return float(ttft)


class AIPerf:
    """NVIDIA AIPerf (`aiperf profile`): `--concurrency streams`, a
    single-turn JSON-lines file of the same kind of prompts, the completions
    API streaming, `max_tokens` + `ignore_eos` as extra inputs, a local
    tokenizer (made here: nothing is downloaded)."""
    name = "aiperf"

    def __init__(self, args):
        venv = os.environ.get("PEER_VENV", "/work/peer-venv")
        self.exe = find_exe(args.aiperf, "aiperf", [os.path.join(venv, "aiperf-venv"), "/work/aiperf-venv"])
        self.chunks = args.chunks
        self.tokenizer = args.tokenizer

    def available(self):
        if not self.exe:
            return "AIPerf not installed (bench/install_peers.sh, or --aiperf PATH)"
        if not self.tokenizer:
            return "AIPerf needs a local tokenizer (--tokenizer DIR; made from tests/python when the venv exists)"
        return None

    def run(self, server, work, streams, requests, tag):
        prompts = [f"req {tag}-{i} hello" for i in range(requests)]
        data = os.path.join(work, "prompts.jsonl")
        with open(data, "w") as f:
            for text in prompts:
                f.write(json.dumps({"text": text, "output_length": self.chunks}) + "\n")
        out = os.path.join(work, "aiperf")
        argv = [self.exe, "profile", "--model", "m", "--url", server.base_url[:-len("/v1")],
                "--endpoint-type", "completions", "--streaming",
                "--input-file", data, "--custom-dataset-type", "single_turn",
                "--dataset-sampling-strategy", "sequential",
                "--concurrency", str(streams), "--request-count", str(requests),
                "--extra-inputs", "ignore_eos:true", "--extra-inputs", f"max_tokens:{self.chunks}",
                "--use-legacy-max-tokens", "--use-server-token-count",
                "--tokenizer", self.tokenizer, "--output-artifact-dir", out,
                "--ui-type", "none", "--no-auto-plot"]
        # Not HF_HUB_OFFLINE: with it, AIPerf 0.13 refuses a local tokenizer
        # directory as an invalid repository id.
        return run_peer_client(argv, work, prompts, lambda: self.client_ttft_ms(out))

    @staticmethod
    def client_ttft_ms(out):
        for root, _, files in os.walk(out):
            for name in files:
                if name.endswith("_aiperf.json") or name == "profile_export_aiperf.json":
                    with open(os.path.join(root, name)) as f:
                        report = json.load(f)
                    metric = report.get("time_to_first_token") or report["records"]["time_to_first_token"]
                    return float(metric["avg"])
        raise RuntimeError(f"no AIPerf summary under {out}")


class Floor:
    """Not a peer: `recv-floor` (tests/bin/recv_floor.rs), the least a
    streaming client can do per chunk on this machine — raw epoll, one
    `recvmsg` with its kernel timestamp per readable socket, events found by
    their blank line, no parsing or records — so that llem's figure can be
    read against the kernel's share."""
    name = "floor"

    def __init__(self, args):
        self.exe = os.path.join(os.path.dirname(args.server), "recv-floor")
        self.chunks = args.chunks

    def available(self):
        return None if os.path.exists(self.exe) else \
            f"{self.exe} is missing (cargo build --release -p llem-integration-tests --bin recv-floor)"

    def run(self, server, work, streams, requests, tag):
        prompts = [f"req {tag}-{i} hello" for i in range(requests)]
        addr = server.base_url[len("http://"):-len("/v1")]
        res = run_client([self.exe, addr, str(streams), str(requests), tag, str(self.chunks)], cwd=work)
        if res is None:
            return None
        cpu, wall, out = res
        return cpu, wall, json.loads(out.strip().splitlines()[-1])["ttft_mean_ms"], set(prompts)


PEERS = {"guidellm": GuideLLM, "aiperf": AIPerf, "floor": Floor}


def run_peer(args, server, streams, cls):
    client = cls(args)
    why = client.available()
    if why:
        return None, why

    def one_run(work, requests, tag):
        try:
            got = client.run(server, work, streams, requests, tag)
        except Exception as e:  # noqa: BLE001 - a peer's output format is not ours
            return None, f"its output could not be read: {type(e).__name__}: {e}"
        if got is None:
            return None, f"{client.name} failed (see above)"
        cpu, wall, client_ttft, keys = got
        served = served_figures(server.dump(os.path.join(work, "server.jsonl")), keys)
        if served is None:
            return None, "the server saw none of its requests"
        figures = peer_row(client_ttft, served)
        figures.update(cpu_s=cpu, wall_s=wall)
        return figures, None

    return sample_points(args, server, streams, client.name, one_run)


def peer_note(name):
    """Why a peer without a runner here is skipped."""
    if name == "vllm":
        return "`vllm bench serve` not run: it needs the vllm package (CUDA wheels, several GB; not installed here)" \
            if not shutil.which("vllm") else "vllm is installed, but its runner is not written yet"
    if name == "inference-benchmarker":
        return "inference-benchmarker not run: a Rust project not on crates.io (build it from github.com/huggingface/inference-benchmarker)" \
            if not shutil.which("inference-benchmarker") else "inference-benchmarker is installed, but its runner is not written yet"
    return f"unknown client {name}"


# ---------------------------------------------------------------- report

def summarise(samples, streams, chunks):
    """Medians over repeats of the marginal CPU per chunk and the large run's figures."""
    per_chunk, rows = [], []
    for point in samples:
        s, l = point["small"], point["large"]
        dchunks = l["chunks"] - s["chunks"]
        if dchunks > 0:
            per_chunk.append((l["cpu_s"] - s["cpu_s"]) / dchunks * 1e6)
        rows.append(l)
    med = lambda k: statistics.median(r[k] for r in rows)
    out = {"streams": streams, "cpu_us_per_chunk": statistics.median(per_chunk) if per_chunk else float("nan"),
           "cpu_us_per_chunk_all": per_chunk}
    for k in rows[0]:
        out[k] = med(k)
    return out


def make_tokenizer():
    """A local tokenizer for AIPerf, which tokenizes prompts and outputs:
    the tiny test tokenizer (tests/python/make_tiny_model.py), saved to a
    temporary directory; None without the project's .venv."""
    python = os.path.join(ROOT, ".venv", "bin", "python")
    if not os.path.exists(python):
        return None
    out = tempfile.mkdtemp(prefix="sbs-tokenizer-")
    done = subprocess.run([python, "-c", "import sys, make_tiny_model as m; m.make_tokenizer(500).save_pretrained(sys.argv[1])", out],
                          cwd=os.path.join(ROOT, "tests", "python"), capture_output=True, text=True)
    return out if done.returncode == 0 else None


def cell(value, fmt):
    return "—" if value != value else format(value, fmt)  # NaN: not measured for this client


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="64,256,1024")
    ap.add_argument("--waves", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=256)
    ap.add_argument("--ttft-ms", type=float, default=20)
    ap.add_argument("--itl-ms", type=float, default=5)
    ap.add_argument("--llem", default=os.path.join(TARGET, "release", "llem"))
    ap.add_argument("--server", default=os.path.join(TARGET, "release", "token-server"))
    ap.add_argument("--plugins", default=os.path.join(TARGET, "release", "plugins"))
    ap.add_argument("--clients", default="llem,guidellm,aiperf,vllm,inference-benchmarker")
    ap.add_argument("--guidellm", default=None, help="the guidellm executable (default: on PATH, or $PEER_VENV)")
    ap.add_argument("--aiperf", default=None, help="the aiperf executable (default: on PATH, or $PEER_VENV/aiperf-venv)")
    ap.add_argument("--tokenizer", default=None,
                    help="a local Hugging Face tokenizer directory for AIPerf (default: made with the .venv)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--label", default="", help="a name for this set of results (e.g. before/after)")
    args = ap.parse_args()
    # Clients run in their own directories: paths given relative to here must not move.
    args.llem, args.server, args.plugins = (os.path.abspath(p) for p in (args.llem, args.server, args.plugins))

    if args.tokenizer is None and "aiperf" in args.clients.split(","):
        args.tokenizer = make_tokenizer()
    if not os.path.exists(args.server):
        sys.exit(f"{args.server} is missing: cargo build --release -p llem-integration-tests --bin token-server")
    loads = [open("/proc/loadavg").read().split()[0]]
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    server = Server(args.server, args.ttft_ms, args.itl_ms, args.chunks)
    results, notes = [], []
    try:
        for name in args.clients.split(","):
            for streams in [int(s) for s in args.streams.split(",")]:
                if name == "llem":
                    samples, why = run_llem(args, server, streams)
                elif name in PEERS:
                    samples, why = run_peer(args, server, streams, PEERS[name])
                else:
                    samples, why = None, peer_note(name)
                loads.append(open("/proc/loadavg").read().split()[0])
                if why:
                    if why not in notes:
                        notes.append(f"{name}: {why}")
                    break
                row = summarise(samples, streams, args.chunks)
                row["client"] = name
                results.append(row)
                print(f"  {name} {streams} streams: {row['cpu_us_per_chunk']:.2f} µs/chunk "
                      f"(runs {', '.join(f'{x:.2f}' for x in row['cpu_us_per_chunk_all'])}), "
                      f"TTFT err {row['ttft_err_mean_ms']:+.2f} ms, chunk p99 {cell(row['chunk_err_p99_us'], '.0f')} µs",
                      file=sys.stderr, flush=True)
    finally:
        server.stop()

    print(f"\n{started}, load average {min(loads)}–{max(loads)}; server TTFT {args.ttft_ms} ms, "
          f"ITL {args.itl_ms} ms, {args.chunks} chunks/request; medians of {args.repeat}")
    print("| client | streams | CPU µs/chunk | tokens/s | TTFT err mean ms | chunk err p50 µs | p99 µs | max µs | send err mean µs | p99 µs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['client']} | {r['streams']} | {r['cpu_us_per_chunk']:.2f} | {r['tokens_per_s']:,.0f} | "
              f"{r['ttft_err_mean_ms']:+.2f} | {cell(r['chunk_err_p50_us'], '.0f')} | {cell(r['chunk_err_p99_us'], '.0f')} | "
              f"{cell(r['chunk_err_max_us'], '.0f')} | {cell(-r['send_err_mean_us'], '.0f')} | {cell(r['send_err_p99_us'], '.0f')} |")
    for n in notes:
        print(f"skipped: {n}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label": args.label, "started": started, "loadavg": loads,
                       "server": {"ttft_ms": args.ttft_ms, "itl_ms": args.itl_ms, "chunks": args.chunks},
                       "repeat": args.repeat, "waves": args.waves,
                       "results": results, "skipped": notes}, f, indent=1)


if __name__ == "__main__":
    main()
