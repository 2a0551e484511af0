"""The shared worker protocol module (plugins/backend-common/worker_protocol.py)
on its own: message parsing, decoding checks, and how a request's cumulative
token counts become events. Every worker is this module plus its engine's
part; test_worker_conformance.py runs the assembled workers end to end."""

from __future__ import annotations

import io
import json

import pytest

from conftest import WORKER_PROTOCOL, load_worker
from worker_driver import generate_line, hello_line

# Any assembled worker holds the module; the vLLM one needs no engine to load.
w = load_worker("vllm")


def test_every_worker_starts_with_the_same_protocol_module():
    from conftest import ENGINE_PARTS, worker_source

    module = WORKER_PROTOCOL.read_text()
    for engine, part in ENGINE_PARTS.items():
        source = worker_source(engine)
        assert source.startswith(module) and source.endswith(part.read_text()), engine
        # What the engine part may not redefine: one protocol, one parser.
        for name in ("PROTOCOL =", "def parse_message", "def software_versions", "class Channel"):
            assert name not in part.read_text(), (engine, name)


def test_parse_hello_generate_and_shutdown():
    kind, body = w.parse_message(hello_line("m", options={"engine_args": {"seed": 1}}))
    assert kind == "hello" and body == {"model": "m", "options": {"engine_args": {"seed": 1}}, "decoding": {}}
    kind, req = w.parse_message(generate_line("a", max_tokens=16, ignore_eos=True, temperature=0.5, top_p=0.9, seed=3))
    assert kind == "generate"
    assert (req.id, req.prompt, req.messages, req.max_tokens, req.ignore_eos) == ("a", "Hello", None, 16, True)
    assert (req.temperature, req.top_p, req.seed) == (0.5, 0.9, 3)
    chat = [{"role": "user", "content": "Hi", "name": "ignored"}]
    _, req = w.parse_message(generate_line("b", messages=chat))
    assert req.prompt is None and req.messages == [{"role": "user", "content": "Hi"}]
    _, req = w.parse_message(json.dumps({"type": "generate", "id": "c", "prompt": "x", "max_tokens": 1}))
    assert req.ignore_eos is False
    # The kernel sends null when the dataset sets no output length: 256.
    _, req = w.parse_message(json.dumps({"type": "generate", "id": "d", "prompt": "x", "max_tokens": None}))
    assert req.max_tokens is None and req.max_new_tokens() == 256
    assert w.parse_message('{"type": "shutdown"}') == ("shutdown", None)


