"""The ring's C core from two threads, natively under ASan/UBSan and for AArch64 under qemu."""

import shutil
import sys

import pytest

from native_build import CSRC, SANITIZE, build_and_run

pytestmark = [
    pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests"),
    pytest.mark.skipif(sys.platform == "win32", reason="uses pthreads"),
]
SOURCES = ["ring/ring_wait.c", "base/futex.c"]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("capacity", [64, 4096])
def test_two_threads_from_c(tmp_path, capacity):
    out = build_and_run(tmp_path, "ring_selftest", SOURCES, args=[str(capacity), "300000"],
                        flags=[*SANITIZE, "-pthread"])
    assert "300000 records, 0 failures" in out


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu qemu-user)",
)
def test_two_threads_on_aarch64_under_qemu(tmp_path):
    out = build_and_run(tmp_path, "ring_selftest", SOURCES, args=["256", "200000"], cc="aarch64-linux-gnu-gcc",
                        runner=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"), flags=["-pthread"])
    assert "200000 records, 0 failures" in out
