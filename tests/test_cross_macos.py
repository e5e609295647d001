"""The native core builds for macOS: every C file cross-compiled for x86-64 and arm64 with zig's
clang and Apple's headers (which zig ships), the C self-tests linked into macOS programs and the
whole core into a macOS shared library against the system library's real symbol list. Nothing can
run here; a Linux-only call, header or constant fails this test instead of a macOS build."""

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("ziglang", reason="cross-compiling needs the ziglang package (the test extra, where it has wheels)")

from native_build import CSRC, HERE
from test_poller_native import SOURCES as POLLER_SOURCES
from test_ring_native import SOURCES as RING_SOURCES

pytestmark = pytest.mark.skipif(not CSRC.exists(), reason="C sources are not next to the tests")

TARGETS = ["x86_64-macos", "aarch64-macos"]
MACHO_CPU = {"x86_64-macos": 0x01000007, "aarch64-macos": 0x0100000C}
FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Werror=implicit-function-declaration", "-O2", f"-I{CSRC}"]
# The self-tests and the sources they are built with.
PROGRAMS = {"poller_selftest": POLLER_SOURCES, "ring_selftest": RING_SOURCES}
# libcrypto for macOS is not here: the core's calls into it (wire/auth_mac.c) link against these
# stand-ins, by name only, so that every other symbol must resolve in the system library. A new
# libcrypto call fails the link until it is named here.
LIBCRYPTO_NAMES = ["CRYPTO_memcmp", "EVP_sha256", "HMAC", "OPENSSL_cleanse", "RAND_bytes"]


# Self-tests of Windows parts only (test_windows_native.py runs them under wine).
WINDOWS_ONLY = {"dl_selftest.c", "shm_selftest.c"}


def sources():
    """Every C file of the core (a new one is covered without a change here) and the self-tests."""
    return sorted(CSRC.rglob("*.c")) + sorted(p for p in (HERE / "native").glob("*.c") if p.name not in WINDOWS_ONLY)


def openssl_headers(tmp):
    """The host's OpenSSL headers (the build needs them anyway) as one include directory: the
    generic ones and the configuration Debian-like systems keep per architecture. Its settings are
    Linux's, which only types and constants are taken from here; libcrypto itself is not used."""
    roots = [pathlib.Path(os.environ["OPENSSL_DIR"]) / "include"] if os.environ.get("OPENSSL_DIR") else []
    roots += [pathlib.Path(p) for p in ("/usr/include", "/usr/local/include")]
    generic = next((r / "openssl" for r in roots if (r / "openssl" / "ssl.h").exists()), None)
    if generic is None:
        pytest.fail("no OpenSSL headers on this machine (Debian: libssl-dev), which the build needs too")
    merged = tmp / "openssl-include" / "openssl"
    merged.mkdir(parents=True)
    for d in [generic, *sorted(pathlib.Path("/usr/include").glob("*-linux-*/openssl"))]:
        for h in d.glob("*.h"):
            if not (merged / h.name).exists():
                (merged / h.name).symlink_to(h)
    return merged.parent


