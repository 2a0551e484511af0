#!/usr/bin/env python3
"""The worker-alone arm of bench/offline_overhead.py: llem's PyTorch worker
(assembled as the kernel assembles it) driven over its stdin/stdout by this
script instead of by `llem run`, so that the harness's cost splits into the
worker's own (streamer, events, pipe) and the rest (the llem process beside
the engine: its reader, the sampler, the spool).

    python offline_worker_alone.py MODEL_DIR PROMPTS_JSONL --batch-size B --max-tokens N
        [--warmup-batches 1] [--dtype float32]

Sends hello (the options `llem run` sends for backend-pytorch offline:
`batch_size`, `dtype`), the warm-up batches and waits for their `done`, then
every measured request at once, as the kernel does; reads every event line.
Tokens/s = output tokens of the measured requests / (first measured send ..
last `done` t_ns), as offline_overhead.py computes llem's from requests.jsonl.
Prints one JSON object.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))


def main():
    from offline_bare import arguments  # the same command line (`--with-hooks` unused here)

    args = arguments()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from conftest import write_worker  # the kernel's assembly of the worker

    with open(args.prompts) as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    warm_n = args.warmup_batches * args.batch_size

    def generate(i):
        return json.dumps({"type": "generate", "id": f"r{i}", "prompt": prompts[i],
                           "max_tokens": args.max_tokens, "ignore_eos": True,
                           "temperature": 0.0, "top_p": 1.0, "seed": None}) + "\n"

    with tempfile.TemporaryDirectory(prefix="llem-worker-alone-") as work:
        worker = write_worker("pytorch", work)
        proc = subprocess.Popen([sys.executable, str(worker)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, cwd=work)
        proc.stdin.write(json.dumps({"type": "hello", "protocol": 1, "model": args.model,
                                     "options": dict({"batch_size": args.batch_size, "dtype": args.dtype},
                                                 **({} if args.device == "cpu" else {"device_map": args.device}))}) + "\n")
        proc.stdin.flush()

        def until_done(ids):
            done = {}
            while len(done) < len(ids):
                line = proc.stdout.readline()
                if not line:
                    sys.exit("the worker exited early")
                if line.startswith(('{"type":"token"', '{"type":"tokens"', '{"type":"first_token"')):
                    continue  # progress: only the done lines are counted
                event = json.loads(line)
                if event["type"] == "error":
                    sys.exit(f"worker error: {event}")
                if event["type"] == "done" and event["id"] in ids:
                    done[event["id"]] = event
            return done

        ready = json.loads(proc.stdout.readline())
        if ready.get("type") != "ready":
            sys.exit(f"no ready: {ready}")
        proc.stdin.write("".join(generate(i) for i in range(warm_n)))
        proc.stdin.flush()
        until_done({f"r{i}" for i in range(warm_n)})
        measured = range(warm_n, len(prompts))
        t0 = time.monotonic_ns()
        proc.stdin.write("".join(generate(i) for i in measured))
        proc.stdin.flush()
        done = until_done({f"r{i}" for i in measured})
        proc.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
        proc.stdin.close()
        proc.wait(timeout=60)
    tokens = sum(d["output_tokens"] for d in done.values())
    seconds = (max(d["t_ns"] for d in done.values()) - t0) / 1e9
    json.dump({"output_tokens": tokens, "requests": len(done), "seconds": seconds,
               "tokens_per_s": tokens / seconds}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
