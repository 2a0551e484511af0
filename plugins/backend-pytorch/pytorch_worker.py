# ---------------------------------------------------------------------------
# The PyTorch / Hugging Face transformers engine part of llem's offline
# worker. Appended to plugins/backend-common/worker_protocol.py when
# backend-pytorch is built (the names it uses without defining come from
# there); the kernel starts the result as `python3 <run_dir>/pytorch_worker.py`
# (the interpreter is the plugin's `python` option). Everything else comes in
# `hello`.
"""PyTorch / transformers: ``AutoModelForCausalLM`` and ``model.generate``.

Decoding: temperature 0 is greedy decoding (``do_sample=False``, the model's
own sampling settings neutralised); above 0, ``do_sample=True`` with that
temperature and top_p (and the plugin's ``top_k`` option, if set), and with a
seed, ``torch.manual_seed(seed)`` before each ``generate`` call. Text prompts
are tokenized with the tokenizer's special tokens (BOS); ``messages`` are
rendered with the tokenizer's chat template (``add_generation_prompt=True``)
and tokenized without adding special tokens again. ``input_tokens`` is the
prompt's length in tokens, padding excluded. ``done`` also carries the
generated ``text``.

``options`` in hello are the backend-pytorch plugin's resolved options; the
ones used here: ``dtype``, ``device_map``, ``attn_implementation``,
``quantization``, ``torch_compile``, ``static_cache``, ``batch_size``,
``top_k``, ``seed`` (``torch.manual_seed`` before loading). Others are ignored.

Batching: requests are grouped in arrival order into batches of up to
``batch_size`` (left-padded) and run with one ``model.generate`` call each;
after the first request of a batch arrives the worker waits up to 20 ms per
further request to fill it (the kernel sends all requests at once). A request
whose ``ignore_eos`` or sampling settings differ from the batch's starts the
next batch.

Timing: a streamer (``BaseStreamer``) is called by ``generate`` once per
decoding step with that step's token for every row of the batch; it reads
``time.monotonic_ns()`` once per step and emits the step's events for every
row still generating, so TTFT and ITL are per request and rows of one batch
share step times. ``done`` is emitted when ``generate`` returns (that is when
a static batch's results exist), with the counts taken from the returned token
ids (new tokens up to the row's ``max_tokens`` and, unless ``ignore_eos``, up
to and including the first end-of-sequence token) and, as ``t_ns``, the time
of the row's own last token: a row that stopped early does not take the
batch's end as its own.
"""

ENGINE = "transformers"
GATHER_S = 0.02


class StepStreamer:
    """Called by ``generate`` with the prompt ids, then once per step with each
    row's new token; emits first_token/token events for rows still going."""

    def __init__(self, out, requests, max_new, eos_ids, clock=time.monotonic_ns):
        self.out = out
        self.progress = [Progress(out, r.id) for r in requests]
        self.max_new = max_new
        self.eos_ids = set(eos_ids)
        self.clock = clock
        self.counts = [0] * len(requests)
        self.finished = [False] * len(requests)
        self.seen_prompt = False

    def put(self, value):
        if not self.seen_prompt and getattr(value, "dim", lambda: 1)() == 2:
            self.seen_prompt = True
            return
        self.seen_prompt = True
        t_ns = self.clock()
        if not self.eos_ids and value.numel() == len(self.progress):
            self.one_token_each(t_ns)
            return
        # One conversion per step (not one per row), one write per step.
        rows = value.reshape(len(self.progress), -1).tolist()
        with self.out.batch():
            for row, progress in enumerate(self.progress):
                if self.finished[row]:
                    continue
                for token in rows[row]:
                    self.counts[row] += 1
                    if token in self.eos_ids or self.counts[row] >= self.max_new[row]:
                        self.finished[row] = True
                        break
                progress.advance(t_ns, self.counts[row])

    def one_token_each(self, t_ns):
        """A step without end-of-sequence (``ignore_eos``): every open row got
        one token, whichever it is, so the ids are not even converted, and
        the step is one ``tokens`` line (issue #12: on a 1 ms step of a small
        model the per-row path cost ~3 % of the engine's tokens/s)."""
        stepped = []
        for row, progress in enumerate(self.progress):
            if self.finished[row]:
                continue
            progress.one_more(t_ns)
            stepped.append(progress)
            self.counts[row] += 1
            if self.counts[row] >= self.max_new[row]:
                self.finished[row] = True
        if stepped:
            with self.out.batch():
                self.out.emit_line(tokens_line(t_ns, stepped))

    def end(self):
        pass


