"""`fastmsg bench --json FILE` and `--plot FILE.png`, from short real runs of the command."""

import json
import os
import struct
import subprocess
import sys

import pytest

import fastmsg
from fastmsg._bench import payload, table

HAS_TRANSPORT = hasattr(fastmsg, "Sender") and hasattr(fastmsg, "Receiver")
try:
    import matplotlib  # noqa: F401
    HAS_MATPLOTLIB = True
except ImportError:
    HAS_MATPLOTLIB = False

PEERS = (["fastmsg"] if HAS_TRANSPORT else []) + ["sockets"]
ARGS = ["bench", "--quick", "--peers", ",".join(PEERS), "--sizes", "1k,64k", "--transports", "tcp",
        "--pin", "same", "--timeout", "5"]
CASES = ["1 KiB", "64 KiB", "64 B send()", "round trip 64 B", "asyncio round trip 64 B"]


def run(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastmsg", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One short bench with both outputs (the figure only where matplotlib is installed)."""
    folder = tmp_path_factory.mktemp("bench")
    args = ARGS + ["--json", str(folder / "bench.json")]
    if HAS_MATPLOTLIB:
        args += ["--plot", str(folder / "bench.png")]
    r = run(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    return args, r, folder


def test_json_holds_every_table_cell(bench_run):
    args, r, folder = bench_run
    doc = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    assert doc["schema"] == "fastmsg-bench/1"
    assert doc["fastmsg"] == fastmsg.__version__
    assert doc["command"] == ["fastmsg", *args]
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    assert doc["machine"]["python"] == sys.version.split()[0]
    assert doc["machine"]["crc32c_kernel"] == fastmsg.crc32c_implementation
    assert doc["settings"]["sizes"] == [1024, 64 << 10]
    assert doc["settings"]["peers"] == PEERS and doc["settings"]["transports"] == ["tcp"]
    assert doc["settings"]["duration_s"] == 0.1 and doc["settings"]["quick"] is True
    assert doc["ok"] is True and doc["failures"] == []
    lines = r.stdout.splitlines()
    assert lines[:len(doc["notes"])] == doc["notes"]  # the lines above the table

    assert [(row["pin"], row["transport"], row["peer"]) for row in doc["rows"]] == [("same", "tcp", p) for p in PEERS]
    for row in doc["rows"]:
        printed = [l.split() for l in lines if l.split()[:3] == ["same", "tcp", row["peer"]]]
        assert len(printed) == 1, r.stdout
        tokens = printed[0][3:]
        assert [c["case"] for c in row["cells"]] == CASES
        expected = []
        for cell in row["cells"]:
            assert "failed" not in cell
            if cell["kind"] in ("throughput", "send"):
                assert cell["size"] == (64 if cell["kind"] == "send" else payload.parse_size(cell["case"]))
                assert cell["messages"] >= cell["timed_messages"] > 0 and cell["elapsed_ns"] > 0
                assert cell["msg_per_s"] == pytest.approx(cell["timed_messages"] / max(cell["elapsed_ns"], 1000) * 1e9)
                assert cell["mb_per_s"] == pytest.approx(cell["msg_per_s"] * cell["size"] / 1e6)
                expected += [table._rate(cell["msg_per_s"]), table._mb(cell["mb_per_s"])]
            else:
                assert cell["kind"] == ("round_trip" if cell["case"].startswith("round") else "asyncio_round_trip")
                assert cell["size"] == 64 and cell["trips"] >= 200
                q = cell["quantiles_ns"]
                assert list(q) == [name for _, name in payload.QUANTILES]
                assert list(q.values()) == sorted(q.values()) and q["min"] > 0
                assert cell["p50_us"] == q["p50"] / 1000 and cell["p99_us"] == q["p99"] / 1000
                expected += [f"{cell['p50_us']:.1f}", f"{cell['p99_us']:.1f}"]
        assert tokens == expected  # the table prints these numbers, rounded


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed (the 'plot' extra)")
def test_plot_is_a_png(bench_run):
    _, r, folder = bench_run
    data = (folder / "bench.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 600 and height >= 300 and width > height  # two panels side by side (13 x 5.5 inches)
    assert data.endswith(b"IEND\xaeB`\x82")
    assert "figure written to" in r.stderr


def test_json_records_a_failed_run(tmp_path):
    out = tmp_path / "bench.json"
    r = run("bench", "--peers", "sockets", "--sizes", "1k", "--transports", "tcp", "--pin", "same", "--quick",
            "--timeout", "1", "--json", str(out), env={"FASTMSG_BENCH_FAULT": "sockets:drop"}, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["ok"] is False
    printed = r.stdout.split("FAILED (no number is reported for these runs):\n")[1].splitlines()
    assert [f"  {f}" for f in doc["failures"]] == printed
    cells = {c["case"]: c for c in doc["rows"][0]["cells"]}
    for case in ("1 KiB", "64 B send()"):  # the fault spoils every throughput run
        assert cells[case]["failed"] is True and "1 missing" in cells[case]["error"]
        assert "msg_per_s" not in cells[case]
    assert cells["round trip 64 B"]["p50_us"] > 0  # the round trips were not spoiled


def test_plot_without_matplotlib_says_so_before_running(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; from fastmsg._cli import main; "
            f"sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "bench", "--quick", "--peers", "sockets",
                        "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--plot needs matplotlib" in r.stderr and "fastmsg[plot]" in r.stderr
    assert "bench: same" not in r.stderr and r.stdout == ""  # nothing was run
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_output_in_a_missing_directory_is_refused(tmp_path, option):
    r = run("bench", option, str(tmp_path / "nowhere" / "out.png"), timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("fastmsg: error: argument --") and "no directory" in r.stderr


def test_plot_file_must_be_a_png(tmp_path):
    r = run("bench", "--plot", str(tmp_path / "figure.svg"), timeout=30)
    assert r.returncode == 2
    assert "ends with .png" in r.stderr
