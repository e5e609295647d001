"""Requests and replies on the same connection: Sender.request(), Message.reply(), over real
sockets and processes, through faults. Every wait is on a condition, never a sleep."""

import gc
import multiprocessing
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref

import pytest

import fastmsg
from fastmsg._core import protocol as proto
from fastmsg.testing import FaultProxy

from reply_helpers import answer, serve_in_thread, serve_process
from transport_helpers import free_port, raw_connect, read_frame, wait_for
from platforms import ipc_param, needs_posix_signals, needs_sigkill

SPAWN = multiprocessing.get_context("spawn")
K = proto.KINDS


@pytest.fixture
def pair(tmp_path, request):
    """A Receiver answering every request from a thread, and a Sender to it; TCP or ipc."""
    endpoint = "tcp://127.0.0.1:0" if getattr(request, "param", "tcp") == "tcp" else f"ipc://{tmp_path}/r.sock"
    rx = fastmsg.Receiver(endpoint)
    tx = fastmsg.Sender(rx.endpoint)
    t, stop = serve_in_thread(rx)
    yield tx, rx
    stop.set()
    t.join(5)
    tx.close(linger=0)
    rx.close()


@pytest.mark.parametrize("pair", ["tcp", ipc_param()], indirect=True)
def test_request_returns_its_reply(pair):
    tx, rx = pair
    for size in (0, 1, 7, 8, 100, 70_000, 2 << 20):  # empty, around the id, big (outside the ring)
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        with tx.request(data, timeout=10) as reply:
            assert bytes(reply) == answer(data)
            assert not reply.is_request
    stats = tx.stats()
    assert stats["requests"] == stats["replies_received"] == 7 and stats["late_replies"] == 0
    wait_for(lambda: rx.stats()["replies_sent"] == 7, what="the receiver's count")


