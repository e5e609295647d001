"""The C core built for Windows x86_64 with mingw-w64: every source file compiles warning-free (and,
with zig's clang, in an approximation of clang-cl's dialect, which the transport extension is
compiled in on Windows), and the native self-tests (CRC32C, the ring across threads, SharedRing across processes, the WSAPoll
poller over loopback TCP, the wire protocol against docs/protocol.md's vectors, how TLS finds the
ssl module's OpenSSL, the engine's sender and receiver over loopback TCP) run under wine.
Compile-only: AF_UNIX (wine 8 has none: only its absence, EAFNOSUPPORT, is run), TLS and
authentication (no Windows OpenSSL here: the host's headers stand in for OpenSSL's, stand-in DLLs
for libssl, and the engine's self-test links a stub for the HMACs)."""

import concurrent.futures
import glob
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from native_build import CSRC, HERE

MINGW = "x86_64-w64-mingw32-gcc"
WINE = shutil.which("wine64") or shutil.which("wine")
FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Werror=implicit-function-declaration", "-O2"]
CRC = ["base/cpu_features.c", "crc32c/crc32c_dispatch.c", "crc32c/crc32c_portable.c", "crc32c/crc32c_sse42.c",
       "crc32c/crc32c_pclmul.c", "crc32c/crc32c_vpclmul.c", "crc32c/crc32c_armv8.c"]
RING = ["ring/ring_wait.c", "base/futex.c", "base/futex_win.c"]

pytestmark = [
    pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests"),
    pytest.mark.skipif(shutil.which(MINGW) is None, reason=f"needs {MINGW} (Debian: gcc-mingw-w64-x86-64)"),
]
needs_wine = pytest.mark.skipif(WINE is None, reason="needs wine (Debian: wine64)")


@pytest.fixture(scope="module")
def openssl_headers(tmp_path_factory):
    """An include directory holding only the host's OpenSSL headers (which the build needs anyway),
    so that the cross compiler finds them and nothing else of the host's."""
    found = [d for d in ["/usr/include/openssl", "/usr/local/include/openssl", *glob.glob("/usr/include/*/openssl")]
             if os.path.isdir(d)]
    assert found, "OpenSSL's headers are needed (Debian: libssl-dev)"
    root = tmp_path_factory.mktemp("openssl-include")
    (root / "openssl").mkdir()
    for d in found:
        for f in pathlib.Path(d).iterdir():
            if not (root / "openssl" / f.name).exists():
                (root / "openssl" / f.name).symlink_to(f)
    return root


