"""The poller's backends, checked from C under AddressSanitizer/UBSan over real socketpairs."""

import shutil
import sys

import pytest

from native_build import CSRC, SANITIZE, build_and_run
from pollers import NATIVE_POLLER

pytestmark = [
    pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX backends"),
]

BACKENDS = ["poll"] + ([NATIVE_POLLER] if NATIVE_POLLER else [])
SOURCES = ["net/poller.c", "net/poller_kqueue.c", "net/netio.c", "net/probe.c", "net/sockaddr.c"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_poller_backend(tmp_path, backend):
    out = build_and_run(tmp_path, "poller_selftest", SOURCES, args=[backend], flags=SANITIZE)
    assert f"backend: {backend}" in out and "0 failures" in out
