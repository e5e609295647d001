"""What acknowledgements cost a Sender that waits for them: a stream through a small send ring
(hwm_bytes), which needs an ACK every ring's worth, and flush() right after the receiving
application released the last message.

Run: pytest benchmarks/bench_acks.py --benchmark-group-by=group
One process, the receiver's application in a thread that releases each message at once; TCP
loopback. Compare the hwm_bytes rows with each other: the 4 MiB ring hardly waits for ACKs.
"""

import threading

import pytest

import fastmsg

COUNT = 20_000
PAYLOAD = bytes(1024)


@pytest.fixture
def link():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        yield rx


def _drain(rx, n):
    got = 0
    while got < n:
        for m in rx.recv_many(1000, timeout=30):
            m.release()
            got += 1


@pytest.mark.parametrize("hwm", [16 << 10, 64 << 10, 4 << 20])
def test_stream_through_small_ring(benchmark, link, hwm):
    benchmark.group = "stream 20k x 1 KiB, by hwm_bytes"
    with fastmsg.Sender(link.endpoint, hwm_bytes=hwm) as tx:
        def transfer():
            t = threading.Thread(target=_drain, args=(link, COUNT))
            t.start()
            for _ in range(COUNT):
                tx.send(PAYLOAD)
            assert tx.flush(30)
            t.join()

        benchmark.pedantic(transfer, rounds=5, iterations=1, warmup_rounds=1)


def test_flush_after_release(benchmark, link):
    benchmark.group = "flush() once the last message is released"
    with fastmsg.Sender(link.endpoint) as tx:
        def one():
            tx.send(b"x")
            link.recv(timeout=5).release()
            assert tx.flush(5)

        benchmark.pedantic(one, rounds=50, iterations=1, warmup_rounds=2)