def test_many_threads_each_get_their_own_replies(pair):
    tx, rx = pair
    errors = []

    def run(thread_id):
        try:
            for i in range(500):
                data = struct.pack("<II", thread_id, i) + bytes([thread_id]) * (i % 50)
                reply = tx.request(data, timeout=30)
                assert bytes(reply) == answer(data), (thread_id, i)
                reply.release()
        except BaseException as exc:  # reported below, with the thread that failed
            errors.append((thread_id, exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert tx.stats()["replies_received"] == 4000


def test_a_request_made_while_another_waits_goes_out_at_once():
    """A request is written by its thread's wait for the reply, unless another request is in
    flight (or the token is taken): the I/O thread must then be told to write it at once, not
    when it next wakes for something else (here the slow request's reply, after 300 ms, longer
    than the quick requests may take). (The Sender has an I/O thread of its own: the Receiver's
    would wake it.)"""
    slow_seen = threading.Event()

    def replier(rx, stop):
        held = []  # the slow request, answered after its delay
        while not stop.is_set():
            try:
                m = rx.recv(timeout=0.01)
            except fastmsg.Timeout:
                m = None
            if m is not None and bytes(m) == b"slow":
                held.append((time.monotonic() + 0.3, m))
                slow_seen.set()
            elif m is not None:
                with m:
                    m.reply(answer(m))
            for due, h in [x for x in held if x[0] <= time.monotonic()]:
                with h:
                    h.reply(answer(h))
                held.remove((due, h))

    with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
            fastmsg.Sender(rx.endpoint, context=own) as tx:
        stop = threading.Event()
        t = threading.Thread(target=replier, args=(rx, stop), daemon=True)
        t.start()
        try:
            assert bytes(tx.request(b"first", timeout=10)) == answer(b"first")  # connected
            for round_ in range(3):
                slow_seen.clear()
                slow = {}
                waiter = threading.Thread(target=lambda: slow.update(reply=bytes(tx.request(b"slow", timeout=10))))
                waiter.start()
                assert slow_seen.wait(10)
                data = b"quick %d" % round_
                with tx.request(data, timeout=0.15) as reply:  # (the slow one is still in flight)
                    assert bytes(reply) == answer(data)
                waiter.join(10)
                assert slow["reply"] == answer(b"slow")
        finally:
            stop.set()
            t.join(5)


def test_replies_in_reverse_order_reach_their_requests():
    n = 20
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        results = {}

        def ask(i):
            results[i] = bytes(tx.request(b"q%d" % i, timeout=30))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        held = [rx.recv(timeout=10) for _ in range(n)]  # every request in flight at once
        assert all(m.is_request for m in held)
        for m in reversed(held):
            m.reply(answer(m))
            m.release()
        for t in threads:
            t.join(30)
        assert results == {i: answer(b"q%d" % i) for i in range(n)}


def test_timeout_then_late_reply_is_counted_and_the_next_request_works():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        with pytest.raises(fastmsg.Timeout):
            tx.request(b"slow", timeout=0.2)
        late = rx.recv(timeout=5)
        late.reply(b"too late")
        late.release()
        wait_for(lambda: tx.stats()["late_replies"] == 1, what="the late reply to be counted")
        t, stop = serve_in_thread(rx)
        try:
            assert bytes(tx.request(b"next", timeout=10)) == answer(b"next")
        finally:
            stop.set()
            t.join(5)
        assert tx.stats()["replies_received"] == 1


def _slow_replier(rx, delay, stop):
    """Answers each request `delay` seconds after it came (the fault: a replier slower than a
    requester's own read of its socket, sender_direct.c)."""
    while not stop.is_set():
        try:
            m = rx.recv(timeout=0.1)
        except fastmsg.Timeout:
            continue
        with m:
            stop.wait(delay)
            m.reply(answer(m))


def _crowd_the_cpus():
    """A spinning process per CPU, so that threads get preempted mid-step (a direct write or read
    then meets the I/O thread holding the token, and the other way round)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]


@pytest.mark.parametrize("crowded", [False, True], ids=["quiet", "crowded"])
def test_replies_slower_than_the_requesters_own_read_come_within_the_timeout(crowded):
    """A requester reads its socket itself for a while, then leaves it to the I/O thread, which
    must watch it at once: otherwise the reply waits for that thread's idle wake-up (100 ms), the
    request's next look (50 ms), or the end of the requester's lease on the socket (as long), all
    longer than these requests may take. On crowded CPUs the requester and the I/O thread often
    find the token held by the other. (The Sender has an I/O thread of its own: the Receiver's
    would wake it.)"""
    hogs = _crowd_the_cpus() if crowded else []
    try:
        with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
                fastmsg.Sender(rx.endpoint, context=own) as tx:
            stop = threading.Event()
            t = threading.Thread(target=_slow_replier, args=(rx, 0.003, stop), daemon=True)
            t.start()
            try:
                assert bytes(tx.request(b"first", timeout=10)) == answer(b"first")  # connected
                for i in range(150):
                    assert bytes(tx.request(b"q%d" % i, timeout=0.045)) == answer(b"q%d" % i)
            finally:
                stop.set()
                t.join(5)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_after_a_request_the_io_thread_reads_the_socket_again():
    """After its reply a requester keeps the socket from the I/O thread for a short lease; what
    comes later (the acknowledgements flush() asks for) must still be read."""
    with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
            fastmsg.Sender(rx.endpoint, context=own) as tx:
        t, stop = serve_in_thread(rx)
        try:
            for i in range(50):
                assert bytes(tx.request(b"q%d" % i, timeout=10)) == answer(b"q%d" % i)
            assert tx.flush(timeout=5)  # the last requests' ACKs come after their replies
            assert tx.stats()["unacknowledged"] == 0
        finally:
            stop.set()
            t.join(5)


def test_reply_to_a_sender_that_closed_is_undeliverable_not_an_error():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        tx = fastmsg.Sender(rx.endpoint)
        box = []
        asker = threading.Thread(target=lambda: box.append(pytest.raises(fastmsg.Closed, tx.request, b"q")))
        asker.start()
        m = rx.recv(timeout=5)
        tx.close(linger=0)  # the waiting request() raises Closed; the sender says CLOSE
        asker.join(5)
        assert box, "request() did not end when its Sender closed"
        wait_for(lambda: rx.stats()["connections"] == 0, what="the sender's connection to end")
        m.reply(b"nobody listens")  # no exception for the replier
        m.release()
        wait_for(lambda: rx.stats()["undeliverable_replies"] == 1, what="the reply to be counted")
        assert rx.stats()["replies_sent"] == 0


def test_reply_to_a_plain_message_raises():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        tx.send(b"not a request")
        with rx.recv(timeout=5) as m:
            assert not m.is_request
            with pytest.raises(fastmsg.FastmsgError, match="not a request"):
                m.reply(b"x")


def test_a_request_does_not_keep_its_receiver_alive():
    """A request refers to its Receiver weakly (Messages are not tracked by the cycle collector):
    one the application keeps on its own Receiver is freed with it, and one that outlives its
    Receiver says Closed when answered."""

    class Keeping(fastmsg.Receiver):
        pass

    rx = Keeping("tcp://127.0.0.1:0")
    sock, _ = _raw_requester(rx.endpoint, [(1, b"kept"), (2, b"outliving")])
    with sock:
        rx.kept = rx.recv(timeout=5)  # were the reference strong: rx -> kept -> rx
        outliving = rx.recv(timeout=5)
        assert rx.kept.is_request and outliving.is_request and bytes(outliving) == b"outliving"
        gone = weakref.ref(rx)
        del rx
        gc.collect()
        assert gone() is None, "a Receiver keeping one of its requests was never freed"
        with pytest.raises(fastmsg.Closed, match="Receiver this request came from is closed"):
            outliving.reply(b"too late")


def _raw_requester(endpoint, requests, capabilities=proto.CAP_ACK | proto.CAP_REPLIES):
    """A hand-made sender that sends `requests` ((id, payload) pairs) and never acknowledges a reply."""
    sock = raw_connect(endpoint)
    sock.sendall(proto.encode_hello(K["HELLO"], session_id=0x5EED, seq=0, max_message=1 << 20, max_batch=1 << 16,
                                    capabilities=capabilities))
    kind, welcome = read_frame(sock)
    assert kind == "WELCOME"
    sock.sendall(proto.encode_data(0, requests))
    return sock, welcome


def test_reply_frames_on_the_wire_and_the_reply_bound():
    with fastmsg.Receiver("tcp://127.0.0.1:0", reply_hwm_bytes=4096) as rx:
        sock, welcome = _raw_requester(rx.endpoint, [(11, b"a"), (12, b"b"), (13, b"c")])
        assert welcome["capabilities"] & proto.CAP_REPLIES
        with sock:
            msgs = [rx.recv(timeout=5) for _ in range(3)]
            assert [bytes(m) for m in msgs] == [b"a", b"b", b"c"]
            msgs[0].reply(bytes(2000))
            msgs[1].reply(bytes(2000))  # 2 x 2016 bytes unacknowledged: within 4096
            with pytest.raises(fastmsg.Full):
                msgs[2].reply(bytes(2000))
            frames = []
            while sum(len(f.get("replies", ())) for _, f in frames) < 2:
                frames.append(read_frame(sock))
            replies = [r for kind, f in frames if kind == "REPLY" for r in f["replies"]]
            assert replies == [(11, bytes(2000)), (12, bytes(2000))]
            assert [f["first_seq"] for kind, f in frames if kind == "REPLY"][0] == 0
            sock.sendall(proto.encode_control(K["RACK"], 2))  # acknowledged: room again
            wait_for(lambda: _try_reply(msgs[2]), what="room for the third reply")
            for m in msgs:
                m.release()


@pytest.mark.parametrize("acked", [0, 1])
def test_a_requester_that_does_not_acknowledge_its_replies_is_taken_for_dead(acked):
    """Written replies wait dead_peer_timeout at most for their RACK (receiver_reply.c), counted
    from the write or from a RACK that left some unacknowledged: a requester that sends none (it
    has no heartbeats, so nothing else would tell) has its connection closed as a dead peer."""
    with fastmsg.Receiver("tcp://127.0.0.1:0", heartbeat_interval=0.2, dead_peer_timeout=0.5) as rx:
        sock, _ = _raw_requester(rx.endpoint, [(21, b"a"), (22, b"b")])
        with sock:
            msgs = [rx.recv(timeout=5) for _ in range(2)]
            for m in msgs:
                m.reply(b"re " + bytes(m))
                m.release()
            replies = []
            while len(replies) < 2:
                kind, f = read_frame(sock)
                replies += f["replies"] if kind == "REPLY" else []
            assert replies == [(21, b"re a"), (22, b"re b")]
            if acked:
                sock.sendall(proto.encode_control(K["RACK"], acked))
            wait_for(lambda: rx.stats()["dead_peers"] == 1, what="the dead peer found", timeout=10)
            st = rx.stats()
            assert st["connections"] == 0 and st["protocol_errors"] == 0, st


@pytest.mark.parametrize("last", ["answered", "released"])
def test_the_replies_to_a_recv_many_batch_leave_together(last):
    """The requests of one recv_many() are answered together: their replies are held until the
    last is answered (or let go), then written at once, not one write each. The I/O thread leaves
    them alone meanwhile, whenever its rounds fall (it wrote a few frames' worth under load)."""
    n = 16
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        sock, _ = _raw_requester(rx.endpoint, [(40 + i, b"q%d" % i) for i in range(n)])
        with sock:
            batch = []
            while len(batch) < n:
                batch += rx.recv_many(n - len(batch), timeout=5)
            for m in batch[:-1]:
                m.reply(b"r" + bytes(m))
            if last == "answered":
                batch[-1].reply(b"r" + bytes(batch[-1]))
            else:
                batch[-1].release()
            answered = n if last == "answered" else n - 1
            frames = []
            while sum(len(f) for f in frames) < answered:
                kind, frame = read_frame(sock)
                if kind == "REPLY":
                    frames.append(frame["replies"])
            assert [r for f in frames for r in f] == [(40 + i, b"rq%d" % i) for i in range(answered)]
            assert len(frames) == 1, f"the replies of one batch left in {len(frames)} frames"


def test_a_reply_sent_at_once_is_not_held_by_a_batch():
    """A batch's hold keeps the I/O thread from writing its replies early; a reply made to go
    now (a request from an earlier recv) still goes now, with what the batch queued so far."""
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        sock, _ = _raw_requester(rx.endpoint, [(1, b"alone")])
        with sock:
            alone = rx.recv(timeout=5)
            sock.sendall(proto.encode_data(1, [(2, b"b0"), (3, b"b1")]))
            batch = []
            while len(batch) < 2:
                batch += rx.recv_many(2 - len(batch), timeout=5)
            batch[0].reply(b"held")  # the batch's last is not answered: held
            alone.reply(b"now")
            replies = []
            while len(replies) < 2:
                kind, frame = read_frame(sock)
                if kind == "REPLY":
                    replies += frame["replies"]
            assert sorted(replies) == [(1, b"now"), (2, b"held")]
            batch[1].reply(b"last")
            kind, frame = read_frame(sock)
            while kind != "REPLY":
                kind, frame = read_frame(sock)
            assert frame["replies"] == [(3, b"last")]


def test_a_batch_kept_unanswered_does_not_hold_its_replies_for_ever():
    """The application answers one request of a batch, keeps the other and calls nothing more:
    the held reply still goes, once held 100 ms (the I/O thread's deadline), not never."""
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        sock, _ = _raw_requester(rx.endpoint, [(5, b"a"), (6, b"b")])
        with sock:
            batch = []
            while len(batch) < 2:
                batch += rx.recv_many(2 - len(batch), timeout=5)
            batch[0].reply(b"answered")  # batch[1] is kept, unanswered
            sock.settimeout(10)
            kind, frame = read_frame(sock)
            while kind != "REPLY":
                kind, frame = read_frame(sock)
            assert frame["replies"] == [(5, b"answered")]
            batch[1].release()


def test_each_reply_carries_the_ack_of_the_requests_released_before_it():
    # The ACK timer (1 ms) would say it too, but alone and later: here each REPLY frame is preceded
    # by an ACK of the requests released so far, and never of the one it answers (still held).
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        sock, _ = _raw_requester(rx.endpoint, [(0, b"q")])
        with sock:
            for seq in range(20):
                if seq:
                    sock.sendall(proto.encode_control(K["RACK"], seq) + proto.encode_data(seq, [(seq, b"q")]))
                with rx.recv(timeout=5) as m:
                    m.reply(b"r")
                    frames = []
                    while not frames or frames[-1][0] != "REPLY":
                        frames.append(read_frame(sock))
                acks = [f["value"] for kind, f in frames if kind == "ACK"]
                assert frames[-1][1]["replies"] == [(seq, b"r")]
                if seq:
                    assert acks and acks[-1] == seq, (seq, frames)


def _try_reply(m):
    try:
        m.reply(b"third")
        return True
    except fastmsg.Full:
        return False


def test_request_without_the_capability_is_refused():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        sock, welcome = _raw_requester(rx.endpoint, [(1, b"x")], capabilities=proto.CAP_ACK)
        with sock:
            assert not welcome["capabilities"] & proto.CAP_REPLIES
            kind, fields = read_frame(sock)
            assert (kind, fields["code"]) == ("ERROR", 1)
        wait_for(lambda: rx.stats()["protocol_errors"] == 1, what="the refusal to be counted")


# ---- faults: resets, corrupted replies, a replier killed and restarted ----

def _ask_concurrently(tx, threads, per_thread, timeout):
    """Requests from several threads; returns ({data: reply bytes}, [(data, exception)])."""
    got, failed, lock = {}, [], threading.Lock()

    def run(n):
        for i in range(per_thread):
            data = struct.pack("<II", n, i) + bytes(i % 300)
            try:
                reply = bytes(tx.request(data, timeout=timeout))
                with lock:
                    got[data] = reply
            except fastmsg.Timeout as exc:
                with lock:
                    failed.append((data, exc))

    ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout * per_thread + 30)
    assert not any(t.is_alive() for t in ts), "a request() hung"
    return got, failed


@pytest.mark.parametrize("fault", ["resets", "corrupted replies"])
def test_every_request_is_answered_exactly_once_through_faults(fault):
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, FaultProxy(rx.endpoint, seed=7) as proxy:
        seen = {}
        t, stop = serve_in_thread(rx, seen)
        if fault == "resets":
            proxy.reset_after(20_000, 60_000)
        else:
            proxy.flip_bits(2e-5, direction="to_client")
        tx = fastmsg.Sender(proxy.endpoint, heartbeat_interval=0.2)
        try:
            got, failed = _ask_concurrently(tx, threads=4, per_thread=300, timeout=60)
            assert not failed, failed[:3]
            assert all(got[d] == answer(d) for d in got) and len(got) == 1200
            assert all(count == 1 for count in seen.values()) and len(seen) == 1200  # none twice
            stats = tx.stats()
            if fault == "resets":
                assert proxy.stats()["resets"] >= 1 and stats["connects"] >= 2
            else:
                assert stats["crc_errors"] >= 1, stats
            print(f"\n{fault}: sender {stats}, receiver {rx.stats()}")
        finally:
            stop.set()
            t.join(5)
            tx.close(linger=0)


@needs_sigkill
def test_replier_killed_and_restarted_mid_stream():
    port = free_port()
    procs = []

    def start():
        ready = SPAWN.Event()
        p = SPAWN.Process(target=serve_process, args=(port, ready), daemon=True)
        p.start()
        assert ready.wait(30), "the replier did not start"
        procs.append(p)

    start()
    tx = fastmsg.Sender(f"tcp://127.0.0.1:{port}")
    try:
        done = threading.Event()
        result = {}

        def run():
            result["got"], result["failed"] = _ask_concurrently(tx, threads=4, per_thread=400, timeout=3)
            done.set()

        runner = threading.Thread(target=run)
        runner.start()
        wait_for(lambda: tx.stats()["replies_received"] >= 300, what="replies before the kill")
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].join(10)
        start()
        runner.join(400)
        assert done.is_set(), "requests hung after the replier died"
        got, failed = result["got"], result["failed"]
        assert all(got[d] == answer(d) for d in got)
        assert len(got) + len(failed) == 1600
        # Only a request acknowledged by the dead replier and not yet answered is lost: at most one
        # per requesting thread, and it ends in Timeout, never a hang.
        assert len(failed) <= 4, failed
        print(f"\nreplier killed: {len(failed)} timed out, sender {tx.stats()}")
    finally:
        tx.close(linger=0)
        for p in procs:
            p.kill()
            p.join(10)


@needs_posix_signals
def test_signals_during_request_waits_lose_nothing():
    """A requester's wait sleeps in its socket's read (sender_direct.c), which a signal cuts short
    (EINTR): the handler must run and the wait go on, on the same connection, with every reply
    matched. The replier is another process, so that the signals land in the requesting thread."""
    port = free_port()
    ready = SPAWN.Event()
    p = SPAWN.Process(target=serve_process, args=(port, ready), daemon=True)
    p.start()
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *_: hits.append(1))
    try:
        assert ready.wait(30), "the replier did not start"
        # busy_poll=0: every wait sleeps, none looks (busy_poll.h)
        with fastmsg.Sender(f"tcp://127.0.0.1:{port}", busy_poll=0) as tx:
            assert bytes(tx.request(b"first", timeout=10)) == answer(b"first")
            signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
            try:
                for i in range(2000):
                    assert bytes(tx.request(b"s%d" % i, timeout=10)) == answer(b"s%d" % i)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            st = tx.stats()
    finally:
        signal.signal(signal.SIGALRM, old)
        p.kill()
        p.join(10)
    assert len(hits) > 100, len(hits)
    assert st["connects"] == 1 and st["protocol_errors"] == 0 and st["late_replies"] == 0, st


