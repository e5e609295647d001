"""The C kernels checked from C, natively and, where the tools exist, for AArch64 under qemu."""

import shutil

import pytest

from native_build import CSRC, build_and_run

SOURCES = ["base/cpu_features.c", "crc32c/crc32c_dispatch.c", "crc32c/crc32c_portable.c", "crc32c/crc32c_sse42.c",
           "crc32c/crc32c_pclmul.c", "crc32c/crc32c_vpclmul.c", "crc32c/crc32c_armv8.c"]

pytestmark = pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests")


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_every_kernel_matches_portable_from_c(tmp_path):
    out = build_and_run(tmp_path, "crc32c_selftest", SOURCES)
    assert "portable: 0 of" in out


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu qemu-user)",
)
def test_armv8_kernel_under_qemu(tmp_path):
    out = build_and_run(tmp_path, "crc32c_selftest", SOURCES, cc="aarch64-linux-gnu-gcc",
                        runner=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"))
    assert "armv8: 0 of" in out and "selected: armv8" in out
