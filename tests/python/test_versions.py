"""The environment record's software versions: every offline worker carries
the same `software_versions` function as the probe llem runs for server
engines (kernel/src/engine/versions_probe.py), and the probe prints what this
Python really has installed."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from conftest import REPO, expected_versions

PROBE = REPO / "kernel" / "src" / "engine" / "versions_probe.py"
WORKERS = [
    REPO / "plugins" / "backend-pytorch" / "pytorch_worker.py",
    REPO / "plugins" / "backend-vllm" / "vllm_worker.py",
    REPO / "plugins" / "backend-trtllm" / "trtllm_worker.py",
]


def function_source(path, name="software_versions"):
    source = path.read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(source, node)
    raise AssertionError(f"{path} has no function {name}")


@pytest.mark.parametrize("worker", WORKERS, ids=lambda p: p.name)
def test_every_worker_carries_the_probes_function_verbatim(worker):
    assert function_source(worker) == function_source(PROBE)


def test_the_probe_prints_this_pythons_versions():
    done = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    try:
        import torch
    except ImportError:
        torch = None
    assert got == expected_versions(torch)
    assert got["python"] == "{}.{}.{}".format(*sys.version_info[:3])


def test_without_torch_the_probe_still_answers(tmp_path):
    """A Python where `import torch` fails (a broken install, or none): the
    package versions still come from metadata, and no cuda/devices keys."""
    (tmp_path / "torch.py").write_text("raise ImportError('broken torch')\n")
    done = subprocess.run(
        [sys.executable, str(PROBE)], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert "cuda" not in got and "devices" not in got
    assert got["python"] == "{}.{}.{}".format(*sys.version_info[:3])
