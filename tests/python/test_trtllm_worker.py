"""The TensorRT-LLM offline worker (plugins/backend-trtllm/trtllm_worker.py,
appended to the shared protocol module) without TensorRT-LLM: what goes
beyond the protocol (test_worker_conformance.py), i.e. concurrent submission,
streamed engine chunks turned into events, and what TensorRT-LLM receives,
with a fake engine in place of `TrtllmEngine`.

Run: python3 -m pytest tests/python -q   (needs pytest; TensorRT-LLM is not needed)
"""

import asyncio
import io
import json

from conftest import load_worker
from worker_driver import SHUTDOWN_LINE as SHUTDOWN
from worker_driver import StepClock as Clock
from worker_driver import generate_line as generate
from worker_driver import hello_line as hello

w = load_worker("trtllm")


class FakeEngine:
    """Stands in for TrtllmEngine: streams `per_chunk` tokens per chunk, cumulatively.

    All requests advance in lock step, one chunk per `tick`, like in-flight
    batching: `in_flight` records how many streams were open at each chunk.
    """

    version = "1.0.0+fake"

    def __init__(self, model, llm_args, per_chunk=1, input_tokens=11, fail=(), short=()):
        self.model = model
        self.llm_args = llm_args
        self.per_chunk = per_chunk
        self.input_tokens = input_tokens
        self.fail = set(fail)
        self.short = set(short)
        self.started = []
        self.open = 0
        self.in_flight = []
        self.shut_down = False

    def device(self):
        return "Fake GPU"

    async def stream(self, request):
        self.started.append(request)
        self.open += 1
        try:
            if request.id in self.fail:
                raise RuntimeError("executor error")
            n = 0
            while n < request.max_tokens:
                await asyncio.sleep(0)
                self.in_flight.append(self.open)
                n = min(n + self.per_chunk, request.max_tokens)
                if request.id in self.short and n >= 2:
                    return
                yield w.Chunk(n, self.input_tokens, n >= request.max_tokens)
        finally:
            self.open -= 1

    def shutdown(self):
        self.shut_down = True


def run(lines, llm_args=None, **engine_kwargs):
    engines = []

    def make_engine(model, args):
        engines.append(FakeEngine(model, args, **engine_kwargs))
        return engines[-1]

    out = io.StringIO()
    worker = w.TrtllmWorker(make_engine, w.Channel(out), llm_args, clock=Clock())
    assert serve(worker, lines) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return events, (engines[0] if engines else None)


def serve(worker, lines):
    """`lines`, then end of input, through `worker.serve`; its exit status."""

    async def main():
        inbox = asyncio.Queue()
        for line in lines:
            inbox.put_nowait(line + "\n")
        inbox.put_nowait(None)
        return await worker.serve(inbox)

    return asyncio.run(main())


def by_id(events, rid):
    return [e for e in events if e.get("id") == rid]




def test_each_chunk_is_timed_and_the_engine_is_shut_down():
    events, engine = run(
        [hello(), generate("a", max_tokens=3), generate("b", max_tokens=2), SHUTDOWN],
        llm_args={"backend": "pytorch", "tensor_parallel_size": 1},
    )
    assert engine.llm_args == {"backend": "pytorch", "tensor_parallel_size": 1}
    a = by_id(events, "a")
    assert [e["type"] for e in a] == ["first_token", "token", "token", "token", "done"]
    assert a[0]["t_ns"] == a[1]["t_ns"]
    assert a[-1] == {"type": "done", "id": "a", "t_ns": a[-2]["t_ns"], "input_tokens": 11, "output_tokens": 3}
    assert by_id(events, "b")[-1]["output_tokens"] == 2
    times = [e["t_ns"] for e in events[1:]]
    assert times == sorted(times)
    assert engine.shut_down


def test_requests_are_in_flight_together():
    ids = [f"r{i}" for i in range(6)]
    events, engine = run([hello()] + [generate(i, max_tokens=4) for i in ids])
    assert [r.id for r in engine.started] == ids
    assert max(engine.in_flight) == len(ids), "all requests stream concurrently"
    assert sorted(e["id"] for e in events if e["type"] == "done") == ids


def test_chunks_of_several_tokens_add_up():
    events, _ = run([hello(), generate("a", max_tokens=7)], per_chunk=3)
    tokens = [e["n"] for e in by_id(events, "a") if e["type"] == "token"]
    assert tokens == [3, 3, 1]
    assert by_id(events, "a")[-1]["output_tokens"] == 7


def test_engine_failures_are_per_request():
    events, _ = run(
        [hello(), generate("boom"), generate("cut", max_tokens=5), generate("fine", max_tokens=1)],
        fail={"boom"},
        short={"cut"},
    )
    assert by_id(events, "boom") == [{"type": "error", "id": "boom", "message": "RuntimeError: executor error"}]
    cut = by_id(events, "cut")
    assert cut[-1]["type"] == "error" and "before the request finished" in cut[-1]["message"]
    assert by_id(events, "fine")[-1]["type"] == "done"


def test_a_duplicate_of_a_running_request_is_an_error():
    events, _ = run([hello(), generate("a", max_tokens=2), generate("a")])
    errors = [e for e in events if e["type"] == "error"]
    assert [e["id"] for e in errors] == ["a"] and "already running" in errors[0]["message"]
    assert by_id(events, "a")[-1]["type"] == "done"


