"""Builds a C self-test program from tests/native/ against the core's C sources, and runs it."""

import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE.parent / "src" / "fastmsg" / "_core" / "csrc"
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]


def build_and_run(tmp_path, program, sources, args=(), cc="cc", runner=(), flags=()):
    """Compiles tests/native/<program>.c with csrc/<sources>, runs it; returns its output.
    Fails the calling test, with the program's output, if it exits non-zero."""
    exe = tmp_path / program
    cmd = [cc, "-O2", "-g", "-std=c11", "-Wall", "-Wextra", "-Werror", *flags, f"-I{CSRC}",
           str(HERE / "native" / f"{program}.c"), *(str(CSRC / s) for s in sources), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    run = subprocess.run([*runner, str(exe), *args], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout
