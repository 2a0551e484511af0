"""The environment record's software versions: the probe llem runs for server
engines is the offline workers' own protocol module with
kernel/src/engine/versions_probe.py appended (kernel/src/engine/versions.rs,
`PROBE`), so both modes record the same keys from one `software_versions`;
and the probe prints what this Python really has installed."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, WORKER_PROTOCOL, expected_versions

PROBE_END = REPO / "kernel" / "src" / "engine" / "versions_probe.py"


def probe_source():
    """The probe as the kernel assembles it."""
    return WORKER_PROTOCOL.read_text() + PROBE_END.read_text()


def run_probe(**kwargs):
    # As the kernel runs it: `python -c <probe>`.
    return subprocess.run([sys.executable, "-c", probe_source()], capture_output=True, text=True, **kwargs)


def test_the_probe_prints_this_pythons_versions():
    done = run_probe(timeout=120)
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
    done = run_probe(timeout=60, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert "cuda" not in got and "devices" not in got
    assert got["python"] == "{}.{}.{}".format(*sys.version_info[:3])
