#!/usr/bin/env python3
"""The bare baseline of bench/offline_overhead.py: the same engine driven by the
smallest script that does the same work, with no harness around it.

    python offline_bare.py MODEL_DIR PROMPTS_JSONL --batch-size B --max-tokens N
        [--warmup-batches 1] [--dtype float32] [--device cpu]

It loads the model and tokenizer exactly as llem's PyTorch worker does
(``AutoModelForCausalLM.from_pretrained(..., dtype=...)``, left padding, pad =
eos when missing), groups the prompts in file order into batches of B, and
runs one greedy ``model.generate`` per batch with end-of-sequence off (every
row generates N tokens, as llem's ``ignore_eos`` does). No streamer, no
stopping criteria, no events: only the engine's own work.

Prints one JSON object: output tokens, the time from the first measured
``generate`` call to the last one's return (CLOCK_MONOTONIC), and tokens/s.
The first ``--warmup-batches`` batches run first and are not counted (llem's
run does the same number of warm-up requests).
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def arguments():
    """The command line, shared with offline_worker_alone.py (offline_overhead.py
    runs both with the same arguments)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--warmup-batches", type=int, default=1)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu",
                    help="where the model goes: `cpu`, or a device_map for from_pretrained "
                         "(`cuda:0`, `auto`), as backend-pytorch's `device_map`")
    ap.add_argument("--with-hooks", action="store_true",
                    help="also pass generate a streamer that does nothing, as llem's worker passes "
                         "its own: the engine's cost of calling back once per step")
    return ap.parse_args()


def main():
    args = arguments()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # As llem's worker loads it: device_map only when the model leaves the CPU.
    placement = {} if args.device == "cpu" else {"device_map": args.device}
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, **placement).eval()
    cuda = model.device.type == "cuda"
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pad_id = model.generation_config.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.pad_token_id

    with open(args.prompts) as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    batches = [prompts[i:i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]

    def generate(batch):
        encoded = [tokenizer(p)["input_ids"] for p in batch]
        inputs = tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        prompt_len = inputs["input_ids"].shape[1]
        hooks = {}
        if args.with_hooks:
            from transformers.generation.streamers import BaseStreamer

            class Nothing(BaseStreamer):
                def put(self, value):
                    pass

                def end(self):
                    pass

            # What llem's worker asks of generate when every row has the same
            # max_tokens (as here): a streamer, called once per step.
            hooks = {"streamer": Nothing()}
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=args.max_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None,
                                 eos_token_id=None, pad_token_id=pad_id, **hooks)
        return (out.shape[1] - prompt_len) * out.shape[0]

    warm = batches[:args.warmup_batches]
    measured = batches[args.warmup_batches:]
    for batch in warm:
        generate(batch)
    tokens = 0
    t0 = time.monotonic_ns()
    if cuda:
        torch.cuda.synchronize()
    for batch in measured:
        tokens += generate(batch)
    if cuda:
        torch.cuda.synchronize()  # the last step's kernels are done, as llem's `done` says
    t1 = time.monotonic_ns()
    seconds = (t1 - t0) / 1e9
    json.dump({"output_tokens": tokens, "requests": sum(len(b) for b in measured),
               "seconds": seconds, "tokens_per_s": tokens / seconds,
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "device": str(model.device),
               "device_name": torch.cuda.get_device_name(model.device) if cuda else "cpu"}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
