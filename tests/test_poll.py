"""fastmsg.poll: one thread waits on several Receivers and Senders, with real senders in other
threads. No sleep synchronises anything: each wait is for an event the test causes."""

import threading
import time

import pytest

import fastmsg


@pytest.fixture
def receivers():
    rxs = [fastmsg.Receiver("tcp://127.0.0.1:0") for _ in range(3)]
    yield rxs
    for rx in rxs:
        rx.close()


def _send_from_thread(endpoint, messages):
    def run():
        with fastmsg.Sender(endpoint) as tx:
            tx.send_many(messages)
            tx.flush(timeout=10)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_serves_many_receivers_from_one_thread(receivers):
    per_sender = 200
    threads = [_send_from_thread(rx.endpoint, [b"%d:%d" % (i, n) for n in range(per_sender)])
               for i, rx in enumerate(receivers)]
    got = {i: [] for i in range(len(receivers))}
    deadline = time.monotonic() + 20
    while sum(map(len, got.values())) < per_sender * len(receivers):
        assert time.monotonic() < deadline, f"only {got} arrived"
        for rx in fastmsg.poll(receivers, timeout=5):
            i = receivers.index(rx)
            got[i] += [bytes(m) for m in rx.recv_many(1000, timeout=0)]  # ready: no wait
    for t in threads:
        t.join(10)
    for i, msgs in got.items():
        assert msgs == [b"%d:%d" % (i, n) for n in range(per_sender)]


def test_without_select_poll_the_wait_is_select(receivers, monkeypatch):
    """As on Windows, which has no select.poll(): the same waits, over select.select()."""
    import fastmsg.polling

    monkeypatch.delattr(fastmsg.polling.select, "poll")
    start = time.monotonic()
    assert fastmsg.poll(receivers, timeout=0.05) == []  # nothing sent: the timeout ends it
    assert time.monotonic() - start >= 0.05
    test_serves_many_receivers_from_one_thread(receivers)


def test_only_the_ready_are_returned(receivers):
    quiet, busy, _ = receivers
    with fastmsg.Sender(busy.endpoint) as tx:
        tx.send(b"x")
        assert fastmsg.poll(receivers, timeout=10) == [busy]
        assert fastmsg.poll(receivers, timeout=0) == [busy]  # poll takes nothing
        assert bytes(busy.recv(timeout=0)) == b"x"
    assert fastmsg.poll([quiet], timeout=0) == []


@pytest.mark.parametrize("timeout", [0, 0.05, 0.2])
def test_timeout_is_honoured(receivers, timeout):
    start = time.monotonic()
    assert fastmsg.poll(receivers, timeout=timeout) == []
    elapsed = time.monotonic() - start
    assert timeout <= elapsed < timeout + 2.0  # never early; late only by scheduling


def test_senders_with_room():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    tx = fastmsg.Sender(rx.endpoint, hwm_bytes=4096)
    other = fastmsg.Sender(rx.endpoint)
    try:
        assert fastmsg.poll([tx, other], timeout=0) == [tx, other]
        # Fill tx's queue: the receiver takes nothing, so nothing is acknowledged.
        with pytest.raises(fastmsg.Full):
            while True:
                tx.send(b"q" * 1000, timeout=0)
        assert fastmsg.poll([tx], timeout=0.05) == []
        released = threading.Event()

        def take_then_release():
            held = [rx.recv(timeout=10) for _ in range(4)]
            released.set()
            del held  # released: acknowledged, room comes back

        t = threading.Thread(target=take_then_release)
        t.start()
        assert fastmsg.poll([tx], timeout=10) == [tx]
        assert released.is_set()
        t.join(10)
        tx.send(b"more", timeout=0)
    finally:
        for tx_ in (tx, other):
            tx_.close(linger=0)
        rx.close()


def test_mixed_and_closed():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    tx = fastmsg.Sender(rx.endpoint)
    assert fastmsg.poll([rx, tx], timeout=0) == [tx]
    tx.close()
    rx.close()
    with pytest.raises(fastmsg.Closed):
        fastmsg.poll([rx], timeout=0)
    assert fastmsg.poll([], timeout=None) == []
    with pytest.raises(ValueError):
        fastmsg.poll([], timeout=-1)
