#!/usr/bin/env bash
# Fuzzes one target under AddressSanitizer and UBSan, with libFuzzer seeing the native core's
# branches. Needs the package built with FASTMSG_FUZZ=1 (Clang) and Clang's runtimes:
#   FASTMSG_FUZZ=1 pip install --no-build-isolation --no-deps --force-reinstall .
#   fuzz/run_asan.sh TARGET [libFuzzer options...]      e.g.  fuzz/run_asan.sh session -runs=500000
# New inputs go to a work directory (FUZZ_WORK, default a temporary one), never into the
# committed corpus; merge them in with -merge=1 when a run found something worth keeping.
set -euo pipefail
target=$1
shift
here="$(cd "$(dirname "$0")" && pwd)"
work="${FUZZ_WORK:-$(mktemp -d)}"
mkdir -p "$work/$target" "$work/$target-crashes"
. "$here/sanitizer_env.sh"
# Leaks are checked by leaks.sh, which ends the Receiver first; libFuzzer exits from C.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:verify_asan_link_order=0:${ASAN_OPTIONS:-}"
exec "${PYTHON:-python}" "$here/fuzz_$target.py" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$work/$target-crashes/" "$@" "$work/$target" "$here/corpus/$target"
