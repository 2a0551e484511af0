"""The PyTorch worker (plugins/backend-pytorch/pytorch_worker.py) driven as a
subprocess over worker protocol v1, on a tiny random Llama made on the spot.

Reference token counts come from `model.generate` called directly in this
process with the same settings (greedy)."""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO, expected_versions, require

WORKER = REPO / "plugins" / "backend-pytorch" / "pytorch_worker.py"

torch = require("torch")
require("transformers")


def load_worker_module():
    spec = importlib.util.spec_from_file_location("pytorch_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Worker:
    """The worker as the kernel starts it: `python pytorch_worker.py`, JSON
    lines on stdin/stdout, stderr to a log file."""

    def __init__(self, tmp_path):
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.log_path = tmp_path / "engine.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        self.raw = []
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def send(self, *messages):
        for m in messages:
            self.proc.stdin.write((m if isinstance(m, str) else json.dumps(m)) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout=120):
        line = self.lines.get(timeout=timeout)
        if line is None:
            return None
        return json.loads(line)

    def hello(self, model, **options):
        self.send({"type": "hello", "protocol": 1, "model": model, "options": {"device_map": "cpu", **options}})
        ready = self.next()
        assert ready is not None and ready["type"] == "ready", f"{ready}\n{self.log_text()}"
        return ready

    def until_done(self, ids, timeout=300):
        """Every event until each of `ids` has a done or an error line."""
        events, open_ids = [], set(ids)
        deadline = time.monotonic() + timeout
        while open_ids:
            event = self.next(timeout=max(1, deadline - time.monotonic()))
            assert event is not None, f"the worker exited early\n{self.log_text()}"
            events.append(event)
            if event["type"] in ("done", "error") and event.get("id") in open_ids:
                open_ids.discard(event["id"])
        return events

    def close(self, timeout=60):
        try:
            if self.proc.poll() is None:
                self.send({"type": "shutdown"})
                self.proc.stdin.close()
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text()


@pytest.fixture
def worker(tmp_path):
    w = Worker(tmp_path)
    yield w
    w.close()


def generate(rid, max_tokens, prompt=None, messages=None, ignore_eos=False, temperature=0.0, top_p=1.0, seed=None):
    """A generate line as the kernel writes it: decoding always explicit (greedy by default)."""
    m = {"type": "generate", "id": rid, "max_tokens": max_tokens, "ignore_eos": ignore_eos,
         "temperature": temperature, "top_p": top_p, "seed": seed}
    if messages is not None:
        m["messages"] = messages
    else:
        m["prompt"] = prompt
    return m


def by_id(events):
    out = {}
    for e in events:
        if "id" in e and e["type"] != "error":
            out.setdefault(e["id"], []).append(e)
    return out


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


def check_request_events(events, rid, lo_ns, hi_ns):
    """first_token, then token lines, then done; t_ns non-decreasing and on
    this process's CLOCK_MONOTONIC; the token n add up to output_tokens."""
    kinds = [e["type"] for e in events]
    assert kinds[0] == "first_token", kinds
    assert kinds[-1] == "done", kinds
    assert set(kinds[1:-1]) == {"token"}, kinds
    times = [e["t_ns"] for e in events]
    assert times == sorted(times), times
    assert lo_ns <= times[0] and times[-1] <= hi_ns
    assert events[1]["t_ns"] == events[0]["t_ns"], "the first token's step also gets a token line"
    done = events[-1]
    assert sum(e["n"] for e in events if e["type"] == "token") == done["output_tokens"]
    assert all(e["n"] >= 1 for e in events if e["type"] == "token")
    return done


# --------------------------------------------------------------- unit level


def test_count_new_tokens_stops_after_the_first_eos_and_at_max():
    w = load_worker_module()
    assert w.count_new_tokens([5, 6, 2, 7], 10, {2}) == 3
    assert w.count_new_tokens([5, 6, 2, 7], 2, {2}) == 2
    assert w.count_new_tokens([5, 6, 2, 7], 10, set()) == 4
    assert w.count_new_tokens([2, 2], 10, {2}) == 1


def test_parse_rejects_malformed_messages():
    w = load_worker_module()
    assert w.parse('{"type":"shutdown"}')[0] == "shutdown"
    for line, rid in [
        ("not json", None),
        ('{"type":"generate","prompt":"x"}', None),
        ('{"type":"generate","id":"a"}', "a"),
        ('{"type":"generate","id":"a","prompt":"x","messages":[]}', "a"),
        ('{"type":"generate","id":"a","prompt":"x","max_tokens":0}', "a"),
        ('{"type":"generate","id":"a","messages":[{"role":"user"}]}', "a"),
        ('{"type":"hello","protocol":2,"model":"m"}', None),
        ('{"type":"what","id":"q"}', "q"),
    ]:
        with pytest.raises(w.BadMessage) as e:
            w.parse(line)
        assert e.value.request_id == rid, line


# ------------------------------------------------------------ the real thing


def test_ready_then_ordered_timed_events_per_request(worker, tiny_model, tiny_hf):
    import transformers

    ready = worker.hello(tiny_model)
    assert ready == {
        "type": "ready",
        "protocol": 1,
        "engine": "transformers",
        "engine_version": transformers.__version__,
        "device": "cpu",
        "versions": expected_versions(torch),
    }
    prompts = {"a": "The quick brown fox", "b": "Energy is measured in"}
    lo = time.monotonic_ns()
    worker.send(*(generate(rid, 12, prompt=p) for rid, p in prompts.items()))
    events = worker.until_done(prompts)
    hi = time.monotonic_ns()
    tokenizer, _ = tiny_hf
    for rid, evs in by_id(events).items():
        done = check_request_events(evs, rid, lo, hi)
        assert done["input_tokens"] == len(tokenizer(prompts[rid])["input_ids"])
        assert 1 <= done["output_tokens"] <= 12
        assert isinstance(done["text"], str)
    assert worker.close() == 0
    assert all(json.loads(line) for line in worker.raw), "stdout carries protocol lines only"


def test_output_tokens_equal_a_direct_generate(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    worker.hello(tiny_model)
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
    # The fixture model must exercise both ways a request ends.
    outputs = [d["output_tokens"] for d in done.values()]
    assert any(n < 40 for n in outputs) and any(n == 40 for n in outputs), outputs


def test_batches_of_two_over_five_requests(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    worker.hello(tiny_model, batch_size=2)
    prompts = ["Hello!", "Write a short poem about the sea", "Numbers: 0 1 2", "Once upon a time", "def add(a, b):"]
    max_tokens = [40, 40, 40, 40, 40]
    lo = time.monotonic_ns()
    worker.send(*(generate(f"r{i}", m, prompt=p) for i, (p, m) in enumerate(zip(prompts, max_tokens))))
    events = worker.until_done([f"r{i}" for i in range(5)])
    hi = time.monotonic_ns()
    per = by_id(events)
    dones = {rid: check_request_events(evs, rid, lo, hi) for rid, evs in per.items()}
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


def test_rows_of_a_batch_stop_at_their_own_max_tokens(worker, tiny_model):
    worker.hello(tiny_model, batch_size=2)
    worker.send(generate("short", 3, prompt="Once upon", ignore_eos=True))
    worker.send(generate("long", 9, prompt="The sky is blue", ignore_eos=True))
    per = by_id(worker.until_done(["short", "long"]))
    assert per["short"][-1]["output_tokens"] == 3
    assert per["long"][-1]["output_tokens"] == 9
    assert sum(1 for e in per["short"] if e["type"] == "token") == 3
    assert sum(1 for e in per["long"] if e["type"] == "token") == 9


def test_chat_messages_go_through_the_chat_template(worker, tiny_model, tiny_hf):
    tokenizer, _ = tiny_hf
    worker.hello(tiny_model)
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
    worker.hello(tiny_model)
    worker.send(generate("x", 30, messages=messages, ignore_eos=True))
    events = worker.until_done(["x"])
    done = events[-1]
    assert done["type"] == "done" and done["output_tokens"] == 30
    assert sum(e["n"] for e in events if e["type"] == "token") == 30
    counts, _ = reference(tiny_hf, [ids], 30, ignore_eos=True)
    assert counts[0] == 30


def test_protocol_errors_are_error_lines_and_the_worker_goes_on(worker, tiny_model):
    worker.send(generate("early", 4, prompt="x"))
    assert worker.next() == {"type": "error", "id": "early", "message": "generate before hello"}
    worker.hello(tiny_model)
    worker.send({"type": "bogus", "id": "q"})
    assert worker.next() == {"type": "error", "id": "q", "message": "unknown message type 'bogus'"}
    worker.send("this is not json")
    e = worker.next()
    assert e["type"] == "error" and e["id"] is None and "not a JSON line" in e["message"]
    worker.send({"type": "generate", "id": "bad", "prompt": "x", "max_tokens": -1})
    e = worker.next()
    assert e["type"] == "error" and e["id"] == "bad" and "max_tokens" in e["message"]
    worker.send({"type": "generate", "id": "nochat", "messages": "hi"})
    e = worker.next()
    assert e["type"] == "error" and e["id"] == "nochat"
    # Still serving.
    worker.send(generate("ok", 3, prompt="Hello", ignore_eos=True))
    events = worker.until_done(["ok"])
    assert events[-1]["type"] == "done" and events[-1]["output_tokens"] == 3
    assert worker.close() == 0


def test_a_bad_model_path_is_an_error_line_not_a_crash(worker, tmp_path):
    missing = tmp_path / "no-such-model"
    worker.send({"type": "hello", "protocol": 1, "model": str(missing), "options": {"device_map": "cpu"}})
    e = worker.next()
    assert e["type"] == "error" and e["id"] is None, e
    assert str(missing) in e["message"]
    assert worker.next() is None, "the worker exits after a failed load"
    assert worker.proc.wait(timeout=30) == 1
    assert all(json.loads(line)["type"] == "error" for line in worker.raw)
    assert "Traceback" in worker.log_text(), "the traceback goes to stderr (engine.log)"


def test_end_of_input_is_a_shutdown(worker, tiny_model):
    worker.hello(tiny_model)
    worker.send(generate("last", 2, prompt="Hi", ignore_eos=True))
    worker.proc.stdin.close()
    events = worker.until_done(["last"])
    assert events[-1]["output_tokens"] == 2
    assert worker.proc.wait(timeout=30) == 0


def test_the_kernels_sampling_settings_are_used(worker, tiny_model):
    worker.hello(tiny_model, top_k=50)
    worker.send(*(generate(f"s{i}", 8, prompt="Once upon a time", ignore_eos=True, temperature=1.5, top_p=0.95)
                  for i in range(4)))
    dones = [e for e in worker.until_done([f"s{i}" for i in range(4)]) if e["type"] == "done"]
    assert all(d["output_tokens"] == 8 for d in dones)
    # Greedy would repeat one text four times; sampling at temperature 1.5 does not.
    assert len({d["text"] for d in dones}) > 1


def test_a_seed_makes_sampling_repeatable(worker, tiny_model):
    worker.hello(tiny_model)
    sample = dict(prompt="Once upon a time", ignore_eos=True, temperature=1.5, top_p=1.0)
    texts = {}
    for rid, seed in (("a", 7), ("b", 7), ("c", 8)):
        worker.send(generate(rid, 12, seed=seed, **sample))
        texts[rid] = [e for e in worker.until_done([rid]) if e["type"] == "done"][0]["text"]
    assert texts["a"] == texts["b"], "the same seed gives the same sample"
    assert texts["a"] != texts["c"], "another seed gives another sample"


def test_hello_decoding_fills_generate_lines_without_it(worker, tiny_model, tiny_hf):
    """An older kernel's generate lines carry no decoding: hello's `decoding`
    (here greedy) applies, and the result equals a direct greedy generate."""
    tokenizer, _ = tiny_hf
    worker.send({"type": "hello", "protocol": 1, "model": tiny_model, "options": {"device_map": "cpu"},
                 "decoding": {"temperature": 0.0, "top_p": 1.0, "seed": None}})
    assert worker.next()["type"] == "ready"
    worker.send({"type": "generate", "id": "x", "prompt": "Once upon a time", "max_tokens": 20})
    done = [e for e in worker.until_done(["x"]) if e["type"] == "done"][0]
    counts, texts = reference(tiny_hf, [tokenizer("Once upon a time")["input_ids"]], 20)
    assert (done["output_tokens"], done["text"]) == (counts[0], texts[0])


def test_sampling_kwargs_for_generate():
    w = load_worker_module()
    greedy = w.Request({"id": "a", "temperature": 0.0, "top_p": 1.0})
    assert w.sampling_kwargs(greedy, top_k=50) == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    hot = w.Request({"id": "b", "temperature": 0.8, "top_p": 0.9, "seed": 3})
    assert w.sampling_kwargs(hot) == {"do_sample": True, "temperature": 0.8, "top_p": 0.9, "top_k": None}
    assert w.sampling_kwargs(hot, top_k=20)["top_k"] == 20
    bare = w.Request({"id": "c"})
    bare.fill_decoding({})
    assert (bare.temperature, bare.top_p, bare.seed) == (0.0, 1.0, None)
    assert w.Request({"id": "d", "temperature": 0.5}).batch_key() != w.Request({"id": "e", "temperature": 0.6}).batch_key()
    for line in ('{"type":"generate","id":"a","prompt":"x","temperature":-1}',
                 '{"type":"generate","id":"a","prompt":"x","top_p":0}',
                 '{"type":"generate","id":"a","prompt":"x","seed":"7"}'):
        with pytest.raises(w.BadMessage) as e:
            w.parse(line)
        assert e.value.request_id == "a"


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
    ready = worker.hello(tiny_model, **options)
    assert ready["device"] == "cpu"
    worker.send(generate("a", 5, prompt="hello there", ignore_eos=True), generate("b", 3, prompt="x", ignore_eos=True))
    dones = {e["id"]: e for e in worker.until_done(["a", "b"]) if e["type"] == "done"}
    assert dones["a"]["output_tokens"] == 5 and dones["b"]["output_tokens"] == 3
