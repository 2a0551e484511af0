"""The vLLM offline worker (plugins/backend-vllm/vllm_worker.py) without vLLM:
protocol parsing, batching, and engine steps turned into protocol events, with
a fake engine in place of `VllmEngine`.

Run: python3 -m pytest tests/python -q   (needs pytest; vLLM is not needed)
"""

import importlib.util
import io
import json
import pathlib
import queue
import subprocess
import sys

import pytest

from conftest import expected_versions

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = ROOT / "plugins/backend-vllm/vllm_worker.py"


def load():
    spec = importlib.util.spec_from_file_location("vllm_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


w = load()


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


class Clock:
    def __init__(self):
        self.t = 1_000_000_000

    def __call__(self):
        self.t += 1_000
        return self.t


def hello(model="tiny-model", **options):
    return json.dumps({"type": "hello", "protocol": 1, "model": model, "options": options})


def generate(rid, max_tokens=3, prompt="Hello", **extra):
    msg = {"type": "generate", "id": rid, "max_tokens": max_tokens, "ignore_eos": True}
    if "messages" in extra:
        msg["messages"] = extra.pop("messages")
    else:
        msg["prompt"] = prompt
    msg.update(extra)
    return json.dumps(msg)


SHUTDOWN = json.dumps({"type": "shutdown"})


def run(lines, engine_args=None, gather_s=0.0, **engine_kwargs):
    """Serve `lines` (then end of input); returns (events, engine)."""
    engines = []

    def make_engine(model, args):
        engines.append(FakeEngine(model, args, **engine_kwargs))
        return engines[-1]

    out = io.StringIO()
    worker = w.Worker(make_engine, out, engine_args, clock=Clock(), gather_s=gather_s)
    inbox = queue.Queue()
    for line in lines:
        inbox.put(line + "\n")
    inbox.put(None)
    worker.serve(inbox)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return events, (engines[0] if engines else None)


def by_id(events, rid):
    return [e for e in events if e.get("id") == rid]


# ------------------------------------------------------------------ parsing


def test_parse_hello_generate_and_shutdown():
    kind, body = w.parse_message(hello("m", engine_args={"seed": 1}))
    assert kind == "hello" and body == {"model": "m", "options": {"engine_args": {"seed": 1}}, "decoding": {}}
    kind, req = w.parse_message(generate("a", max_tokens=16))
    assert kind == "generate"
    assert (req.id, req.prompt, req.messages, req.max_tokens, req.ignore_eos) == ("a", "Hello", None, 16, True)
    chat = [{"role": "user", "content": "Hi", "name": "ignored"}]
    kind, req = w.parse_message(generate("b", messages=chat))
    assert req.prompt is None and req.messages == [{"role": "user", "content": "Hi"}]
    _, req = w.parse_message(json.dumps({"type": "generate", "id": "c", "prompt": "x", "max_tokens": 1}))
    assert req.ignore_eos is False
    # The kernel sends null when the dataset sets no output length.
    _, req = w.parse_message(json.dumps({"type": "generate", "id": "d", "prompt": "x", "max_tokens": None}))
    assert req.max_tokens is None
    assert w.parse_message(SHUTDOWN) == ("shutdown", None)


@pytest.mark.parametrize(
    "line, request_id, words",
    [
        ("not json", None, "not JSON"),
        ("[1, 2]", None, "object"),
        ('{"type": "hello", "protocol": 2, "model": "m"}', None, "protocol 2"),
        ('{"type": "hello", "protocol": 1}', None, "model"),
        ('{"type": "dance"}', None, "unknown message type"),
        ('{"type": "generate", "prompt": "x", "max_tokens": 1}', None, "id"),
        ('{"type": "generate", "id": "a", "max_tokens": 1}', "a", "exactly one"),
        ('{"type": "generate", "id": "a", "prompt": "x", "messages": [], "max_tokens": 1}', "a", "exactly one"),
        ('{"type": "generate", "id": "a", "messages": [{"role": "user"}], "max_tokens": 1}', "a", "messages"),
        ('{"type": "generate", "id": "a", "prompt": "x", "max_tokens": 0}', "a", "max_tokens"),
        ('{"type": "generate", "id": "a", "prompt": "x", "max_tokens": true}', "a", "max_tokens"),
        ('{"type": "generate", "id": "a", "prompt": "x", "max_tokens": 2, "ignore_eos": 1}', "a", "ignore_eos"),
    ],
)
def test_parse_rejects_bad_messages_keeping_the_request_id(line, request_id, words):
    with pytest.raises(w.ProtocolError) as err:
        w.parse_message(line)
    assert err.value.request_id == request_id
    assert words in str(err.value)


# ------------------------------------------------------------------ sessions


def test_a_session_gives_ready_then_timed_events_per_request():
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    events, engine = run(
        [hello(), generate("a", max_tokens=3), generate("b", max_tokens=1, messages=chat), SHUTDOWN],
        engine_args={"dtype": "bfloat16"},
    )
    assert events[0] == {
        "type": "ready",
        "protocol": 1,
        "engine": "vllm",
        "engine_version": "0.0.0+fake",
        "device": "Fake GPU 80GB",
        "versions": expected_versions(sys.modules.get("torch")),
    }
    assert engine.model == "tiny-model"
    assert engine.engine_args == {"dtype": "bfloat16"}
    assert engine.added[1].messages == chat

    a = by_id(events, "a")
    assert [e["type"] for e in a] == ["first_token", "token", "token", "token", "done"]
    # first_token and the first token line carry the same step time.
    assert a[0]["t_ns"] == a[1]["t_ns"]
    assert [e["n"] for e in a if e["type"] == "token"] == [1, 1, 1]
    times = [e["t_ns"] for e in a]
    assert times == sorted(times) and len(set(times[1:])) == 3
    assert a[-1] == {"type": "done", "id": "a", "t_ns": a[-2]["t_ns"], "input_tokens": 7, "output_tokens": 3}

    b = by_id(events, "b")
    assert [e["type"] for e in b] == ["first_token", "token", "done"]
    assert b[2]["output_tokens"] == 1
    # The same step timestamps every request it advanced.
    assert b[0]["t_ns"] == a[0]["t_ns"]


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


def test_shutdown_and_end_of_input_let_requests_in_flight_finish():
    events, engine = run([hello(), generate("a", max_tokens=4), SHUTDOWN, generate("late")])
    assert [e["type"] for e in by_id(events, "a")][-1] == "done"
    assert by_id(events, "late") == [], "input after shutdown is not read"
    assert engine.aborted == []
    events, _ = run([hello(), generate("a", max_tokens=2)])  # no shutdown: end of input
    assert by_id(events, "a")[-1]["type"] == "done"


def test_bad_requests_get_errors_and_the_rest_go_on():
    events, _ = run(
        [
            hello(),
            generate("ok", max_tokens=1),
            '{"type": "generate", "id": "bad", "prompt": "x", "max_tokens": "ten"}',
            "garbage",
            generate("refused"),
            generate("ok", max_tokens=1),
        ],
        refuse={"refused"},
    )
    errors = [e for e in events if e["type"] == "error"]
    assert [e["id"] for e in errors] == ["bad", None, "refused", "ok"]
    assert "max_tokens" in errors[0]["message"]
    assert "max_model_len" in errors[2]["message"]
    assert "already running" in errors[3]["message"]
    assert by_id(events, "ok")[-1]["type"] == "done"


def test_generate_before_hello_and_a_second_hello_are_errors():
    events, engine = run([generate("early"), hello(), hello(), SHUTDOWN])
    assert events[0] == {"type": "error", "id": "early", "message": "generate before hello"}
    assert [e["type"] for e in events[1:]] == ["ready", "error"]
    assert "second hello" in events[2]["message"]


def test_hello_options_engine_args_merge_over_the_command_line():
    _, engine = run(
        [hello(engine_args={"max_model_len": 2048}, unrelated=True)],
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

    out = io.StringIO()
    worker = w.Worker(make_engine, out, clock=Clock(), gather_s=0.05)
    inbox = queue.Queue()
    import threading

    def feed():
        inbox.put(hello() + "\n")
        inbox.put(generate("a", max_tokens=1) + "\n")
        import time

        time.sleep(0.01)  # within the gather window
        inbox.put(generate("b", max_tokens=1) + "\n")
        time.sleep(0.2)
        inbox.put(None)

    threading.Thread(target=feed).start()
    worker.serve(inbox)
    assert engines[0].batches[0] == ["a", "b"]


def test_the_worker_runs_as_a_script_and_keeps_stdout_for_the_protocol(tmp_path):
    # Without vLLM installed the engine cannot load: the worker must say so on
    # the protocol channel (one JSON error line) and exit non-zero.
    code = subprocess.run(
        [sys.executable, str(WORKER), "--engine-args", "{}"],
        input=hello() + "\n" + generate("a") + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed; this checks the failure path")
    except ImportError:
        pass
    assert code.returncode == 1
    lines = [json.loads(line) for line in code.stdout.splitlines()]
    assert lines[-1]["type"] == "error" and lines[-1]["id"] is None
    assert "vllm" in lines[-1]["message"]


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
    worker = w.Worker(lambda model, args: engine, io.StringIO(), clock=Clock())
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


@pytest.mark.parametrize(
    "extra, words",
    [({"temperature": -1}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"seed": "1"}, "seed"),
     ({"temperature": True}, "temperature")],
)
def test_bad_decoding_settings_are_refused_by_request(extra, words):
    with pytest.raises(w.ProtocolError) as err:
        w.parse_message(generate("z", **extra))
    assert err.value.request_id == "z" and words in str(err.value)
    with pytest.raises(w.ProtocolError):
        w.parse_message(json.dumps({"type": "hello", "protocol": 1, "model": "m", "decoding": extra}))
