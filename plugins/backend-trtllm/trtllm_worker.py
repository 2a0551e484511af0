#!/usr/bin/env python3
"""llem's offline worker for TensorRT-LLM: worker protocol v1, JSON lines over stdio.

The kernel writes this file into the run directory and starts it as
``python3 <run_dir>/trtllm_worker.py --llm-args '<json>'``, where the JSON is
the ``tensorrt_llm.LLM`` keyword arguments the backend plugin built (``backend``
picks the runtime: ``pytorch`` or ``tensorrt``).

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
    {"type":"ready","protocol":1,"engine":"trtllm","engine_version":"…","device":"…",
     "versions":{"python":…,"torch":…,"tensorrt_llm":…,"cuda":…,"devices":[…]}}
    {"type":"first_token","id":"…","t_ns":T}
    {"type":"token","id":"…","t_ns":T,"n":k}   k tokens arrived at T; the first
                                               token's chunk also gets a `token`
                                               line, so the n add up to output_tokens
    {"type":"done","id":"…","t_ns":T,"input_tokens":I,"output_tokens":O}
    {"type":"error","id":"…"|null,"message":"…"}

Timing: every request is submitted with ``LLM.generate_async(…, streaming=True)``
as soon as it arrives (TensorRT-LLM's executor batches in flight), and each
streamed chunk is timestamped with ``time.monotonic_ns()`` when it reaches this
process: CLOCK_MONOTONIC, the kernel's clock. TensorRT-LLM's own per-request
perf metrics (``return_perf_metrics``) use the executor's steady clock in
another process and are not used.

``options`` in hello: ``llm_args`` (a table), if present, is merged over
``--llm-args``; other keys are ignored.
"""

import argparse
import asyncio
import json
import os
import sys
import threading
import time

PROTOCOL = 1
ENGINE = "trtllm"


def log(message):
    print(f"[llem trtllm worker] {message}", file=sys.stderr, flush=True)


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


DEFAULT_MAX_TOKENS = 256


def sampling_kwargs(request):
    """`tensorrt_llm.SamplingParams` arguments for one request, every setting
    explicit: TensorRT-LLM's own `max_tokens` default is 32, and its sampler's
    defaults differ from other engines'. Greedy (temperature 0) is `top_k=1`
    with temperature and top_p unset: what `SamplingParams._greedy_decoding`
    recognises (TensorRT-LLM documents temperature as > 0). `max_tokens` null
    (an older kernel) is 256, as the PyTorch worker does."""
    kwargs = {
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "ignore_eos": request.ignore_eos,
    }
    temperature = request.temperature if request.temperature is not None else GREEDY["temperature"]
    if not temperature:
        kwargs["top_k"] = 1
    else:
        kwargs["temperature"] = float(temperature)
        kwargs["top_p"] = float(request.top_p if request.top_p is not None else GREEDY["top_p"])
        if request.seed is not None:
            kwargs["seed"] = int(request.seed)
    return kwargs


class Chunk:
    """One streamed update of one request. Counts are cumulative."""

    __slots__ = ("output_tokens", "input_tokens", "finished")

    def __init__(self, output_tokens, input_tokens, finished):
        self.output_tokens = output_tokens
        self.input_tokens = input_tokens
        self.finished = finished


