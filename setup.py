"""Build the native core.

Switches (environment variables read at build time):
  FASTMSG_DEBUG=1     -O0 -g, assertions and the core's debug checks (FASTMSG_DEBUG macro) on.
  FASTMSG_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer (GCC/Clang only); implies a
                      debug build. Run Python with the ASan runtime preloaded, see README.
  FASTMSG_FUZZ=1      FASTMSG_SANITIZE with Clang and libFuzzer's coverage instrumentation
                      (-fsanitize=fuzzer-no-link), so that the fuzz targets see native branches;
                      fuzz/README.md says how to run them.
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

CSRC = "src/fastmsg/_core/csrc"
# The I/O engine, from the loop up (see the header comments of each file).
ENGINE_SOURCES = (
    "engine/error.c",
    "engine/waker.c",
    "engine/waker_win.c",
    "engine/notifier.c",
    "engine/command.c",
    "engine/loop.c",
    "engine/context.c",
    "engine/linger.c",
    "engine/receiver_tls.c",
    "engine/sender_batch.c",
    "engine/sender_ack.c",
    "engine/sender_write.c",
    "engine/sender_conn.c",
    "engine/sender_heartbeat.c",
    "engine/sender_direct.c",
    "engine/sender_reply.c",
    "engine/sender_auth.c",
    "engine/sender.c",
    "engine/session.c",
    "engine/rxbuf.c",
    "engine/receiver_queue.c",
    "engine/receiver_ack.c",
    "engine/receiver_conn.c",
    "engine/receiver_read.c",
    "engine/receiver_accept.c",
    "engine/receiver_allow.c",
    "engine/receiver_auth.c",
    "engine/receiver_rate.c",
    "engine/receiver_direct.c",
    "engine/receiver_heartbeat.c",
    "engine/receiver_reply.c",
    "engine/receiver.c",
)
# Routing: the keyed hash and its batch kernels, the deterministic log, rendezvous, the router
# state and the strategies.
ROUTE_SOURCES = (
    "route/siphash.c",
    "route/keyhash.c",
    "route/keyhash_avx2.c",
    "route/unitlog.c",
    "route/rendezvous.c",
    "route/router.c",
    "route/ewma.c",
    "route/pick.c",
)


def _openssl():
    """(include_dirs, library_dirs) for OpenSSL's libcrypto, which authentication links (HMAC-SHA-256,
    nonces): OPENSSL_DIR if set, else pkg-config's answer, else the compiler's default paths. A
    build without the headers stops here with what to install, rather than deep in the compiler."""
    import shutil
    import subprocess

    root = os.environ.get("OPENSSL_DIR")
    if root:
        return [os.path.join(root, "include")], [os.path.join(root, "lib")]
    if shutil.which("pkg-config"):
        r = subprocess.run(["pkg-config", "--cflags-only-I", "--libs-only-L", "libcrypto"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            words = r.stdout.split()
            return [w[2:] for w in words if w.startswith("-I")], [w[2:] for w in words if w.startswith("-L")]
    if not any(os.path.exists(os.path.join(d, "openssl", "hmac.h"))
               for d in ("/usr/include", "/usr/local/include", "/opt/homebrew/include")):
        raise SystemExit("fastmsg needs OpenSSL's libcrypto headers to build its transport: install "
                         "libssl-dev (Debian, Ubuntu), openssl-devel (Fedora, RHEL), openssl-dev (Alpine) "
                         "or openssl@3 (Homebrew), or set OPENSSL_DIR to an OpenSSL installation")
    return [], []


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip() not in ("", "0", "false", "no")


def _build_flags():
    debug = _flag("FASTMSG_DEBUG")
    fuzz = _flag("FASTMSG_FUZZ")
    sanitize = _flag("FASTMSG_SANITIZE") or fuzz
    msvc = sys.platform == "win32"
    compile_args, link_args, macros = [], [], []
    if msvc:
        compile_args += ["/O2"] if not (debug or sanitize) else ["/Od", "/Zi"]
    else:
        compile_args += ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-function", "-fno-strict-aliasing",
                         "-Werror=implicit-function-declaration"]  # (an undeclared call returns int: a cut pointer)
        compile_args += ["-O0", "-g3"] if (debug or sanitize) else ["-O3"]
    if debug or sanitize:
        macros += [("FASTMSG_DEBUG", "1")]
        macros += [("CYTHON_CLINE_IN_TRACEBACK", "1")]
        compile_args += [] if msvc else ["-UNDEBUG"]
    if sanitize:
        if msvc:
            raise SystemExit("FASTMSG_SANITIZE needs GCC or Clang")
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
        if fuzz:  # libFuzzer's instrumentation is Clang's: compile and link with it
            os.environ.setdefault("CC", "clang")
            os.environ.setdefault("LDSHARED", "clang -shared")
            san += ["-fsanitize=fuzzer-no-link"]
        compile_args += san
        link_args += san
    return compile_args, link_args, macros, debug or sanitize


def _c(*names):
    return [f"{CSRC}/{n}" for n in names]


def extensions():
    compile_args, link_args, macros, debug = _build_flags()
    msvc = sys.platform == "win32"

    def ext(name, sources, threads=False, extra_args=(), libraries=(), include_dirs=(), library_dirs=()):
        pthread = ["-pthread"] if threads and sys.platform != "win32" else []
        return Extension(
            f"fastmsg._core.{name}",
            sources=[f"src/fastmsg/_core/{name}.pyx", *sources],
            include_dirs=[CSRC, *include_dirs],
            library_dirs=list(library_dirs),
            define_macros=macros,
            extra_compile_args=compile_args + pthread + list(extra_args),
            extra_link_args=link_args + pthread,
            libraries=list(libraries),
        )

    crc_kernels = _c(
        "base/cpu_features.c",
        "crc32c/crc32c_dispatch.c",
        "crc32c/crc32c_portable.c",
        "crc32c/crc32c_sse42.c",
        "crc32c/crc32c_pclmul.c",
        "crc32c/crc32c_vpclmul.c",
        "crc32c/crc32c_armv8.c",
    )
    # (A *_win.c file compiles to nothing elsewhere, and its POSIX sibling to nothing on Windows.)
    ring = _c("ring/ring_wait.c", "base/futex.c", "base/futex_win.c")
    exts = [
        ext("crc", crc_kernels),
        ext("ring", [*ring, *_c("ring/shm.c", "ring/shm_layout.c", "ring/shm_win.c")]),
        ext("protocol", [*crc_kernels, *_c("wire/protocol.c", "wire/auth.c")]),
        # Rendezvous scores must come out bit-identical on every platform: no fused multiply-add.
        ext("routing", [*_c(*ROUTE_SOURCES), *_c("base/futex.c", "base/cpu_features.c")],
            extra_args=[] if msvc else ["-ffp-contract=off"], libraries=[] if msvc else ["m"]),
    ]
    # The engine's C core builds for Windows (tests/test_windows_native.py); its extension does not
    # yet (docs/architecture.md, "Windows").
    if sys.platform != "win32":
        # Authentication's HMAC-SHA-256 and nonces come from OpenSSL's libcrypto (docs/architecture.md).
        engine = [*_c("wire/protocol.c", "wire/auth.c", "wire/auth_mac.c"), *ring, *_c("net/poller.c", "net/poller_kqueue.c", "net/poller_wsapoll.c", "net/netio.c", "net/netio_win.c", "net/tls.c", "net/dl_win.c"), *_c(*ENGINE_SOURCES)]
        ssl_include, ssl_lib = _openssl()
        exts.append(ext("transport", [*crc_kernels, *engine], threads=True, libraries=["crypto", "dl"],
                        include_dirs=ssl_include, library_dirs=ssl_lib))
    directives = {
        "language_level": 3,
        "freethreading_compatible": True,
        "boundscheck": debug,
        "wraparound": False,
        "initializedcheck": debug,
        "cdivision": True,
        # Methods and functions are cyfunctions, whose inspect.signature() (and so help()) is
        # their real one, defaults as values. Not also copied into docstrings: that copy names
        # defaults by the module's constants. A class's signature is the first line of its
        # docstring, "Name(...)" ended by "--" (a text signature, as CPython's own builtins
        # have): the only form inspect.signature() reads for an extension type.
        "binding": True,
        "embedsignature": False,
    }
    return cythonize(exts, compiler_directives=directives, include_path=["src"])


# Always recompile: setuptools skips an extension whose .so is newer than its sources, which would
# silently keep a release build when a sanitizer build was asked for (or the reverse).
setup(ext_modules=extensions(), options={"build_ext": {"force": True}})
