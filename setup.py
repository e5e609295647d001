"""Build the native core.

Switches (environment variables read at build time):
  FASTMSG_DEBUG=1     -O0 -g, assertions and the core's debug checks (FASTMSG_DEBUG macro) on.
  FASTMSG_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer (GCC/Clang only); implies a
                      debug build. Run Python with the ASan runtime preloaded, see README.
  FASTMSG_FUZZ=1      FASTMSG_SANITIZE with Clang and libFuzzer's coverage instrumentation
                      (-fsanitize=fuzzer-no-link), so that the fuzz targets see native branches;
                      fuzz/README.md says how to run them.
  OPENSSL_DIR         an OpenSSL installation (include/, lib/) for the transport's libcrypto.
  FASTMSG_CLANG_CL    Windows: the clang-cl.exe to compile the transport with (below).

Windows: the transport extension is compiled with clang-cl, not cl.exe, and linked by MSVC's
linker against MSVC's C runtime like the other extensions. The engine uses GCC's __atomic
builtins, attributes and one __typeof__, which clang-cl accepts and cl.exe does not; swapping the
compiler keeps the C core one dialect on every platform. clang-cl comes with Visual Studio's
"C++ Clang tools" component (on GitHub's Windows runners) and with LLVM's installer. The other
extensions stay on cl.exe. libcrypto there is a Windows OpenSSL 3's libcrypto.lib: OPENSSL_DIR,
else %ProgramFiles%\\OpenSSL (where the Windows OpenSSL installer puts it).
"""

import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "src/fastmsg/_core/csrc"
# The I/O engine, from the loop up (see the header comments of each file).
ENGINE_SOURCES = (
    "engine/error.c",
    "engine/waker.c",
    "engine/waker_win.c",
    "engine/notifier.c",
    "engine/command.c",
    "engine/loop.c",
    "engine/busy_poll.c",
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
    root = os.environ.get("OPENSSL_DIR")
    if sys.platform == "win32":
        return _openssl_windows(root)
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


def _openssl_windows(root):
    """Windows has no pkg-config or system headers: OPENSSL_DIR, else the Windows OpenSSL
    installer's default place. Its MSVC import libraries are in lib/ or, by runtime flavour, in
    lib/VC/x64/MD (the /MD runtime, which Python's extensions use)."""
    if not root:
        root = os.path.join(os.environ.get("ProgramFiles", r"C:\Program Files"), "OpenSSL")
    if not os.path.exists(os.path.join(root, "include", "openssl", "hmac.h")):
        raise SystemExit(f"fastmsg needs OpenSSL 3's headers and libcrypto.lib to build its transport on "
                         f"Windows, and found none in {root}: install OpenSSL for Windows (64-bit, not the "
                         f"'Light' edition) or set OPENSSL_DIR to an OpenSSL installation")
    libs = [d for d in (os.path.join(root, "lib"), os.path.join(root, "lib", "VC", "x64", "MD"))
            if os.path.exists(os.path.join(d, "libcrypto.lib"))]
    if not libs:
        raise SystemExit(f"fastmsg needs OpenSSL's libcrypto.lib (an MSVC import library) and found none "
                         f"under {root}\\lib: set OPENSSL_DIR to an OpenSSL built for MSVC")
    return [os.path.join(root, "include")], libs[:1]


def _clang_cl():
    """The clang-cl.exe to compile the transport with on Windows (the docstring above says why):
    FASTMSG_CLANG_CL, else Visual Studio's own (found with vswhere, so that it matches the MSVC
    headers and linker in use), else one on PATH."""
    chosen = os.environ.get("FASTMSG_CLANG_CL")
    if chosen:
        if not os.path.isfile(chosen):
            raise SystemExit(f"FASTMSG_CLANG_CL names {chosen}, which does not exist")
        return chosen
    vswhere = os.path.join(os.environ.get("ProgramFiles(x86)", r"C:\Program Files (x86)"),
                           "Microsoft Visual Studio", "Installer", "vswhere.exe")
    if os.path.isfile(vswhere):
        r = subprocess.run([vswhere, "-latest", "-products", "*", "-property", "installationPath"],
                           capture_output=True, text=True)
        for root in r.stdout.splitlines():
            exe = os.path.join(root.strip(), "VC", "Tools", "Llvm", "x64", "bin", "clang-cl.exe")
            if os.path.isfile(exe):
                return exe
    exe = shutil.which("clang-cl")
    if exe:
        return exe
    raise SystemExit("fastmsg's transport is compiled with clang-cl on Windows (its C core uses GCC builtins "
                     "that cl.exe lacks): install Visual Studio's 'C++ Clang tools for Windows' component or "
                     "LLVM, or set FASTMSG_CLANG_CL to clang-cl.exe")


class BuildExt(build_ext):
    """On Windows, compiles the transport with clang-cl in cl.exe's place (same options, include
    paths and linker), and the other extensions with cl.exe as usual."""

    def build_extension(self, ext):
        cc = self.compiler
        if cc.compiler_type != "msvc" or not ext.name.endswith(".transport"):
            return super().build_extension(ext)
        if not cc.initialized:
            cc.initialize()
        saved = cc.cc, cc.compile_options, cc.compile_options_debug
        cc.cc = _clang_cl()
        # /GL (whole-program optimization) would make clang-cl emit LLVM bitcode, which MSVC's linker
        # cannot read.
        cc.compile_options = [o for o in saved[1] if o != "/GL"]
        cc.compile_options_debug = [o for o in saved[2] if o != "/GL"]
        try:
            return super().build_extension(ext)
        finally:
            cc.cc, cc.compile_options, cc.compile_options_debug = saved


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
    # Authentication's HMAC-SHA-256 and nonces come from OpenSSL's libcrypto (docs/architecture.md).
    engine = [*_c("wire/protocol.c", "wire/auth.c", "wire/auth_mac.c"), *ring, *_c("net/poller.c", "net/poller_kqueue.c", "net/poller_wsapoll.c", "net/netio.c", "net/netio_win.c", "net/probe.c", "net/sockaddr.c", "net/tls.c", "net/dl_win.c"), *_c(*ENGINE_SOURCES)]
    ssl_include, ssl_lib = _openssl()
    # Windows: Winsock, WaitOnAddress (synchronization), BCryptGenRandom (the session seed) and
    # OpenSSL's import library; threads are Win32's (base/thread.h) and DLLs kernel32's (net/dl_win.c).
    libraries = ["ws2_32", "synchronization", "bcrypt", "libcrypto"] if msvc else ["crypto", "dl"]
    exts.append(ext("transport", [*crc_kernels, *engine], threads=True, libraries=libraries,
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
    return exts, directives


def cythonized():
    from Cython.Build import cythonize

    exts, directives = extensions()
    return cythonize(exts, compiler_directives=directives, include_path=["src"])


# (Run by pip and `python setup.py` as __main__; tests import this file for extensions().)
if __name__ == "__main__":
    # Always recompile: setuptools skips an extension whose .so is newer than its sources, which would
    # silently keep a release build when a sanitizer build was asked for (or the reverse).
    setup(ext_modules=cythonized(), cmdclass={"build_ext": BuildExt}, options={"build_ext": {"force": True}})
