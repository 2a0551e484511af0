#!/usr/bin/env python3
"""Offline harness overhead (issue #12 goal 5): tokens/s of llem's PyTorch
worker under `llem run` against the same engine driven bare by a minimal
script (bench/offline_bare.py), same model, prompts, batch size and output
length.

For each model size a randomly initialised Llama is made here
(tests/python/make_tiny_model.py; nothing is downloaded). Then, alternating
so that drifts of a shared machine hit both alike, `--repeat` times:

* bare: `offline_bare.py` loads the model, runs one warm-up batch, then one
  greedy `model.generate` per batch of `--batch-size` prompts with
  end-of-sequence off; tokens/s = output tokens / (first measured generate
  call .. last return).
* llem: `llem run` offline with backend-pytorch (`batch_size`, `dtype`
  float32), dataset-jsonl (the same prompts, `max_output_tokens`), the
  `energy-cpu-estimate` source sampling at the default interval,
  `[load].warmup_requests` = one batch and `ignore_eos`; tokens/s recomputed
  from requests.jsonl = output tokens of the measured requests / (first send
  .. last end), and result.json's `inference.latency.output_token_throughput`
  (over the measured window) beside it.

With `--hooks`, a third arm: the bare script passing `generate` a streamer
that does nothing (`offline_bare.py --with-hooks`) — what the engine itself
costs when asked for a callback per step, which any harness that times each
token pays. With `--alone`, another: llem's worker driven over its pipes by
bench/offline_worker_alone.py, without the llem process (the worker's own
cost: streamer, event lines, pipe).

Overhead = 1 - llem / bare, from the medians. The llem figure includes
everything the harness adds on the engine's path: the worker's per-step
streamer and per-token events, the stopping criterion that gives each row its
own max_tokens, the pipe to the kernel, the kernel's event handling and the
energy sampling thread, which share the machine's cores with the engine.

Usage (after `cargo xtask build --release` and tests/python/setup-venv.sh):
  python3 bench/offline_overhead.py [--sizes tiny,small] [--requests 64]
      [--batch-size 8] [--max-tokens 64] [--repeat 5] [--json out.json]
      [--device cuda:0 --dtype bfloat16 --energy nvml --sizes gpu]   (a GPU: tests/gpu/run.sh)
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

# (layers, hidden, heads): "tiny" is the test model; "small" makes a decoding
# step cost a few ms on a CPU, closer to what a harness sits next to.
# "gpu" (16 layers, hidden 2048: ~0.7 B parameters) is what tests/gpu/run.sh
# measures on a lent GPU, where a smaller model's step is all kernel launches.
SIZES = {"tiny": (2, 64, 4), "small": (4, 512, 8), "medium": (8, 1024, 16), "gpu": (16, 2048, 16)}


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def make_prompts(path, count):
    subjects = ["energy", "the sea", "a robot", "latency", "the stars", "batching", "joules", "tokens"]
    with open(path, "w") as f:
        for i in range(count):
            text = f"Request {i}: write a short note about {subjects[i % len(subjects)]}."
            f.write(json.dumps({"id": f"p{i}", "prompt": text}) + "\n")


def run_bare(args, model, prompts, hooks=False, script="offline_bare.py"):
    done = subprocess.run(
        [args.python, os.path.join(ROOT, "bench", script), model, prompts,
         "--batch-size", str(args.batch_size), "--max-tokens", str(args.max_tokens),
         "--warmup-batches", "1", "--dtype", args.dtype, "--device", args.device]
        + (["--with-hooks"] if hooks else []),
        capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{script} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_llem(args, model, prompts, work):
    manifest = os.path.join(work, "experiment.toml")
    placement = "" if args.device == "cpu" else f"device_map = {json.dumps(args.device)}"
    with open(manifest, "w") as f:
        f.write(f"""[experiment]
name = "overhead"
model = {json.dumps(model)}

[plugins.{args.energy}]

[plugins.jsonl]
file = {json.dumps(prompts)}
id_field = "id"
max_output_tokens = {args.max_tokens}

