"""The PyTorch worker (plugins/backend-pytorch/pytorch_worker.py, appended to
the shared protocol module) on a tiny random Llama made on the spot: what
goes beyond the protocol (test_worker_conformance.py), i.e. tokenization,
batching and decoding, against `model.generate` called directly in this
process with the same settings (greedy)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from conftest import load_worker, require, write_worker
from worker_driver import WorkerProcess, by_id, check_request_events, expand, generate

torch = require("torch")
require("transformers")


def pytorch_worker(tmp_path):
    """The assembled worker, started as the kernel starts it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return WorkerProcess([sys.executable, write_worker("pytorch", tmp_path)], env, tmp_path)


@pytest.fixture
def worker(tmp_path):
    w = pytorch_worker(tmp_path)
    yield w
    w.close()


def start(worker, model, **options):
    return worker.start({"type": "hello", "protocol": 1, "model": model, "options": {"device_map": "cpu", **options}})


def eos_ids(model):
    eos = model.generation_config.eos_token_id
    return {eos} if isinstance(eos, int) else set(eos)


def reference(tiny_hf, encoded, max_tokens, ignore_eos=False):
    """Output token counts and texts of a direct greedy `model.generate` on
    these (left-padded) prompts, counted up to and including the first EOS."""
    tokenizer, model = tiny_hf
    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
    kwargs = {"eos_token_id": None} if ignore_eos else {}
    with torch.inference_mode():
        out = model.generate(
            **batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id, **kwargs
        )
    stop = set() if ignore_eos else eos_ids(model)
    counts, texts = [], []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        n = len(row)
        for i, t in enumerate(row):
            if t in stop:
                n = i + 1
                break
        counts.append(n)
        texts.append(tokenizer.decode(row[:n], skip_special_tokens=True))
    return counts, texts


# --------------------------------------------------------------- unit level


def test_count_new_tokens_stops_after_the_first_eos_and_at_max():
    w = load_worker("pytorch")
    assert w.count_new_tokens([5, 6, 2, 7], 10, {2}) == 3
    assert w.count_new_tokens([5, 6, 2, 7], 2, {2}) == 2
    assert w.count_new_tokens([5, 6, 2, 7], 10, set()) == 4
    assert w.count_new_tokens([2, 2], 10, {2}) == 1


def test_the_step_without_eos_is_one_tokens_line_standing_for_the_per_row_lines():
    """`one_token_each` (no end-of-sequence) skips the ids
    and writes one `tokens` line per step: per request, what it stands for
    must be the general path's lines, which look at every token, including the
    step where rows reach their max_tokens and after it."""
    import io

    w = load_worker("pytorch")

    class Request:
        def __init__(self, rid):
            self.id = rid

    def lines(eos_ids):
        out = w.Channel(io.StringIO())
        requests = [Request(f"r{i}") for i in range(3)]
        clock = iter(range(1000, 100000, 1000))
        streamer = w.StepStreamer(out, requests, [2, 4, 4], eos_ids, clock=lambda: next(clock))
        streamer.put(torch.zeros((3, 5), dtype=torch.long))  # the prompt
        for step in range(5):
            streamer.put(torch.tensor([7, 8, 9]) + step)
        raw = out.stream.getvalue().splitlines()
        return raw, expand([json.loads(line) for line in raw]), streamer.counts, streamer.finished

    fast_raw, fast, counts, finished = lines(set())
    general_raw, general, *_ = lines({999})  # an end-of-sequence id never produced: the per-row path
    assert fast_raw[0] == '{"type":"tokens","t_ns":1000,"ids":["r0","r1","r2"]}', "one line per step"
    # Steps 1-4 (no row open at step 5); the general path: 3 first_token and 10 token lines.
    assert len(fast_raw) == 4 and len(general_raw) == 13
    # Per request, the fast path's tokens lines stand for the general path's lines.
    assert sorted(fast, key=lambda e: (e["id"], e["t_ns"], e["type"])) == sorted(
        general, key=lambda e: (e["id"], e["t_ns"], e["type"]))
    assert counts == [2, 4, 4] and finished == [True, True, True]
    assert sum(e["n"] for e in fast if e["type"] == "token" and e["id"] == "r0") == 2


# ------------------------------------------------------------ the real thing


