# ---------------------------------------------------------------------------
# The TensorRT-LLM engine part of llem's offline worker. Appended to
# plugins/backend-common/worker_protocol.py when backend-trtllm is built (the
# names it uses without defining come from there); the kernel starts the
# result as `python3 <run_dir>/trtllm_worker.py --llm-args '<json>'`, where the
# JSON is the `tensorrt_llm.LLM` keyword arguments the backend plugin built
# (`backend` picks the runtime: `pytorch` or `tensorrt`).
"""TensorRT-LLM: ``LLM.generate_async(…, streaming=True)`` per request.

Timing: every request is submitted as soon as it arrives (TensorRT-LLM's
executor batches in flight), and each streamed chunk is timestamped with
``time.monotonic_ns()`` when it reaches this process. TensorRT-LLM's own
per-request perf metrics (``return_perf_metrics``) use the executor's steady
clock in another process and are not used.

``options`` in hello: ``llm_args`` (a table), if present, is merged over
``--llm-args``; other keys are ignored.
"""

import argparse
import asyncio

ENGINE = "trtllm"


def sampling_kwargs(request):
    """`tensorrt_llm.SamplingParams` arguments for one request, every setting
    explicit: TensorRT-LLM's own `max_tokens` default is 32, and its sampler's
    defaults differ from other engines'. Greedy (temperature 0) is `top_k=1`
    with temperature and top_p unset: what `SamplingParams._greedy_decoding`
    recognises (TensorRT-LLM documents temperature as > 0)."""
    kwargs = {"max_tokens": request.max_new_tokens(), "ignore_eos": request.ignore_eos}
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
        return cuda_device()

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


class TrtllmWorker(Worker):
    """Turns messages into engine streams and chunks into events."""

    ARGS_OPTION = "llm_args"

    def __init__(self, make_engine, out, llm_args=None, clock=time.monotonic_ns):
        super().__init__(make_engine, out, llm_args, clock)
        self.tasks = {}  # id -> asyncio.Task
        self.status = 0
        self.turn = None  # LoopTurn, made on the loop's thread by `serve`

    async def handle_line(self, line):
        """Act on one line; False once the worker should stop."""
        message = self.parse(line)
        if message is None:
            return True
        kind, body = message
        if kind == "hello":
            # Loading takes minutes; off the loop, so input keeps being read.
            if not await asyncio.get_running_loop().run_in_executor(None, self.hello, body):
                self.status = 1
                return False
        elif kind == "generate":
            if self.accept(body, self.tasks):
                self.tasks[body.id] = asyncio.get_running_loop().create_task(self.run_request(body))
        else:
            return False
        return True

    async def run_request(self, request):
        progress = Progress(self.out, request.id)
        try:
            async for chunk in self.engine.stream(request):
                t_ns = self.clock()
                self.turn.hold()  # this turn's lines leave together (see LoopTurn)
                progress.advance(t_ns, chunk.output_tokens, chunk.input_tokens)
                if chunk.finished:
                    progress.done(t_ns)
                    return
            self.error(request.id, "the engine ended the stream before the request finished")
        except asyncio.CancelledError:
            self.error(request.id, "the worker shut down before the request finished")
            raise
        except Exception as e:  # noqa: BLE001 - one failed request must not end the run
            self.error(request.id, f"{type(e).__name__}: {e}")
        finally:
            self.tasks.pop(request.id, None)

    async def serve(self, inbox):
        """Run until shutdown (or end of input) and every request is done;
        returns the exit status.

        `inbox` (an asyncio.Queue) yields lines, then None at end of input.
        After shutdown no more input is read, and the requests in flight run
        to completion: the kernel owns the process and kills it if it cannot
        wait. If serving itself fails, requests in flight are cancelled.
        """
        finished = False
        self.turn = LoopTurn(self.out, asyncio.get_running_loop())
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
            self.turn.release()
            if self.engine is not None:
                try:
                    self.engine.shutdown()
                except Exception as e:  # noqa: BLE001
                    log(f"shutdown failed: {e}")
        return self.status


def main(argv=None):
    ap = argparse.ArgumentParser(description="llem worker for TensorRT-LLM (protocol v1)")
    ap.add_argument("--llm-args", default="{}", help="JSON object of tensorrt_llm.LLM keyword arguments")
    args = ap.parse_args(argv)
    out = Channel.stdout()
    worker = TrtllmWorker(TrtllmEngine, out, json.loads(args.llm_args))

    async def run():
        inbox = asyncio.Queue()
        loop = asyncio.get_running_loop()
        start_reader(sys.stdin, lambda line: loop.call_soon_threadsafe(inbox.put_nowait, line))
        return await worker.serve(inbox)

    return run_guarded(out, lambda: asyncio.run(run()))


if __name__ == "__main__":
    sys.exit(main())
