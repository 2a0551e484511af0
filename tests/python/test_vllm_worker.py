"""The vLLM offline worker (plugins/backend-vllm/vllm_worker.py, appended to
the shared protocol module) without vLLM: what goes beyond the protocol
(test_worker_conformance.py), i.e. batching, engine steps turned into events,
and what vLLM receives, with a fake engine in place of `VllmEngine`.

Run: python3 -m pytest tests/python -q   (needs pytest; vLLM is not needed)
"""

import io
import json
import queue
import threading
import time

from conftest import load_worker
from worker_driver import SHUTDOWN_LINE as SHUTDOWN
from worker_driver import StepClock as Clock
from worker_driver import expand, generate_line, hello_line as hello

w = load_worker("vllm")


def generate(rid, max_tokens=3, **extra):
    return generate_line(rid, max_tokens, ignore_eos=True, **extra)


class FakeEngine:
    """Stands in for VllmEngine: every step gives each request `per_step` tokens."""

    version = "0.0.0+fake"

    def __init__(self, model, engine_args, per_step=1, input_tokens=7, refuse=(), drop=()):
        self.model = model
        self.engine_args = engine_args
        self.per_step = per_step
        self.input_tokens = input_tokens
        self.refuse = set(refuse)
        self.drop = set(drop)
        self.running = {}  # id -> [request, tokens]
        self.batches = []  # ids present at each step
        self.added = []
        self.aborted = []

    def device(self):
        return "Fake GPU 80GB"

    def add(self, request):
        if request.id in self.refuse:
            raise ValueError("prompt is longer than max_model_len")
        self.added.append(request)
        if request.id not in self.drop:
            self.running[request.id] = [request, 0]

    def has_unfinished(self):
        return bool(self.running)

    def step(self):
        self.batches.append(sorted(self.running))
        out = []
        for rid, state in list(self.running.items()):
            request = state[0]
            state[1] = min(state[1] + self.per_step, request.max_tokens)
            finished = state[1] >= request.max_tokens
            out.append(w.StepOutput(rid, state[1], self.input_tokens, finished))
            if finished:
                del self.running[rid]
        return out

    def abort(self, ids):
        self.aborted.extend(ids)
        for rid in ids:
            self.running.pop(rid, None)


def run(lines, engine_args=None, gather_s=0.0, **engine_kwargs):
    """Serve `lines` (then end of input); returns (events, engine)."""
    engines = []

    def make_engine(model, args):
        engines.append(FakeEngine(model, args, **engine_kwargs))
        return engines[-1]

    out = io.StringIO()
    worker = w.VllmWorker(make_engine, w.Channel(out), engine_args, clock=Clock(), gather_s=gather_s)
    inbox = queue.Queue()
    for line in lines:
        inbox.put(line + "\n")
    inbox.put(None)
    assert worker.serve(inbox) == 0
    events = expand([json.loads(line) for line in out.getvalue().splitlines()])
    return events, (engines[0] if engines else None)


def by_id(events, rid):
    return [e for e in events if e.get("id") == rid]


# ------------------------------------------------------------------ sessions




def test_requests_received_together_are_stepped_together():
    ids = [f"r{i}" for i in range(8)]
    events, engine = run([hello()] + [generate(i, max_tokens=2) for i in ids] + [SHUTDOWN])
    assert engine.batches[0] == sorted(ids), "every request already received joins the first step"
    assert len(engine.batches) == 2
    assert sorted(e["id"] for e in events if e["type"] == "done") == sorted(ids)


def test_tokens_per_step_add_up_and_a_final_partial_step_counts_right():
    events, _ = run([hello(), generate("a", max_tokens=5)], per_step=2)
    tokens = [e["n"] for e in by_id(events, "a") if e["type"] == "token"]
    assert tokens == [2, 2, 1]
    assert by_id(events, "a")[-1]["output_tokens"] == sum(tokens) == 5




def test_refused_and_duplicate_requests_get_errors_and_the_rest_go_on():
    events, engine = run(
        [hello(), generate("ok", max_tokens=1), generate("refused"), generate("ok", max_tokens=1)],
        refuse={"refused"},
        engine_args={"dtype": "bfloat16"},
    )
    errors = [e for e in events if e["type"] == "error"]
    assert [e["id"] for e in errors] == ["refused", "ok"]
    assert "max_model_len" in errors[0]["message"]
    assert "already running" in errors[1]["message"]
    assert by_id(events, "ok")[-1]["type"] == "done"
    assert engine.engine_args == {"dtype": "bfloat16"}


