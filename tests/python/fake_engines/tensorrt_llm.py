"""A fake `tensorrt_llm` (see README.md): `LLM(model=…, **llm_args)` whose
`generate_async(…, streaming=True)` yields one cumulative output per token."""

import asyncio

from fake_common import STEP_S, Output, Tokenizer, check_model, refuse, target_tokens

__version__ = "1.0.0+fake"


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class LLM:
    def __init__(self, model, **llm_args):
        check_model(model)
        self.llm_args = llm_args
        self.tokenizer = Tokenizer()

    async def generate_async(self, prompt, sampling_params, streaming):
        refuse(prompt)
        target = target_tokens(sampling_params.kwargs["max_tokens"], sampling_params.kwargs["ignore_eos"])
        for n in range(1, target + 1):
            await asyncio.sleep(STEP_S)
            yield Output(None, n, prompt, n >= target)

    def shutdown(self):
        pass
