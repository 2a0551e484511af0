#!/usr/bin/env python3
"""llem's offline worker for PyTorch / Hugging Face transformers: worker
protocol v1, JSON lines over stdio.

The kernel writes this file into the run directory and starts it as
``python3 <run_dir>/pytorch_worker.py`` (the interpreter is the plugin's
``python`` option). Everything else comes in ``hello``.

Protocol (one JSON object per line; stdout carries protocol lines only, logs go
to stderr):

kernel -> worker
    {"type":"hello","protocol":1,"model":"<dir or name>","options":{…},"decoding":{…}}
    {"type":"generate","id":"…","prompt":"text","max_tokens":N,"ignore_eos":bool,
     "temperature":T,"top_p":P,"seed":S|null}
    {"type":"generate","id":"…","messages":[{"role":…,"content":…}], …the same keys…}
    {"type":"shutdown"}                      (end of input counts as shutdown)
worker -> kernel
    {"type":"ready","protocol":1,"engine":"transformers","engine_version":"…","device":"cpu",
     "versions":{"python":…,"torch":…,"transformers":…,"cuda":…,"devices":[…]}}
    {"type":"first_token","id":"…","t_ns":T}
    {"type":"token","id":"…","t_ns":T,"n":k}   k tokens exist at T; the first
                                               token's step also gets a `token`
                                               line, so the n add up to output_tokens
    {"type":"done","id":"…","t_ns":T,"input_tokens":I,"output_tokens":O,"text":"…"}
    {"type":"error","id":"…"|null,"message":"…"}

Decoding is the kernel's (``[load]`` temperature, top_p, seed, max_tokens),
sent with every ``generate``; ``hello``'s ``decoding`` object holds the same
settings and fills any a ``generate`` leaves out (older kernels sent none:
greedy then). Temperature 0 is greedy decoding (``do_sample=False``, the
model's own sampling settings neutralised); above 0, ``do_sample=True`` with
that temperature and top_p (and the plugin's ``top_k`` option, if set), and
with a seed, ``torch.manual_seed(seed)`` before each ``generate`` call.
``max_tokens`` null means 256. Text prompts are tokenized with the
tokenizer's special tokens (BOS); ``messages`` are rendered with the
tokenizer's chat template (``add_generation_prompt=True``) and tokenized
without adding special tokens again. ``input_tokens`` is the prompt's length in
tokens, padding excluded.

``options`` are the backend-pytorch plugin's resolved options; the ones used
here: ``dtype``, ``device_map``, ``attn_implementation``, ``quantization``,
``torch_compile``, ``static_cache``, ``batch_size``, ``top_k``, ``seed``
(``torch.manual_seed`` before loading). Others are ignored.

Batching: requests are grouped in arrival order into batches of up to
``batch_size`` (left-padded) and run with one ``model.generate`` call each;
after the first request of a batch arrives the worker waits up to 20 ms per
further request to fill it (the kernel sends all requests at once). A request
whose ``ignore_eos`` or sampling settings differ from the batch's starts the
next batch.

Timing: a streamer (``BaseStreamer``) is called by ``generate`` once per
decoding step with that step's token for every row of the batch; it reads
``time.monotonic_ns()`` (CLOCK_MONOTONIC, the kernel's clock) once per step and
emits the step's events for every row still generating, so TTFT and ITL are
per request and rows of one batch share step times. ``done`` is emitted when
``generate`` returns (that is when a static batch's results exist) with the
counts taken from the returned token ids: new tokens up to the row's
``max_tokens`` and, unless ``ignore_eos``, up to and including the first
end-of-sequence token.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback

PROTOCOL = 1
ENGINE = "transformers"
DEFAULT_MAX_TOKENS = 256
GATHER_S = 0.02


def log(message: str) -> None:
    print(f"[pytorch_worker] {message}", file=sys.stderr, flush=True)


class Output:
    """The protocol channel: the process's original stdout. File descriptor 1
    is pointed at stderr, so nothing a library prints (Python or C) can land
    among the protocol lines."""

    def __init__(self, stream=None):
        if stream is None:
            stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
            os.dup2(2, 1)
            sys.stdout = sys.stderr
        self.stream = stream
        self.lock = threading.Lock()

    def emit(self, obj: dict) -> None:
        line = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def error(self, request_id, message: str) -> None:
        self.emit({"type": "error", "id": request_id, "message": message})


# Decoding when neither generate nor hello says: greedy, as llem's default.
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": None}


class Request:
    def __init__(self, msg: dict):
        self.id = msg["id"]
        self.prompt = msg.get("prompt")
        self.messages = msg.get("messages")
        self.max_tokens = msg.get("max_tokens")
        self.ignore_eos = bool(msg.get("ignore_eos", False))
        # None: not in the message; filled from hello's `decoding` (see Worker).
        self.temperature = msg.get("temperature")
        self.top_p = msg.get("top_p")
        self.seed = msg.get("seed")

    def fill_decoding(self, defaults: dict) -> None:
        for key in ("temperature", "top_p", "seed"):
            if getattr(self, key) is None:
                setattr(self, key, defaults.get(key, GREEDY[key]))

    def batch_key(self):
        """Requests sharing one generate call must agree on these."""
        return (self.ignore_eos, self.temperature, self.top_p, self.seed)


def check_decoding(msg: dict):
    """The error in a message's decoding settings (generate or hello's
    `decoding`), or None. Absent keys are fine."""
    t = msg.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0):
        return f"`temperature` must be a number >= 0 (0: greedy), got {t!r}"
    p = msg.get("top_p")
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
        return f"`top_p` must be a number in (0, 1], got {p!r}"
    seed = msg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        return f"`seed` must be a non-negative integer or null, got {seed!r}"
    return None


class BadMessage(Exception):
    def __init__(self, request_id, message):
        super().__init__(message)
        self.request_id = request_id


def parse(line: str):
    """One input line -> (type, Request | dict). Raises BadMessage."""
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadMessage(None, f"not a JSON line: {e}") from None
    if not isinstance(msg, dict):
        raise BadMessage(None, "a message must be a JSON object")
    kind = msg.get("type")
    rid = msg.get("id") if isinstance(msg.get("id"), str) else None
    if kind == "hello":
        if msg.get("protocol") != PROTOCOL:
            raise BadMessage(None, f"protocol {msg.get('protocol')!r} is not supported; this worker speaks {PROTOCOL}")
        if not isinstance(msg.get("model"), str) or not msg["model"]:
            raise BadMessage(None, "hello needs `model` (a directory or a model name)")
        options = msg.get("options") or {}
        if not isinstance(options, dict):
            raise BadMessage(None, "hello `options` must be an object")
        decoding = msg.get("decoding") or {}
        if not isinstance(decoding, dict):
            raise BadMessage(None, "hello `decoding` must be an object")
        problem = check_decoding(decoding)
        if problem:
            raise BadMessage(None, f"hello `decoding`: {problem}")
        return "hello", {"model": msg["model"], "options": options, "decoding": decoding}
    if kind == "generate":
        if rid is None:
            raise BadMessage(None, "generate needs a string `id`")
        has_prompt = isinstance(msg.get("prompt"), str)
        messages = msg.get("messages")
        has_messages = isinstance(messages, list) and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages
        )
        if has_prompt == (messages is not None):
            raise BadMessage(rid, "generate needs exactly one of `prompt` (a string) or `messages`")
        if messages is not None and not (has_messages and messages):
            raise BadMessage(rid, "`messages` must be a non-empty list of {role, content} strings")
        max_tokens = msg.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise BadMessage(rid, f"`max_tokens` must be a positive integer, got {max_tokens!r}")
        if not isinstance(msg.get("ignore_eos", False), bool):
            raise BadMessage(rid, "`ignore_eos` must be true or false")
        problem = check_decoding(msg)
        if problem:
            raise BadMessage(rid, problem)
        return "generate", Request(msg)
    if kind == "shutdown":
        return "shutdown", None
    raise BadMessage(rid, f"unknown message type {kind!r}")


def read_stdin(q: "queue.Queue", stream) -> None:
    for line in stream:
        if line.strip():
            q.put(line)
    q.put(None)


class StepStreamer:
    """Called by ``generate`` with the prompt ids, then once per step with each
    row's new token; emits first_token/token events for rows still going."""

    def __init__(self, out: Output, requests, max_new, eos_ids, clock=time.monotonic_ns):
        self.out = out
        self.ids = [r.id for r in requests]
        self.max_new = max_new
        self.eos_ids = set(eos_ids)
        self.clock = clock
        self.counts = [0] * len(requests)
        self.emitted = [0] * len(requests)
        self.finished = [False] * len(requests)
        self.seen_prompt = False

    def put(self, value) -> None:
        if not self.seen_prompt and getattr(value, "dim", lambda: 1)() == 2:
            self.seen_prompt = True
            return
        self.seen_prompt = True
        t_ns = self.clock()
        tokens = value.reshape(len(self.ids), -1)
        for row, request_id in enumerate(self.ids):
            if self.finished[row]:
                continue
            for token in tokens[row].tolist():
                self.counts[row] += 1
                if self.counts[row] == 1:
                    self.out.emit({"type": "first_token", "id": request_id, "t_ns": t_ns})
                if token in self.eos_ids or self.counts[row] >= self.max_new[row]:
                    self.finished[row] = True
                    break
            n = self.counts[row] - self.emitted[row]
            self.emitted[row] = self.counts[row]
            if n:
                self.out.emit({"type": "token", "id": request_id, "t_ns": t_ns, "n": n})

    def end(self) -> None:
        pass


