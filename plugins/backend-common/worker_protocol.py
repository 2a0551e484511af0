#!/usr/bin/env python3
"""llem's offline worker: worker protocol v1, JSON lines over stdio.

This file is the first part of every offline worker llem ships: each backend
plugin appends its engine's part (``plugins/backend-<name>/<name>_worker.py``)
to it when it is built (``concat!`` in the plugin's ``src/lib.rs``), and the
kernel writes the result into the run directory as one script and starts it
as ``python3 <run_dir>/<name>_worker.py [args]``. The engine part uses the
names defined here, sets ``ENGINE``, and ends with the ``__main__`` guard. The
kernel's versions probe for server engines is this file as well, with
``kernel/src/engine/versions_probe.py`` appended (``software_versions``).

Protocol (one JSON object per line; stdout carries protocol lines only, logs go
to stderr):

kernel -> worker
    {"type":"hello","protocol":1,"model":"<dir or name>","options":{…},"decoding":{…}}
    {"type":"generate","id":"…","prompt":"text","max_tokens":N,"ignore_eos":bool,
     "temperature":T,"top_p":P,"seed":S|null}
    {"type":"generate","id":"…","messages":[{"role":…,"content":…}], …the same keys…}
    {"type":"shutdown"}   no more input: requests in flight finish, then the
                          worker exits (end of input counts as shutdown)
worker -> kernel
    {"type":"ready","protocol":1,"engine":"…","engine_version":"…","device":"…",
     "versions":{"python":…,"torch":…,"transformers":…,"vllm":…,"cuda":…,"devices":[…]}}
    {"type":"first_token","id":"…","t_ns":T}
    {"type":"token","id":"…","t_ns":T,"n":k}   k tokens exist at T; the first
                                               token's step also gets a `token`
                                               line, so the n add up to output_tokens
    {"type":"tokens","t_ns":T,"ids":["…",…]}   one more token at T for each of
                                               these requests (its first_token when
                                               it had none): one line per engine step
                                               instead of a token line per request
    {"type":"done","id":"…","t_ns":T,"input_tokens":I,"output_tokens":O[,"text":"…"]}
    {"type":"error","id":"…"|null,"message":"…"}

Every ``t_ns`` is ``time.monotonic_ns()``: CLOCK_MONOTONIC, the kernel's
clock, so no conversion is needed. ``done``'s ``t_ns`` is the time of the
request's own last token (not, in a batch, the time the batch ended), so the
kernel's TPOT, (done − first_token) / (output_tokens − 1), is the request's own.

Decoding is the kernel's (``[load]`` temperature, top_p, seed, max_tokens),
sent with every ``generate``; ``hello``'s ``decoding`` object holds the same
settings and fills any a ``generate`` leaves out (older kernels sent none:
greedy then). ``max_tokens`` null (an older kernel) means 256.

Errors: a line that is not a valid message is answered with an ``error``
(with the request's id when it had one) and the worker goes on; so does a
request the engine refuses or fails. A model that cannot be loaded is an
``error`` with id null, and the worker exits with status 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sys
import threading
import time
import traceback

PROTOCOL = 1
DEFAULT_MAX_TOKENS = 256
# Decoding when neither generate nor hello says: greedy, as llem's default.
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": None}
# The engine part sets its name (the `engine` of `ready`, and the log prefix).
ENGINE = "unknown"


def log(message):
    print(f"[llem {ENGINE} worker] {message}", file=sys.stderr, flush=True)


class ProtocolError(Exception):
    """A line that is not a valid protocol message; `request_id` if it had one."""

    def __init__(self, message, request_id=None):
        super().__init__(message)
        self.request_id = request_id


class Request:
    __slots__ = ("id", "prompt", "messages", "max_tokens", "ignore_eos", "temperature", "top_p", "seed")

    def __init__(self, id, prompt=None, messages=None, max_tokens=None, ignore_eos=False,
                 temperature=None, top_p=None, seed=None):
        self.id = id
        self.prompt = prompt
        self.messages = messages
        self.max_tokens = max_tokens
        self.ignore_eos = ignore_eos
        # None: not in the message; filled from hello's `decoding` (Worker.accept).
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed

    def fill_decoding(self, defaults):
        for key in ("temperature", "top_p", "seed"):
            if getattr(self, key) is None:
                setattr(self, key, defaults.get(key, GREEDY[key]))

    def max_new_tokens(self):
        return self.max_tokens if self.max_tokens is not None else DEFAULT_MAX_TOKENS

    def batch_key(self):
        """Requests sharing one generate call (a batching engine) must agree on these."""
        return (self.ignore_eos, self.temperature, self.top_p, self.seed)


def decoding_problem(msg):
    """What is wrong with a message's decoding settings (generate, or hello's
    `decoding`), or None. Absent keys are fine."""
    t = msg.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0):
        return f"temperature must be a number >= 0 (0: greedy), got {t!r}"
    p = msg.get("top_p")
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
        return f"top_p must be a number in (0, 1], got {p!r}"
    seed = msg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        return f"seed must be a non-negative integer or null, got {seed!r}"
    return None


def parse_message(line):
    """One input line -> ("hello", dict) | ("generate", Request) | ("shutdown", None).
    Raises ProtocolError."""
    try:
        msg = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a JSON object")
    kind = msg.get("type")
    if kind == "hello":
        if msg.get("protocol") != PROTOCOL:
            raise ProtocolError(f"protocol {msg.get('protocol')!r} is not supported; this worker speaks {PROTOCOL}")
        model = msg.get("model")
        if not isinstance(model, str) or not model:
            raise ProtocolError("hello needs a model (a directory or a model name)")
        options = msg.get("options") or {}
        if not isinstance(options, dict):
            raise ProtocolError("hello options must be an object")
        decoding = msg.get("decoding") or {}
        if not isinstance(decoding, dict):
            raise ProtocolError("hello decoding must be an object")
        problem = decoding_problem(decoding)
        if problem:
            raise ProtocolError(f"hello decoding: {problem}")
        return "hello", {"model": model, "options": options, "decoding": decoding}
    if kind == "generate":
        rid = msg.get("id")
        if not isinstance(rid, str) or not rid:
            raise ProtocolError("generate needs a string id")
        prompt, messages = msg.get("prompt"), msg.get("messages")
        if (prompt is None) == (messages is None):
            raise ProtocolError("generate needs exactly one of prompt and messages", rid)
        if prompt is not None and not isinstance(prompt, str):
            raise ProtocolError("prompt must be a string", rid)
        if messages is not None:
            ok = isinstance(messages, list) and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            )
            if not ok or not messages:
                raise ProtocolError("messages must be a non-empty list of {role, content} strings", rid)
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        max_tokens = msg.get("max_tokens")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
            raise ProtocolError(f"max_tokens must be a positive integer or null, got {max_tokens!r}", rid)
        ignore_eos = msg.get("ignore_eos", False)
        if not isinstance(ignore_eos, bool):
            raise ProtocolError("ignore_eos must be a boolean", rid)
        problem = decoding_problem(msg)
        if problem:
            raise ProtocolError(problem, rid)
        return "generate", Request(
            rid, prompt, messages, max_tokens, ignore_eos, msg.get("temperature"), msg.get("top_p"), msg.get("seed")
        )
    if kind == "shutdown":
        return "shutdown", None
    rid = msg.get("id")
    raise ProtocolError(f"unknown message type {kind!r}", rid if isinstance(rid, str) else None)


def software_versions(torch=None):
    """Versions of what runs the model, for the run's environment record.

    Package versions come from their metadata (nothing is imported for them);
    `cuda` (the CUDA version torch was built with) and `devices` (the CUDA
    devices torch sees, by name) come from `torch` when it is passed in.
    Keys: python, torch, transformers, vllm, tensorrt_llm (whichever are
    installed), cuda, devices. Never raises: a version that cannot be read is
    left out.
    """
    import platform

    out = {"python": platform.python_version()}
    try:
        import importlib.metadata as metadata
    except ImportError:  # Python < 3.8
        return out
    for key, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("vllm", "vllm"),
        ("tensorrt_llm", "tensorrt_llm"),
    ):
        try:
            out[key] = metadata.version(dist)
        except Exception:  # noqa: BLE001 - not installed, or broken metadata
            pass
    if torch is not None:
        try:
            cuda = getattr(getattr(torch, "version", None), "cuda", None)
            if cuda:
                out["cuda"] = str(cuda)
            if torch.cuda.is_available():
                out["devices"] = [str(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - informative only
            pass
    return out


def cuda_device():
    """The CUDA devices torch sees, in words ("NVIDIA H100", "2x NVIDIA H100"),
    or "unknown": for engines that place the model themselves. Asks the torch
    the engine imported (vLLM and TensorRT-LLM run on it), never imports it."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            n = torch.cuda.device_count()
            name = torch.cuda.get_device_name(0)
            return name if n == 1 else f"{n}x {name}"
    except Exception:  # noqa: BLE001 - the device name is informative only
        pass
    return "unknown"