def compile_one(path, out_dir, include):
    """(object file, None) or (None, the compiler's complaint)."""
    rel = path.relative_to(CSRC).as_posix()
    obj = out_dir / (rel.replace("/", "_") + ".o")
    cmd = [MINGW, *FLAGS, f"-I{CSRC}", "-idirafter", str(include), "-c", str(path), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return (obj, None) if r.returncode == 0 else (None, f"{rel}:\n{r.stderr}")


@pytest.fixture(scope="module")
def objects(tmp_path_factory, openssl_headers):
    """Every .c file under csrc/ compiled for Windows, in parallel, once: {"net/netio_win.c": (obj,
    error)}. A file meant for another platform compiles to nothing (its own #if)."""
    out = tmp_path_factory.mktemp("win-objects")
    sources = sorted(CSRC.rglob("*.c"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda p: compile_one(p, out, openssl_headers), sources)
    return {p.relative_to(CSRC).as_posix(): r for p, r in zip(sources, results)}


def test_every_source_compiles_for_windows(objects):
    assert len(objects) > 60
    errors = [err for _, err in objects.values() if err]
    assert not errors, "\n".join(errors)


# The transport extension is compiled for Windows with clang-cl (setup.py). Its dialect is clang's
# with _MSC_VER defined (and __clang__, so the GCC builtins and attributes stay), against MSVC's
# headers. MSVC's headers are not here, and mingw-w64's break without __GNUC__, so this compiles
# every file with clang (zig's) for the Windows target, mingw-w64's headers, MS extensions and
# _MSC_VER defined: the _MSC_VER branches of the core, __atomic builtins, attributes and __typeof__
# all pass through clang for Windows under -Werror. What only MSVC's own headers and CRT could
# show is left to the Windows CI build.
CLANG_CL_DIALECT = ["-target", "x86_64-windows-gnu", "-fms-extensions", "-D_MSC_VER=1940", *FLAGS]
# clang's <intrin.h> in MSVC mode declares _setjmp as MSVC's setjmp.h does, which mingw-w64's
# setjmp.h contradicts; a freestanding compile leaves that declaration out (a header clash, not the
# core's).
FREESTANDING = {"base/cpu_features.c"}


@pytest.mark.skipif(importlib.util.find_spec("ziglang") is None, reason="needs the ziglang package (the test extra)")
def test_every_source_compiles_in_the_clang_cl_dialect(tmp_path, openssl_headers):
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(tmp_path / "cache"), "ZIG_LOCAL_CACHE_DIR": str(tmp_path / "cache")}

    def compile_one(path):
        rel = path.relative_to(CSRC).as_posix()
        extra = ["-ffreestanding"] if rel in FREESTANDING else []
        cmd = [sys.executable, "-m", "ziglang", "cc", *CLANG_CL_DIALECT, *extra, f"-I{CSRC}", "-idirafter",
               str(openssl_headers), "-c", str(path), "-o", str(tmp_path / (rel.replace("/", "_") + ".obj"))]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        return None if r.returncode == 0 else f"{rel}:\n{r.stderr}"

    sources = sorted(CSRC.rglob("*.c"))
    assert len(sources) > 60
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # each job is a process
        errors = [e for e in pool.map(compile_one, sources) if e]
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """Runs a Windows program under wine, in a prefix of this module's own: creating it (the first
    start) takes seconds, so it is done once. Its wineserver is stopped at the end."""
    env = {**os.environ, "WINEPREFIX": str(tmp_path_factory.mktemp("wineprefix")), "WINEDEBUG": "-all",
           "WINEDLLOVERRIDES": "mscoree,mshtml="}  # (no Mono or Gecko installer prompts)
    boot = subprocess.run([WINE, "wineboot", "--init"], env=env, capture_output=True, text=True, timeout=300)
    assert boot.returncode == 0, boot.stderr

    def run(exe, *args, timeout=120):
        r = subprocess.run([WINE, str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}{r.stderr}"
        return r.stdout

    yield run
    subprocess.run([shutil.which("wineserver") or "wineserver", "-k"], env=env, capture_output=True, timeout=60)


def build_exe(tmp_path, objects, program, sources, libs=(), extra=()):
    """tests/native/<program>.c (and tests/native/<extra>.c) linked with the objects of csrc/<sources>,
    as a static Windows executable."""
    assert all(objects[s][0] for s in sources), "a source does not compile (see the test above)"
    exe = tmp_path / f"{program}.exe"
    cmd = [MINGW, *FLAGS, f"-I{CSRC}", *(str(HERE / "native" / f"{p}.c") for p in (program, *extra)),
           *(str(objects[s][0]) for s in sources), "-static", "-o", str(exe), *libs]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return exe


@needs_wine
def test_crc32c_kernels_under_wine(tmp_path, objects, wine):
    out = wine(build_exe(tmp_path, objects, "crc32c_selftest", CRC))
    assert "portable: 0 of" in out and "disagree" in out


@needs_wine
@pytest.mark.parametrize("capacity", [64, 4096])
def test_ring_two_threads_under_wine(tmp_path, objects, wine, capacity):
    exe = build_exe(tmp_path, objects, "ring_selftest", RING, libs=["-lsynchronization"])
    assert "200000 records, 0 failures" in wine(exe, str(capacity), "200000")


@needs_wine
def test_shared_ring_across_processes_under_wine(tmp_path, objects, wine):
    exe = build_exe(tmp_path, objects, "shm_selftest", [*RING, "ring/shm_win.c", "ring/shm_layout.c"],
                    libs=["-lsynchronization"])
    assert "20000 records across processes, 0 failures" in wine(exe, "20000")


@needs_wine
def test_wsapoll_poller_under_wine(tmp_path, objects, wine):
    exe = build_exe(tmp_path, objects, "poller_selftest", ["net/poller_wsapoll.c", "net/poller_kqueue.c", "net/netio_win.c", "net/probe.c",
                                                          "net/sockaddr.c"],
                    libs=["-lws2_32"])
    out = wine(exe, "poll")
    assert "backend: wsapoll" in out and "0 failures" in out
    assert "af_unix: supported" in out or "af_unix: unsupported" in out  # (wine 8: unsupported, EAFNOSUPPORT)


@needs_wine
def test_protocol_vectors_under_wine(tmp_path, objects, wine):
    """Each frame the Windows build encodes is byte for byte the documented one."""
    doc = (HERE.parent / "docs" / "protocol.md").read_text()
    vectors = {name: re.sub(r"\s", "", body) for name, body in re.findall(r"```vector (\w+)\n(.*?)```", doc, re.S)}
    out = wine(build_exe(tmp_path, objects, "protocol_selftest", ["wire/protocol.c", *CRC]))
    encoded = dict(line.split() for line in out.splitlines() if line.split()[0] in vectors)
    assert set(encoded) == {"hello", "welcome", "rack", "ack", "ping", "pong", "close", "error", "data"}
    assert encoded == {name: vectors[name] for name in encoded}
    assert "0 failures" in out


@needs_wine
def test_openssl_found_through_the_modules_imports_under_wine(tmp_path, objects, wine):
    """net/dl_win.c, with two DLLs standing in for libssl and the ssl module that imports it."""
    src = str(HERE / "native" / "dl_selftest.c")
    for flag, out, more in [("-DFAKE_SSL", "libssl-fake.dll", []),
                            ("-DFAKE_MODULE", "dl_module.dll", ["libssl-fake.dll"])]:
        built = subprocess.run([MINGW, *FLAGS, "-shared", flag, src, *more, "-o", out], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stderr
    assert "0 failures" in wine(build_exe(tmp_path, objects, "dl_selftest", ["net/dl_win.c"]))


@needs_wine
def test_engine_over_loopback_tcp_under_wine(tmp_path, objects, wine):
    engine = [s for s in objects if s.split("/")[0] in ("engine", "net", "base", "crc32c")]
    exe = build_exe(tmp_path, objects, "engine_selftest", [*engine, *RING[:1], "wire/protocol.c", "wire/auth.c"],
                    libs=["-lws2_32", "-lsynchronization", "-lbcrypt"], extra=["auth_mac_stub"])
    out = wine(exe, "20000")
    assert "poller: wsapoll" in out and "20000 + 5000 messages over loopback TCP, a reconnect between, 0 failures" in out