def test_reply_given_just_before_the_receiver_closes_arrives():
    # reply() queues the reply for the I/O thread; close() right after it must write it (the
    # connection then lingers half-closed until the requester has read it), not drop it.
    for i in range(20):
        rx = fastmsg.Receiver("tcp://127.0.0.1:0")

        def answer_once_then_close():
            m = rx.recv(timeout=10)
            m.reply(b"answer %d" % i)
            m.release()
            rx.close()

        t = threading.Thread(target=answer_once_then_close)
        t.start()
        with fastmsg.Sender(rx.endpoint) as tx:
            with tx.request(b"question", timeout=10) as reply:
                assert bytes(reply) == b"answer %d" % i
        t.join()


# ---- request_many, and replies to a batch written together ----

def test_request_many_returns_the_replies_in_order_whatever_order_they_come_in():
    with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
            fastmsg.Sender(rx.endpoint, context=own) as tx:
        asks = [b"q%d" % i * (i % 7) for i in range(64)] + [bytes(70_000)]  # one outside the ring
        box = []
        asker = threading.Thread(target=lambda: box.append(tx.request_many(asks, timeout=30)))
        asker.start()
        held = []
        while len(held) < len(asks):  # every request in flight at once
            held += rx.recv_many(len(asks) - len(held), timeout=10)
        for m in reversed(held):
            m.reply(answer(m))
            m.release()
        asker.join(30)
        assert [bytes(r) for r in box[0]] == [answer(a) for a in asks]
        assert tx.stats()["replies_received"] == len(asks)