# How progress lines begin: the lines `Channel.batch` may hold back briefly.
PROGRESS_PREFIXES = ('{"type":"token"', '{"type":"tokens"', '{"type":"first_token"')


class Channel:
    """The protocol channel: one JSON object per line, whole lines only (a
    lock, as engines may report from their own threads)."""

    # Token lines may wait this long in the buffer (see `batch`).
    FLUSH_INTERVAL_NS = 50_000_000

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()
        # Lines held by `batch()` on this thread (None: write each at once).
        self._local = threading.local()
        self.last_flush_ns = 0

    @classmethod
    def stdout(cls):
        """stdout as the protocol channel, and file descriptor 1 pointed at
        stderr: anything else that writes to stdout (a library's print, native
        code, a child process the engine spawns) lands in the log instead of
        among the protocol lines. The duplicate is not inherited by children."""
        sys.stdout.flush()
        # Block-buffered: `emit` and `batch` flush when the kernel should see
        # the lines (see `batch`).
        stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(stream)

    def emit(self, obj):
        self.emit_line(json.dumps(obj, separators=(",", ":")) + "\n")

    def emit_line(self, line):
        """One protocol line, already encoded (ends with a newline)."""
        held = getattr(self._local, "held", None)
        if held is not None:
            held.append(line)
            return
        with self.lock:
            self.stream.write(line)
            self.stream.flush()

    @contextlib.contextmanager
    def batch(self):
        """Lines emitted on this thread inside the block are written together
        at its end. Only `first_token`, `token` and `tokens` lines (progress, whose
        `t_ns` was taken when their step ended) may then wait in the buffer,
        for at most ``FLUSH_INTERVAL_NS``: a decoding step costs the kernel
        one wake-up every 50 ms instead of one per request per step, and
        delivery later moves no timestamp. Any other line (`done`, `error`)
        is flushed at once, with everything before it."""
        if getattr(self._local, "held", None) is not None:
            yield  # already batching: the outer block writes
            return
        self._local.held = []
        try:
            yield
        finally:
            lines, self._local.held = self._local.held, None
            if lines:
                urgent = any(not line.startswith(PROGRESS_PREFIXES) for line in lines)
                with self.lock:
                    self.stream.write("".join(lines))
                    now = time.monotonic_ns()
                    if urgent or now - self.last_flush_ns >= self.FLUSH_INTERVAL_NS:
                        self.stream.flush()
                        self.last_flush_ns = now

    def error(self, request_id, message):
        self.emit({"type": "error", "id": request_id, "message": message})


