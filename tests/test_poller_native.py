"""The poller's backends, checked from C under AddressSanitizer/UBSan over real socketpairs."""

import shutil
import sys

import pytest

from native_build import CSRC, SANITIZE, build_and_run

pytestmark = [
    pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests"),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler"),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX backends"),
]

BACKENDS = ["poll"] + (["epoll"] if sys.platform.startswith("linux") else [])


@pytest.mark.parametrize("backend", BACKENDS)
def test_poller_backend(tmp_path, backend):
    out = build_and_run(tmp_path, "poller_selftest", ["net/poller.c", "net/netio.c"], args=[backend], flags=SANITIZE)
    assert f"backend: {backend}" in out and "0 failures" in out