def test_hello_options_llm_args_merge_over_the_command_line():
    _, engine = run(
        [hello(options={"llm_args": {"max_batch_size": 8}}), generate("a", max_tokens=1)],
        llm_args={"max_batch_size": 64, "dtype": "bfloat16"},
    )
    assert engine.llm_args == {"max_batch_size": 8, "dtype": "bfloat16"}




# ------------------------------------------------------------ decoding (issue 7)


class RecordingParams:
    """Stands in for tensorrt_llm.SamplingParams: keeps the keyword arguments."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeLLM:
    """Stands in for tensorrt_llm.LLM: one finished output per request."""

    def __init__(self):
        self.params = []

    async def generate_async(self, prompt, sampling_params, streaming):
        self.params.append(sampling_params.kwargs)

        class Completion:
            token_ids = [1, 2]

        class Output:
            outputs = [Completion()]
            prompt_token_ids = [5, 6, 7]
            finished = True

        yield Output()


def real_engine_with_fake_llm():
    """TrtllmEngine's own `stream` on a fake LLM: what TensorRT-LLM would receive."""
    engine = w.TrtllmEngine.__new__(w.TrtllmEngine)
    engine._sampling_params = RecordingParams
    engine._llm = FakeLLM()
    engine._tokenizer = None
    engine.version = "fake"
    engine.device = lambda: "Fake GPU"
    engine.shutdown = lambda: None
    return engine


def params_received(lines):
    engine = real_engine_with_fake_llm()
    out = io.StringIO()
    worker = w.TrtllmWorker(lambda model, args: engine, w.Channel(out), clock=Clock())
    assert serve(worker, lines) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert not [e for e in events if e["type"] == "error"], events
    return engine._llm.params


def test_greedy_is_top_k_1_with_an_explicit_max_tokens():
    # TensorRT-LLM's SamplingParams.max_tokens defaults to 32: it must always be sent.
    params = params_received([hello(), generate("a", max_tokens=300, temperature=0.0, top_p=1.0, seed=None)])
    assert params == [{"max_tokens": 300, "ignore_eos": False, "top_k": 1}]


def test_sampling_settings_reach_the_engine():
    params = params_received([hello(), generate("a", max_tokens=5, temperature=0.7, top_p=0.9, seed=42)])
    assert params == [{"max_tokens": 5, "ignore_eos": False, "temperature": 0.7, "top_p": 0.9, "seed": 42}]


def test_hello_decoding_fills_what_generate_leaves_out():
    decoding = {"temperature": 1.2, "top_p": 0.5, "seed": 3}
    line = json.dumps({"type": "hello", "protocol": 1, "model": "m", "options": {}, "decoding": decoding})
    params = params_received([line, generate("a", max_tokens=4), generate("b", max_tokens=4, seed=9)])
    assert params[0] == {"max_tokens": 4, "ignore_eos": False, "temperature": 1.2, "top_p": 0.5, "seed": 3}
    assert params[1]["seed"] == 9


def test_an_old_kernel_without_decoding_or_max_tokens_gets_greedy_256():
    line = json.dumps({"type": "generate", "id": "a", "prompt": "p", "max_tokens": None})
    assert params_received([hello(), line]) == [{"max_tokens": 256, "ignore_eos": False, "top_k": 1}]

class CountingStream(io.StringIO):
    """A stream that counts its writes and flushes (each flush wakes the kernel's reader)."""

    def __init__(self):
        super().__init__()
        self.writes = 0
        self.flushes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)

    def flush(self):
        self.flushes += 1
        return super().flush()


def test_a_turn_of_the_loop_is_one_write_not_a_line_per_request():
    # 32 requests in lock step, 8 chunks each: 32 × (first_token + 8 token + done) lines.
    ids = [f"r{i}" for i in range(32)]
    out = CountingStream()
    engines = []

    def make_engine(model, args):
        engines.append(FakeEngine(model, args))
        return engines[-1]

    worker = w.TrtllmWorker(make_engine, w.Channel(out), clock=Clock())
    assert serve(worker, [hello()] + [generate(i, max_tokens=8) for i in ids]) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    progress = [e for e in events if e["type"] in ("first_token", "token")]
    done = [e for e in events if e["type"] == "done"]
    assert len(progress) == 32 * 9 and sorted(e["id"] for e in done) == sorted(ids)
    # Every line arrived, in far fewer writes than lines: one per turn of the
    # loop (the fake engine advances every stream once per turn), not one per line.
    assert out.writes <= 8 + 4, f"{out.writes} writes for {len(events)} lines"
    # Each request's own lines stay in order, with times that never go back.
    for rid in ids:
        mine = by_id(events, rid)
        assert [e["type"] for e in mine] == ["first_token"] + ["token"] * 8 + ["done"]
        times = [e["t_ns"] for e in mine]
        assert times == sorted(times)


def test_lines_held_in_a_turn_are_written_when_the_worker_stops():
    # The loop ends right after the last chunk: nothing may be left in the hold.
    out = CountingStream()
    worker = w.TrtllmWorker(lambda model, args: FakeEngine(model, args), w.Channel(out), clock=Clock())
    assert serve(worker, [hello(), generate("a", max_tokens=2)]) == 0
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()][-1] == "done"
    assert worker.turn._open is None
