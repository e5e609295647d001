"""Large messages outside the sender's ring: a bytes object is lent (written from where it lies
and referenced until then), any other buffer copied at send time; hwm_bytes bounds both, and
every reference goes once the message is written, dropped, or the Sender closed."""

import random
import socket
import sys
import threading
import tracemalloc

import pytest

import fastmsg
from fastmsg._core import protocol as proto

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

from transport_helpers import free_port, wait_for

MiB = 1 << 20
KiB = 1 << 10
# With hwm_bytes=1 MiB and the default max_batch_bytes (256 KiB): bytes of 256 KiB and more are
# lent, other buffers go outside the ring above 256 KiB (a quarter of the ring).
HWM = 1 * MiB
THRESHOLD = 256 * KiB
# Tests may send everything before they receive: the receiving ring can take it all.
RING = 64 * MiB


def content(seed, size):
    """`size` bytes that differ from message to message, rebuilt by the receiving side."""
    return random.Random(seed).randbytes(size)


def in_background(fn):
    """Runs fn in a thread; returns a function that joins it and raises what it raised. The
    Sender keeps each message until the receiving application has released it, so a test that
    sends more than hwm_bytes must receive while it sends."""
    failure = []

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join():
        thread.join(60)
        assert not thread.is_alive(), "the sending thread did not finish"
        if failure:
            raise failure[0]

    return join


def recv_bytes(rx, n, timeout=30.0):
    out = []
    for _ in range(n):
        with rx.recv(timeout=timeout) as m:
            out.append(bytes(m))
    return out


@pytest.fixture
def ctx():
    c = fastmsg.Context()
    yield c
    c.close()


def test_large_bytes_arrive_intact(ctx):
    sizes = [THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, HWM // 2 + 8, HWM, 3 * MiB + 5, 8 * MiB]
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, ring_bytes=RING) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=HWM) as tx:
        # Temporaries: nothing but the Sender keeps them alive once send() returns, so a
        # reference dropped too early would free bytes the I/O thread still writes.
        def send_all():
            for i, size in enumerate(sizes):
                tx.send(content(i, size))
            tx.send_many([content(100 + i, size) for i, size in enumerate(sizes)])

        sent = in_background(send_all)
        got = recv_bytes(rx, 2 * len(sizes))
        sent()
        assert tx.flush(10)
        for i, size in enumerate(sizes):
            assert got[i] == content(i, size), f"send() of {size} bytes arrived changed"
            assert got[len(sizes) + i] == content(100 + i, size), f"send_many() of {size} bytes arrived changed"
        assert tx.stats()["sent_messages"] == 2 * len(sizes)


def test_mixed_small_and_large_keep_order(ctx):
    kinds = [lambda b: b, bytearray, memoryview]
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, ring_bytes=RING) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=HWM) as tx:
        expected = []
        for i in range(60):
            size = [64, THRESHOLD + 8, 5000, 2 * MiB, 0, HWM // 2][i % 6]
            expected.append(content(i, size))
            if i % 4 == 3:
                expected.append(b"many%d" % i)

        def send_all():
            for i in range(60):
                msg = content(i, [64, THRESHOLD + 8, 5000, 2 * MiB, 0, HWM // 2][i % 6])
                if i % 4 == 3:
                    tx.send_many([kinds[i % 3](msg), b"many%d" % i])
                else:
                    tx.send(kinds[i % 3](msg))

        sent = in_background(send_all)
        got = recv_bytes(rx, len(expected))
        sent()
        assert [len(g) for g in got] == [len(e) for e in expected]
        assert got == expected


def test_lent_bytes_are_released_once_acknowledged(ctx):
    port = free_port()
    msg = content(1, 2 * MiB)
    before = sys.getrefcount(msg)
    with fastmsg.Sender(f"tcp://127.0.0.1:{port}", context=ctx, hwm_bytes=16 * MiB) as tx:
        for _ in range(3):
            tx.send(msg)
        tx.send_many([msg, b"small"])
        # No receiver yet: the Sender holds the message itself, not a copy.
        assert sys.getrefcount(msg) == before + 4
        with fastmsg.Receiver(f"tcp://127.0.0.1:{port}", context=ctx, ring_bytes=RING) as rx:
            assert recv_bytes(rx, 5) == [msg] * 4 + [b"small"]
            assert tx.flush(20)  # released by the receiving application, so acknowledged
            wait_for(lambda: sys.getrefcount(msg) == before, what="the Sender to let go of the lent bytes")


def test_copies_are_released_once_acknowledged(ctx):
    # Large non-bytes buffers are copied; the copies go as the messages are acknowledged.
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, ring_bytes=RING) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=HWM) as tx:
        buf = bytearray(content(2, MiB))
        tx.send(buf)  # warm up: first allocations of either side
        recv_bytes(rx, 1)
        tracemalloc.start()
        try:
            for i in range(200):  # 200 MiB in all
                buf[:8] = i.to_bytes(8, "little")
                tx.send(buf)
                with rx.recv(timeout=10) as m:
                    assert bytes(m)[:8] == i.to_bytes(8, "little")
            assert tx.flush(10)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # The Sender holds at most hwm_bytes of copies, and the receiver one message at a time.
        assert peak < 4 * MiB, peak


def test_buffers_are_taken_at_send_time(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, ring_bytes=RING) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=HWM) as tx:
        sizes = (100, THRESHOLD + 1, 3 * MiB)
        expected = [b"a" * size for size in sizes for _ in range(2)]

        def send_all():
            for size in sizes:
                buf = bytearray(b"a" * size)
                tx.send(buf)
                tx.send_many([memoryview(buf)])
                buf[:] = b"b" * size

        sent = in_background(send_all)
        got = recv_bytes(rx, len(expected))
        sent()
        assert [g[:1] for g in got] == [b"a"] * len(expected)
        assert got == expected


