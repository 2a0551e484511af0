"""Shared fixtures for tests/python: the repository's paths and a tiny model
built once per session (no download: see make_tiny_model.py).

Run with the project's venv: `bash tests/python/setup-venv.sh`, then
`.venv/bin/python -m pytest tests/python -q` (`cargo xtask test` does both
steps' second half when `.venv` exists)."""

from __future__ import annotations

import os
import sys
import pathlib
import types

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# The offline workers as their backend plugins assemble them when built
# (src/lib.rs: `WORKER_SCRIPT = concat!(worker_protocol.py, <engine part>)`).
WORKER_PROTOCOL = REPO / "plugins" / "backend-common" / "worker_protocol.py"
ENGINE_PARTS = {
    "pytorch": REPO / "plugins" / "backend-pytorch" / "pytorch_worker.py",
    "vllm": REPO / "plugins" / "backend-vllm" / "vllm_worker.py",
    "trtllm": REPO / "plugins" / "backend-trtllm" / "trtllm_worker.py",
}


def worker_source(engine: str) -> str:
    """The one script the kernel writes for `engine`'s offline worker: the
    shared protocol module, then the engine's part."""
    return WORKER_PROTOCOL.read_text() + ENGINE_PARTS[engine].read_text()


def write_worker(engine: str, directory: pathlib.Path) -> pathlib.Path:
    """The assembled worker, written as the kernel writes it: `<engine>_worker.py`."""
    path = pathlib.Path(directory) / ENGINE_PARTS[engine].name
    path.write_text(worker_source(engine))
    return path


def load_worker(engine: str) -> types.ModuleType:
    """The assembled worker as a module (its `__main__` guard does not run)."""
    name = ENGINE_PARTS[engine].stem
    module = types.ModuleType(name)
    module.__file__ = str(ENGINE_PARTS[engine])
    exec(compile(worker_source(engine), f"<assembled {name}.py>", "exec"), module.__dict__)
    return module

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
