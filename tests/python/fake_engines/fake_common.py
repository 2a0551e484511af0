"""What the fake `vllm` and `tensorrt_llm` modules share (see README.md)."""

import os

NATURAL_LENGTH = 5  # tokens before the fake model's end of sequence
STEP_S = 0.001


def check_model(model):
    if not os.path.isdir(model):
        raise OSError(f"{model} is not a model directory")


def input_tokens(prompt):
    return len(prompt.split()) + 1


def target_tokens(max_tokens, ignore_eos):
    return max_tokens if ignore_eos else min(max_tokens, NATURAL_LENGTH)


def refuse(prompt):
    if "FAIL" in prompt:
        raise ValueError("the prompt is longer than the model's context")


class Tokenizer:
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        text = "".join(f"<|{m['role']}|> {m['content']} " for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")


class Completion:
    def __init__(self, n):
        self.token_ids = list(range(n))


class Output:
    def __init__(self, request_id, n, prompt, finished):
        self.request_id = request_id
        self.outputs = [Completion(n)]
        self.prompt_token_ids = list(range(input_tokens(prompt)))
        self.finished = finished