def test_hwm_bounds_payloads_outside_the_ring(ctx):
    port = free_port()
    with fastmsg.Sender(f"tcp://127.0.0.1:{port}", context=ctx, hwm_bytes=HWM) as tx:
        # Nobody receives: the queue fills at hwm_bytes of payload, not at hwm_bytes of records.
        for _ in range(2):
            tx.send(content(3, HWM // 2), timeout=0)
        with pytest.raises(fastmsg.Full):
            tx.send(content(3, HWM // 2), timeout=0)
        with pytest.raises(fastmsg.Full):
            tx.send(bytearray(THRESHOLD + 1), timeout=0)
        with pytest.raises(fastmsg.Timeout):
            tx.send(content(4, HWM // 2), timeout=0.05)
        with pytest.raises(fastmsg.Full):
            tx.send_many([b"fits in the ring", content(5, HWM // 2)], timeout=0)
        assert tx.close(linger=0) is False
    # One message larger than hwm_bytes goes when nothing else is held.
    with fastmsg.Sender(f"tcp://127.0.0.1:{port}", context=ctx, hwm_bytes=HWM) as tx:
        tx.send(content(6, 3 * MiB), timeout=0)
        with pytest.raises(fastmsg.Full):
            tx.send(content(7, THRESHOLD), timeout=0)
        with fastmsg.Receiver(f"tcp://127.0.0.1:{port}", context=ctx, ring_bytes=RING) as rx:
            assert recv_bytes(rx, 1) == [content(6, 3 * MiB)]
            tx.send(content(7, THRESHOLD), timeout=10)
            assert recv_bytes(rx, 1) == [content(7, THRESHOLD)]


def test_close_with_unsent_large_messages_releases_them(ctx):
    port = free_port()
    msg = content(8, MiB)
    before = sys.getrefcount(msg)
    tx = fastmsg.Sender(f"tcp://127.0.0.1:{port}", context=ctx, hwm_bytes=16 * MiB)
    tx.send_many([msg] * 5 + [bytearray(msg)] * 3 + [b"small"])
    assert sys.getrefcount(msg) == before + 5
    assert tx.close(linger=0) is False
    assert sys.getrefcount(msg) == before
    with pytest.raises(fastmsg.Closed):
        tx.send(msg)


def test_close_while_a_large_message_is_half_written(ctx):
    # A peer that completes the handshake and then stops reading: the I/O thread is left in the
    # middle of an 8 MiB frame when the Sender closes.
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited: the frame cannot fit in flight
        srv.settimeout(10)
        tx = fastmsg.Sender(f"tcp://127.0.0.1:{srv.getsockname()[1]}", context=ctx, hwm_bytes=16 * MiB)
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while len(data) < proto.HELLO_FRAME:
                data += conn.recv(proto.HELLO_FRAME - len(data))
            kind, fields = proto.decode(data)
            assert kind == "HELLO"
            conn.sendall(proto.encode_hello(proto.KINDS["WELCOME"], session_id=fields["session_id"], seq=0,
                                            max_message=16 * MiB, max_batch=256 * KiB))
            wait_for(lambda: tx.connected, what="the handshake")
            msg = content(9, 8 * MiB)
            before = sys.getrefcount(msg)
            tx.send(msg)
            tx.send(content(10, 2 * MiB))  # a temporary, also never written
            wait_for(lambda: tx.stats()["write_calls"] > 1, what="the I/O thread to start writing")
            assert tx.stats()["sent_messages"] == 0
            assert tx.close(linger=0) is False
            assert sys.getrefcount(msg) == before


def test_message_dropped_as_too_large_is_released(ctx):
    port = free_port()
    msg = content(11, 2 * MiB)
    before = sys.getrefcount(msg)
    with fastmsg.Sender(f"tcp://127.0.0.1:{port}", context=ctx) as tx:
        tx.send(msg)  # queued before the handshake: the I/O thread drops it after WELCOME
        tx.send(b"after")
        with fastmsg.Receiver(f"tcp://127.0.0.1:{port}", context=ctx, ring_bytes=RING, max_message_size=MiB) as rx:
            assert recv_bytes(rx, 1) == [b"after"]
            with pytest.raises(fastmsg.MessageTooLarge):
                tx.flush(10)
            assert tx.flush(10)
            assert tx.stats()["rejected"] == 1
            assert sys.getrefcount(msg) == before
