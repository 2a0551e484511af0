#!/usr/bin/env bash
# Build what the GPU validation runs and put it in .gpu/ at the repository root.
#
# Run HERE, on a development machine with the Rust toolchain:
#
#     bash tests/gpu/bundle.sh [--profile release|debug] [--no-build] [--no-zeus] [--out DIR]
#
# The GPU machine gets a copy of the git working tree plus the ignored folder `.gpu`
# (the device tool's `carry: [".gpu"]`), has no Rust toolchain and no network, so
# everything it runs that is not in git must be in .gpu/. Only what runs there goes in:
#
#   .gpu/llem                    the binary, stripped (~22 MB release)
#   .gpu/plugins/energy-nvml.so  the plugin the validation loads (`llem monitor
#                                --plugins nvml`), debug info stripped
#   .gpu/plugins/backend-pytorch.wasm, dataset-jsonl.wasm
#                                what the offline-overhead step (issue #12 goal 5:
#                                bench/offline_overhead.py on CUDA) runs besides energy-nvml
#   .gpu/whl/                    Zeus, the reference we compare against, as a wheel (the GPU
#                                image lacks it); its dependencies that ZeusMonitor imports are
#                                already there
#   .gpu/MANIFEST.txt            git commit, build date and sizes, so the results name what was
#                                measured
#
# The scripts (run.sh, validate.py) travel in the git tree.
#
# Options:
#   --profile P   cargo profile to build and pack (release, the default; debug for tests)
#   --no-build    pack what target/<profile> already holds (`llem` and libenergy_nvml.so;
#                 the two WASM plugins from target/wasm32-wasip2/<profile>, when there)
#   --no-zeus     do not download the Zeus wheel (no PyPI here; the run then checks llem
#                 against NVML only and exits 3 when llem is within the goal)
#   --out DIR     where to put the bundle (default .gpu at the repository root; run.sh reads
#                 $LLEM_GPU_BUNDLE for another place)
#
# Everything carried must stay under 64 MiB (the device tool's limit, working tree included);
# this script prints the bundle's size and fails above LIMIT_MIB (default 48) to leave room for
# the tree.
#
# Exit status: 0 bundle made; 1 build, copy or download failed; 2 bundle over the limit;
# 64 bad option.
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$ROOT"

# Zeus: 0.16.0 is pure Python (py3-none-any) and declares Requires-Python >=3.9, so it
# installs on the GPU image's Python 3.12. Its Requires-Dist: numpy, pandas, scikit-learn,
# nvidia-ml-py, pydantic, rich, tyro, httpx, amdsmi, python-dateutil. The GPU image has all of
# them except pydantic, tyro and amdsmi, and none of those three is imported by
# `zeus.monitor.ZeusMonitor` (pydantic and tyro serve the optimizers and CLIs; amdsmi is
# imported inside a try/except and only needed for AMD GPUs), so the wheel alone is enough.
# validate.py imports ZeusMonitor and reports Zeus as missing, with the reason, if that ever
# stops being true.
ZEUS_VERSION=${ZEUS_VERSION:-0.16.0}
LIMIT_MIB=${LIMIT_MIB:-48}
PROFILE=release
BUILD=1
ZEUS=1
BUNDLE=.gpu
while [ $# -gt 0 ]; do
  case "$1" in
  --profile) PROFILE=${2:?--profile needs release or debug}; shift 2 ;;
  --no-build) BUILD=0; shift ;;
  --no-zeus) ZEUS=0; shift ;;
  --out) BUNDLE=${2:?--out needs a directory}; shift 2 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "error: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
case "$PROFILE" in
release) PROFILE_FLAG=(--release) ;;
debug) PROFILE_FLAG=() ;;
*) echo "error: --profile takes release or debug, not $PROFILE" >&2; exit 64 ;;
esac
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE/llem
NVML=$TARGET/$PROFILE/libenergy_nvml.so
WASM_DIR=$TARGET/wasm32-wasip2/$PROFILE
# The offline-overhead step's WASM plugins: file in .gpu/plugins, crate.
OFFLINE_PLUGINS=("backend-pytorch backend_pytorch" "dataset-jsonl dataset_jsonl")