def test_output_tokens_equal_a_direct_generate(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    start(worker, tiny_model)
    prompts = [
        "Hello! How are you today?",
        "Write a short poem about the sea",
        "Numbers: 0 1 2",
        "Once upon a time",
        "def add(a, b):",
        "Latency is the time",
    ]
    worker.send(*(generate(f"r{i}", 40, prompt=p) for i, p in enumerate(prompts)))
    done = {e["id"]: e for e in worker.until_done([f"r{i}" for i in range(len(prompts))]) if e["type"] == "done"}
    assert len(done) == len(prompts)
    for i, p in enumerate(prompts):
        counts, texts = reference(tiny_hf, [tokenizer(p)["input_ids"]], 40)
        assert done[f"r{i}"]["output_tokens"] == counts[0], p
        assert done[f"r{i}"]["text"] == texts[0], p
        assert done[f"r{i}"]["input_tokens"] == len(tokenizer(p)["input_ids"]), "BOS included"
    # The fixture model must exercise both ways a request ends.
    outputs = [d["output_tokens"] for d in done.values()]
    assert any(n < 40 for n in outputs) and any(n == 40 for n in outputs), outputs


def test_batches_of_two_over_five_requests(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    start(worker, tiny_model, batch_size=2)
    prompts = ["Hello!", "Write a short poem about the sea", "Numbers: 0 1 2", "Once upon a time", "def add(a, b):"]
    max_tokens = [40, 40, 40, 40, 40]
    lo = time.monotonic_ns()
    worker.send(*(generate(f"r{i}", m, prompt=p) for i, (p, m) in enumerate(zip(prompts, max_tokens))))
    events = worker.until_done([f"r{i}" for i in range(5)])
    hi = time.monotonic_ns()
    per = by_id(events)
    dones = {rid: check_request_events(evs, lo, hi) for rid, evs in per.items()}
    first = {rid: evs[0]["t_ns"] for rid, evs in per.items()}
    # Rows of one batch share their step times; batches run one after another.
    assert first["r0"] == first["r1"] < first["r2"] == first["r3"] < first["r4"]
    assert max(e["t_ns"] for e in per["r1"]) < first["r2"]
    # Counts equal a direct generate on the same left-padded batches.
    for batch in ([0, 1], [2, 3], [4]):
        encoded = [tokenizer(prompts[i])["input_ids"] for i in batch]
        counts, texts = reference(tiny_hf, encoded, 40)
        for i, n, text in zip(batch, counts, texts):
            assert dones[f"r{i}"]["output_tokens"] == n, (i, dones[f"r{i}"], n)
            assert dones[f"r{i}"]["text"] == text


def test_chat_messages_go_through_the_chat_template(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    start(worker, tiny_model)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello there"},
    ]
    worker.send(generate("chat", 30, messages=messages))
    done = [e for e in worker.until_done(["chat"]) if e["type"] == "done"][0]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<s><|system|>\nYou are terse.<|end|>\n<|user|>\nhello there")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1, "no second BOS from tokenizing the rendered template"
    assert done["input_tokens"] == len(ids)
    counts, texts = reference(tiny_hf, [ids], 30)
    assert done["output_tokens"] == counts[0]
    assert done["text"] == texts[0]


def test_ignore_eos_gives_exactly_max_tokens(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    messages = [{"role": "user", "content": "hello there"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
    natural, _ = reference(tiny_hf, [ids], 30)
    assert natural[0] < 30, "this prompt must end early without ignore_eos"
    start(worker, tiny_model)
    worker.send(generate("x", 30, messages=messages, ignore_eos=True))
    events = worker.until_done(["x"])
    done = events[-1]
    assert done["type"] == "done" and done["output_tokens"] == 30
    assert sum(e["n"] for e in events if e["type"] == "token") == 30
    counts, _ = reference(tiny_hf, [ids], 30, ignore_eos=True)
    assert counts[0] == 30


def test_the_kernels_sampling_settings_are_used(worker, tiny_model):
    start(worker, tiny_model, top_k=50)
    worker.send(*(generate(f"s{i}", 8, prompt="Once upon a time", ignore_eos=True, temperature=1.5, top_p=0.95)
                  for i in range(4)))
    dones = [e for e in worker.until_done([f"s{i}" for i in range(4)]) if e["type"] == "done"]
    assert all(d["output_tokens"] == 8 for d in dones)
    # Greedy would repeat one text four times; sampling at temperature 1.5 does not.
    assert len({d["text"] for d in dones}) > 1


def test_a_seed_makes_sampling_repeatable(worker, tiny_model):
    start(worker, tiny_model)
    sample = dict(prompt="Once upon a time", ignore_eos=True, temperature=1.5, top_p=1.0)
    texts = {}
    for rid, seed in (("a", 7), ("b", 7), ("c", 8)):
        worker.send(generate(rid, 12, seed=seed, **sample))
        texts[rid] = [e for e in worker.until_done([rid]) if e["type"] == "done"][0]["text"]
    assert texts["a"] == texts["b"], "the same seed gives the same sample"
    assert texts["a"] != texts["c"], "another seed gives another sample"


def test_sampling_kwargs_for_generate():
    w = load_worker("pytorch")
    greedy = w.Request("a", temperature=0.0, top_p=1.0)
    assert w.sampling_kwargs(greedy, top_k=50) == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    hot = w.Request("b", temperature=0.8, top_p=0.9, seed=3)
    assert w.sampling_kwargs(hot) == {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "top_k": None}
    assert w.sampling_kwargs(hot, top_k=20)["top_k"] == 20


@pytest.mark.parametrize(
    "options",
    [
        # The plugin's defaults as the kernel resolves them (device_map "auto").
        {"device_map": "auto", "dtype": "auto", "batch_size": 1, "attn_implementation": None, "torch_compile": False,
         "quantization": "none", "static_cache": False, "top_k": None, "seed": None, "mode": "offline",
         "python": "python3", "ready_timeout_s": 600},
        {"static_cache": True, "attn_implementation": "eager", "dtype": "bfloat16", "batch_size": 2},
    ],
    ids=["plugin-defaults", "static-cache-eager-bf16"],
)
def test_load_and_generate_options(worker, tiny_model, options):
    ready = start(worker, tiny_model, **options)
    assert ready["device"] == "cpu"
    worker.send(generate("a", 5, prompt="hello there", ignore_eos=True), generate("b", 3, prompt="x", ignore_eos=True))
    dones = {e["id"]: e for e in worker.until_done(["a", "b"]) if e["type"] == "done"}
    assert dones["a"]["output_tokens"] == 5 and dones["b"]["output_tokens"] == 3