def count_new_tokens(new_ids, max_new, eos_ids):
    """Tokens ``generate`` produced for one row: up to ``max_new`` and up to and
    including the first end-of-sequence token (``eos_ids`` empty: none)."""
    n = min(len(new_ids), max_new)
    for i, token in enumerate(new_ids[:n]):
        if token in eos_ids:
            return i + 1
    return n


def sampling_kwargs(request, top_k=None):
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

    def __init__(self, model_name, options):
        batch_size = int(options.get("batch_size") or 1)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size

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

    def device(self):
        return str(self.model.device)

    def encode(self, request):
        if request.messages is not None:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError("the model's tokenizer has no chat template; send `prompt` instead of `messages`")
            text = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(request.prompt)["input_ids"]

    def generate_kwargs(self, request):
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

    def run(self, out, requests):
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
        max_new = [r.max_new_tokens() for r in batch]
        if batch[0].temperature and batch[0].seed is not None:
            torch.manual_seed(int(batch[0].seed))
        inputs = self.tokenizer.pad({"input_ids": encoded}, padding=True, return_tensors="pt")
        inputs = {k: v.to(self.model.device) for k, v in inputs.items()}
        prompt_len = inputs["input_ids"].shape[1]

        limit = torch.tensor(max_new, device=self.model.device)

        class RowMaxNewTokens(StoppingCriteria):
            """Each row stops at its own max_tokens (generate has one max_new_tokens)."""

            def __call__(self, input_ids, scores, **kwargs):
                return (input_ids.shape[1] - prompt_len) >= limit

        kwargs = self.generate_kwargs(batch[0])
        if len(set(max_new)) > 1:
            # Only rows with different limits need the per-step check;
            # otherwise max_new_tokens is the limit of every row.
            kwargs["stopping_criteria"] = StoppingCriteriaList([RowMaxNewTokens()])
        eos_ids = set() if ignore_eos else set(self.eos_ids)
        streamer = StepStreamer(out, batch, max_new, eos_ids)
        try:
            with torch.inference_mode():
                sequences = self.model.generate(
                    **inputs,
                    max_new_tokens=max(max_new),
                    streamer=streamer,
                    **kwargs,
                )
        except Exception as e:  # noqa: BLE001
            log(traceback.format_exc())
            for request in batch:
                out.error(request.id, f"generate failed: {type(e).__name__}: {e}")
            return
        t_ns = time.monotonic_ns()
        with out.batch():
            self.finish(streamer, sequences, prompt_len, encoded, max_new, eos_ids, t_ns)

    def finish(self, streamer, sequences, prompt_len, encoded, max_new, eos_ids, t_ns):
        """The batch's `done` lines (and any tokens the streamer missed)."""
        for row, progress in enumerate(streamer.progress):
            new_ids = sequences[row, prompt_len:].tolist()
            n = count_new_tokens(new_ids, max_new[row], eos_ids)
            if n != progress.emitted:
                log(f"{progress.id}: the streamer saw {progress.emitted} tokens, generate returned {n}")
                progress.advance(t_ns, n)
            progress.done(
                t_ns,
                input_tokens=len(encoded[row]),
                output_tokens=n,
                text=self.tokenizer.decode(new_ids[:n], skip_special_tokens=True),
            )


class PytorchWorker(Worker):
    """Requests in batches of the engine's ``batch_size``, one after another."""

    def __init__(self, make_engine, out, lines, gather_s=GATHER_S):
        super().__init__(make_engine, out)
        self.lines = lines
        self.gather_s = gather_s
        self.held = []  # parsed messages taken from the queue but not yet handled

    def next_message(self, timeout=None):
        """The next valid message, ("shutdown", None) at end of input, or None
        (timeout). Invalid lines are answered with an error here."""
        while True:
            if self.held:
                return self.held.pop(0)
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                return None
            if line is None:
                return ("shutdown", None)
            message = self.parse(line)
            if message is not None:
                return message

    def serve(self):
        while True:
            kind, body = self.next_message()
            if kind == "shutdown":
                return 0
            if kind == "hello":
                if not self.hello(body):
                    return 1
                continue
            if not self.accept(body, ()):
                continue
            batch = [body]
            while len(batch) < self.engine.batch_size:
                message = self.next_message(timeout=self.gather_s)
                if message is None:
                    break
                kind, other = message
                if kind == "generate" and not self.accept(other, {r.id for r in batch}):
                    continue
                if kind == "generate" and other.batch_key() == body.batch_key():
                    batch.append(other)
                    continue
                self.held.append(message)
                break
            self.engine.run(self.out, batch)


def main():
    out = Channel.stdout()
    lines = queue.Queue()
    start_reader(sys.stdin, lines.put)
    return run_guarded(out, PytorchWorker(Engine, out, lines).serve)


if __name__ == "__main__":
    sys.exit(main())
