#!/usr/bin/env bash
# Create or update the Python environment for tests/python: `.venv` at the
# repository root, with CPU use of torch, transformers (incl. `transformers
# serve`) and pytest, from PyPI only. Idempotent: when `.venv` already matches
# requirements.txt (hash stamp) it only checks that torch imports, in ~2 s.
#
#   bash tests/python/setup-venv.sh          # uses $PYTHON or python3.11/python3
#
# See requirements.txt for why everything is pinned and installed --no-deps.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
requirements="$root/tests/python/requirements.txt"
stamp="$venv/.llem-requirements.sha256"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

want="$( { sha256sum "$requirements" | cut -d' ' -f1; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

check() {
    "$venv/bin/python" - <<'EOF'
import torch, transformers, pytest, fastapi, uvicorn, pynvml, pyarrow, polars, pandas  # noqa: F401
x = torch.randn(2, 2) @ torch.randn(2, 2)
print(f"venv ok: torch {torch.__version__}, transformers {transformers.__version__}, pytest {pytest.__version__}")
EOF
}

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    if check; then
        exit 0
    fi
    echo "setup-venv: $venv is stamped up to date but broken; reinstalling" >&2
fi

start=$(date +%s)
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
fi
rm -f "$stamp"
"$venv/bin/pip" install --disable-pip-version-check --no-input --progress-bar off \
    --no-deps --only-binary :all: -r "$requirements"
check
echo "$want" >"$stamp"
echo "setup-venv: done in $(($(date +%s) - start)) s ($(du -sh "$venv" | cut -f1))"
