"""An authenticated link against an unauthenticated one: the same throughput, as authentication
costs only the handshake (two frames more), nothing per message.

Run: pytest benchmarks/bench_auth.py --benchmark-group-by=group
Each round moves COUNT 64-byte messages over loopback TCP in one process (a receiving thread
drains with recv_many); the link is made once per case, so the handshake is outside the rounds.
extra_info["msgs_per_s"] is the median rate."""

import threading

import pytest

import fastmsg

COUNT, SIZE, BATCH = 200_000, 64, 1000
KEY = b"benchmark key, 32 bytes long...."


@pytest.fixture(params=["plain", "authenticated"])
def link(request):
    secret = KEY if request.param == "authenticated" else None
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", secret=secret)
    tx = fastmsg.Sender(rx.endpoint, secret=secret)
    yield request.param, rx, tx
    tx.close()
    rx.close()


def _drain(rx, n):
    got = 0
    while got < n:
        msgs = rx.recv_many(4096, timeout=30)
        got += len(msgs)
        for m in msgs:
            m.release()


def test_throughput_with_and_without_authentication(benchmark, link):
    name, rx, tx = link
    benchmark.group = "authentication: 64 B over TCP, one process"
    batch = [b"x" * SIZE] * BATCH

    def transfer():
        t = threading.Thread(target=_drain, args=(rx, COUNT))
        t.start()
        for _ in range(COUNT // BATCH):
            tx.send_many(batch)
        t.join()
        assert tx.flush(timeout=30)

    benchmark.pedantic(transfer, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["msgs_per_s"] = COUNT / benchmark.stats.stats.median
    benchmark.extra_info["link"] = name
