"""The native core builds for FreeBSD, OpenBSD and NetBSD: every C file of the core cross-compiled
for x86-64 with zig's clang and each system's headers (which zig ships), warnings as errors. No
wheel is built for them and nothing can run here, but the core has branches of its own there (the
kqueue poller, FreeBSD's _umtx_op waits, the sleeping fallback, OpenBSD's lack of sigtimedwait):
a call or constant a system lacks fails this test rather than a user's build."""

import concurrent.futures
import os

import pytest

pytest.importorskip("ziglang", reason="cross-compiling needs the ziglang package (the test extra, where it has wheels)")

from native_build import CSRC
from test_cross_macos import FLAGS, openssl_headers, zig

pytestmark = pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests")

TARGETS = ["x86_64-freebsd", "x86_64-openbsd", "x86_64-netbsd"]


@pytest.fixture(scope="module")
def zig_env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("zig-cache-bsd")  # (see test_cross_macos.py: a fresh cache)
    return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(cache)}


@pytest.mark.parametrize("target", TARGETS)
def test_every_c_file_compiles_for_the_bsds(tmp_path, zig_env, target):
    ssl = openssl_headers(tmp_path)
    core = sorted(p for p in CSRC.rglob("*.c") if not p.name.endswith("_win.c"))  # (Windows' own files)

    def compile_one(src):
        obj = tmp_path / src.relative_to(CSRC).with_suffix(".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        r = zig(["-target", target, *FLAGS, "-isystem", str(ssl), "-c", str(src), "-o", str(obj)], zig_env)
        return src, r.stderr if r.returncode else None

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # each job is a process
        results = list(pool.map(compile_one, core))
    failed = {src: err for src, err in results if err is not None}
    assert not failed, "\n".join(f"--- {s.relative_to(CSRC)}\n{err}" for s, err in failed.items())
    assert len(results) > 40  # (some 60 files: the glob found them)