class Progress:
    """One request's events, from its cumulative output-token count: the
    first increase gives `first_token`, every increase a `token` line (n: the
    increase), and `done` carries the time of the last increase."""

    __slots__ = ("out", "id", "emitted", "input_tokens", "last_ns", "_id_json")

    def __init__(self, out, request_id):
        self.out = out
        self.id = request_id
        self.emitted = 0
        self.input_tokens = None
        self.last_ns = None
        # The hot lines (one per request per step) are formatted, not
        # json.dumps'ed: the id is encoded once, the rest are integers.
        self._id_json = json.dumps(request_id)

    def advance(self, t_ns, output_tokens, input_tokens=None):
        if input_tokens is not None:
            self.input_tokens = input_tokens
        new = output_tokens - self.emitted
        if new <= 0:
            return
        t_ns, new = int(t_ns), int(new)
        if self.emitted == 0:
            self.out.emit_line('{"type":"first_token","id":%s,"t_ns":%d}\n' % (self._id_json, t_ns))
        self.out.emit_line('{"type":"token","id":%s,"t_ns":%d,"n":%d}\n' % (self._id_json, t_ns, new))
        self.emitted = output_tokens
        self.last_ns = t_ns

    def one_more(self, t_ns, input_tokens=None):
        """``advance(t_ns, emitted + 1, input_tokens)`` without a line of its
        own: the step's ``tokens`` line (``tokens_line``) carries it, with the
        other requests that got one token at the same time."""
        if input_tokens is not None:
            self.input_tokens = input_tokens
        self.emitted += 1
        self.last_ns = t_ns

    def done(self, t_ns, **extra):
        """`t_ns`: when the request is known to be finished; its last token's
        time when it had one (the request's end, whatever else ran with it)."""
        self.out.emit(
            {
                "type": "done",
                "id": self.id,
                "t_ns": self.last_ns if self.last_ns is not None else t_ns,
                "input_tokens": self.input_tokens if self.input_tokens is not None else 0,
                "output_tokens": self.emitted,
                **extra,
            }
        )


