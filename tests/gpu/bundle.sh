#!/usr/bin/env bash
# Build what the GPU validation needs and put it in .gpu/ at the repository root.
#
# Run HERE, on a development machine with the Rust toolchain and network access to PyPI:
#
#     bash tests/gpu/bundle.sh
#
# The GPU machine gets a copy of the git working tree plus the ignored folder `.gpu`
# (the device tool's `carry: [".gpu"]`), has no Rust toolchain and no network, so
# everything it runs that is not in git must be in .gpu/:
#
#   .gpu/llem             the release binary, stripped (136 MB with debug info, ~22 MB without)
#   .gpu/plugins/         the release plugins (native ones stripped of debug info)
#   .gpu/whl/             Zeus, the reference we compare against, as a wheel (the GPU image
#                         lacks it); its dependencies that ZeusMonitor imports are already there
#   .gpu/MANIFEST.txt     git commit, build date and sizes, so the results name what was measured
#
# Everything carried must stay under 64 MiB (the device tool's limit, working tree included);
# this script fails above 55 MiB to leave room for the tree.
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
LIMIT_MIB=55
BUNDLE=.gpu

# Keep the bundle out of git without touching .gitignore (others own it).
EXCLUDE="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$EXCLUDE")"
touch "$EXCLUDE"
grep -qxF "/$BUNDLE/" "$EXCLUDE" || echo "/$BUNDLE/" >>"$EXCLUDE"

echo "== cargo xtask build --release"
cargo xtask build --release

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/plugins" "$BUNDLE/whl"

echo "== copying llem and plugins (stripped)"
# The binary needs no symbols of its own at run time: strip all of it.
strip -o "$BUNDLE/llem" target/release/llem
# Native plugins are shared objects: drop debug info only, keep their symbol tables.
for plugin in target/release/plugins/*; do
  case "$plugin" in
  *.so) objcopy --strip-debug "$plugin" "$BUNDLE/plugins/$(basename "$plugin")" ;;
  *) cp "$plugin" "$BUNDLE/plugins/" ;;
  esac
done
chmod +x "$BUNDLE/llem"

# The GPU machine runs a newer distribution than this one (Ubuntu 24.04, glibc 2.39, as of
# 2026-11); a binary that needs a newer glibc than it has would not start there.
glibc_needed=$(objdump -T "$BUNDLE/llem" "$BUNDLE"/plugins/*.so 2>/dev/null |
  grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "newest glibc symbol needed: ${glibc_needed:-none}"

echo "== downloading zeus==$ZEUS_VERSION for CPython 3.12"
python3 -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 \
  -d "$BUNDLE/whl" "zeus==$ZEUS_VERSION"

{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!tests/gpu' || echo ' (+ uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), $(ldd --version | head -1)"
  echo "llem: $("$BUNDLE/llem" --version 2>/dev/null || echo '?')"
  echo "newest glibc symbol needed: ${glibc_needed:-none}"
  echo "files:"
  (cd "$BUNDLE" && find . -type f ! -name MANIFEST.txt -printf '  %p %s\n' | sort)
} >"$BUNDLE/MANIFEST.txt"
cat "$BUNDLE/MANIFEST.txt"

bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "bundle: $BUNDLE is $mib MiB ($bytes bytes); limit ${LIMIT_MIB} MiB"
if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "error: the bundle is over ${LIMIT_MIB} MiB; the device tool carries 64 MiB at most" >&2
  exit 1
fi
echo "next: the device tool's run with carry [\".gpu\"] and command: bash tests/gpu/run.sh"
