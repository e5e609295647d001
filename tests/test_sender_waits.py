"""A Sender's waits honour their timeouts whatever other threads do, and a send_many() that stops
part-way says how many of its messages were queued."""

import threading
import time

import pytest

import fastmsg
from transport_helpers import free_port

pytestmark = pytest.mark.skipif(not hasattr(fastmsg, "Sender"), reason="this build has no transport engine")

RING = 4096  # the smallest send queue: a few messages fill it


@pytest.fixture
def stuck_sender():
    """A Sender whose peer never answers (nothing listens), so its queue never drains."""
    tx = fastmsg.Sender(f"tcp://127.0.0.1:{free_port()}", hwm_bytes=RING)
    yield tx
    tx.close(linger=0)


def fill(tx):
    """Queues messages until the queue is full."""
    with pytest.raises(fastmsg.Full):
        for _ in range(RING):
            tx.send(b"x" * 100, timeout=0)


def bounded(fn, limit=5.0):
    """fn()'s result; fails the test, rather than hanging it, if fn has not returned in `limit` s
    (the calls tested here have timeouts far below that)."""
    result = []

    def run():
        try:
            result.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            result.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert result, f"the call did not return within {limit} s"
    kind, value = result[0]
    if kind == "raised":
        raise value
    return value


def blocked_send(tx, outcome):
    """Runs a send() with no timeout that waits for room; `outcome` gets what it raised."""

    def run():
        try:
            tx.send(b"y" * 100)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.05)  # lets it reach its wait; the assertions below hold either way
    return thread


def test_flush_timeout_is_honoured_while_another_thread_waits_in_send(stuck_sender):
    fill(stuck_sender)
    outcome = []
    thread = blocked_send(stuck_sender, outcome)
    assert bounded(lambda: stuck_sender.flush(timeout=0.3)) is False
    bounded(lambda: stuck_sender.close(linger=0))
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], fastmsg.Closed)


def test_send_timeout_is_honoured_while_another_thread_waits_in_send(stuck_sender):
    fill(stuck_sender)
    outcome = []
    thread = blocked_send(stuck_sender, outcome)
    with pytest.raises(fastmsg.Timeout, match="nothing was sent"):
        bounded(lambda: stuck_sender.send(b"z", timeout=0.3))
    with pytest.raises(fastmsg.Full):
        bounded(lambda: stuck_sender.send(b"z", timeout=0))
    bounded(lambda: stuck_sender.close(linger=0))
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_close_from_another_thread_returns_within_its_linger(stuck_sender):
    fill(stuck_sender)
    outcome, flushed = [], []
    sender_thread = blocked_send(stuck_sender, outcome)
    flush_thread = threading.Thread(target=lambda: flushed.append(stuck_sender.flush()), daemon=True)
    flush_thread.start()
    assert bounded(lambda: stuck_sender.close(linger=0.2)) is False  # the queue could not be written
    for thread in (sender_thread, flush_thread):
        thread.join(timeout=5)
        assert not thread.is_alive()
    assert isinstance(outcome[0], fastmsg.Closed)
    assert flushed == [False]


def test_send_many_that_times_out_says_how_many_were_queued(stuck_sender):
    messages = [b"m" * 100] * 200
    with pytest.raises(fastmsg.Timeout) as info:
        stuck_sender.send_many(messages, timeout=0.2)
    queued = info.value.queued
    assert 0 < queued < len(messages)
    assert f"{queued} of the messages" in str(info.value)
    assert "nothing was sent" not in str(info.value)
    with pytest.raises(fastmsg.Full) as info:
        stuck_sender.send_many(messages, timeout=0)
    assert info.value.queued == 0


def test_send_many_stopped_by_a_bad_message_says_how_many_were_queued(stuck_sender):
    with pytest.raises(TypeError) as info:
        stuck_sender.send_many([b"a", b"b", "not bytes", b"d"])
    assert info.value.queued == 2
    assert any("queued 2 of the messages" in note for note in info.value.__notes__)



# ---- the two bounds: the ring (ring_bytes) for small messages, hwm_bytes for large ones ----


def count_until_full(tx, message, limit=100_000):
    """How many `message`s tx queues before send(timeout=0) raises Full (the peer never answers)."""
    for n in range(limit):
        try:
            tx.send(message, timeout=0)
        except fastmsg.Full as exc:
            assert "nothing was sent" in str(exc)
            return n
    raise AssertionError(f"{limit} messages queued and still no Full")


def test_ring_bytes_bounds_the_small_messages_below_hwm_bytes():
    with fastmsg.Sender(f"tcp://127.0.0.1:{free_port()}", hwm_bytes=1 << 20, ring_bytes=RING) as tx:
        small = count_until_full(tx, b"s" * 100)
        # A 4 KiB ring holds some 30 of them (each a 100-byte record and its header); hwm_bytes alone
        # would take about 9,000.
        assert 0 < small <= RING // 100
        assert fastmsg.poll([tx], timeout=0) == []  # more than half of the ring is queued: no room
        tx.close(linger=0)