def test_request_many_timeout_carries_the_replies_that_came():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        box = []

        def ask():
            try:
                tx.request_many([b"a", b"b", b"c"], timeout=1.0)
            except fastmsg.Timeout as exc:
                box.append(exc)

        asker = threading.Thread(target=ask)
        asker.start()
        held = [rx.recv(timeout=10) for _ in range(3)]
        held[1].reply(b"only b")
        for m in held:
            m.release()
        asker.join(30)
        assert box, "request_many did not time out"
        assert [None if r is None else bytes(r) for r in box[0].replies] == [None, b"only b", None]
        assert tx.stats()["replies_received"] == 1
        held[0].reply(b"late")
        wait_for(lambda: tx.stats()["late_replies"] == 1, what="the late reply to be counted")


def test_request_many_refuses_a_str_and_says_how_many_were_sent():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        with pytest.raises(TypeError) as info:
            tx.request_many([b"sent", "not bytes"])
        assert info.value.queued == 1
        with rx.recv(timeout=10) as m:
            assert bytes(m) == b"sent" and m.is_request
        assert tx.request_many([]) == []


def _ask_many(tx, asks, timeout):
    """request_many(asks) from a thread; returns the thread and a list that gets the replies of
    a Timeout (replies that came, None for the rest), if one is raised."""
    box = []

    def ask():
        try:
            tx.request_many(asks, timeout=timeout)
        except fastmsg.Timeout as exc:
            box.append(exc.replies)

    asker = threading.Thread(target=ask)
    asker.start()
    return asker, box


