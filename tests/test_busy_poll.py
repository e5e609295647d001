"""busy_poll's adaptive decisions (engine/busy_poll.h), checked from C under AddressSanitizer/UBSan
with chosen wait and yield durations: what each mode looks for, and the backoff on a crowded CPU.
What it buys is measured, not asserted here (docs/architecture.md, "busy_poll")."""

import shutil
import sys

import pytest

from native_build import CSRC, SANITIZE, build_and_run

pytestmark = [
    pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler"),
    pytest.mark.skipif(sys.platform == "win32", reason="built with cc"),
]


def test_busy_poll_decisions(tmp_path):
    out = build_and_run(tmp_path, "busy_poll_selftest", ["base/futex.c", "engine/busy_poll.c"], flags=SANITIZE)
    assert "0 failures" in out