class TrtllmEngine:
    """The only code that touches TensorRT-LLM: load, stream one request, shut down."""

    def __init__(self, model, llm_args):
        import tensorrt_llm
        from tensorrt_llm import SamplingParams

        self.version = getattr(tensorrt_llm, "__version__", "unknown")
        self._sampling_params = SamplingParams
        args = dict(llm_args)
        backend = args.pop("backend", "pytorch")
        if backend == "tensorrt":
            try:  # TensorRT-LLM >= 1.0: the TensorRT runtime moved here
                from tensorrt_llm._tensorrt_engine import LLM
            except ImportError:  # before 1.0 it was the default LLM
                from tensorrt_llm import LLM
        else:
            from tensorrt_llm import LLM

            args["backend"] = backend
        kwargs = {"model": model}
        try:  # what trtllm-serve does with its YAML: nested tables -> config objects
            from tensorrt_llm.llmapi.llm_utils import update_llm_args_with_extra_dict

            kwargs = update_llm_args_with_extra_dict(kwargs, args)
        except ImportError:
            kwargs.update(args)
        log(f"loading {model} with TensorRT-LLM {self.version}: {llm_args}")
        self._llm = LLM(**kwargs)
        self._tokenizer = getattr(self._llm, "tokenizer", None)

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
        tokenizer = self._tokenizer
        apply = getattr(tokenizer, "apply_chat_template", None)
        if apply is None:  # TransformersTokenizer wraps the Hugging Face one
            apply = tokenizer.tokenizer.apply_chat_template
        return apply(messages, tokenize=False, add_generation_prompt=True)

    async def stream(self, request):
        prompt = request.prompt if request.prompt is not None else self._chat_prompt(request.messages)
        params = self._sampling_params(**sampling_kwargs(request))
        async for output in self._llm.generate_async(prompt, sampling_params=params, streaming=True):
            completion = output.outputs[0] if output.outputs else None
            prompt_ids = getattr(output, "prompt_token_ids", None)
            yield Chunk(
                len(completion.token_ids) if completion is not None else 0,
                len(prompt_ids) if prompt_ids else None,
                bool(output.finished),
            )

    def shutdown(self):
        shutdown = getattr(self._llm, "shutdown", None)
        if shutdown is not None:
            shutdown()


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
    """Protocol state: turns messages into engine streams and chunks into events."""

    def __init__(self, make_engine, out, llm_args=None, clock=time.monotonic_ns):
        self.make_engine = make_engine
        self.out = out
        self.llm_args = dict(llm_args or {})
        self.clock = clock
        self.engine = None
        self.decoding = {}  # hello's `decoding`: defaults for generate messages
        self.tasks = {}  # id -> asyncio.Task

    def emit(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.out.flush()

    def error(self, request_id, message):
        self.emit({"type": "error", "id": request_id, "message": message})

    async def handle_line(self, line):
        """Act on one line; False once the worker should stop."""
        if not line.strip():
            return True
        try:
            kind, body = parse_message(line)
        except ProtocolError as e:
            self.error(e.request_id, str(e))
            return True
        if kind == "hello":
            await self.hello(body)
        elif kind == "generate":
            self.submit(body)
        else:
            return False
        return True

    async def hello(self, body):
        if self.engine is not None:
            self.error(None, "a second hello was ignored")
            return
        self.decoding = body.get("decoding") or {}
        args = dict(self.llm_args)
        extra = body["options"].get("llm_args")
        if isinstance(extra, dict):
            args.update(extra)
        loop = asyncio.get_running_loop()
        # Loading takes minutes; off the loop, so input keeps being read.
        self.engine = await loop.run_in_executor(None, self.make_engine, body["model"], args)
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
        if request.id in self.tasks:
            self.error(request.id, "a request with this id is already running")
            return
        request.fill_decoding(self.decoding)
        self.tasks[request.id] = asyncio.get_running_loop().create_task(self.run_request(request))

    async def run_request(self, request):
        rid = request.id
        emitted, input_tokens = 0, None
        try:
            async for chunk in self.engine.stream(request):
                t_ns = self.clock()
                if chunk.input_tokens is not None:
                    input_tokens = chunk.input_tokens
                new = chunk.output_tokens - emitted
                if new > 0:
                    if emitted == 0:
                        self.emit({"type": "first_token", "id": rid, "t_ns": t_ns})
                    self.emit({"type": "token", "id": rid, "t_ns": t_ns, "n": new})
                    emitted = chunk.output_tokens
                if chunk.finished:
                    self.emit(
                        {
                            "type": "done",
                            "id": rid,
                            "t_ns": t_ns,
                            "input_tokens": input_tokens if input_tokens is not None else 0,
                            "output_tokens": emitted,
                        }
                    )
                    return
            self.error(rid, "the engine ended the stream before the request finished")
        except asyncio.CancelledError:
            self.error(rid, "the worker shut down before the request finished")
            raise
        except Exception as e:  # noqa: BLE001 - one failed request must not end the run
            self.error(rid, f"{type(e).__name__}: {e}")
        finally:
            self.tasks.pop(rid, None)

    async def serve(self, inbox):
        """Run until shutdown (or end of input) and every request is done.

        `inbox` (an asyncio.Queue) yields lines, then None at end of input.
        After shutdown no more input is read, and the requests in flight run
        to completion: the kernel owns the process and kills it if it cannot
        wait. If serving itself fails, requests in flight are cancelled.
        """
        finished = False
        try:
            while True:
                line = await inbox.get()
                if line is None or not await self.handle_line(line):
                    break
            while self.tasks:
                await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)
            finished = True
        finally:
            if not finished:
                pending = list(self.tasks.values())
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
            if self.engine is not None:
                try:
                    self.engine.shutdown()
                except Exception as e:  # noqa: BLE001
                    log(f"shutdown failed: {e}")


def start_reader(stream, loop, inbox):
    def read():
        for line in stream:
            loop.call_soon_threadsafe(inbox.put_nowait, line)
        loop.call_soon_threadsafe(inbox.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()


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
    ap = argparse.ArgumentParser(description="llem worker for TensorRT-LLM (protocol v1)")
    ap.add_argument("--llm-args", default="{}", help="JSON object of tensorrt_llm.LLM keyword arguments")
    args = ap.parse_args(argv)
    llm_args = json.loads(args.llm_args)
    protocol_out = protocol_channel()
    worker = Worker(TrtllmEngine, protocol_out, llm_args)

    async def run():
        inbox = asyncio.Queue()
        start_reader(sys.stdin, asyncio.get_running_loop(), inbox)
        await worker.serve(inbox)

    try:
        asyncio.run(run())
    except Exception as e:  # noqa: BLE001 - report, then fail
        worker.error(None, f"{type(e).__name__}: {e}")
        log(f"failed: {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
