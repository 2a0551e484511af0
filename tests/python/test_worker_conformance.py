"""One conformance suite for the worker protocol, run against every offline
worker as the kernel runs it: the assembled script (the shared protocol
module plus the engine's part, conftest.worker_source) started as a
subprocess, JSON lines on stdin/stdout, stderr to a log file.

- pytorch: the real worker on real torch and a tiny random Llama
  (make_tiny_model.py), on the CPU;
- vllm, trtllm: the real workers, engine classes included, on the fake
  `vllm` and `tensorrt_llm` modules in fake_engines/ (see its README).

What each engine does beyond the protocol (batching, sampling arguments,
engine arguments) is tested in test_<engine>_worker.py.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from conftest import REPO, expected_versions, write_worker
from worker_driver import WorkerProcess, by_id, check_request_events, generate

FAKE_ENGINES = REPO / "tests" / "python" / "fake_engines"
ENGINES = ["pytorch", "vllm", "trtllm"]


class Subject:
    """One engine's worker: how it is started and what it must say."""

    def __init__(self, engine, tmp_path, tiny_model=None):
        self.engine = engine
        self.tmp_path = tmp_path
        self.script = write_worker(engine, tmp_path)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if engine == "pytorch":
            import torch
            import transformers

            self.model = tiny_model
            self.options = {"device_map": "cpu"}
            # Two requests sent together share one generate call.
            self.batch_options = {"batch_size": 2}
            self.shared_steps = True
            self.args = []
            self.ready = {"engine": "transformers", "engine_version": transformers.__version__, "device": "cpu",
                          "versions": expected_versions(torch)}
        else:
            (tmp_path / "model").mkdir()
            self.model = str(tmp_path / "model")
            self.options = {}
            # The engines batch whatever is in flight: vLLM's steps advance
            # every request, TensorRT-LLM streams each on its own.
            self.batch_options = {}
            self.shared_steps = engine == "vllm"
            self.env["PYTHONPATH"] = str(FAKE_ENGINES)
            if engine == "vllm":
                self.args = ["--engine-args", "{}"]
                self.ready = {"engine": "vllm", "engine_version": "0.0.0+fake"}
            else:
                self.args = ["--llm-args", '{"backend": "pytorch"}']
                self.ready = {"engine": "trtllm", "engine_version": "1.0.0+fake"}
            # The fakes import no torch, and the workers never import it themselves.
            self.ready.update(device="unknown", versions=expected_versions(None))
        self.ready.update(type="ready", protocol=1)

    def start(self):
        return WorkerProcess([sys.executable, self.script, *self.args], self.env, self.tmp_path)


@pytest.fixture(params=ENGINES)
def subject(request, tmp_path):
    tiny_model = request.getfixturevalue("tiny_model") if request.param == "pytorch" else None
    return Subject(request.param, tmp_path, tiny_model)


@pytest.fixture
def worker(subject):
    w = subject.start()
    yield w
    w.close()


def hello(subject, **options):
    return {"type": "hello", "protocol": 1, "model": subject.model, "options": {**subject.options, **options}}


def start(worker, subject, **options):
    return worker.start(hello(subject, **options))


def tpot_ns(events):
    """The kernel's TPOT for one request: (done − first_token) / (output_tokens − 1)."""
    done = events[-1]
    return (done["t_ns"] - events[0]["t_ns"]) / (done["output_tokens"] - 1)


# ------------------------------------------------------------------ scenarios


def test_hello_gives_ready_with_the_engine_and_its_versions(worker, subject):
    assert start(worker, subject) == subject.ready
    assert worker.close() == 0
    assert [json.loads(line) for line in worker.raw] == [subject.ready], "stdout: protocol lines only"


def test_requests_stream_timed_events_on_the_kernels_clock(worker, subject):
    start(worker, subject)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    lo = time.monotonic_ns()
    worker.send(generate("text", 6, prompt="The quick brown fox"), generate("chat", 6, messages=chat))
    events = worker.until_done(["text", "chat"])
    hi = time.monotonic_ns()
    per = by_id(events)
    assert sorted(per) == ["chat", "text"]
    for evs in per.values():
        done = check_request_events(evs, lo, hi)
        assert 1 <= done["output_tokens"] <= 6
    assert worker.close() == 0
    assert all(json.loads(line) for line in worker.raw)


def test_max_tokens_is_honoured(worker, subject):
    start(worker, subject)
    worker.send(generate("exact", 7, ignore_eos=True), generate("at-most", 3), generate("one", 1, ignore_eos=True))
    done = {e["id"]: e for e in worker.until_done(["exact", "at-most", "one"]) if e["type"] == "done"}
    assert done["exact"]["output_tokens"] == 7, "ignore_eos: exactly max_tokens"
    assert 1 <= done["at-most"]["output_tokens"] <= 3
    assert done["one"]["output_tokens"] == 1


