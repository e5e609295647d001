"""The C kernels checked from C, natively and, where the tools exist, for AArch64 under qemu."""

import pathlib
import shutil
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
CSRC = REPO / "src" / "fastmsg" / "_core" / "csrc"
SOURCES = ["cpu_features.c", "crc32c_dispatch.c", "crc32c_portable.c", "crc32c_sse42.c",
           "crc32c_pclmul.c", "crc32c_vpclmul.c", "crc32c_armv8.c"]


def _build_and_run(cc, tmp_path, runner=()):
    exe = tmp_path / "crc32c_selftest"
    cmd = [cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}",
           str(HERE / "native" / "crc32c_selftest.c"), *(str(CSRC / s) for s in SOURCES), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    run = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests")
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_every_kernel_matches_portable_from_c(tmp_path):
    out = _build_and_run("cc", tmp_path)
    assert "0 of" in out and "portable: 0 of" in out


@pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None or shutil.which("qemu-aarch64") is None,
    reason="needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu qemu-user)",
)
def test_armv8_kernel_under_qemu(tmp_path):
    out = _build_and_run("aarch64-linux-gnu-gcc", tmp_path, runner=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"))
    assert "armv8: 0 of" in out and "selected: armv8" in out
