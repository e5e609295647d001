"""setup.py's declarations of the extensions, for Windows in particular: checked here, from any
platform, because a Windows build is first tried on CI. setup.py is imported (not run: it calls
setup() only as __main__) with sys.platform patched."""

import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SETUP = REPO / "setup.py"
CSRC = REPO / "src" / "fastmsg" / "_core" / "csrc"

pytestmark = pytest.mark.skipif(not SETUP.exists(), reason="setup.py is not next to the tests")


@pytest.fixture
def setup_py(monkeypatch):
    for name in ("FASTMSG_DEBUG", "FASTMSG_SANITIZE", "FASTMSG_FUZZ", "OPENSSL_DIR", "FASTMSG_CLANG_CL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(REPO)  # (sources are relative to it, as setup.py runs)
    spec = importlib.util.spec_from_file_location("fastmsg_setup_under_test", SETUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def windows_openssl(tmp_path, monkeypatch):
    """A stand-in OpenSSL installation laid out as the Windows installer lays it out."""
    (tmp_path / "include" / "openssl").mkdir(parents=True)
    (tmp_path / "include" / "openssl" / "hmac.h").touch()
    (tmp_path / "lib" / "VC" / "x64" / "MD").mkdir(parents=True)
    (tmp_path / "lib" / "VC" / "x64" / "MD" / "libcrypto.lib").touch()
    monkeypatch.setenv("OPENSSL_DIR", str(tmp_path))
    return tmp_path


def declared(setup_py, monkeypatch, platform):
    monkeypatch.setattr(setup_py.sys, "platform", platform)
    exts, _ = setup_py.extensions()
    return {e.name.rsplit(".", 1)[1]: e for e in exts}


def test_windows_declares_the_transport_with_its_libraries(setup_py, monkeypatch, windows_openssl):
    exts = declared(setup_py, monkeypatch, "win32")
    assert set(exts) == {"crc", "ring", "protocol", "routing", "transport"}
    t = exts["transport"]
    assert t.libraries == ["ws2_32", "synchronization", "bcrypt", "libcrypto"]
    assert t.include_dirs[1:] == [str(windows_openssl / "include")]
    assert t.library_dirs == [str(windows_openssl / "lib" / "VC" / "x64" / "MD")]
    assert not [a for a in t.extra_compile_args + t.extra_link_args if a.startswith("-")]  # (cl options only)
    # Every Windows part of the core is compiled in (each *_win.c is empty elsewhere): the engine's
    # into the transport, SharedRing's into ring. Every source named exists.
    def core(ext):
        return {pathlib.Path(s).relative_to("src/fastmsg/_core/csrc").as_posix() for s in ext.sources[1:]}

    sources = core(t)
    windows_parts = {p.relative_to(CSRC).as_posix() for p in CSRC.rglob("*_win.c")}
    assert "ring/shm_win.c" in core(exts["ring"])
    assert len(windows_parts) >= 5 and windows_parts - {"ring/shm_win.c"} <= sources
    assert "net/poller_wsapoll.c" in sources and "net/tls.c" in sources and "wire/auth_mac.c" in sources
    assert all((REPO / s).exists() for s in t.sources)


def test_linux_declaration_is_unchanged(setup_py, monkeypatch):
    monkeypatch.setattr(setup_py, "_openssl", lambda: ([], []))
    t = declared(setup_py, monkeypatch, "linux")["transport"]
    assert t.libraries == ["crypto", "dl"]
    assert "-pthread" in t.extra_compile_args and "-pthread" in t.extra_link_args
    assert "-Wall" in t.extra_compile_args


def test_windows_without_openssl_says_what_to_install(setup_py, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENSSL_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="OPENSSL_DIR"):
        declared(setup_py, monkeypatch, "win32")
    (tmp_path / "include" / "openssl").mkdir(parents=True)
    (tmp_path / "include" / "openssl" / "hmac.h").touch()
    with pytest.raises(SystemExit, match="libcrypto.lib"):
        declared(setup_py, monkeypatch, "win32")


class FakeMSVC:
    """What BuildExt touches of setuptools' MSVC compiler once initialized."""
    compiler_type = "msvc"
    initialized = True
    cc = "cl.exe"
    compile_options = ["/nologo", "/O2", "/W3", "/GL", "/DNDEBUG", "/MD"]
    compile_options_debug = ["/nologo", "/Od", "/MDd", "/Zi", "/W3", "/D_DEBUG"]


def test_transport_is_compiled_with_clang_cl_on_msvc(setup_py, monkeypatch, tmp_path):
    from setuptools import Distribution, Extension

    clang_cl = tmp_path / "clang-cl.exe"
    clang_cl.touch()
    monkeypatch.setenv("FASTMSG_CLANG_CL", str(clang_cl))
    seen = []
    monkeypatch.setattr(setup_py.build_ext, "build_extension",
                        lambda self, ext: seen.append((ext.name, self.compiler.cc, list(self.compiler.compile_options))))
    cmd = setup_py.BuildExt(Distribution())
    cmd.compiler = FakeMSVC()
    cmd.build_extension(Extension("fastmsg._core.crc", []))
    cmd.build_extension(Extension("fastmsg._core.transport", []))
    assert seen[0] == ("fastmsg._core.crc", "cl.exe", FakeMSVC.compile_options)
    assert seen[1] == ("fastmsg._core.transport", str(clang_cl), ["/nologo", "/O2", "/W3", "/DNDEBUG", "/MD"])
    assert cmd.compiler.cc == "cl.exe" and "/GL" in cmd.compiler.compile_options  # (restored)


def test_missing_clang_cl_is_a_clear_error(setup_py, monkeypatch, tmp_path):
    monkeypatch.setenv("ProgramFiles(x86)", str(tmp_path))  # (no vswhere there)
    monkeypatch.setattr(setup_py.shutil, "which", lambda name: None)
    with pytest.raises(SystemExit, match="clang-cl"):
        setup_py._clang_cl()
    monkeypatch.setenv("FASTMSG_CLANG_CL", str(tmp_path / "absent.exe"))
    with pytest.raises(SystemExit, match="does not exist"):
        setup_py._clang_cl()
