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