@pytest.mark.parametrize(
    "line, request_id, words",
    [
        ("not json", None, "not JSON"),
        ("[1, 2]", None, "object"),
        ('{"type": "hello", "protocol": 2, "model": "m"}', None, "protocol 2"),
        ('{"type": "hello", "protocol": 1}', None, "model"),
        ('{"type": "hello", "protocol": 1, "model": "m", "options": 5}', None, "options"),
        ('{"type": "dance"}', None, "unknown message type"),
        ('{"type": "dance", "id": "q"}', "q", "unknown message type"),
        ('{"type": "generate", "prompt": "x", "max_tokens": 1}', None, "id"),
        ('{"type": "generate", "id": "a", "max_tokens": 1}', "a", "exactly one"),
        ('{"type": "generate", "id": "a", "prompt": "x", "messages": [], "max_tokens": 1}', "a", "exactly one"),
        ('{"type": "generate", "id": "a", "prompt": 5}', "a", "prompt"),
        ('{"type": "generate", "id": "a", "messages": "hi"}', "a", "messages"),
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


@pytest.mark.parametrize(
    "extra, words",
    [({"temperature": -1}, "temperature"), ({"temperature": True}, "temperature"),
     ({"temperature": "hot"}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
     ({"seed": "1"}, "seed"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed")],
)
def test_bad_decoding_settings_are_refused_by_request_and_in_hello(extra, words):
    with pytest.raises(w.ProtocolError) as err:
        w.parse_message(generate_line("z", **extra))
    assert err.value.request_id == "z" and words in str(err.value)
    with pytest.raises(w.ProtocolError) as err:
        w.parse_message(hello_line(decoding=extra))
    assert err.value.request_id is None and words in str(err.value)


def test_decoding_is_filled_from_hello_then_greedy():
    bare = w.Request("a")
    bare.fill_decoding({})
    assert (bare.temperature, bare.top_p, bare.seed) == (0.0, 1.0, None)
    partial = w.Request("b", temperature=0.0)
    partial.fill_decoding({"temperature": 0.7, "top_p": 0.8, "seed": 5})
    assert (partial.temperature, partial.top_p, partial.seed) == (0.0, 0.8, 5)
    assert w.Request("c", temperature=0.5).batch_key() != w.Request("d", temperature=0.6).batch_key()


def events_of(out):
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_progress_turns_cumulative_counts_into_events_ending_at_the_last_token():
    out = io.StringIO()
    progress = w.Progress(w.Channel(out), "r")
    progress.advance(100, 0)  # nothing yet (a prefill step)
    progress.advance(200, 2, input_tokens=9)
    progress.advance(300, 2)  # no new token: no line
    progress.advance(400, 5)
    progress.done(900)  # known finished later (a batch's end): the request's end is its last token
    assert events_of(out) == [
        {"type": "first_token", "id": "r", "t_ns": 200},
        {"type": "token", "id": "r", "t_ns": 200, "n": 2},
        {"type": "token", "id": "r", "t_ns": 400, "n": 3},
        {"type": "done", "id": "r", "t_ns": 400, "input_tokens": 9, "output_tokens": 5},
    ]
    # Ids are JSON strings whatever they hold (the hot lines are formatted, not json.dumps'ed).
    out = io.StringIO()
    odd = 'q"\\ü\n{}'
    progress = w.Progress(w.Channel(out), odd)
    progress.advance(7, 1)
    assert events_of(out) == [{"type": "first_token", "id": odd, "t_ns": 7},
                              {"type": "token", "id": odd, "t_ns": 7, "n": 1}]
    out = io.StringIO()
    w.Progress(w.Channel(out), "empty").done(900, text="")
    assert events_of(out) == [{"type": "done", "id": "empty", "t_ns": 900, "input_tokens": 0, "output_tokens": 0,
                               "text": ""}]


class CountingStream(io.StringIO):
    """A stream that counts what reaches the pipe: writes and flushes."""

    def __init__(self):
        super().__init__()
        self.writes = 0
        self.flushes = 0
        self.flushed = ""

    def write(self, text):
        self.writes += 1
        return super().write(text)

    def flush(self):
        self.flushes += 1
        self.flushed = self.getvalue()


def test_a_batch_is_one_write_and_holds_progress_lines_only_briefly():
    stream = CountingStream()
    channel = w.Channel(stream)
    rows = [w.Progress(channel, f"r{i}") for i in range(8)]
    # The first step: 16 lines, one write; flushed (nothing was flushed for 50 ms).
    with channel.batch():
        for p in rows:
            p.advance(10, 1)
    assert (stream.writes, stream.flushes) == (1, 1)
    assert len(stream.flushed.splitlines()) == 16
    # The next steps within 50 ms: written, not flushed yet...
    with channel.batch():
        for p in rows:
            p.advance(20, 2)
    assert (stream.writes, stream.flushes) == (2, 1)
    # ...until a line the kernel must see at once: a `done` flushes it all.
    with channel.batch():
        rows[0].done(30)
    assert (stream.writes, stream.flushes) == (3, 2)
    events = [json.loads(line) for line in stream.flushed.splitlines()]
    assert [e["type"] for e in events[16:]] == ["token"] * 8 + ["done"]
    assert events[-1] == {"type": "done", "id": "r0", "t_ns": 20, "input_tokens": 0, "output_tokens": 2}
    # Outside a batch every line is written and flushed at once, as before.
    channel.error("r1", "boom")
    assert (stream.writes, stream.flushes) == (4, 3)
    # Progress lines wait at most FLUSH_INTERVAL_NS.
    channel.last_flush_ns -= w.Channel.FLUSH_INTERVAL_NS
    with channel.batch():
        rows[2].advance(40, 3)
    assert stream.flushes == 4
    # A step's `tokens` line is progress too: written, held like the others.
    for p in rows:
        p.one_more(50)
    with channel.batch():
        channel.emit_line(w.tokens_line(50, rows))
    assert (stream.writes, stream.flushes) == (6, 4)
    channel.last_flush_ns -= w.Channel.FLUSH_INTERVAL_NS
    with channel.batch():
        channel.emit_line(w.tokens_line(60, rows[:1]))
    assert stream.flushes == 5
    assert stream.flushed.splitlines()[-2:] == ['{"type":"tokens","t_ns":50,"ids":["r0","r1","r2","r3","r4","r5","r6","r7"]}',
                                                '{"type":"tokens","t_ns":60,"ids":["r0"]}']