def zig(args, env):
    cmd = [sys.executable, "-m", "ziglang", "cc", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def zig_env(tmp_path_factory):
    # zig keeps what it builds for a target (compiler-rt, the system library's stubs) in its
    # caches: some 25 s of CPU a target when cold. They go to a fresh directory all the same: the
    # test then writes nothing outside its temporary directory and costs what CI, on a fresh
    # machine, pays anyway; the whole module takes about 35 s on 2 CPUs so (7 s with warm caches).
    cache = tmp_path_factory.mktemp("zig-cache")
    return {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(cache)}


@pytest.fixture(scope="module")
def objects(tmp_path_factory, zig_env):
    """Compiles every source for every target, in parallel: {(target, source): (object, errors)}."""
    out = tmp_path_factory.mktemp("macos-objects")
    ssl = openssl_headers(out)

    def compile_one(target, src):
        rel = src.relative_to(CSRC) if CSRC in src.parents else pathlib.Path("tests") / src.name
        obj = out / target / rel.with_suffix(".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        r = zig(["-target", target, *FLAGS, "-isystem", str(ssl), "-c", str(src), "-o", str(obj)], zig_env)
        return (target, src), (obj, r.stderr if r.returncode else None)

    jobs = [(t, s) for t in TARGETS for s in sources()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # each job is a process
        return dict(pool.map(lambda job: compile_one(*job), jobs))


def check_macho(path, target):
    """A 64-bit Mach-O file for the target's CPU."""
    head = path.read_bytes()[:8]
    assert head[:4] == b"\xcf\xfa\xed\xfe", f"{path.name} is not a 64-bit Mach-O file"
    assert int.from_bytes(head[4:8], "little") == MACHO_CPU[target], f"{path.name} is for another CPU"


@pytest.mark.parametrize("target", TARGETS)
def test_every_c_file_compiles_for_macos(objects, target):
    failed = {s: err for (t, s), (_, err) in objects.items() if t == target and err is not None}
    assert not failed, "\n".join(f"--- {s.relative_to(HERE.parent)}\n{err}" for s, err in failed.items())
    built = [o for (t, _), (o, _) in objects.items() if t == target]
    assert len(built) > 40  # (some 60 files: the glob found them)
    for o in built:
        check_macho(o, target)


# What the macOS branches of the core define or call, by the symbol names in their objects: proof
# that those branches, not a portable fallback, were compiled. (name in the object, present?)
MACOS_SYMBOLS = {
    "net/poller_kqueue.c": [(b"_fm_kqueue_wait", True), (b"_kevent", True)],
    "net/poller.c": [(b"_fm_kqueue_set", True), (b"_poll", True)],
    "base/futex.c": [(b"_os_sync_wait_on_address", True), (b"___ulock_wait", True), (b"_nanosleep", True)],
    "net/tls.c": [(b"_sigtimedwait", False), (b"_pthread_sigmask", False)],
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("source", sorted(MACOS_SYMBOLS))
def test_macos_branches_are_compiled(objects, target, source):
    obj, err = objects[(target, CSRC / source)]
    assert err is None, err
    data = obj.read_bytes()
    for name, present in MACOS_SYMBOLS[source]:
        assert (name + b"\0" in data) == present, f"{source}: {name.decode()} {'missing' if present else 'present'}"


@pytest.fixture(scope="module")
def linked(tmp_path_factory, objects, zig_env):
    """Links, for each target, the self-test programs and the core as a shared library, in
    parallel: {(target, name): (path, errors)}."""
    out = tmp_path_factory.mktemp("macos-links")
    stub = out / "libcrypto_names.c"
    stub.write_text("".join(f"void {n}(void) {{}}\n" for n in LIBCRYPTO_NAMES))

    def obj(target, src):
        o, err = objects[(target, src)]
        assert err is None, f"{src.name} does not compile for {target} (see the compile test)"
        return str(o)

    def link(target, name):
        if name == "core":
            path = out / f"{target}-libfastmsg-core.dylib"
            ins = [obj(target, s) for s in CSRC.rglob("*.c")] + [str(stub)]
            args = ["-shared", *ins]
        else:
            path = out / f"{target}-{name}"
            args = [obj(target, HERE / "native" / f"{name}.c"), *(obj(target, CSRC / s) for s in PROGRAMS[name])]
        r = zig(["-target", target, *args, "-o", str(path)], zig_env)
        return (target, name), (path, r.stderr if r.returncode else None)

    jobs = [(t, n) for t in TARGETS for n in [*PROGRAMS, "core"]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(pool.map(lambda job: link(*job), jobs))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", [*PROGRAMS, "core"])
def test_links_for_macos(linked, target, name):
    path, err = linked[(target, name)]
    assert err is None, err
    check_macho(path, target)
