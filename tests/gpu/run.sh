#!/usr/bin/env bash
# The GPU validation in one command. Run THERE, on a machine with an NVIDIA GPU, from a copy
# of the working tree that carries .gpu/ (made here by `bash tests/gpu/bundle.sh`):
#
#     bash tests/gpu/run.sh [validate.py options, e.g. --load-s 60]
#
# Needs: nvidia-smi and the NVIDIA driver, python3 with torch (CUDA), numpy and nvidia-ml-py.
# No network, no Rust. Zeus comes as a wheel in .gpu/whl and is installed into /tmp/site.
# The bundle is .gpu/ at the repository root, or $LLEM_GPU_BUNDLE.
#
# Bounded: validate.py gets $GPU_DEADLINE_S seconds (default 240) and stops itself when they
# run out (exit 4); `timeout` kills it 30 s after that if it hangs; `llem env` and the wheel
# install have 30 s and 60 s; the offline-overhead step after it has $GPU_OFFLINE_S (240).
# The whole script ends within ~10 min, the device tool's limit per command (about 1.5 + 3
# min in practice).
#
# Writes into $OUT when set (the device tool's result folder), else tests/gpu/out/:
#   run.log  everything printed here     results.json  all figures
#   results.md  table for docs/validation.md    traces.csv  10 Hz power/clock/temperature
#   llem.jsonl  llem monitor's output     llem.stderr  llem monitor's diagnostics
#   offline_overhead.json  the offline-overhead step's figures (see offline_overhead below)
# (seven files: the device tool brings back eight at most.)
#
# Exit status: 0 goal met; 1 goal missed; 2 could not measure (no GPU, no NVML, llem failed or
# gave no figure, any error); 3 llem agrees with NVML but Zeus could not be run, so the goal is
# only half checked; 4 out of time. results.json is written on every one of these paths.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT_DIR=${OUT:-$ROOT/tests/gpu/out}
BUNDLE=${LLEM_GPU_BUNDLE:-$ROOT/.gpu}
DEADLINE_S=${GPU_DEADLINE_S:-240}
mkdir -p "$OUT_DIR"
# A results.json from an earlier run must not pass for this one's.
rm -f "$OUT_DIR/results.json" "$OUT_DIR/results.md"

