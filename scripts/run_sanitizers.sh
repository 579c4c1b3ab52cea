#!/usr/bin/env bash
# Builds the C core with AddressSanitizer + UndefinedBehaviorSanitizer in a throw-away copy of
# the tree and runs the native test modules against it. Not part of CI (slow, needs gcc's
# libasan); run it after changing src/csrc. Usage: scripts/run_sanitizers.sh [pytest args]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$repo" ls-files -z --cached --others --exclude-standard | (cd "$repo" && xargs -0 cp --parents -t "$work")
cd "$work"

export XAYNET_NATIVE_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
export XAYNET_NATIVE_LDFLAGS="-fsanitize=address,undefined"
python3 setup.py -q build_ext --inplace >/dev/null
so=$(ls xaynet_sdk/_native/_xaynet_native*.so)
nm -D "$so" | grep -q __asan_report || { echo "sanitizers not compiled into $so" >&2; exit 1; }
nm -D "$so" | grep -q __ubsan_handle || { echo "UBSan not compiled into $so" >&2; exit 1; }
libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
# Python's own allocations are not instrumented; leak reports from the interpreter are noise.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
LD_PRELOAD="$libasan $libubsan" PYTHONPATH="$work" python3 -m pytest -q -p no:cacheprovider -n 0 \
  tests/test_native_differential.py tests/test_mask_vectors.py "$@"
