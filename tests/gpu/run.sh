#!/usr/bin/env bash
# The GPU validation in one command. Run THERE, on a machine with an NVIDIA GPU, from a copy
# of the working tree that carries .gpu/ (made here by `bash tests/gpu/bundle.sh`):
#
#     bash tests/gpu/run.sh [validate.py options, e.g. --load-s 60]
#
# Needs: nvidia-smi and the NVIDIA driver, python3 with torch (CUDA), numpy and nvidia-ml-py.
# No network, no Rust. Zeus comes as a wheel in .gpu/whl and is installed into /tmp/site.
#
# Writes into $OUT when set (the device tool's result folder), else tests/gpu/out/:
#   run.log  everything printed here     results.json  all figures
#   results.md  table for docs/validation.md    traces.csv  10 Hz power/clock/temperature
#   llem.jsonl  llem monitor's output     llem.stderr  llem monitor's diagnostics
# (six files: the device tool brings back eight at most.)
#
# Exit status: 0 goal met; 1 goal missed; 2 could not measure (no GPU, llem failed, ...);
# 3 llem agrees with NVML but Zeus could not be run, so the goal is only half checked.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT_DIR=${OUT:-$ROOT/tests/gpu/out}
mkdir -p "$OUT_DIR"

main() {
echo "== tests/gpu/run.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
if [ ! -x .gpu/llem ] || [ ! -d .gpu/plugins ]; then
  echo "error: .gpu/llem or .gpu/plugins is missing: run 'bash tests/gpu/bundle.sh' on the"
  echo "       development machine and carry .gpu to this one"
  return 2
fi
[ -f .gpu/MANIFEST.txt ] && cat .gpu/MANIFEST.txt

echo "== nvidia-smi"
if ! nvidia-smi; then
  echo "error: nvidia-smi failed: no NVIDIA GPU or driver here"
  return 2
fi
nvidia-smi --query-gpu=index,name,uuid,driver_version,vbios_version,pstate,power.limit,power.default_limit,clocks.max.sm,temperature.gpu,persistence_mode,mig.mode.current --format=csv || true
echo "kernel: $(uname -r)"
[ -r /proc/driver/nvidia/version ] && cat /proc/driver/nvidia/version

echo "== installing carried wheels into /tmp/site"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".gpu/whl/*.whl" >/dev/null; then
  # --no-deps: the GPU image already has what ZeusMonitor imports (see bundle.sh); a failed
  # install is not fatal: validate.py then reports Zeus as missing and still compares llem
  # with NVML.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl || echo "warning: installing the wheels failed"
else
  echo "warning: no wheels in .gpu/whl: Zeus will be missing"
fi
python3 - <<'EOF' || true
import importlib.metadata as m, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "numpy", "nvidia-ml-py", "zeus", "scikit-learn", "pandas"):
    try:
        print(f"  {name} {m.version(name)}")
    except m.PackageNotFoundError:
        print(f"  {name} MISSING")
EOF

echo "== llem env (what llem's plugins find here)"
export LLEM_PLUGIN_PATH="$ROOT/.gpu/plugins"
export LLEM_CACHE_DIR=${LLEM_CACHE_DIR:-/tmp/llem-cache}
.gpu/llem --version || true
timeout 60 .gpu/llem env || echo "(llem env exited $?)"

echo "== validate.py"
PYTHONUNBUFFERED=1 python3 tests/gpu/validate.py --out "$OUT_DIR" \
  --llem "$ROOT/.gpu/llem" --plugin-path "$ROOT/.gpu/plugins" "$@"
status=$?
echo "== validate.py exited $status; files in $OUT_DIR:"
ls -la "$OUT_DIR"
return $status
}

# Everything goes to the terminal and to run.log; the exit status is main's.
main "$@" 2>&1 | tee "$OUT_DIR/run.log"
exit "${PIPESTATUS[0]}"