# Keep the default bundle out of git without touching .gitignore (others own it).
if [ "$BUNDLE" = .gpu ]; then
  EXCLUDE="$(git rev-parse --git-path info/exclude)"
  mkdir -p "$(dirname "$EXCLUDE")"
  touch "$EXCLUDE"
  grep -qxF "/$BUNDLE/" "$EXCLUDE" || echo "/$BUNDLE/" >>"$EXCLUDE"
fi

if [ "$BUILD" = 1 ]; then
  # Only the binary and the one plugin the validation loads: not every plugin.
  echo "== cargo build ${PROFILE_FLAG[*]} -p llem-cli -p energy-nvml"
  cargo build "${PROFILE_FLAG[@]}" -p llem-cli -p energy-nvml
  echo "== cargo build ${PROFILE_FLAG[*]} --target wasm32-wasip2 -p backend-pytorch -p dataset-jsonl"
  cargo build "${PROFILE_FLAG[@]}" --target wasm32-wasip2 -p backend-pytorch -p dataset-jsonl
fi
for f in "$BIN" "$NVML"; do
  if [ ! -f "$f" ]; then
    echo "error: $f is missing: build it (cargo build ${PROFILE_FLAG[*]} -p llem-cli -p energy-nvml)" >&2
    exit 1
  fi
done

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/plugins"

echo "== copying llem and energy-nvml (stripped)"
# The binary needs no symbols of its own at run time: strip all of it.
strip -o "$BUNDLE/llem" "$BIN"
chmod +x "$BUNDLE/llem"
# A native plugin is a shared object: drop debug info only, keep its symbol table. Its name in
# the plugin directory is the package's, as `cargo xtask build` installs it.
objcopy --strip-debug "$NVML" "$BUNDLE/plugins/energy-nvml.so"
for pair in "${OFFLINE_PLUGINS[@]}"; do
  read -r name crate <<<"$pair"
  if [ -f "$WASM_DIR/$crate.wasm" ]; then
    cp "$WASM_DIR/$crate.wasm" "$BUNDLE/plugins/$name.wasm"
  else
    # Only --no-build gets here: the validation runs without it, the offline step says so.
    echo "warning: $WASM_DIR/$crate.wasm is missing: the offline-overhead step will be skipped"
  fi
done

# The GPU machine runs a newer distribution than this one (Ubuntu 24.04, glibc 2.39, as of
# 2026-11); a binary that needs a newer glibc than it has would not start there.
glibc_needed=$(objdump -T "$BUNDLE/llem" "$BUNDLE"/plugins/*.so 2>/dev/null |
  grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "newest glibc symbol needed: ${glibc_needed:-none}"

if [ "$ZEUS" = 1 ]; then
  echo "== downloading zeus==$ZEUS_VERSION for CPython 3.12"
  mkdir -p "$BUNDLE/whl"
  python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -d "$BUNDLE/whl" "zeus==$ZEUS_VERSION"
else
  echo "== no Zeus wheel (--no-zeus): the run compares llem with NVML only"
fi

{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!tests/gpu' || echo ' (+ uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(ldd --version | head -1), profile $PROFILE"
  echo "llem: $("$BUNDLE/llem" --version 2>/dev/null || echo '?')"
  echo "newest glibc symbol needed: ${glibc_needed:-none}"
  echo "files:"
  (cd "$BUNDLE" && find . -type f ! -name MANIFEST.txt -printf '  %p %s\n' | sort)
} >"$BUNDLE/MANIFEST.txt"
cat "$BUNDLE/MANIFEST.txt"

bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "bundle: $BUNDLE is $mib MiB ($bytes bytes); limit ${LIMIT_MIB} MiB (the device tool carries 64 MiB)"
if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "error: the bundle is over ${LIMIT_MIB} MiB; the device tool carries 64 MiB at most, tree included" >&2
  exit 2
fi
echo "next: the device tool's run with carry [\".gpu\"] and command: bash tests/gpu/run.sh"
