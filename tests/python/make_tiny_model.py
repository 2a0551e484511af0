#!/usr/bin/env python3
"""Make a tiny, randomly initialised Llama model with its own tokenizer.

    python make_tiny_model.py OUT_DIR [--seed N]

Nothing is downloaded: the tokenizer (byte-level BPE, ~500 tokens, with a chat
template) is trained here on an embedded corpus, and the model
(``LlamaForCausalLM``, 2 layers, hidden size 64, 4 heads) is initialised from
the seed. ``OUT_DIR`` then holds what ``save_pretrained`` writes (config.json,
generation_config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, ...), loadable offline with
``AutoModelForCausalLM.from_pretrained(OUT_DIR)`` and
``AutoTokenizer.from_pretrained(OUT_DIR)``. The same seed gives the same files
(byte for byte for the weights and the tokenizer).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = """\
The quick brown fox jumps over the lazy dog.
Energy is measured in joules; power is energy per second, measured in watts.
A large language model predicts the next token from the tokens before it.
Latency is the time a request waits; throughput is how many tokens per second.
The first token arrives after the prompt is processed; later tokens follow one by one.
Batching many requests together keeps the accelerator busy and saves energy per token.
Hello! How are you today? I am fine, thank you. What would you like to know?
Please summarise the following text in one sentence.
Write a short poem about the sea, the wind and the stars.
Explain why the sky is blue to a child of five.
Once upon a time there was a little robot who wanted to learn to paint.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 2.71 42.
def add(a, b):
    return a + b
{"role": "user", "content": "hi"}
"""

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.splitlines() * 4, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A",
        pair="<s> $A <s> $B",
        special_tokens=[("<s>", bos)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        model_max_length=512,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(tokenizer, seed: int, layers: int, hidden: int, heads: int):
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    # The chat template ends a turn with <|end|>: treat it as an end of
    # sequence too, as chat models do.
    eos_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def build(out_dir: str, seed: int = 0, vocab_size: int = 500, layers: int = 2, hidden: int = 64, heads: int = 4) -> str:
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = make_tokenizer(vocab_size)
    model = make_model(tokenizer, seed, layers, hidden, heads)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=500)
    args = parser.parse_args(argv)
    build(args.out_dir, seed=args.seed, vocab_size=args.vocab_size)
    print(args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
