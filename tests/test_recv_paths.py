"""The ways a message reaches recv(): read by the I/O thread, or by the thread blocked in recv
itself (epoll), with the sockets handed back to the I/O thread after a lease; and the consumer
lock that makes recv safe from several threads and against a close() from another one."""

import multiprocessing
import signal
import subprocess
import sys
import threading
import time

import pytest

import fastmsg
from transport_helpers import check_payload, payload, wait_for
from platforms import needs_posix_signals

SPAWN = multiprocessing.get_context("spawn")


def test_close_from_another_thread_ends_a_blocked_recv(ctx):
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx)
    outcome = []
    started = threading.Event()

    def consume():
        started.set()
        try:
            rx.recv()  # no timeout: only the close can end it
        except BaseException as e:  # noqa: BLE001 - the test inspects what it was
            outcome.append(e)

    t = threading.Thread(target=consume)
    t.start()
    started.wait(5)
    rx.close()
    t.join(10)
    assert not t.is_alive(), "recv() went on waiting after close()"
    assert len(outcome) == 1 and isinstance(outcome[0], fastmsg.Closed), outcome


def test_two_consumer_threads_split_the_stream(ctx):
    n = 20000
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx) as tx:
        got = [[], []]
        total = [0]
        lock = threading.Lock()
        deadline = time.monotonic() + 30

        def consume(mine):
            while time.monotonic() < deadline:
                with lock:
                    if total[0] >= n:
                        return
                try:
                    batch = rx.recv_many(64, timeout=0.2)
                except fastmsg.Timeout:
                    continue
                seqs = [check_payload(m)[1] for m in batch]
                mine.extend(seqs)
                with lock:
                    total[0] += len(seqs)

        threads = [threading.Thread(target=consume, args=(got[i],)) for i in range(2)]
        for t in threads:
            t.start()
        for i in range(0, n, 500):
            tx.send_many(payload(3, s) for s in range(i, i + 500))
        for t in threads:
            t.join(40)
        assert not any(t.is_alive() for t in threads)
        # Every message once, and each thread saw its share in the order sent.
        assert sorted(got[0] + got[1]) == list(range(n))
        for mine in got:
            assert mine == sorted(mine)


def test_the_io_thread_takes_the_sockets_back_after_a_recv(ctx):
    """After a recv that read the socket itself, a new sender is still accepted, handshaken and
    read ahead while nobody is in recv."""
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx:
        with fastmsg.Sender(rx.endpoint, context=ctx) as first:
            first.send(b"first")
            with rx.recv(timeout=10) as m:
                assert bytes(m) == b"first"
            with fastmsg.Sender(rx.endpoint, context=ctx) as second:
                second.send(b"second")
                # Written means a WELCOME came back: the handshake ran with no recv() pending.
                wait_for(lambda: second.stats()["sent_messages"] == 1, what="the handshake and write")
                wait_for(lambda: rx.stats()["received_messages"] == 2, what="the read-ahead")
                with rx.recv(timeout=0) as m:
                    assert bytes(m) == b"second"
                assert second.flush(10)  # acknowledged once released


def echo(endpoint, count, poller):
    """Child process: echoes `count` messages from its Receiver back to the first message's
    sender endpoint."""
    with fastmsg.Context(poller=poller) as ctx, \
            fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx, \
            fastmsg.Sender(endpoint, context=ctx) as back:
        back.send(rx.endpoint.encode())
        for _ in range(count):
            with rx.recv(timeout=30) as m:
                back.send(m)
        back.flush(30)


def test_request_reply_between_processes(ctx):
    """Each side blocks in recv between messages: the direct read and the direct write carry
    every message, in both directions."""
    n = 3000
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx:
        child = SPAWN.Process(target=echo, args=(rx.endpoint, n, ctx.poller))
        child.start()
        try:
            with rx.recv(timeout=30) as m:
                peer = bytes(m).decode()
            with fastmsg.Sender(peer, context=ctx) as tx:
                for i in range(n):
                    tx.send(payload(5, i))
                    with rx.recv(timeout=30) as reply:
                        assert check_payload(reply) == (5, i)
            child.join(30)
            assert child.exitcode == 0
        finally:
            if child.is_alive():
                child.kill()
                child.join(5)
        assert rx.stats()["crc_errors"] == rx.stats()["protocol_errors"] == 0


RECV_UNTIL_SIGINT = """
import signal, sys, fastmsg
# (a shell that started this run in the background makes its children ignore SIGINT, and Python
# then installs no KeyboardInterrupt handler: the test must not depend on how it was started)
signal.signal(signal.SIGINT, signal.default_int_handler)
ctx = fastmsg.Context(poller=sys.argv[1])
rx = fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx)
try:
    print("waiting", flush=True)
    rx.recv()
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@needs_posix_signals
def test_ctrl_c_interrupts_a_recv_without_timeout(ctx):
    p = subprocess.Popen([sys.executable, "-c", RECV_UNTIL_SIGINT, ctx.poller],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "waiting\n"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == "interrupted\n" and p.returncode == 0


@pytest.mark.parametrize("size", [64, 20000, 40000])
def test_holding_more_than_a_ring_of_messages_does_not_stall(ctx, size):
    """A caller that keeps every Message (views into the connection's ring) would otherwise
    stop the connection once the ring is full; the reader goes on in a new ring instead."""
    n = 64 * 1024 * 8 // size + 100  # about eight rings' worth
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, ring_bytes=64 * 1024,
                          max_batch_bytes=4096) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, max_batch_bytes=4096, hwm_bytes=16 << 20,
                           ring_bytes=16 << 20) as tx:
        # (the Sender keeps every message until the receiver's application releases it, so its
        # ring must hold all of them: ring_bytes bounds the small messages unacknowledged)
        body = [bytes([i & 0xFF]) * size for i in range(n)]
        tx.send_many(body)
        kept = []
        deadline = time.monotonic() + 30
        while len(kept) < n and time.monotonic() < deadline:
            try:
                kept.extend(rx.recv_many(n - len(kept), timeout=1))
            except fastmsg.Timeout:
                pass
        assert len(kept) == n, f"{len(kept)} of {n} arrived while all were held"
        assert all(bytes(m) == b for m, b in zip(kept, body))
        if size <= 32 * 1024:  # larger ones go in buffers of their own, behind small markers
            assert rx.stats()["ring_chains"] >= 7
        for m in kept:
            m.release()
        # Released rings are freed and the connection goes on in its current one.
        tx.send(b"after")
        with rx.recv(timeout=10) as m:
            assert bytes(m) == b"after"