def count_new_tokens(new_ids, max_new: int, eos_ids) -> int:
    """Tokens ``generate`` produced for one row: up to ``max_new`` and up to and
    including the first end-of-sequence token (``eos_ids`` empty: none)."""
    n = min(len(new_ids), max_new)
    for i, token in enumerate(new_ids[:n]):
        if token in eos_ids:
            return i + 1
    return n


def sampling_kwargs(request: Request, top_k=None) -> dict:
    """The sampling arguments of ``generate`` for the kernel's decoding settings:
    greedy at temperature 0 (the model's generation_config may carry sampling
    settings: they are neutralised), else sampling with that temperature and
    top_p (top_k: the plugin's option, only when sampling)."""
    if not request.temperature:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    kwargs = {"do_sample": True, "temperature": float(request.temperature), "top_p": float(request.top_p)}
    kwargs["top_k"] = int(top_k) if top_k is not None else None
    return kwargs


def as_id_list(value):
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]


class Engine:
    """The loaded model and what ``generate`` needs."""

    def __init__(self, model_name: str, options: dict):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.options = options
        self.version = transformers.__version__
        seed = options.get("seed")
        if seed is not None:
            torch.manual_seed(int(seed))

        kwargs = {}
        dtype = options.get("dtype") or "auto"
        if dtype != "auto":
            dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        major = int(transformers.__version__.split(".")[0])
        kwargs["dtype" if major >= 5 else "torch_dtype"] = dtype
        device_map = options.get("device_map")
        if device_map not in (None, "", "none"):
            kwargs["device_map"] = device_map
        if options.get("attn_implementation"):
            kwargs["attn_implementation"] = options["attn_implementation"]
        quantization = options.get("quantization") or "none"
        if quantization != "none":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=quantization == "bnb-4bit", load_in_8bit=quantization == "bnb-8bit"
            )

        log(f"loading {model_name} with {kwargs}")
        started = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.model = AutoModelForCausalLM.from_pretrained(model_name, **kwargs).eval()
        if options.get("torch_compile"):
            self.model.forward = torch.compile(self.model.forward)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos_ids = as_id_list(self.model.generation_config.eos_token_id) or as_id_list(self.tokenizer.eos_token_id)
        self.pad_id = self.model.generation_config.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.pad_token_id
        log(f"loaded in {time.monotonic() - started:.1f} s on {self.device()}")

    def device(self) -> str:
        return str(self.model.device)

    def encode(self, request: Request):
        if request.messages is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("the model's tokenizer has no chat template; send `prompt` instead of `messages`")
            text = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(request.prompt)["input_ids"]

    def generate_kwargs(self, request: Request) -> dict:
        """``generate``'s keyword arguments for a batch led by ``request``
        (its rows share ignore_eos and the sampling settings)."""
        o = self.options
        kwargs = {"pad_token_id": self.pad_id}
        if request.ignore_eos:
            # No end-of-sequence: every row runs to its max_tokens.
            kwargs["eos_token_id"] = None
        else:
            kwargs["eos_token_id"] = self.eos_ids
        kwargs.update(sampling_kwargs(request, o.get("top_k")))
        if o.get("static_cache"):
            kwargs["cache_implementation"] = "static"
        return kwargs

    def run(self, out: Output, requests) -> None:
        """One batch: one generate call. Requests that cannot be encoded are
        answered with an error and left out."""
        torch = self.torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        batch, encoded = [], []
        for request in requests:
            try:
                ids = self.encode(request)
            except Exception as e:  # noqa: BLE001 - one bad request must not end the run
                out.error(request.id, f"cannot tokenize the request: {e}")
                continue
            if not ids:
                out.error(request.id, "the prompt is empty after tokenization")
                continue
            batch.append(request)
            encoded.append(ids)
        if not batch:
            return
        ignore_eos = batch[0].ignore_eos
        max_new = [r.max_tokens or DEFAULT_MAX_TOKENS for r in batch]
        if batch[0].temperature and batch[0].seed is not None:
            torch.manual_seed(int(batch[0].seed))
        inputs = self.tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        prompt_len = inputs["input_ids"].shape[1]

        class RowMaxNewTokens(StoppingCriteria):
            """Each row stops at its own max_tokens (generate has one max_new_tokens)."""

            def __call__(self, input_ids, scores, **kwargs):
                limit = torch.tensor(max_new, device=input_ids.device)
                return (input_ids.shape[1] - prompt_len) >= limit

        kwargs = self.generate_kwargs(batch[0])
        eos_ids = set() if ignore_eos else set(self.eos_ids)
        streamer = StepStreamer(out, batch, max_new, eos_ids)
        try:
            with torch.inference_mode():
                sequences = self.model.generate(
                    **inputs,
                    max_new_tokens=max(max_new),
                    stopping_criteria=StoppingCriteriaList([RowMaxNewTokens()]),
                    streamer=streamer,
                    **kwargs,
                )
        except Exception as e:  # noqa: BLE001
            log(traceback.format_exc())
            for request in batch:
                out.error(request.id, f"generate failed: {type(e).__name__}: {e}")
            return
        t_ns = time.monotonic_ns()
        for row, request in enumerate(batch):
            new_ids = sequences[row, prompt_len:].tolist()
            n = count_new_tokens(new_ids, max_new[row], eos_ids)
            if n != streamer.counts[row]:
                log(f"{request.id}: the streamer saw {streamer.counts[row]} tokens, generate returned {n}")
                if n > streamer.counts[row]:
                    out.emit({"type": "token", "id": request.id, "t_ns": t_ns, "n": n - streamer.counts[row]})
            out.emit(
                {
                    "type": "done",
                    "id": request.id,
                    "t_ns": t_ns,
                    "input_tokens": len(encoded[row]),
                    "output_tokens": n,
                    "text": self.tokenizer.decode(new_ids[:n], skip_special_tokens=True),
                }
            )


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
    def __init__(self, out: Output, lines: "queue.Queue", make_engine=Engine, gather_s: float = GATHER_S):
        self.out = out
        self.lines = lines
        self.make_engine = make_engine
        self.gather_s = gather_s
        self.engine = None
        self.batch_size = 1
        self.held = []  # parsed messages taken from the queue but not yet handled
        self.closing = False
        self.decoding = {}  # hello's `decoding`: defaults for generate messages

    def next_message(self, timeout=None):
        """The next valid message, or None (end of input / timeout). Invalid
        lines are answered with an error here."""
        while True:
            if self.held:
                return self.held.pop(0)
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                return None
            if line is None:
                self.closing = True
                return ("shutdown", None)
            try:
                return parse(line)
            except BadMessage as e:
                self.out.error(e.request_id, str(e))

    def hello(self, body) -> bool:
        options = body["options"]
        try:
            batch_size = int(options.get("batch_size") or 1)
            if batch_size < 1:
                raise ValueError("batch_size must be at least 1")
            self.batch_size = batch_size
            self.decoding = body.get("decoding") or {}
            self.engine = self.make_engine(body["model"], options)
        except Exception as e:  # noqa: BLE001
            log(traceback.format_exc())
            self.out.error(None, f"cannot load model {body['model']!r}: {type(e).__name__}: {e}")
            return False
        self.out.emit(
            {
                "type": "ready",
                "protocol": PROTOCOL,
                "engine": ENGINE,
                "engine_version": str(self.engine.version),
                "device": self.engine.device(),
                "versions": software_versions(getattr(self.engine, "torch", None)),
            }
        )
        return True

    def serve(self) -> int:
        # Wait for hello.
        while True:
            message = self.next_message()
            kind, body = message
            if kind == "hello":
                if not self.hello(body):
                    return 1
                break
            if kind == "shutdown":
                return 0
            self.out.error(body.id, "generate before hello")

        while True:
            kind, body = self.next_message()
            if kind == "shutdown":
                return 0
            if kind == "hello":
                self.out.error(None, "a second hello was ignored")
                continue
            body.fill_decoding(self.decoding)
            batch = [body]
            while len(batch) < self.batch_size:
                message = self.next_message(timeout=self.gather_s)
                if message is None:
                    break
                if message[0] == "generate":
                    message[1].fill_decoding(self.decoding)
                if message[0] == "generate" and message[1].batch_key() == batch[0].batch_key():
                    batch.append(message[1])
                    continue
                self.held.append(message)
                break
            self.engine.run(self.out, batch)


def main() -> int:
    out = Output()
    lines: "queue.Queue" = queue.Queue()
    threading.Thread(target=read_stdin, args=(lines, sys.stdin), daemon=True).start()
    try:
        return Worker(out, lines).serve()
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - report, never die silently
        log(traceback.format_exc())
        out.error(None, f"worker failed: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
