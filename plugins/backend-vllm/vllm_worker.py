#!/usr/bin/env python3
"""llem's offline worker for vLLM: worker protocol v1, JSON lines over stdio.

The kernel writes this file into the run directory and starts it as
``python3 <run_dir>/vllm_worker.py --engine-args '<json>' [--extra-args '<json list>']``.

Protocol (one JSON object per line; stdout carries protocol lines only, logs go
to stderr):

kernel -> worker
    {"type":"hello","protocol":1,"model":"…","options":{…},"decoding":{…}}
    {"type":"generate","id":"…","prompt":"text","max_tokens":N,"ignore_eos":bool,
     "temperature":T,"top_p":P,"seed":S|null}
    {"type":"generate","id":"…","messages":[{"role":…,"content":…}], …the same keys…}
    {"type":"shutdown"}   no more input: requests in flight finish, then the
                          worker exits (end of input counts as shutdown)
worker -> kernel
    {"type":"ready","protocol":1,"engine":"vllm","engine_version":"…","device":"…",
     "versions":{"python":…,"torch":…,"vllm":…,"cuda":…,"devices":[…]}}
    {"type":"first_token","id":"…","t_ns":T}
    {"type":"token","id":"…","t_ns":T,"n":k}   k tokens arrived at T; the first
                                               token's step also gets a `token`
                                               line, so the n add up to output_tokens
    {"type":"done","id":"…","t_ns":T,"input_tokens":I,"output_tokens":O}
    {"type":"error","id":"…"|null,"message":"…"}

Timing: the worker drives vLLM's engine step loop itself (``LLMEngine.step()``,
the loop ``LLM.generate`` runs internally) and reads ``time.monotonic_ns()``
once after each step: that is the moment the step's tokens exist on the host,
and CLOCK_MONOTONIC is the kernel's clock, so no conversion is needed. vLLM's
own ``RequestOutput.metrics`` are not used: offline ``LLM`` disables stats by
default (V1 leaves ``metrics`` empty), and where they exist their clocks
(``time.time()`` in V0, ``time.monotonic()`` in V1's engine core, another
process) differ between versions.

Batching: requests are added to the engine as they arrive, and every request
already received is added before the next step, so a kernel that sends all its
requests at once gets them scheduled together (vLLM batches internally); after
an idle engine receives a request the worker waits ``--gather-ms`` (default 5)
for more before the first step.

``options`` in hello: ``engine_args`` (a table), if present, is merged over
``--engine-args``; other keys are ignored.
"""

import argparse
import json
import os
import queue
import sys
import threading
import time

PROTOCOL = 1
ENGINE = "vllm"
DEFAULT_MAX_TOKENS = 256


def log(message):
    print(f"[llem vllm worker] {message}", file=sys.stderr, flush=True)


class ProtocolError(Exception):
    """A line that is not a valid protocol message; `request_id` if it had one."""

    def __init__(self, message, request_id=None):
        super().__init__(message)
        self.request_id = request_id


# Decoding when neither generate nor hello says: greedy, as llem's default.
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": None}


class Request:
    __slots__ = ("id", "prompt", "messages", "max_tokens", "ignore_eos", "temperature", "top_p", "seed")

    def __init__(self, id, prompt, messages, max_tokens, ignore_eos, temperature=None, top_p=None, seed=None):
        self.id = id
        self.prompt = prompt
        self.messages = messages
        self.max_tokens = max_tokens
        self.ignore_eos = ignore_eos
        # None: not in the message; filled from hello's `decoding` (Worker.submit).
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed

    def fill_decoding(self, defaults):
        for key in ("temperature", "top_p", "seed"):
            if getattr(self, key) is None:
                setattr(self, key, defaults.get(key, GREEDY[key]))


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
    """One input line -> ("hello", msg) | ("generate", Request) | ("shutdown", None)."""
    try:
        msg = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a JSON object")
    kind = msg.get("type")
    if kind == "hello":
        if msg.get("protocol") != PROTOCOL:
            raise ProtocolError(
                f"protocol {msg.get('protocol')!r} is not supported; this worker speaks {PROTOCOL}"
            )
        model = msg.get("model")
        if not isinstance(model, str) or not model:
            raise ProtocolError("hello needs a model")
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
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
                for m in messages
            )
            if not ok or not messages:
                raise ProtocolError("messages must be a list of {role, content} strings", rid)
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        max_tokens = msg.get("max_tokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):  # null (kernels before [load].max_tokens): 256, see sampling_kwargs
            raise ProtocolError("max_tokens must be a positive integer or null", rid)
        ignore_eos = msg.get("ignore_eos", False)
        if not isinstance(ignore_eos, bool):
            raise ProtocolError("ignore_eos must be a boolean", rid)
        problem = decoding_problem(msg)
        if problem:
            raise ProtocolError(problem, rid)
        request = Request(rid, prompt, messages, max_tokens, ignore_eos)
        request.temperature, request.top_p, request.seed = msg.get("temperature"), msg.get("top_p"), msg.get("seed")
        return "generate", request
    if kind == "shutdown":
        return "shutdown", None
    raise ProtocolError(f"unknown message type {kind!r}")


def sampling_kwargs(request):
    """`vllm.SamplingParams` arguments for one request, every setting explicit:
    vLLM's own defaults (temperature 1.0, the context length for max_tokens)
    would make engines run different workloads. Temperature 0 is vLLM's
    greedy decoding; `seed` only matters when sampling (vLLM gives a seeded
    request a generator of its own). `max_tokens` null (an older kernel) is
    256, as the other workers do."""
    kwargs = {
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "ignore_eos": request.ignore_eos,
        "temperature": float(request.temperature if request.temperature is not None else GREEDY["temperature"]),
        "top_p": float(request.top_p if request.top_p is not None else GREEDY["top_p"]),
    }
    if request.seed is not None:
        kwargs["seed"] = int(request.seed)
    return kwargs


class StepOutput:
    """What one engine step says about one request. Counts are cumulative."""

    __slots__ = ("id", "output_tokens", "input_tokens", "finished")

    def __init__(self, id, output_tokens, input_tokens, finished):
        self.id = id
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.finished = finished

    def __repr__(self):
        return f"StepOutput({self.id!r}, {self.output_tokens}, {self.input_tokens}, {self.finished})"


def parse_extra_args(extra_args):
    """`vllm serve`-style flags -> the EngineArgs fields they set, with vLLM's own parser."""
    from vllm.engine.arg_utils import EngineArgs

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:
        from vllm.utils import FlexibleArgumentParser
    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    for action in parser._actions:  # only what the flags set, not every default
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(list(extra_args)))