@pytest.mark.parametrize("answered", [64, 63, 0])
def test_replies_to_a_batch_arrive_whether_the_last_request_is_answered_or_let_go(answered):
    """Replies to the requests of one recv_many are written together, by the last reply, or by the
    release of the last request left unanswered; a reply to a request released before it goes too."""
    with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
            fastmsg.Sender(rx.endpoint, context=own) as tx:
        asks = [b"q%d" % i for i in range(64)]
        asker, box = _ask_many(tx, asks, 1.5)
        held = []
        while len(held) < len(asks):
            held += rx.recv_many(len(asks) - len(held), timeout=10)
        for m in held[:answered]:
            m.reply(answer(m))
        for m in held[answered:]:
            m.release()  # let go unanswered
        for m in held[:answered]:
            m.release()
        if answered == 0:  # replies after release: written too
            for m, a in zip(held[:10], asks):
                m.reply(answer(a))
        asker.join(30)
        if answered == 64:
            assert not box
            assert tx.stats()["replies_received"] == 64
        else:
            want = answered or 10
            got = box[0]
            assert [bytes(r) for r in got[:want]] == [answer(a) for a in asks[:want]]
            assert got[want:] == [None] * (64 - want)


def test_replies_held_for_a_batch_go_at_the_next_recv():
    """A batch's replies wait for its last request; one the replier keeps for later does not
    hold them for good (they go at its next recv, or at the I/O thread's next round: this checks
    that they arrive, not which of the two sent them)."""
    with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
            fastmsg.Sender(rx.endpoint, context=own) as tx:
        asks = [b"q%d" % i for i in range(8)]
        asker, box = _ask_many(tx, asks, 10)
        # all eight in the ring first, so that one recv_many takes them: one batch
        wait_for(lambda: rx.stats()["received_messages"] == len(asks), what="the requests to arrive")
        held = rx.recv_many(len(asks), timeout=10)
        assert len(held) == len(asks)
        kept = held.pop()  # answered later
        for m in held:
            m.reply(answer(m))  # held for the batch's last request (or any write the I/O thread makes)
        with pytest.raises(fastmsg.Timeout):
            rx.recv(timeout=0)
        wait_for(lambda: rx.stats()["replies_sent"] == 7, what="the held replies to go")
        kept.reply(answer(kept))
        asker.join(30)
        assert not box
        assert tx.stats()["replies_received"] == 8


