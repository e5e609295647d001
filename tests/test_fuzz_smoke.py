"""A short fuzzing pass in every test run: each target in fuzz/ over its committed corpus, then
mutations of it from a fixed seed (libFuzzer in a subprocess, through atheris). Long runs under
the sanitizers are described in fuzz/README.md."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("atheris", reason="atheris has wheels for Linux x86-64 CPython 3.11-3.13 only")

FUZZ = pathlib.Path(__file__).resolve().parent.parent / "fuzz"
# Inputs per target: a few seconds each (the live targets open a connection per input).
RUNS = {"decoder": 20000, "handshake": 3000, "session": 3000, "sender": 3000}


def fuzz(target, tmp_path, *options):
    """libFuzzer's output for a run of `target`; new inputs and crash files stay under tmp_path."""
    new = tmp_path / "new"
    new.mkdir()
    cmd = [sys.executable, str(FUZZ / f"fuzz_{target}.py"), "-seed=1", "-timeout=30", "-max_len=4096",
           f"-artifact_prefix={tmp_path}/", *options, str(new), str(FUZZ / "corpus" / target)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, f"{target} failed (artifacts: {list(tmp_path.glob('crash-*'))}):\n{proc.stderr[-6000:]}"
    return proc.stderr


@pytest.mark.parametrize("target", sorted(RUNS))
def test_target_runs_clean(target, tmp_path):
    out = fuzz(target, tmp_path, f"-runs={RUNS[target]}")
    assert f"Done {RUNS[target]} runs" in out


@pytest.mark.parametrize("target", sorted(RUNS))
def test_committed_corpus_is_not_empty(target):
    files = [p for p in (FUZZ / "corpus" / target).iterdir() if p.is_file()]
    assert len(files) >= 5, f"the {target} corpus has {len(files)} files"


def test_a_failing_check_is_reported(tmp_path):
    """The pass can fail: a target whose check trips exits non-zero with the input saved."""
    target = tmp_path / "fuzz_trip.py"
    target.write_text("import sys, atheris\n"
                      "def TestOneInput(data):\n"
                      "    assert not data.startswith(b'FMSG'), 'tripped'\n"
                      "atheris.Setup(sys.argv, TestOneInput)\n"
                      "atheris.Fuzz()\n")
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "one").write_bytes(b"FMSG")
    proc = subprocess.run([sys.executable, str(target), "-runs=10", f"-artifact_prefix={tmp_path}/", str(seeds)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "tripped" in proc.stdout + proc.stderr
    assert list(tmp_path.glob("crash-*"))