class VllmEngine:
    """The only code that touches vLLM: load, add, step, abort."""

    def __init__(self, model, engine_args):
        import vllm
        from vllm import LLM, SamplingParams

        self.version = getattr(vllm, "__version__", "unknown")
        self._sampling_params = SamplingParams
        try:
            from vllm.sampling_params import RequestOutputKind

            self._delta = RequestOutputKind.DELTA
        except ImportError:  # older vLLM: cumulative outputs only
            self._delta = None
        log(f"loading {model} with vLLM {self.version}: {engine_args}")
        self._llm = LLM(model=model, **engine_args)
        self._engine = self._llm.llm_engine
        self._tokenizer = None
        self._seen = {}  # request id -> output tokens so far (delta mode)

    def device(self):
        try:
            import torch

            if torch.cuda.is_available():
                n = torch.cuda.device_count()
                name = torch.cuda.get_device_name(0)
                return name if n == 1 else f"{n}x {name}"
        except Exception:  # noqa: BLE001 - the device name is informative only
            pass
        return "unknown"

    def _chat_prompt(self, messages):
        if self._tokenizer is None:
            self._tokenizer = self._llm.get_tokenizer()
        return self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def add(self, request):
        prompt = request.prompt if request.prompt is not None else self._chat_prompt(request.messages)
        params = self._sampling_params(**sampling_kwargs(request))
        if self._delta is not None:
            params.output_kind = self._delta
        self._seen[request.id] = 0
        self._engine.add_request(request.id, prompt, params)

    def has_unfinished(self):
        return self._engine.has_unfinished_requests()

    def step(self):
        out = []
        for o in self._engine.step():
            completion = o.outputs[0] if o.outputs else None
            n = len(completion.token_ids) if completion is not None else 0
            total = self._seen.get(o.request_id, 0) + n if self._delta is not None else n
            self._seen[o.request_id] = total
            prompt_ids = getattr(o, "prompt_token_ids", None)
            input_tokens = len(prompt_ids) if prompt_ids else None
            if o.finished:
                self._seen.pop(o.request_id, None)
            out.append(StepOutput(o.request_id, total, input_tokens, o.finished))
        return out

    def abort(self, request_ids):
        for rid in request_ids:
            self._seen.pop(rid, None)
        if request_ids:
            self._engine.abort_request(list(request_ids))


# Copied verbatim from kernel/src/engine/versions_probe.py (tests/python/test_versions.py
# checks the copies agree), so offline and server runs record the same keys.
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