def test_one_step_timestamps_every_request_it_advanced():
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    events, engine = run([hello(), generate("a", max_tokens=3), generate("b", max_tokens=1, messages=chat)])
    assert engine.added[1].messages == chat
    a, b = by_id(events, "a"), by_id(events, "b")
    assert [e["type"] for e in a] == ["first_token", "token", "token", "token", "done"]
    assert len({e["t_ns"] for e in a[1:]}) == 3, "one time per step"
    assert b[0]["t_ns"] == a[0]["t_ns"], "the same step timestamps both"
    assert a[-1] == {"type": "done", "id": "a", "t_ns": a[-2]["t_ns"], "input_tokens": 7, "output_tokens": 3}




def test_hello_options_engine_args_merge_over_the_command_line():
    _, engine = run(
        [hello(options={"engine_args": {"max_model_len": 2048}, "unrelated": True})],
        engine_args={"dtype": "float16", "max_model_len": 4096},
    )
    assert engine.engine_args == {"dtype": "float16", "max_model_len": 2048}


def test_a_request_the_engine_drops_is_reported():
    events, _ = run([hello(), generate("lost")], drop={"lost"})
    assert by_id(events, "lost") == [
        {"type": "error", "id": "lost", "message": "the engine dropped the request without finishing it"}
    ]


def test_idle_worker_gathers_a_burst_before_its_first_step():
    engines = []

    def make_engine(model, args):
        engines.append(FakeEngine(model, args))
        return engines[-1]

    worker = w.VllmWorker(make_engine, w.Channel(io.StringIO()), clock=Clock(), gather_s=0.05)
    inbox = queue.Queue()

    def feed():
        inbox.put(hello() + "\n")
        inbox.put(generate("a", max_tokens=1) + "\n")
        time.sleep(0.01)  # within the gather window
        inbox.put(generate("b", max_tokens=1) + "\n")
        time.sleep(0.2)
        inbox.put(None)

    threading.Thread(target=feed).start()
    worker.serve(inbox)
    assert engines[0].batches[0] == ["a", "b"]




# ------------------------------------------------------------ decoding (issue 7)


class RecordingParams:
    """Stands in for vllm.SamplingParams: keeps the keyword arguments."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs


class RecordingLLMEngine:
    def __init__(self):
        self.requests = []

    def add_request(self, request_id, prompt, params):
        self.requests.append((request_id, prompt, params.kwargs))


def vllm_received(*lines):
    """The SamplingParams arguments VllmEngine.add (the real method) gives
    vLLM for each generate line, after hello's decoding fills the gaps."""
    engine = w.VllmEngine.__new__(w.VllmEngine)
    engine._sampling_params = RecordingParams
    engine._delta = None
    engine._seen = {}
    engine._tokenizer = None
    engine._engine = RecordingLLMEngine()
    worker = w.VllmWorker(lambda model, args: engine, w.Channel(io.StringIO()), clock=Clock())
    for line in lines:
        kind, body = w.parse_message(line)
        if kind == "hello":
            worker.decoding = body["decoding"]
            worker.engine = engine
        else:
            worker.submit(body)
    return [kwargs for _, _, kwargs in engine._engine.requests]


def test_greedy_is_sent_explicitly_not_left_to_vllms_defaults():
    # vLLM's own default temperature is 1.0: greedy must be asked for.
    got = vllm_received(hello(), generate("a", max_tokens=7, temperature=0.0, top_p=1.0, seed=None))
    assert got == [{"max_tokens": 7, "ignore_eos": True, "temperature": 0.0, "top_p": 1.0}]


def test_sampling_settings_reach_vllm():
    got = vllm_received(hello(), generate("a", max_tokens=3, temperature=0.8, top_p=0.95, seed=11))
    assert got == [{"max_tokens": 3, "ignore_eos": True, "temperature": 0.8, "top_p": 0.95, "seed": 11}]


def test_hello_decoding_fills_generate_and_old_kernels_get_greedy_256():
    hello_line = json.dumps({"type": "hello", "protocol": 1, "model": "m", "options": {},
                             "decoding": {"temperature": 0.6, "top_p": 0.7, "seed": 5}})
    got = vllm_received(hello_line, generate("a", max_tokens=2), generate("b", max_tokens=2, temperature=0.0))
    assert got[0] == {"max_tokens": 2, "ignore_eos": True, "temperature": 0.6, "top_p": 0.7, "seed": 5}
    assert got[1]["temperature"] == 0.0
    old = json.dumps({"type": "generate", "id": "c", "prompt": "x", "max_tokens": None})
    assert vllm_received(hello(), old) == [{"max_tokens": 256, "ignore_eos": False, "temperature": 0.0, "top_p": 1.0}]


def test_a_session_passes_decoding_to_the_engine():
    events, engine = run([hello(), generate("a", max_tokens=2, temperature=0.9, top_p=0.8, seed=4), SHUTDOWN])
    request = engine.added[0]
    assert (request.temperature, request.top_p, request.seed) == (0.9, 0.8, 4)
    assert by_id(events, "a")[-1]["type"] == "done"