def test_request_stream_yields_replies_in_order_with_at_most_window_in_flight():
    with fastmsg.Context() as own, fastmsg.Receiver("tcp://127.0.0.1:0") as rx, \
            fastmsg.Sender(rx.endpoint, context=own) as tx:
        asks = [b"s%d" % i for i in range(200)]
        got, errors = [], []

        def ask():
            try:
                got.extend(bytes(r) for r in tx.request_stream(iter(asks), window=5, timeout=10))
            except BaseException as exc:
                errors.append(exc)

        asker = threading.Thread(target=ask)
        asker.start()
        served = 0
        while served < len(asks):
            held = rx.recv_many(64, timeout=10)
            # nothing more comes while these are unanswered: never more than the window
            while True:
                try:
                    held += rx.recv_many(64, timeout=0.02)
                except fastmsg.Timeout:
                    break
            assert len(held) <= 5
            for m in reversed(held):
                m.reply(answer(m))
                m.release()
            served += len(held)
        asker.join(30)
        assert not errors
        assert got == [answer(a) for a in asks]


def test_request_stream_stopped_early_ends_its_requests():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        t, stop = serve_in_thread(rx)
        try:
            stream = tx.request_stream((b"r%d" % i for i in range(100)), window=8, timeout=10)
            assert bytes(next(stream)) == answer(b"r0")
            stream.close()  # the 7 still in flight end: their replies are late
            # each of the 7 is late, whether it came before the end of its request or after
            wait_for(lambda: tx.stats()["late_replies"] == 7, what="the replies to the requests in flight")
            assert bytes(tx.request(b"after", timeout=10)) == answer(b"after")
        finally:
            stop.set()
            t.join(5)
        with pytest.raises(ValueError, match="window"):
            next(tx.request_stream([b"x"], window=0))