class Worker:
    """Protocol state: turns messages into engine calls and steps into events."""

    def __init__(self, make_engine, out, engine_args=None, clock=time.monotonic_ns, gather_s=0.005):
        self.make_engine = make_engine
        self.out = out
        self.engine_args = dict(engine_args or {})
        self.clock = clock
        self.gather_s = gather_s
        self.engine = None
        self.decoding = {}  # hello's `decoding`: defaults for generate messages
        # id -> [output tokens emitted, input tokens]
        self.active = {}
        self.shutting_down = False

    def emit(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def error(self, request_id, message):
        self.emit({"type": "error", "id": request_id, "message": message})

    def handle_line(self, line):
        if not line.strip():
            return
        try:
            kind, body = parse_message(line)
        except ProtocolError as e:
            self.error(e.request_id, str(e))
            return
        if self.shutting_down:
            log(f"ignored after shutdown: {line.strip()[:80]}")
        elif kind == "hello":
            self.hello(body)
        elif kind == "generate":
            self.submit(body)
        else:
            self.shutting_down = True

    def hello(self, body):
        if self.engine is not None:
            self.error(None, "a second hello was ignored")
            return
        self.decoding = body.get("decoding") or {}
        args = dict(self.engine_args)
        extra = body["options"].get("engine_args")
        if isinstance(extra, dict):
            args.update(extra)
        self.engine = self.make_engine(body["model"], args)
        self.emit(
            {
                "type": "ready",
                "protocol": PROTOCOL,
                "engine": ENGINE,
                "engine_version": str(self.engine.version),
                "device": str(self.engine.device()),
                # The engine imported torch (vLLM and TensorRT-LLM run on it).
                "versions": software_versions(sys.modules.get("torch")),
            }
        )

    def submit(self, request):
        if self.engine is None:
            self.error(request.id, "generate before hello")
            return
        if request.id in self.active:
            self.error(request.id, "a request with this id is already running")
            return
        request.fill_decoding(self.decoding)
        try:
            self.engine.add(request)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the run
            self.error(request.id, f"the engine refused the request: {e}")
            return
        self.active[request.id] = [0, None]

    def step(self):
        """One engine step; its events all carry the time the step returned."""
        outputs = self.engine.step()
        t_ns = self.clock()
        for o in outputs:
            state = self.active.get(o.id)
            if state is None:
                continue
            if o.input_tokens is not None:
                state[1] = o.input_tokens
            new = o.output_tokens - state[0]
            if new > 0:
                if state[0] == 0:
                    self.emit({"type": "first_token", "id": o.id, "t_ns": t_ns})
                self.emit({"type": "token", "id": o.id, "t_ns": t_ns, "n": new})
                state[0] = o.output_tokens
            if o.finished:
                del self.active[o.id]
                self.emit(
                    {
                        "type": "done",
                        "id": o.id,
                        "t_ns": t_ns,
                        "input_tokens": state[1] if state[1] is not None else 0,
                        "output_tokens": state[0],
                    }
                )
        if self.active and not self.engine.has_unfinished():
            for rid in list(self.active):
                self.error(rid, "the engine dropped the request without finishing it")
            self.active.clear()

    def abort_all(self, message):
        ids = list(self.active)
        if self.engine is not None:
            try:
                self.engine.abort(ids)
            except Exception as e:  # noqa: BLE001
                log(f"abort failed: {e}")
        for rid in ids:
            self.error(rid, message)
        self.active.clear()

    def _drain(self, inbox, block):
        """Handle every line waiting in `inbox`; True at end of input."""
        try:
            line = inbox.get(block=block)
        except queue.Empty:
            return False
        while True:
            if line is None:
                return True
            self.handle_line(line)
            try:
                line = inbox.get_nowait()
            except queue.Empty:
                if not (block and self.gather_s > 0 and self.active):
                    return False
                try:  # an idle engine just got work: let the rest of a burst arrive
                    line = inbox.get(timeout=self.gather_s)
                except queue.Empty:
                    return False

    def serve(self, inbox):
        """Run until shutdown (or end of input) and every request is done.

        `inbox` yields lines, then None at end of input. After shutdown no
        more input is read, and the requests in flight run to completion: the
        kernel owns the process and kills it if it cannot wait.
        """
        eof = False
        while True:
            if not (eof or self.shutting_down):
                busy = self.engine is not None and bool(self.active)
                eof = self._drain(inbox, block=not busy)
            if self.engine is not None and self.active:
                self.step()
            elif eof or self.shutting_down:
                return


def read_lines(stream, inbox):
    for line in stream:
        inbox.put(line)
    inbox.put(None)


def protocol_channel():
    """stdout as the protocol channel, and fd 1 pointed at stderr.

    Anything else that writes to stdout (a library's print, native code, a
    child process the engine spawns) lands in the log instead of corrupting
    the protocol. The duplicate is not inherited by child processes.
    """
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return channel


def main(argv=None):
    ap = argparse.ArgumentParser(description="llem worker for vLLM (protocol v1)")
    ap.add_argument("--engine-args", default="{}", help="JSON object of vllm.LLM keyword arguments")
    ap.add_argument("--extra-args", default="[]", help="JSON list of `vllm serve` flags")
    ap.add_argument("--gather-ms", type=float, default=5.0)
    args = ap.parse_args(argv)
    engine_args = json.loads(args.engine_args)
    extra_args = json.loads(args.extra_args)

    def make_engine(model, engine_args):
        if extra_args:
            engine_args = {**engine_args, **parse_extra_args(extra_args)}
        return VllmEngine(model, engine_args)

    protocol_out = protocol_channel()
    worker = Worker(make_engine, protocol_out, engine_args, gather_s=args.gather_ms / 1000.0)
    inbox = queue.Queue()
    threading.Thread(target=read_lines, args=(sys.stdin, inbox), daemon=True).start()
    try:
        worker.serve(inbox)
    except Exception as e:  # noqa: BLE001 - report, then fail
        worker.abort_all(f"the engine failed: {e}")
        worker.error(None, f"{type(e).__name__}: {e}")
        log(f"failed: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