[plugins.pytorch]
mode = "offline"
python = {json.dumps(args.python)}
batch_size = {args.batch_size}
dtype = "{args.dtype}"
{placement}

[load]
warmup_requests = {args.batch_size}
num_prompts = {args.requests}
ignore_eos = true
""")
    out = os.path.join(work, "out")
    env = dict(os.environ, LLEM_PLUGIN_PATH=args.plugins)
    done = subprocess.run([args.llem, "run", manifest, "--set", "measurement.baseline=off",
                           "--output", out, "--quiet"],
                          capture_output=True, text=True, env=env, cwd=work, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"llem run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    runs = [os.path.join(r, d) for r, ds, _ in os.walk(out) for d in ds
            if os.path.exists(os.path.join(r, d, "requests.jsonl"))]
    if len(runs) != 1:
        sys.exit(f"expected one run directory under {out}, found {runs}")
    with open(os.path.join(runs[0], "result.json")) as f:
        result = json.load(f)
    records = []
    with open(os.path.join(runs[0], "requests.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("phase") == "measured" and r.get("success"):
                records.append(r)
    tokens = sum(r["output_tokens"] for r in records)
    seconds = (max(r["end_ns"] for r in records) - min(r["send_ns"] for r in records)) / 1e9
    expected = args.requests * args.max_tokens
    if tokens != expected or len(records) != args.requests:
        sys.exit(f"llem generated {tokens} tokens in {len(records)} measured requests, "
                 f"expected {expected} in {args.requests}")
    return {"output_tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "window_tokens_per_s": result["inference"]["latency"]["output_token_throughput"],
            "status": result["status"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--requests", type=int, default=64, help="measured requests (one more batch warms up)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--llem", default=os.path.join(TARGET, "release", "llem"))
    ap.add_argument("--plugins", default=os.path.join(TARGET, "release", "plugins"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    ap.add_argument("--device", default="cpu",
                    help="`cpu`, or backend-pytorch's device_map for both arms (`cuda:0`)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--energy", default="cpu-estimate",
                    help="the energy plugin llem samples during its runs (`nvml` on a GPU)")
    ap.add_argument("--hooks", action="store_true",
                    help="a third arm: the bare script with a streamer that does nothing "
                         "(the engine's own cost of per-step callbacks, which any per-token timing pays)")
    ap.add_argument("--alone", action="store_true",
                    help="a fourth arm: llem's worker driven over its pipes by bench/offline_worker_alone.py, "
                         "without the llem process (the worker's own cost)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    # Runs happen in their own directories: paths given relative to here must not move.
    args.llem, args.plugins, args.python = (os.path.abspath(p) for p in (args.llem, args.plugins, args.python))
    for path, fix in [(args.llem, "cargo xtask build --release"),
                      (args.python, "bash tests/python/setup-venv.sh")]:
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: {fix}")
    if args.requests % args.batch_size:
        sys.exit("--requests must be a multiple of --batch-size (a short last batch waits for more)")

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    loads = [loadavg()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="llem-offline-overhead-") as work:
        # One prompt file for both: the first batch is the warm-up of each.
        prompts = os.path.join(work, "prompts.jsonl")
        make_prompts(prompts, args.requests + args.batch_size)
        for size in args.sizes.split(","):
            layers, hidden, heads = SIZES[size]
            model = os.path.join(work, f"model-{size}")
            subprocess.run([args.python, "-c",
                            "import sys, make_tiny_model as m; "
                            f"m.build(sys.argv[1], layers={layers}, hidden={hidden}, heads={heads})", model],
                           check=True, cwd=os.path.join(ROOT, "tests", "python"))
            bare, llem, hooked, alone = [], [], [], []
            for rep in range(args.repeat):
                bare.append(run_bare(args, model, prompts))
                if args.hooks:
                    hooked.append(run_bare(args, model, prompts, hooks=True))
                if args.alone:
                    alone.append(run_bare(args, model, prompts, script="offline_worker_alone.py"))
                run_dir = os.path.join(work, f"llem-{size}-{rep}")
                os.makedirs(run_dir)
                llem.append(run_llem(args, model, prompts, run_dir))
                loads.append(loadavg())
                print(f"  {size} #{rep}: bare {bare[-1]['tokens_per_s']:.1f} tok/s, "
                      + (f"bare + streamer {hooked[-1]['tokens_per_s']:.1f} tok/s, " if hooked else "")
                      + (f"worker alone {alone[-1]['tokens_per_s']:.1f} tok/s, " if alone else "") +
                      f"llem {llem[-1]['tokens_per_s']:.1f} tok/s "
                      f"(window {llem[-1]['window_tokens_per_s']:.1f}, {llem[-1]['status']})",
                      file=sys.stderr, flush=True)
            med_bare = statistics.median(b["tokens_per_s"] for b in bare)
            med_llem = statistics.median(r["tokens_per_s"] for r in llem)
            med_window = statistics.median(r["window_tokens_per_s"] for r in llem)
            rows.append({"size": size, "layers": layers, "hidden": hidden,
                         "bare_tokens_per_s": med_bare, "llem_tokens_per_s": med_llem,
                         "llem_window_tokens_per_s": med_window,
                         "overhead_pct": (1 - med_llem / med_bare) * 100,
                         "bare_runs": [b["tokens_per_s"] for b in bare],
                         "llem_runs": [r["tokens_per_s"] for r in llem],
                         "torch": bare[0]["torch"], "threads": bare[0]["threads"],
                         "device": bare[0].get("device"), "device_name": bare[0].get("device_name"),
                         "dtype": args.dtype, "energy": args.energy,
                         "llem_status": [r["status"] for r in llem]})
            if hooked:
                med_hooked = statistics.median(h["tokens_per_s"] for h in hooked)
                rows[-1].update(hooked_tokens_per_s=med_hooked,
                                hooks_overhead_pct=(1 - med_hooked / med_bare) * 100,
                                hooked_runs=[h["tokens_per_s"] for h in hooked])
            if alone:
                med_alone = statistics.median(a["tokens_per_s"] for a in alone)
                rows[-1].update(alone_tokens_per_s=med_alone,
                                alone_overhead_pct=(1 - med_alone / med_bare) * 100,
                                alone_runs=[a["tokens_per_s"] for a in alone])

    print(f"\n{started}, load average {min(loads)}–{max(loads)}; {args.requests} requests "
          f"(+{args.batch_size} warm-up), batch {args.batch_size}, {args.max_tokens} tokens each; "
          f"medians of {args.repeat}; {rows[0]['device_name'] if rows else args.device}, {args.dtype}, "
          f"energy from {args.energy}")
    print("| model | bare tokens/s | llem tokens/s (requests) | llem tokens/s (window) | overhead | runs bare | runs llem |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} ({r['layers']}×{r['hidden']}) | {r['bare_tokens_per_s']:.1f} | "
              f"{r['llem_tokens_per_s']:.1f} | {r['llem_window_tokens_per_s']:.1f} | "
              f"{r['overhead_pct']:+.2f} % | {', '.join(f'{x:.0f}' for x in r['bare_runs'])} | "
              f"{', '.join(f'{x:.0f}' for x in r['llem_runs'])} |")
    for r in rows:
        if "hooked_tokens_per_s" in r:
            print(f"{r['size']}: bare + a streamer that does nothing {r['hooked_tokens_per_s']:.1f} tokens/s "
                  f"({r['hooks_overhead_pct']:+.2f} % against bare; runs "
                  f"{', '.join(f'{x:.0f}' for x in r['hooked_runs'])})")
        if "alone_tokens_per_s" in r:
            print(f"{r['size']}: llem's worker alone {r['alone_tokens_per_s']:.1f} tokens/s "
                  f"({r['alone_overhead_pct']:+.2f} % against bare; runs "
                  f"{', '.join(f'{x:.0f}' for x in r['alone_runs'])})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"started": started, "loadavg": loads, "requests": args.requests,
                       "batch_size": args.batch_size, "max_tokens": args.max_tokens,
                       "repeat": args.repeat, "device": args.device, "dtype": args.dtype,
                       "energy": args.energy, "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
