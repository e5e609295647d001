#!/usr/bin/env bash
# Replays a target over its corpus and seeded mutations under ASan with LeakSanitizer on, after
# which the target ends its Receiver: any leak reported is memory the native core lost.
#   fuzz/leaks.sh TARGET [MUTATIONS]        (the package built with FASTMSG_FUZZ=1)
set -euo pipefail
target=$1
here="$(cd "$(dirname "$0")" && pwd)"
work="${FUZZ_WORK:-$(mktemp -d)}"
. "$here/sanitizer_env.sh"
export ASAN_OPTIONS="detect_leaks=1:verify_asan_link_order=0:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
exec "${PYTHON:-python}" "$here/replay.py" "$target" "$here/corpus/$target" --mutations "${2:-20000}"
