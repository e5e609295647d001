"""What a Balancer reads from a Sender, over real sockets: whether it is up, what it has in
flight, acknowledgement round trips, the settled count a relay releases by, and the take-back of
unacknowledged messages for a failover (nothing lost, nothing sent twice by the Sender itself)."""

import threading
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

from transport_helpers import wait_for

UP, BYTES, MESSAGES, SETTLED, SAMPLES, LAST_RTT, TIMING_SINCE, FILL = range(8)


def take(rx, n, timeout=10.0):
    """n Messages, unreleased."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} messages arrived"
        try:
            out += rx.recv_many(n - len(out), timeout=0.1)
        except fastmsg.Timeout:
            pass
    return out


# A batch of at most 64 record bytes holds one message of up to 56 bytes: the receiver
# acknowledges whole batches, so a partial release is acknowledged exactly here.
ONE_PER_BATCH = dict(max_batch_bytes=64)


def test_observations_follow_the_stream(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, **ONE_PER_BATCH) as tx:
        wait_for(lambda: tx._observe()[UP], what="the handshake")
        assert tx.queued_count == tx.settled_count == 0
        msgs = [b"m%03d" % i + b"x" * 52 for i in range(100)]
        tx.send_many(msgs)
        got = take(rx, 100)
        assert [bytes(m) for m in got] == msgs
        o = tx._observe()
        # Nothing released yet: every message is in flight (by default a message is
        # acknowledged once the receiving application releases it).
        assert o[MESSAGES] == 100 and o[SETTLED] == 0 and tx.queued_count == 100
        assert o[BYTES] >= 100 * 64
        assert o[TIMING_SINCE] > 0  # a batch is being timed, and its ACK has not come
        for m in got[:40]:
            m.release()
        wait_for(lambda: tx.settled_count == 40, what="40 acknowledged")
        assert tx._observe()[MESSAGES] == 60
        for m in got[40:]:
            m.release()
        assert tx.flush(timeout=10)
        o = tx._observe()
        assert o[UP] and o[MESSAGES] == 0 and o[BYTES] == 0 and o[SETTLED] == 100
        assert o[SAMPLES] >= 1 and o[LAST_RTT] > 0
        assert tx.stats()["ack_rtt_samples"] == o[SAMPLES]


def test_fill_is_the_fuller_bound_each_against_its_own_limit(ctx):
    # Small messages fill the ring, large ones hwm_bytes: a Balancer takes a member for saturated
    # from this, so a few large messages held must not read as a full ring.
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=1 << 20, ring_bytes=64 << 10) as tx:
        wait_for(lambda: tx._observe()[UP], what="the handshake")
        assert tx._observe()[FILL] == 0.0
        large = b"L" * (256 << 10)  # over a quarter of the ring: held where it lies
        tx.send(large)
        got = take(rx, 1)  # held unreleased: unacknowledged
        o = tx._observe()
        assert o[BYTES] >= len(large)
        assert 0.24 <= o[FILL] <= 0.3, o  # a quarter of hwm_bytes, though four times the ring
        small = [b"s" * 1000] * 40  # some 40 KiB of the 64 KiB ring
        tx.send_many(small)
        got += take(rx, 40)
        o = tx._observe()
        assert 0.6 <= o[FILL] <= 0.7, o  # the ring is the fuller now
        for m in got:
            m.release()
        assert tx.flush(timeout=10)
        assert tx._observe()[FILL] == 0.0


def test_round_trip_includes_a_slow_release(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx, \
            fastmsg.Sender(rx.endpoint, context=ctx) as tx:
        wait_for(lambda: tx._observe()[UP], what="the handshake")
        tx.send(b"warm")
        take(rx, 1)[0].release()
        assert tx.flush(timeout=10)
        before = tx._observe()[SAMPLES]
        t0 = time.monotonic_ns()
        tx.send(b"slow")
        m = take(rx, 1)[0]
        # The receiving application holds the message 100 ms: the round trip must show it.
        while time.monotonic_ns() - t0 < 100_000_000:
            time.sleep(0.01)
        assert tx._observe()[TIMING_SINCE] > 0
        m.release()
        wait_for(lambda: tx._observe()[SAMPLES] > before, what="a new round-trip sample")
        assert tx._observe()[LAST_RTT] >= 90_000_000


def test_up_follows_the_receiver(ctx):
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx)
    tx = fastmsg.Sender(rx.endpoint, context=ctx, heartbeat_interval=0.05)
    try:
        wait_for(lambda: tx._observe()[UP], what="the handshake")
        rx.close()
        wait_for(lambda: not tx._observe()[UP], what="the sender to see the receiver gone")
    finally:
        tx.close(linger=0)


def test_take_unacked_returns_exactly_what_is_unacknowledged(ctx):
    big_lent = b"L" * (300 << 10)             # an exact bytes object past max_batch_bytes: lent
    big_copied = bytearray(b"C" * (2 << 20))  # another buffer past a quarter of the ring: copied
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx:
        tx = fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=4 << 20, **ONE_PER_BATCH)
        msgs = ([b"a%02d" % i + b"." * 50 for i in range(50)] + [big_lent, bytes(big_copied)]
                + [b"b%02d" % i + b"." * 50 for i in range(50)])
        tx.send_many(msgs[:50])
        tx.send(big_lent)
        tx.send(big_copied)
        big_copied[:] = b"Z" * len(big_copied)  # (the copy made at send() is what was queued)
        tx.send_many(msgs[52:])
        got = take(rx, len(msgs))
        assert [bytes(m) for m in got] == msgs
        for m in got[:30]:
            m.release()
        wait_for(lambda: tx.settled_count == 30, what="30 acknowledged")
        back = tx._take_unacked()
        assert tx.closed
        assert back == msgs[30:]
        assert back[20] is big_lent  # lent, so handed back as it is
        assert tx.close() is True  # idempotent, nothing left behind
        with pytest.raises(fastmsg.Closed):
            tx.send(b"more")
        with pytest.raises(fastmsg.Closed):
            tx._take_unacked()
        for m in got[30:]:
            m.release()


def test_take_unacked_from_a_sender_never_connected(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx:
        endpoint = rx.endpoint
    tx = fastmsg.Sender(endpoint, context=ctx)  # nobody listens there any more
    msgs = [b"never %d" % i for i in range(1000)]
    tx.send_many(msgs)
    assert not tx._observe()[UP]
    assert tx._take_unacked() == msgs


def test_take_back_and_resend_loses_nothing(ctx):
    """A stream cut by the take-back at a random point while another thread sends: every message
    whose send() returned is either acknowledged by the first receiver or handed back, once; sent
    on to a second receiver, the two together got every message, and only those the first had
    not acknowledged may appear twice."""
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx1, \
            fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx2:
        tx = fastmsg.Sender(rx1.endpoint, context=ctx, hwm_bytes=64 << 10)
        sent = []

        def produce():
            for i in range(100_000):
                try:
                    tx.send(b"%06d" % i + b"." * (i % 50))
                except fastmsg.Closed:
                    return
                sent.append(i)

        got1 = []
        t = threading.Thread(target=produce)
        t.start()
        deadline = time.monotonic() + 20
        while len(got1) < 3000:  # received and released while the stream goes on
            assert time.monotonic() < deadline, f"only {len(got1)} messages arrived"
            for m in rx1.recv_many(1000, timeout=5):
                got1.append(bytes(m))
                m.release()
        settled_before = tx.settled_count
        back = tx._take_unacked()
        t.join(10)
        assert not t.is_alive()
        acked = settled_before  # (at least; ACKs after this read only shrink what came back)
        with fastmsg.Sender(rx2.endpoint, context=ctx) as tx2:
            tx2.send_many(back)
            got2 = []
            for m in take(rx2, len(back)):
                got2.append(bytes(m))
                m.release()
            assert tx2.flush(timeout=20)
        # Drain what rx1 still had (received before the take-back, not yet released).
        while True:
            try:
                batch = rx1.recv_many(1000, timeout=0.2)
            except fastmsg.Timeout:
                break
            got1 += [bytes(m) for m in batch]
            for m in batch:
                m.release()
        ids1 = [int(m[:6]) for m in got1]
        ids2 = [int(m[:6]) for m in got2]
        assert ids1 == sorted(ids1) and ids2 == sorted(ids2)  # each in order
        assert len(set(ids1)) == len(ids1) and len(set(ids2)) == len(ids2)  # no duplicate on one
        assert set(ids1) | set(ids2) == set(sent)  # nothing lost
        assert ids1[:acked] == sent[:acked] and not set(ids2) & set(sent[:acked])
        assert ids2 == sent[len(sent) - len(ids2):]  # what came back is the tail of the stream


def test_take_unacked_ends_a_request_in_flight(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx:
        tx = fastmsg.Sender(rx.endpoint, context=ctx)
        errors = []

        def ask():
            try:
                tx.request(b"question", timeout=30)
            except BaseException as exc:  # noqa: BLE001 (what it raised is the test)
                errors.append(exc)

        t = threading.Thread(target=ask)
        t.start()
        m = take(rx, 1)[0]  # received, never answered nor released
        tx.send(b"plain")
        take(rx, 1)
        assert tx._take_unacked() == [b"plain"]  # the request is not handed back ...
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], fastmsg.Closed)  # ... its caller is told
        m.release()
