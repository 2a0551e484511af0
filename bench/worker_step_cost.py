#!/usr/bin/env python3
"""What llem's vLLM worker adds to each engine step, measured on CPU with the
engine's step made free (issue #12 goal 5, for the GPU engines that cannot
run here).

vLLM's offline engine steps synchronously: the worker calls `step()`, turns
each request's output into protocol lines, writes them, looks for new input,
and only then calls the next `step()`. Whatever the worker spends between two
steps therefore adds to every step's time, and its share of tokens/s is
(worker time per step) / (engine time per step). This script measures the
numerator with the stand-in `vllm` of tests/python/fake_engines (its step
sleep set to zero) and the real worker code (`VllmEngine.step`'s conversion of
outputs, `VllmWorker.step`'s lines and batched write, the serve loop's look at
its inbox), with B requests running, the lines going to /dev/null; the fake
engine's own step (making B output objects, its sleep removed) is timed alone and subtracted.

    python3 bench/worker_step_cost.py [--batch 8,64,256] [--steps 2000] [--repeat 5]

Prints µs per step (median of the repeats) and the overhead that implies at
10, 30 and 60 ms per step (decoding steps of GPU engines at these batch
sizes).
"""
import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python", "fake_engines"))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", default="8,64,256")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import fake_common
    import vllm as fake_vllm
    from conftest import load_worker

    # The stand-in's step sleeps STEP_S (a system call even at 0 s): not at all here.
    fake_vllm.time = types.SimpleNamespace(sleep=lambda s: None)
    # The stand-in's cumulative token list grows every step (its cost, not
    # the worker's): a range has the same length at no cost.
    fake_common.Completion.__init__ = lambda self, n: setattr(self, "token_ids", range(n))
    w = load_worker("vllm")
    model = tempfile.mkdtemp(prefix="llem-fake-model-")
    rows = []
    for batch in [int(b) for b in args.batch.split(",")]:
        worker_us, engine_us = [], []
        for _ in range(args.repeat):
            with open(os.devnull, "w") as sink:
                out = w.Channel(sink)
                worker = w.VllmWorker(lambda m, a: w.VllmEngine(m, a), out)
                worker.handle_line(json.dumps({"type": "hello", "protocol": 1, "model": model, "options": {}}))
                for i in range(batch):
                    worker.handle_line(json.dumps({
                        "type": "generate", "id": f"r{i}", "prompt": f"request {i}", "ignore_eos": True,
                        "max_tokens": args.steps * 4, "temperature": 0.0, "top_p": 1.0, "seed": None}))
                inbox = queue.Queue()
                worker.step()  # first tokens
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    worker._drain(inbox, block=False)
                    worker.step()
                t1 = time.perf_counter()
                # The fake engine's own step, alone: its share of the above.
                engine = worker.engine._engine
                t2 = time.perf_counter()
                for _ in range(args.steps):
                    engine.step()
                t3 = time.perf_counter()
                assert len(worker.active) == batch, "every request still running"
            worker_us.append((t1 - t0) / args.steps * 1e6)
            engine_us.append((t3 - t2) / args.steps * 1e6)
        total, fake = statistics.median(worker_us), statistics.median(engine_us)
        own = total - fake
        rows.append({"batch": batch, "worker_us_per_step": own, "with_fake_engine_us": total,
                     "fake_engine_us": fake})
    print(f"python {sys.version.split()[0]}; {args.steps} steps, medians of {args.repeat}")
    print("| running requests | worker µs per step | overhead at 10 ms/step | 30 ms | 60 ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        us = r["worker_us_per_step"]
        print(f"| {r['batch']} | {us:.1f} | {us / 100:.2f} % | {us / 300:.3f} % | {us / 600:.3f} % |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
