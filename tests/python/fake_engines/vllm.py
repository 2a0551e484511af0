"""A fake `vllm` (see README.md): `LLM(model, **engine_args)` whose
`llm_engine` steps every running request by one token (cumulative outputs,
as vLLM without RequestOutputKind.DELTA)."""

import time

from fake_common import STEP_S, Output, Tokenizer, check_model, refuse, target_tokens

__version__ = "0.0.0+fake"


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class _Engine:
    def __init__(self):
        self.running = {}  # id -> [prompt, target, tokens so far]

    def add_request(self, request_id, prompt, params):
        refuse(prompt)
        target = target_tokens(params.kwargs["max_tokens"], params.kwargs["ignore_eos"])
        self.running[request_id] = [prompt, target, 0]

    def has_unfinished_requests(self):
        return bool(self.running)

    def step(self):
        time.sleep(STEP_S)
        out = []
        for rid, state in list(self.running.items()):
            state[2] += 1
            finished = state[2] >= state[1]
            out.append(Output(rid, state[2], state[0], finished))
            if finished:
                del self.running[rid]
        return out

    def abort_request(self, request_ids):
        for rid in request_ids:
            self.running.pop(rid, None)


class LLM:
    def __init__(self, model, **engine_args):
        check_model(model)
        self.engine_args = engine_args
        self.llm_engine = _Engine()

    def get_tokenizer(self):
        return Tokenizer()
