"""The receiver's sessions and connections never lose or lock out a sender: a reconnect replaces
a stale connection, sessions stay put and bounded over many senders, and bursts of thousands of
connections are all accepted."""

import random
import subprocess
import sys
import threading
import time

import pytest

import fastmsg
from fastmsg._core import protocol as proto

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

from fastmsg.testing import FaultProxy
from pollers import POLLERS
from transport_helpers import (check_payload, hello, payload, raw_connect, read_until_eof, recv_n, rss_bytes,
                               split_frames, tcp_address, wait_for)


@pytest.fixture(params=POLLERS)
def ctx(request):
    c = fastmsg.Context(poller=request.param)
    yield c
    c.close()


def welcome(sock, session_id, seq=0):
    """Sends HELLO and returns the answer's frames (WELCOME expected)."""
    sock.sendall(hello(session_id=session_id, seq=seq))
    data = b""
    while len(data) < proto.HELLO_FRAME:
        chunk = sock.recv(proto.HELLO_FRAME - len(data))
        assert chunk, f"closed during the handshake: {split_frames(data) if data else 'nothing'}"
        data += chunk
    kind, fields = proto.decode(data)
    assert kind == "WELCOME" and fields["session_id"] == session_id, (kind, fields)
    return fields


@pytest.fixture
def nofile():
    """Raises the soft descriptor limit to the hard one for the test; yields the limit."""
    resource = pytest.importorskip("resource", reason="POSIX only: descriptor limits (the resource module)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        hard = soft
    yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


# ---- 1. a reconnect replaces the connection its session still has ----

def test_stale_connection_is_replaced(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx) as rx, \
            raw_connect(rx.endpoint) as old, raw_connect(rx.endpoint) as new:
        assert welcome(old, 0x5E55)["seq"] == 0
        old.sendall(proto.encode_data(0, [b"m0", b"m1", b"m2"]))
        assert recv_n(rx, 3) == [b"m0", b"m1", b"m2"]
        # the old connection stays open and silent: the sender was reset on its side only
        assert welcome(new, 0x5E55)["seq"] == 3  # resumes where the old one stopped
        rest = read_until_eof(old)             # closed by the receiver, no ERROR: at most the
        frames = split_frames(rest)              # ACK of m0..m2
        assert all(kind == "ACK" for kind, _ in frames), frames
        wait_for(lambda: rx.stats()["replaced_connections"] == 1, what="the replacement to be counted")
        new.sendall(proto.encode_data(2, [b"m2", b"m3"]))  # a resent batch: m2 is a duplicate
        assert recv_n(rx, 1) == [b"m3"]
        st = rx.stats()
        assert st["protocol_errors"] == 0 and st["duplicates"] == 1 and st["lost"] == 0
        assert st["sessions"] == 1
        wait_for(lambda: rx.stats()["connections"] == 1, what="one connection left")


def test_reconnect_through_resets_is_never_locked_out():
    stop = threading.Event()
    sent = [0]
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, FaultProxy(rx.endpoint, seed=1) as proxy, \
            fastmsg.Sender(proxy.endpoint, max_batch_bytes=256, hwm_bytes=1 << 16) as tx:

        def stream():
            while not stop.is_set():
                try:
                    tx.send(payload(7, sent[0]), timeout=0.05)
                except fastmsg.Timeout:
                    continue
                sent[0] += 1

        t = threading.Thread(target=stream)
        t.start()
        seqs = []
        try:
            for reset in range(4):
                before = len(seqs)
                seqs += [check_payload(m)[1] for m in recv_n(rx, 200)]
                assert len(seqs) > before
                connects = tx.stats()["connects"]
                proxy.reset_all()
                wait_for(lambda: tx.stats()["connects"] > connects, what=f"reconnect after reset {reset}")
            seqs += [check_payload(m)[1] for m in recv_n(rx, 200)]
        finally:
            stop.set()
            t.join(10)
        assert proxy.stats()["resets"] >= 4
        st = rx.stats()
        assert st["protocol_errors"] == 0 and st["crc_errors"] == 0, st
        assert tx.stats()["protocol_errors"] == 0
        assert len(set(seqs)) == len(seqs), "a message was delivered twice"


# ---- 2. sessions stay put, and idle ones are bounded ----

@pytest.mark.parametrize("max_sessions", [64, None])
def test_ten_thousand_sessions_over_a_receivers_life(max_sessions):
    n_sessions = 10_000
    opts = {} if max_sessions is None else {"max_sessions": max_sessions}
    churn_done = threading.Event()
    errors = []
    with fastmsg.Receiver("tcp://127.0.0.1:0", **opts) as rx:
        host, port = tcp_address(rx.endpoint)
        ids = random.Random(5).sample(range(1, 1 << 63), n_sessions)

        def churn():
            import socket
            try:
                for sid in ids:
                    with socket.create_connection((host, port), timeout=10) as s:
                        assert welcome(s, sid)["seq"] == 0
            except BaseException as e:  # reported by the main thread
                errors.append(e)
            finally:
                churn_done.set()

        txs = [fastmsg.Sender(rx.endpoint, hwm_bytes=1 << 16) for _ in range(2)]
        counts = [0, 0]
        got = [[], []]
        t = threading.Thread(target=churn)
        t.start()
        try:
            deadline = time.monotonic() + 40
            while not churn_done.is_set() or any(len(g) < c for g, c in zip(got, counts)):
                assert time.monotonic() < deadline, f"stuck: {counts}, {[len(g) for g in got]}, {rx.stats()}"
                if not churn_done.is_set():
                    for i, tx in enumerate(txs):
                        # Never waiting for room: this thread is also the one that receives
                        # (and so acknowledges), so a full queue must not block it.
                        try:
                            counts[i] += tx.send_many([payload(i, counts[i] + k) for k in range(20)], timeout=0)
                        except fastmsg.Full as e:
                            counts[i] += e.queued
                try:
                    batch = rx.recv_many(1000, timeout=0.05)
                except fastmsg.Timeout:
                    continue
                for m in batch:
                    sender, seq = check_payload(m)
                    got[sender].append(seq)
                    m.release()
        finally:
            t.join(30)
            for tx in txs:
                tx.close()
        assert not errors, errors
        for i in range(2):
            assert got[i] == list(range(counts[i])), f"stream {i} lost or reordered messages"
        st = rx.stats()
        assert st["duplicates"] == 0 and st["lost"] == 0 and st["protocol_errors"] == 0, st
        assert st["accepted"] == n_sessions + 2
        if max_sessions is None:
            assert st["evicted_sessions"] == 0 and st["sessions"] == n_sessions + 2
        else:
            assert st["evicted_sessions"] >= n_sessions + 2 - max_sessions, st
            assert st["sessions"] <= max_sessions + 2, st


def test_evicted_session_starts_afresh():
    with fastmsg.Receiver("tcp://127.0.0.1:0", max_sessions=1) as rx:
        with raw_connect(rx.endpoint) as s:
            assert welcome(s, 0xA)["seq"] == 0
            s.sendall(proto.encode_data(0, [b"a0", b"a1"]))
            assert recv_n(rx, 2) == [b"a0", b"a1"]
        wait_for(lambda: rx.stats()["connections"] == 0, what="session 0xA to go idle")
        with raw_connect(rx.endpoint) as s:
            assert welcome(s, 0xB)["seq"] == 0  # one session too many: 0xA, idle, is forgotten
        wait_for(lambda: rx.stats()["evicted_sessions"] >= 1, what="0xA to be forgotten")
        with raw_connect(rx.endpoint) as s:
            assert welcome(s, 0xA, seq=5)["seq"] == 5  # a new session, at the HELLO's seq
            s.sendall(proto.encode_data(5, [b"a5"]))
            assert recv_n(rx, 1) == [b"a5"]
        st = rx.stats()
        assert st["lost"] == 0 and st["duplicates"] == 0 and st["protocol_errors"] == 0, st


def test_max_sessions_is_validated():
    for bad in (0, -1, 1 << 40):
        with pytest.raises(ValueError, match="max_sessions"):
            fastmsg.Receiver("tcp://127.0.0.1:0", max_sessions=bad)
    with pytest.raises(ValueError, match="max_connections"):
        fastmsg.Receiver("tcp://127.0.0.1:0", max_connections=0)


# ---- 3. thousands of connections at once ----

def test_two_thousand_senders_at_once(nofile):
    n = 2000
    if nofile < 2 * n + 200:
        pytest.skip(f"the descriptor limit ({nofile}) is too low for {n} senders and their connections")
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        txs = []
        try:
            for i in range(n):
                txs.append(fastmsg.Sender(rx.endpoint, hwm_bytes=4096))
                txs[-1].send(payload(i, 0))
            got = recv_n(rx, n)
            deadline = time.monotonic() + 30
            for tx in txs:  # each acknowledged, now that the messages were released
                assert tx.flush(max(0.001, deadline - time.monotonic())), tx.stats()
            ids = sorted(check_payload(m)[0] for m in got)
            assert ids == list(range(n))
            st = rx.stats()
            assert st["received_messages"] == n and st["accepted"] == n, st
            assert st["protocol_errors"] == 0 and st["duplicates"] == 0, st
        finally:
            for tx in txs:
                tx.close(linger=0)


HOLD_CONNECTIONS = r"""
import resource, socket, sys
sys.path.insert(0, sys.argv[4])
from transport_helpers import hello
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, n, first_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[5])
socks = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(hello(session_id=first_id + i))
    socks.append(s)
print("held", flush=True)
sys.stdin.readline()
"""


def test_ten_thousand_concurrent_connections(nofile):
    n = 10_000
    if nofile < n + 500:
        pytest.skip(f"the descriptor limit ({nofile}) is too low for {n} connections")
    import os
    with fastmsg.Receiver("tcp://127.0.0.1:0", handshake_timeout=60) as rx:
        host, port = tcp_address(rx.endpoint)
        for round_ in range(2):  # the second round reuses the memory the first freed
            base = rss_bytes()
            # the peers live in a child: both ends in one process would need twice the descriptors
            child = subprocess.Popen([sys.executable, "-c", HOLD_CONNECTIONS, host, str(port), str(n),
                                      os.path.dirname(__file__), str(1 + round_ * n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
            try:
                assert child.stdout.readline().strip() == "held", f"the child failed ({child.wait(30)})"
                # every connection in and its HELLO answered (new session ids each round)
                wait_for(lambda: rx.stats()["connections"] == n and rx.stats()["sessions"] == n * (round_ + 1),
                         timeout=30, what=f"{n} connections")
                st = rx.stats()
                assert st["protocol_errors"] == 0 and st["accept_errors"] == 0, st
                if base is not None:
                    per_conn = (rss_bytes() - base) / n
                    print(f"\n{n} idle connections, round {round_ + 1}: {per_conn:.0f} bytes each")
                    # an idle connection touches one page of its ring; a cleared ring is 4 MiB
                    assert per_conn < 64 << 10, f"{per_conn:.0f} bytes per idle connection"
            finally:
                child.stdin.close()
                child.wait(30)
            wait_for(lambda: rx.stats()["connections"] == 0, timeout=30, what="the connections to close")
            try:  # the consumer drops the closed rings (each holds its HELLO record)
                rx.recv(timeout=0)
            except fastmsg.Timeout:
                pass