def test_requests_of_one_batch_end_at_their_own_last_token(worker, subject):
    """Two requests of different lengths run together: each one's done (and
    so its TPOT) comes from its own last token, not from the batch's end."""
    start(worker, subject, **subject.batch_options)
    lo = time.monotonic_ns()
    worker.send(generate("short", 2, ignore_eos=True), generate("long", 9, ignore_eos=True))
    per = by_id(worker.until_done(["short", "long"]))
    hi = time.monotonic_ns()
    short, long = (check_request_events(per[rid], lo, hi) for rid in ("short", "long"))
    assert (short["output_tokens"], long["output_tokens"]) == (2, 9)
    if subject.shared_steps:
        assert per["short"][0]["t_ns"] == per["long"][0]["t_ns"], "one batch: shared step times"
    assert short["t_ns"] < long["t_ns"], "the short request finished first"
    # Recomputed from each request's own timestamps: both positive, and the
    # short one's is not stretched to the long one's end.
    for rid in ("short", "long"):
        tokens = [e for e in per[rid] if e["type"] == "token"]
        assert tpot_ns(per[rid]) == (tokens[-1]["t_ns"] - per[rid][0]["t_ns"]) / (len(tokens) - 1) > 0
    stretched = (long["t_ns"] - per["short"][0]["t_ns"]) / (short["output_tokens"] - 1)
    assert tpot_ns(per["short"]) < stretched


def test_errors_are_per_request_and_the_worker_goes_on(worker, subject):
    worker.send(generate("early", 2))
    assert worker.next() == {"type": "error", "id": "early", "message": "generate before hello"}
    start(worker, subject)
    worker.send(
        generate("ok", 2, ignore_eos=True),
        generate("bad-max", -1),
        generate("bad-temperature", 2, temperature=-1),
        {"type": "generate", "id": "both", "prompt": "x", "messages": [{"role": "user", "content": "y"}]},
        {"type": "generate", "id": "bad-chat", "messages": [{"role": "user"}]},
        {"type": "bogus", "id": "q"},
        generate("ok2", 3, ignore_eos=True),
    )
    events = worker.until_done(["ok", "bad-max", "bad-temperature", "both", "bad-chat", "q", "ok2"])
    errors = {e["id"]: e["message"] for e in events if e["type"] == "error"}
    assert sorted(errors) == ["bad-chat", "bad-max", "bad-temperature", "both", "q"]
    assert "max_tokens" in errors["bad-max"]
    assert "temperature" in errors["bad-temperature"]
    assert "exactly one of prompt and messages" in errors["both"]
    assert "messages" in errors["bad-chat"]
    assert errors["q"] == "unknown message type 'bogus'"
    done = {e["id"]: e["output_tokens"] for e in events if e["type"] == "done"}
    assert done == {"ok": 2, "ok2": 3}
    assert worker.close() == 0


def test_malformed_lines_are_answered_without_an_id(worker, subject):
    start(worker, subject)
    worker.send("this is not json", "[1, 2]", "", '{"type": "hello", "protocol": 2, "model": "m"}')
    errors = [worker.next() for _ in range(3)]
    assert [e["type"] for e in errors] == ["error"] * 3
    assert all(e["id"] is None for e in errors)
    assert "not JSON" in errors[0]["message"]
    assert "object" in errors[1]["message"]
    assert "protocol 2" in errors[2]["message"]
    worker.send(hello(subject))
    assert worker.next() == {"type": "error", "id": None, "message": "a second hello was ignored"}
    worker.send(generate("still", 2, ignore_eos=True))
    assert worker.until_done(["still"])[-1]["output_tokens"] == 2
    assert worker.close() == 0


def test_end_of_input_is_a_shutdown_after_requests_in_flight(worker, subject):
    start(worker, subject)
    worker.send(generate("last", 4, ignore_eos=True))
    worker.proc.stdin.close()
    assert worker.until_done(["last"])[-1]["output_tokens"] == 4
    assert worker.proc.wait(timeout=60) == 0


def test_input_after_shutdown_is_not_read(worker, subject):
    start(worker, subject)
    worker.send(generate("a", 2, ignore_eos=True), {"type": "shutdown"}, generate("late", 2))
    worker.proc.stdin.close()
    assert worker.proc.wait(timeout=60) == 0
    ids = {json.loads(line).get("id") for line in worker.raw}
    assert "a" in ids and "late" not in ids


def test_hello_decoding_fills_generate_lines_without_it(worker, subject):
    """An older kernel: decoding only in hello, max_tokens null (256)."""
    worker.send({**hello(subject), "decoding": {"temperature": 0.0, "top_p": 1.0, "seed": None}})
    assert worker.next()["type"] == "ready"
    worker.send({"type": "generate", "id": "x", "prompt": "Once upon a time", "max_tokens": 3, "ignore_eos": True},
                {"type": "generate", "id": "y", "prompt": "Hello", "max_tokens": None})
    done = {e["id"]: e for e in worker.until_done(["x", "y"]) if e["type"] == "done"}
    assert done["x"]["output_tokens"] == 3
    assert 1 <= done["y"]["output_tokens"] <= 256


def test_a_model_that_cannot_load_is_an_error_line_and_exit_1(worker, subject):
    missing = subject.tmp_path / "no-such-model"
    worker.send({**hello(subject), "model": str(missing)})
    e = worker.next()
    assert e["type"] == "error" and e["id"] is None, e
    assert e["message"].startswith(f"cannot load model {str(missing)!r}: "), e
    assert worker.next() is None, "the worker exits after a failed load"
    assert worker.proc.wait(timeout=30) == 1
    assert len(worker.raw) == 1
    assert "Traceback" in worker.log_text(), "the traceback goes to stderr (engine.log)"
