#!/usr/bin/env bash
# Install the peer benchmark clients that bench/side_by_side.py runs beside
# llem, each in a venv of its own (their dependencies conflict), from PyPI:
#   GuideLLM 0.8.1  -> $PEER_VENV/bin/guidellm
#   AIPerf 0.13.0   -> $PEER_VENV/aiperf-venv/bin/aiperf
# PEER_VENV defaults to /work/peer-venv. ~3 GB (GuideLLM pulls torch).
# `vllm bench serve` (CUDA wheels) and HF inference-benchmarker (not on
# crates.io) are not installed here; side_by_side.py reports them skipped.
set -euo pipefail
venv="${PEER_VENV:-/work/peer-venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q guidellm==0.8.1
python3 -m venv "$venv/aiperf-venv"
"$venv/aiperf-venv/bin/pip" install -q aiperf==0.13.0
"$venv/bin/guidellm" --version
"$venv/aiperf-venv/bin/aiperf" --version