def test_request_stream_times_out_when_no_reply_comes():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        with pytest.raises(fastmsg.Timeout):
            list(tx.request_stream([b"a", b"b"], timeout=0.2))
        assert len(rx.recv_many(2, timeout=5)) >= 1


def test_busy_poll_on_both_sides():
    """busy_poll= makes a requester and a recv() poll before sleeping: the round trips are the
    same (all answered, each its own), and a wait shorter than the poll still ends at its
    deadline (the poll is cut there)."""
    with fastmsg.Receiver("tcp://127.0.0.1:0", busy_poll=0.002) as rx, \
            fastmsg.Sender(rx.endpoint, busy_poll=0.002) as tx:
        t, stop = serve_in_thread(rx)
        try:
            for i in range(200):
                with tx.request(b"q%d" % i, timeout=10) as reply:
                    assert bytes(reply) == answer(b"q%d" % i)
        finally:
            stop.set()
            t.join(10)
        with pytest.raises(fastmsg.Timeout):
            rx.recv(timeout=0.0005)


@pytest.mark.parametrize("bad", [-1e-6, 0.011, float("nan")])
def test_busy_poll_out_of_range_is_refused(bad):
    for cls, where in ((fastmsg.Receiver, "tcp://127.0.0.1:0"), (fastmsg.Sender, "tcp://127.0.0.1:9")):
        with pytest.raises(ValueError, match="busy_poll"):
            cls(where, busy_poll=bad)
