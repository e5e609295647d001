"""A thread that answers the requests of its Receiver's sole connection waits for the next one in
that socket's read (receiver_direct.c: read_wait_conn) rather than in the receiver's poller. What
the poller alone sees must still be seen: a new connection while requests keep coming, close()
from another thread; and a signal must cut the read short without losing a request."""

import signal
import threading

import pytest

import fastmsg
from platforms import needs_posix_signals
from reply_helpers import answer

pytestmark = pytest.mark.skipif(not hasattr(fastmsg, "Sender"), reason="this build has no transport engine")


def requests_until(tx, stop, limit, failures):
    """Sends requests one at a time until `stop` is set or `limit` were answered; checks each."""
    for i in range(limit):
        if stop.is_set():
            return
        question = b"q%d" % i
        try:
            with tx.request(question, timeout=10) as reply:
                if bytes(reply) != answer(question):
                    failures.append((question, bytes(reply)))
        except fastmsg.FastmsgError as exc:
            failures.append((question, exc))
            return


def test_a_new_sender_is_served_while_requests_keep_the_replier_in_its_read():
    # Requests come back to back, so each read returns with the next one and never times out:
    # only the replier's looks at the listener between reads let the second sender in.
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as asker:
        stop, failures, plain = threading.Event(), [], []
        t = threading.Thread(target=requests_until, args=(asker, stop, 200_000, failures))

        def serve():
            """Answers until the newcomer's message came, then until the requester has stopped."""
            while not plain:
                m = rx.recv(timeout=10)
                with m:
                    if m.is_request:
                        m.reply(answer(m))
                    else:
                        plain.append(bytes(m))
            stop.set()
            for _ in range(1000):  # (the requester's last request, at most, is still to answer)
                if not t.is_alive():
                    return
                try:
                    m = rx.recv(timeout=0.05)
                except fastmsg.Timeout:
                    continue
                with m:
                    m.reply(answer(m))

        # The first request, answered on this thread, makes the waits that follow read-waits.
        t.start()
        m = rx.recv(timeout=10)
        with m:
            m.reply(answer(m))
        with fastmsg.Sender(rx.endpoint) as newcomer:
            newcomer.send(b"from the newcomer")
            serve()
            assert newcomer.flush(timeout=10)
        t.join(30)
        assert not t.is_alive()
    assert plain == [b"from the newcomer"]
    assert failures == []


def test_close_from_another_thread_ends_a_replier_waiting_in_its_read():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    outcome = []
    answered = threading.Event()

    def replier():
        m = rx.recv(timeout=10)
        with m:
            m.reply(answer(m))
        answered.set()
        try:
            rx.recv(timeout=60)  # waits in the read: nothing more comes
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    t = threading.Thread(target=replier)
    t.start()
    with fastmsg.Sender(rx.endpoint) as tx:
        assert bytes(tx.request(b"one", timeout=10)) == answer(b"one")
        assert answered.wait(10)
        rx.close()
        t.join(10)
        assert not t.is_alive(), "close() did not end the wait"
    assert len(outcome) == 1 and isinstance(outcome[0], fastmsg.Closed), outcome


@needs_posix_signals
def test_signals_during_a_replier_read_lose_no_request():
    """The replier is this (main) thread, where Python's handler runs: each signal cuts its read
    short (EINTR), the handler runs, and the wait goes on with every request answered once."""
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *_: hits.append(1))
    try:
        with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint, busy_poll=0) as tx:
            stop, failures = threading.Event(), []
            t = threading.Thread(target=requests_until, args=(tx, stop, 2000, failures))
            t.start()
            seen = []
            signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
            try:
                while len(seen) < 2000 and not failures:
                    m = rx.recv(timeout=10)
                    with m:
                        seen.append(bytes(m))
                        m.reply(answer(m))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            t.join(30)
            assert not t.is_alive()
            st = rx.stats()
    finally:
        signal.signal(signal.SIGALRM, old)
    assert failures == []
    assert seen == [b"q%d" % i for i in range(2000)]
    assert len(hits) > 100, len(hits)
    assert st["protocol_errors"] == 0 and st["accepted"] == 1, st


def test_the_io_thread_reads_the_connection_again_once_the_replier_has_stopped():
    """A replier that sleeps in its sole connection's read takes that socket out of the receiver's
    poller meanwhile (receiver_direct.c: park), and keeps it out after a read that brought a
    request. When it stops calling recv, the I/O thread must read the connection again once the
    lease runs out: a message sent after the last reply is then acknowledged on arrival
    (ack="received") without any recv(), on the same connection. Each round's second request
    mostly comes while the replier sleeps in the read (it is sent as soon as the first reply is
    back)."""
    with fastmsg.Receiver("tcp://127.0.0.1:0", ack="received", busy_poll=0) as rx, \
            fastmsg.Sender(rx.endpoint) as tx:
        for round_ in range(5):
            questions = [b"%d.1" % round_, b"%d.2" % round_]
            replies = []
            t = threading.Thread(target=lambda: replies.extend(bytes(tx.request(q, timeout=10)) for q in questions))
            t.start()
            for _ in questions:  # the second recv() waits in the read: it follows a reply
                with rx.recv(timeout=10) as m:
                    m.reply(answer(m))
            t.join(10)
            assert replies == [answer(q) for q in questions]
            tx.send(b"after the last reply")
            assert tx.flush(timeout=10), "nobody read the connection after the replier stopped"
            with rx.recv(timeout=0) as m:
                assert bytes(m) == b"after the last reply"
        # (not read, the connection would only come back through the heartbeat's dead-peer
        # timeout and a new one: every round's message resent)
        assert tx.stats()["disconnects"] == 0 and rx.stats()["accepted"] == 1, (tx.stats(), rx.stats())
