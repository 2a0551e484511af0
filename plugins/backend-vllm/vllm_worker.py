# ---------------------------------------------------------------------------
# The vLLM engine part of llem's offline worker. Appended to
# plugins/backend-common/worker_protocol.py when backend-vllm is built (the
# names it uses without defining come from there); the kernel starts the
# result as `python3 <run_dir>/vllm_worker.py --engine-args '<json>'
# [--extra-args '<json list>']`.
"""vLLM: the worker drives vLLM's engine step loop itself.

Timing: the worker calls ``LLMEngine.step()`` (the loop ``LLM.generate`` runs
internally) and reads ``time.monotonic_ns()`` once after each step: that is
the moment the step's tokens exist on the host. vLLM's own
``RequestOutput.metrics`` are not used: offline ``LLM`` disables stats by
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

ENGINE = "vllm"


def sampling_kwargs(request):
    """`vllm.SamplingParams` arguments for one request, every setting explicit:
    vLLM's own defaults (temperature 1.0, the context length for max_tokens)
    would make engines run different workloads. Temperature 0 is vLLM's
    greedy decoding; `seed` only matters when sampling (vLLM gives a seeded
    request a generator of its own)."""
    kwargs = {
        "max_tokens": request.max_new_tokens(),
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
        return cuda_device()

    def _chat_prompt(self, messages):
        if self._tokenizer is None:
            self._tokenizer = self._llm.get_tokenizer()
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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


class VllmWorker(Worker):
    """Turns messages into engine calls and steps into events."""

    ARGS_OPTION = "engine_args"

    def __init__(self, make_engine, out, engine_args=None, clock=time.monotonic_ns, gather_s=0.005):
        super().__init__(make_engine, out, engine_args, clock)
        self.gather_s = gather_s
        self.active = {}  # id -> Progress
        self.shutting_down = False
        self.status = None  # the exit status, once the worker must stop at once

    def handle_line(self, line):
        message = self.parse(line)
        if message is None:
            return
        kind, body = message
        if self.shutting_down:
            log(f"ignored after shutdown: {line.strip()[:80]}")
        elif kind == "hello":
            if not self.hello(body):
                self.status = 1
        elif kind == "generate":
            self.submit(body)
        else:
            self.shutting_down = True

    def submit(self, request):
        if not self.accept(request, self.active):
            return
        try:
            self.engine.add(request)
        except Exception as e:  # noqa: BLE001 - one bad request must not end the run
            self.error(request.id, f"the engine refused the request: {e}")
            return
        self.active[request.id] = Progress(self.out, request.id)

    def step(self):
        """One engine step; its events all carry the time the step returned."""
        outputs = self.engine.step()
        t_ns = self.clock()
        # The step's lines in one write (one system call per step): requests
        # that got one token share one `tokens` line; `done` lines come after
        # it, so that no request's last token follows its end.
        stepped, ended = [], []
        with self.out.batch():
            for o in outputs:
                progress = self.active.get(o.id)
                if progress is None:
                    continue
                if o.output_tokens == progress.emitted + 1:
                    progress.one_more(t_ns, o.input_tokens)
                    stepped.append(progress)
                else:
                    progress.advance(t_ns, o.output_tokens, o.input_tokens)
                if o.finished:
                    del self.active[o.id]
                    ended.append(progress)
            if stepped:
                self.out.emit_line(tokens_line(t_ns, stepped))
            for progress in ended:
                progress.done(t_ns)
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
            if self.status is not None:
                return False
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
        """Run until shutdown (or end of input) and every request is done;
        returns the exit status.

        `inbox` yields lines, then None at end of input. After shutdown no
        more input is read, and the requests in flight run to completion: the
        kernel owns the process and kills it if it cannot wait.
        """
        eof = False
        while True:
            if not (eof or self.shutting_down):
                busy = self.engine is not None and bool(self.active)
                eof = self._drain(inbox, block=not busy)
            if self.status is not None:
                return self.status
            if self.engine is not None and self.active:
                self.step()
            elif eof or self.shutting_down:
                return 0


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

    out = Channel.stdout()
    worker = VllmWorker(make_engine, out, engine_args, gather_s=args.gather_ms / 1000.0)
    inbox = queue.Queue()
    start_reader(sys.stdin, inbox.put)
    return run_guarded(out, lambda: worker.serve(inbox), on_failure=worker.abort_all)


if __name__ == "__main__":
    sys.exit(main())
