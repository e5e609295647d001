"""The `fastmsg` command, run as a real process."""

import io
import os
import re
import selectors
import socket
import subprocess
import sys
import time

import pytest

import fastmsg
from platforms import needs_unix_sockets

HAS_TRANSPORT = hasattr(fastmsg, "Sender") and hasattr(fastmsg, "Receiver")
try:
    import zmq  # noqa: F401
    HAS_ZMQ = True
except ImportError:
    HAS_ZMQ = False


def run(*args, timeout=120, env=None):
    return subprocess.run([sys.executable, "-m", "fastmsg", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_quick_info():
    r = run("--quick")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"fastmsg {fastmsg.__version__} (Python ")
    assert f"CRC32C kernel: {fastmsg.crc32c_implementation}" in r.stdout
    assert "throughput" not in r.stdout


@needs_unix_sockets  # (its rows include ipc://)
def test_bench_quick_compare():
    r = run("bench", "--quick", "--compare", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(l.startswith("pinning") for l in lines)
    assert "64 B" in r.stdout and "1 KiB" in r.stdout and "64 KiB" in r.stdout and "1 MiB" in r.stdout
    assert "64 B send()" in r.stdout
    assert "p50 µs" in r.stdout and "p99 µs" in r.stdout and "asyncio round trip 64 B" in r.stdout
    peers = ["sockets"] + (["pyzmq"] if HAS_ZMQ else []) + (["fastmsg"] if HAS_TRANSPORT else [])
    if not hasattr(os, "sched_setaffinity"):  # (macOS, Windows)
        pins = ("none",)
    else:
        pins = ("same", "split") if len(os.sched_getaffinity(0)) > 1 else ("same",)
    for peer in peers:
        for pin in pins:
            for transport in ("tcp", "ipc"):
                if peer == "sockets" and transport == "ipc" and not hasattr(socket, "AF_UNIX"):  # (Windows)
                    assert "sockets over ipc: Python's socket module has no Unix sockets here, no row" in r.stdout
                    continue
                row = [l for l in lines if l.split()[:3] == [pin, transport, peer]]
                assert len(row) == 1, (peer, pin, transport, r.stdout)
                assert "FAILED" not in row[0]
                # msg/s and MB/s per size and send(), p50 and p99 blocking and from asyncio
                assert len(row[0].split()) == 3 + 2 * 5 + 2 + 2
    if not HAS_TRANSPORT:
        assert "fastmsg transport: not available in this build" in r.stdout
    if not HAS_ZMQ:
        assert "pyzmq: not installed" in r.stdout
    assert re.search(r"bench: same tcp sockets 64 B \d+/\d+", r.stderr)  # progress went to stderr
    assert re.search(r"bench: same tcp sockets 64 B send\(\) \d+/\d+", r.stderr)


LOST = r"received \d+ of \d+ messages, 1 missing"
DIFFERS = "content differs from what was sent"
FAULTS = [
    ("sockets", "1k", "drop", LOST + r" \(the sender closed the connection\)"),
    ("sockets", "1k", "corrupt", DIFFERS),
    ("sockets", "1k", "truncate", r"message \d+ has 1023 bytes, expected 1024"),
    ("sockets", "1k", "swap", DIFFERS),
    ("fastmsg", "1k", "drop", LOST),
    ("fastmsg", "1k", "swap", DIFFERS),
    ("fastmsg", "64k", "corrupt", DIFFERS),  # from 8 KiB each message is checked on its own
    ("pyzmq", "1k", "drop", LOST),
    ("pyzmq", "1k", "swap", DIFFERS),
    ("pyzmq", "64k", "truncate", r"message \d+ has 65535 bytes, expected 65536"),
]


@pytest.mark.parametrize("peer,size,fault,message", FAULTS, ids=["-".join(f[:3]) for f in FAULTS])
def test_bench_detects_a_lossy_peer(peer, size, fault, message):
    if peer == "fastmsg" and not HAS_TRANSPORT or peer == "pyzmq" and not HAS_ZMQ:
        pytest.skip(f"{peer} is not available here")
    r = run("bench", "--peers", peer, "--sizes", size, "--transports", "tcp", "--pin", "same", "--quick",
            "--timeout", "1", env={"FASTMSG_BENCH_FAULT": f"{peer}:{fault}"}, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(message, r.stdout), r.stdout
    assert "FAILED (no number is reported for these runs)" in r.stdout
    row = [l.split() for l in r.stdout.splitlines() if l.split()[:3] == ["same", "tcp", peer]]
    assert row and row[0][3:5] == ["FAILED", "FAILED"], r.stdout  # the batched size and 64 B send()


def test_a_peer_without_a_transport_has_no_row_and_says_why(monkeypatch):
    """As the socket peer on Windows, whose Python has no Unix sockets: its ipc row is left out,
    a note says why, and the other peers' rows are there."""
    from fastmsg._bench import peer_sockets, runner
    monkeypatch.setattr(peer_sockets, "unavailable_over", lambda t: "no Unix sockets" if t == "ipc" else None)
    peers = ["sockets"] + (["fastmsg"] if HAS_TRANSPORT else [])
    bench = runner.Bench(peers, ["tcp", "ipc"], [64], "same", 0.05, 5, True, err=io.StringIO())
    results = bench.run()
    pin = "none" if not hasattr(os, "sched_setaffinity") else "same"
    assert (pin, "ipc", "sockets") not in results and (pin, "tcp", "sockets") in results
    assert "sockets over ipc: no Unix sockets, no row" in bench.notes
    if HAS_TRANSPORT:
        assert (pin, "ipc", "fastmsg") in results and "FAILED" not in results[pin, "ipc", "fastmsg"].values()
    assert bench.done == bench.total == len(results) * 4  # (64 B, send(), both round trips)


def test_bench_without_compare_when_transport_missing():
    if HAS_TRANSPORT:
        pytest.skip("the fastmsg transport is present")
    r = run("bench", "--quick")
    assert r.returncode == 0, r.stderr
    assert "fastmsg transport: not available in this build" in r.stdout
    assert "--compare" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["bench", "--sizes", "64,huge"], "invalid size 'huge'"),
    (["bench", "--sizes", "0"], "out of range"),
    (["bench", "--transports", "udp"], "unknown 'udp'"),
    (["bench", "--pin", "sideways"], "invalid choice: 'sideways'"),
    (["bench", "--duration", "-1"], "out of range"),
    (["bench", "--peers", "nng"], "unknown 'nng'"),
    (["send", "localhost:5"], "invalid endpoint 'localhost:5': missing scheme"),
    (["send"], "the following arguments are required: ENDPOINT"),
    (["recv", "tcp://127.0.0.1:0", "--count", "0"], "must be at least 1"),
    (["recv", "ipc://relative.sock"], "relative path"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments(args, message):
    r = run(*args, timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("fastmsg: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert message in r.stderr and "--help" in r.stderr


def test_version():
    r = run("--version", timeout=30)
    assert r.returncode == 0 and r.stdout == f"fastmsg {fastmsg.__version__}\n", r.stdout + r.stderr


def one_line_error(r):
    """The failure's message: one line on stderr, a non-zero exit, no traceback."""
    assert r.returncode != 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("fastmsg: error: "), r.stderr
    return r.stderr


@pytest.mark.skipif(not HAS_TRANSPORT, reason="the fastmsg transport is not in this build yet")
def test_address_in_use_is_one_line():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        for cmd in (["recv", rx.endpoint], ["relay", rx.endpoint, "--to", "tcp://127.0.0.1:9"]):
            text = one_line_error(run(*cmd, timeout=30))
            assert f"cannot bind {rx.endpoint}" in text and "in use" in text


@pytest.mark.skipif(not HAS_TRANSPORT, reason="the fastmsg transport is not in this build yet")
@pytest.mark.parametrize("cmd", ["send", "recv"])
def test_unknown_host_is_one_line(cmd):
    text = one_line_error(run(cmd, "tcp://no-such-host.invalid:5555", timeout=30))
    assert "cannot resolve host 'no-such-host.invalid'" in text


@pytest.mark.skipif(not HAS_TRANSPORT, reason="the fastmsg transport is not in this build yet")
def test_unreachable_receiver_is_one_line():
    from transport_helpers import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    r = subprocess.run([sys.executable, "-m", "fastmsg", "send", endpoint, "--timeout", "0.5"], input="hello\n",
                       capture_output=True, text=True, timeout=60)
    text = one_line_error(r)
    assert f"cannot reach {endpoint}" in text and "refused" in text


@pytest.mark.skipif(not HAS_TRANSPORT, reason="the fastmsg transport is not in this build yet")
def test_star_for_send_is_one_line():
    text = one_line_error(run("send", "tcp://*:5555", timeout=30))
    assert "name the host" in text


@pytest.mark.skipif(HAS_TRANSPORT, reason="the fastmsg transport is present")
@pytest.mark.parametrize("cmd", ["send", "recv"])
def test_send_recv_without_transport(cmd):
    r = run(cmd, "tcp://127.0.0.1:9", timeout=30)
    assert r.returncode == 1
    assert "not available in this build" in r.stderr


@pytest.mark.skipif(not HAS_TRANSPORT, reason="the fastmsg transport is not in this build yet")
def test_send_and_recv():
    recv = subprocess.Popen([sys.executable, "-m", "fastmsg", "recv", "tcp://127.0.0.1:0", "--count", "3",
                             "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sel = selectors.DefaultSelector()
        sel.register(recv.stderr, selectors.EVENT_READ)
        line, deadline = b"", time.monotonic() + 20
        while not line.endswith(b"\n"):
            assert time.monotonic() < deadline and sel.select(deadline - time.monotonic()), line
            chunk = os.read(recv.stderr.fileno(), 1)
            assert chunk, line
            line += chunk
        assert line.startswith(b"fastmsg recv: listening on tcp://127.0.0.1:")
        endpoint = line.split()[-1].decode()
        send = subprocess.run([sys.executable, "-m", "fastmsg", "send", endpoint],
                              input=b"one\ntwo words\r\nthree", capture_output=True, timeout=30)
        assert send.returncode == 0, send.stderr
        out, _ = recv.communicate(timeout=30)
        assert recv.returncode == 0
        assert out == b"one\ntwo words\nthree\n"
    finally:
        recv.kill()
        recv.wait()