# results.json for a failure before validate.py could write its own: exit status and why.
fail_json() {
  local status=$1 why=$2
  why=${why//\\/\\\\}
  why=${why//\"/\\\"}
  printf '{\n  "exit_status": %d,\n  "error": "%s",\n  "verdict": "could not measure: %s",\n  "meta": {},\n  "windows": []\n}\n' \
    "$status" "$why" "$why" >"$OUT_DIR/results.json"
}

main() {
echo "== tests/gpu/run.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
if [ ! -x "$BUNDLE/llem" ] || [ ! -d "$BUNDLE/plugins" ]; then
  echo "error: $BUNDLE/llem or $BUNDLE/plugins is missing: run 'bash tests/gpu/bundle.sh' on the"
  echo "       development machine and carry .gpu to this one"
  fail_json 2 "the bundle ($BUNDLE/llem, $BUNDLE/plugins) is missing: run tests/gpu/bundle.sh"
  return 2
fi
[ -f "$BUNDLE/MANIFEST.txt" ] && cat "$BUNDLE/MANIFEST.txt"

echo "== nvidia-smi"
if ! timeout 30 nvidia-smi; then
  echo "error: nvidia-smi failed: no NVIDIA GPU or driver here"
  fail_json 2 "nvidia-smi failed: no NVIDIA GPU or driver here"
  return 2
fi
timeout 30 nvidia-smi --query-gpu=index,name,uuid,driver_version,vbios_version,pstate,power.limit,power.default_limit,clocks.max.sm,temperature.gpu,persistence_mode,mig.mode.current --format=csv || true
echo "kernel: $(uname -r)"
[ -r /proc/driver/nvidia/version ] && cat /proc/driver/nvidia/version

echo "== installing carried wheels into /tmp/site"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
if compgen -G "$BUNDLE/whl/*.whl" >/dev/null; then
  # --no-deps: the GPU image already has what ZeusMonitor imports (see bundle.sh); a failed
  # install is not fatal: validate.py then reports Zeus as missing and still compares llem
  # with NVML.
  timeout 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$BUNDLE"/whl/*.whl || echo "warning: installing the wheels failed"
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
export LLEM_PLUGIN_PATH="$BUNDLE/plugins"
export LLEM_CACHE_DIR=${LLEM_CACHE_DIR:-/tmp/llem-cache}
timeout 10 "$BUNDLE/llem" --version || true
timeout 30 "$BUNDLE/llem" env || echo "(llem env exited $?)"

echo "== validate.py (budget ${DEADLINE_S} s)"
PYTHONUNBUFFERED=1 timeout -k 10 $((DEADLINE_S + 30)) python3 tests/gpu/validate.py \
  --out "$OUT_DIR" --llem "$BUNDLE/llem" --plugin-path "$BUNDLE/plugins" \
  --deadline-s "$DEADLINE_S" "$@"
status=$?
case $status in
124 | 137)
  echo "error: validate.py did not stop within its ${DEADLINE_S} s budget and was killed"
  [ -f "$OUT_DIR/results.json" ] || fail_json 4 "validate.py was killed after ${DEADLINE_S} + 30 s"
  status=4
  ;;
0 | 1 | 2 | 3 | 4) ;;
*)
  echo "error: validate.py exited $status (not one of its documented codes)"
  [ -f "$OUT_DIR/results.json" ] || fail_json 2 "validate.py exited $status without results"
  status=2
  ;;
esac
[ -f "$OUT_DIR/results.json" ] || { fail_json 2 "validate.py wrote no results.json"; status=2; }
echo "== validate.py exited $status"
offline_overhead
echo "== files in $OUT_DIR:"
ls -la "$OUT_DIR"
return $status
}

# Issue #12 goal 5 on this GPU: tokens/s of llem's PyTorch worker under `llem run` against
# the same engine driven bare (bench/offline_overhead.py), CUDA, bfloat16, energy from NVML.
# Its figures go to run.log and offline_overhead.json; they do not change the exit status
# (the validation's). GPU_OFFLINE=0 skips it; GPU_OFFLINE_S bounds it (default 240 s).
offline_overhead() {
  if [ "${GPU_OFFLINE:-1}" = 0 ]; then
    echo "== offline-overhead step skipped (GPU_OFFLINE=0)"
    return 0
  fi
  local missing=""
  for f in backend-pytorch.wasm dataset-jsonl.wasm energy-nvml.so; do
    [ -f "$BUNDLE/plugins/$f" ] || missing="$missing $f"
  done
  if [ -n "$missing" ]; then
    echo "== offline-overhead step skipped: .gpu/plugins lacks$missing (bundle.sh packs them)"
    return 0
  fi
  local budget=${GPU_OFFLINE_S:-240}
  echo "== offline overhead (bench/offline_overhead.py, budget ${budget} s)"
  PYTHONUNBUFFERED=1 timeout -k 10 "$budget" python3 bench/offline_overhead.py \
    --llem "$BUNDLE/llem" --plugins "$BUNDLE/plugins" --python "$(command -v python3)" \
    --device cuda:0 --dtype bfloat16 --energy nvml --sizes gpu \
    --repeat "${GPU_OFFLINE_REPEAT:-3}" --json "$OUT_DIR/offline_overhead.json"
  local rc=$?
  [ $rc = 0 ] || echo "warning: the offline-overhead step exited $rc (timeout: 124/137)"
}

# Everything goes to the terminal and to run.log; the exit status is main's.
main "$@" 2>&1 | tee "$OUT_DIR/run.log"
exit "${PIPESTATUS[0]}"
