"""Shared fixtures for tests/python: the repository's paths and a tiny model
built once per session (no download: see make_tiny_model.py).

Run with the project's venv: `bash tests/python/setup-venv.sh`, then
`.venv/bin/python -m pytest tests/python -q` (`cargo xtask test` does both
steps' second half when `.venv` exists)."""

from __future__ import annotations

import os
import sys
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# Nothing in these tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def require(module: str):
    """Import `module`, or skip with a message saying how to get it."""
    return pytest.importorskip(
        module,
        reason=f"`{module}` is not installed in this Python ({sys.executable}); "
        "run `bash tests/python/setup-venv.sh` and use .venv/bin/python",
    )


@pytest.fixture(scope="session")
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A directory holding a tiny random Llama with its tokenizer (seed 0)."""
    require("torch")
    require("transformers")
    require("tokenizers")
    import make_tiny_model

    return make_tiny_model.build(str(tmp_path_factory.mktemp("tiny-llama")), seed=0)


@pytest.fixture(scope="session")
def tiny_hf(tiny_model):
    """(tokenizer, model) loaded in this process, for reference generations."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    return tokenizer, model


def expected_versions(with_torch=None) -> dict:
    """What a worker's `ready.versions` must hold in this Python, computed
    here independently of the workers' own code: the interpreter's version,
    each engine package's installed version (absent when not installed), and
    with torch, its CUDA build and visible devices."""
    import importlib.metadata as metadata
    import platform

    out = {"python": platform.python_version()}
    for key in ("torch", "transformers", "vllm", "tensorrt_llm"):
        try:
            out[key] = metadata.version(key)
        except metadata.PackageNotFoundError:
            pass
    if with_torch is not None:
        if with_torch.version.cuda:
            out["cuda"] = with_torch.version.cuda
        if with_torch.cuda.is_available():
            out["devices"] = [with_torch.cuda.get_device_name(i) for i in range(with_torch.cuda.device_count())]
    return out