def test_hwm_bytes_bounds_the_large_messages_held_outside_the_ring():
    large = b"L" * (RING // 4 + 1)  # over a quarter of the ring: held where it lies, not copied in
    hwm = 64 << 10
    with fastmsg.Sender(f"tcp://127.0.0.1:{free_port()}", hwm_bytes=hwm, ring_bytes=RING) as tx:
        # Each takes 24 bytes of the ring, which holds some 170 of those: hwm_bytes is the bound.
        assert count_until_full(tx, large) == hwm // len(large)
        tx.close(linger=0)


@pytest.mark.parametrize("ring_bytes", [0, 4095, -1])
def test_ring_bytes_below_4096_is_refused(ring_bytes):
    with pytest.raises(ValueError, match="ring_bytes must be at least 4096"):
        fastmsg.Sender(f"tcp://127.0.0.1:{free_port()}", ring_bytes=ring_bytes)

# ---- the producer lock (gated_lock.h): exclusive, and a waiter is woken when it is free ----


def test_sends_from_many_threads_arrive_whole_and_in_each_threads_order(tmp_path):
    # Threads sending into one Sender at once, in send(), send_many() and mixed sizes, into a
    # queue small enough that a sender often waits for room while the others wait for the lock:
    # each release must wake a waiter (or they stall), and, where no GIL serializes them, two
    # threads in the ring together would spoil records.
    from transport_helpers import recv_n

    threads_n, per_thread = 6, 3000
    with fastmsg.Receiver(f"ipc://{tmp_path}/rx") as rx, fastmsg.Sender(rx.endpoint, hwm_bytes=1 << 16) as tx:

        def produce(t):
            for i in range(0, per_thread, 3):
                tx.send(b"%d:%d:" % (t, i) + b"a" * (i % 700))
                tx.send_many([b"%d:%d:" % (t, i + 1), b"%d:%d:" % (t, i + 2) + b"b" * 3000])

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        got = recv_n(rx, threads_n * per_thread, timeout=60)
        for th in threads:
            th.join(10)
            assert not th.is_alive()
        assert tx.flush(timeout=10)
    nexts = [0] * threads_n
    for m in got:
        t, i, rest = m.split(b":", 2)
        t, i = int(t), int(i)
        assert i == nexts[t], f"thread {t}: message {i} came where {nexts[t]} was due"
        nexts[t] += 1
        assert rest == (b"a" * (i % 700) if i % 3 == 0 else b"" if i % 3 == 1 else b"b" * 3000)
    assert nexts == [per_thread] * threads_n


def test_a_send_waiting_for_the_lock_goes_once_the_holder_is_done(tmp_path):
    # One thread holds the lock while it waits for room; another waits for the lock. Once the
    # receiver reads, both must finish: the release has to wake the waiter, not leave it asleep.
    rx = fastmsg.Receiver(f"ipc://{tmp_path}/rx")
    tx = fastmsg.Sender(rx.endpoint, hwm_bytes=RING)
    try:
        assert tx.flush(timeout=10)
        fill(tx)
        first, second = [], []
        holder = blocked_send(tx, first)  # waits for room, holding the lock
        waiter = blocked_send(tx, second)  # waits for the lock
        from transport_helpers import recv_n

        # Read until both blocked sends' messages came (recv_n fails once none come); not until
        # the lists fill, as a thread may append a moment after its message was read.
        arrived = 0
        while arrived < 2:
            arrived += recv_n(rx, 1, timeout=10).count(b"y" * 100)
        holder.join(5)
        waiter.join(5)
        assert first == [None] and second == [None]
        assert tx.send(b"after", timeout=1) is None  # the lock is free again
    finally:
        tx.close(linger=0)
        rx.close()


def test_a_signal_ends_a_wait_for_the_lock_and_leaves_it_usable(stuck_sender):
    # A handler that raises while a send() waits for the lock (another thread holds it): the
    # exception comes out of that send(), and once the holder is gone the lock still works.
    import signal

    if not hasattr(signal, "setitimer"):
        pytest.skip("needs signal.setitimer (POSIX)")

    class Alarm(Exception):
        pass

    def on_alarm(signum, frame):
        raise Alarm()

    fill(stuck_sender)
    outcome = []
    holder = blocked_send(stuck_sender, outcome)  # holds the lock, waiting for room
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(Alarm):
            stuck_sender.send(b"z", timeout=30)
        assert time.monotonic() - start < 10
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    with pytest.raises(fastmsg.Timeout, match="busy"):  # still held by the other thread
        stuck_sender.send(b"z", timeout=0.1)
    bounded(lambda: stuck_sender.close(linger=0))
    holder.join(5)
    assert isinstance(outcome[0], fastmsg.Closed)