class LoopTurn:
    """``Channel.batch`` for a worker whose requests are asyncio tasks (the
    TensorRT-LLM worker streams each request in a task of its own): the lines
    emitted on the loop's thread during one turn of the loop are written
    together when the turn ends, under ``batch``'s rules (progress lines may
    wait up to ``FLUSH_INTERVAL_NS``; a ``done`` or ``error`` line is flushed
    with them at once). A decoding step wakes every running request's task
    in the same turn or the next few, so the kernel gets a few writes per
    step instead of one or two flushed lines per request; timestamps are
    taken when each chunk arrives, before any of this."""

    def __init__(self, out, loop):
        self.out = out
        self.loop = loop
        self._open = None

    def hold(self):
        """Hold this turn's lines from now on (idempotent within a turn)."""
        if self._open is None:
            self._open = self.out.batch()
            self._open.__enter__()
            self.loop.call_soon(self.release)

    def release(self):
        """Write what this turn held; also called when the worker stops, so
        that no line is left behind if the loop ends before its next turn."""
        held, self._open = self._open, None
        if held is not None:
            held.__exit__(None, None, None)


def tokens_line(t_ns, progresses):
    """The ``tokens`` line of a step that gave each of ``progresses`` one
    token at ``t_ns`` (each one's ``one_more`` called): one line per step
    instead of one or two per request (issue #12: at hundreds of running
    requests the per-request lines cost the engine about 1 µs each, every
    step)."""
    return '{"type":"tokens","t_ns":%d,"ids":[%s]}\n' % (t_ns, ",".join([p._id_json for p in progresses]))


class Worker:
    """Protocol state shared by the engines: hello (loading the engine once),
    requests checked and filled with hello's decoding, errors per request.
    An engine's worker subclasses it and runs the requests it accepts."""

    # The hello option merged over the command line's engine arguments
    # (`engine_args`, `llm_args`); None: hello's options are the engine's
    # arguments (the PyTorch worker has no command line).
    ARGS_OPTION = None

    def __init__(self, make_engine, out, args=None, clock=time.monotonic_ns):
        self.make_engine = make_engine
        self.out = out
        self.args = dict(args or {})
        self.clock = clock
        self.engine = None
        self.decoding = {}  # hello's `decoding`: defaults for generate messages

    def emit(self, obj):
        self.out.emit(obj)

    def error(self, request_id, message):
        self.out.error(request_id, message)

    def parse(self, line):
        """One input line as (kind, body), or None (a blank line, or one
        answered with an error here)."""
        if not line.strip():
            return None
        try:
            return parse_message(line)
        except ProtocolError as e:
            self.error(e.request_id, str(e))
            return None

    def engine_args(self, options):
        """The arguments `make_engine` gets: the command line's, with the
        ARGS_OPTION table of hello's options merged over them."""
        if self.ARGS_OPTION is None:
            return dict(options)
        args = dict(self.args)
        extra = options.get(self.ARGS_OPTION)
        if isinstance(extra, dict):
            args.update(extra)
        return args

    def hello(self, body):
        """Load the engine and say `ready`. False when it cannot be loaded
        (reported as an error line, the traceback logged): the worker exits."""
        if self.engine is not None:
            self.error(None, "a second hello was ignored")
            return True
        self.decoding = body.get("decoding") or {}
        try:
            self.engine = self.make_engine(body["model"], self.engine_args(body["options"]))
            ready = {
                "type": "ready",
                "protocol": PROTOCOL,
                "engine": ENGINE,
                "engine_version": str(self.engine.version),
                "device": str(self.engine.device()),
                # The engines run on torch: the one they imported, if any.
                "versions": software_versions(sys.modules.get("torch")),
            }
        except Exception as e:  # noqa: BLE001 - reported on the protocol channel
            log(traceback.format_exc())
            self.engine = None
            self.error(None, f"cannot load model {body['model']!r}: {type(e).__name__}: {e}")
            return False
        self.emit(ready)
        return True

    def accept(self, request, running):
        """Whether `request` may run (`running`: ids in flight); if so its
        decoding is filled from hello's."""
        if self.engine is None:
            self.error(request.id, "generate before hello")
            return False
        if request.id in running:
            self.error(request.id, "a request with this id is already running")
            return False
        request.fill_decoding(self.decoding)
        return True


def start_reader(stream, put):
    """Read `stream` on a thread, passing each line to `put`, then None at its end."""

    def read():
        for line in stream:
            put(line)
        put(None)

    threading.Thread(target=read, daemon=True).start()


def run_guarded(out, serve, on_failure=None):
    """`serve()`'s exit status (None: 0); a failure is reported on the
    protocol channel (after `on_failure(message)`, for requests in flight) and
    is status 1, never a silent death."""
    try:
        return serve() or 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - report, then fail
        log(traceback.format_exc())
        message = f"{type(e).__name__}: {e}"
        if on_failure is not None:
            on_failure(f"the engine failed: {message}")
        out.error(None, f"the worker failed: {message}")
        return 1
