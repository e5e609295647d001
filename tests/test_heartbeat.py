"""Heartbeats over real sockets: a black-holed peer is found dead by both sides and the sender
reconnects once the path heals; an idle connection stays up, and so does a slow consumer's; the
sender answers PING and takes CLOSE as a clean goodbye; options are checked."""

import socket
import time

import pytest

import fastmsg
from fastmsg._core import protocol as proto
from fastmsg.testing import FaultProxy

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

from transport_helpers import read_frame, wait_for

K = proto.KINDS


def drain(rx, until, timeout, what):
    """Receives messages (as bytes) until `until(received so far)` holds, within `timeout` s. A
    thread blocked in recv holds the receiver's sockets (the direct read), so this also checks
    that the receiver's timers run in it."""
    got = []
    deadline = time.monotonic() + timeout
    while not until(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        try:
            got += [bytes(m) for m in rx.recv_many(1000, timeout=0.05)]
        except fastmsg.Timeout:
            pass
    return got


def test_black_hole_detected_and_healed(ctx):
    opts = dict(context=ctx, heartbeat_interval=0.1, dead_peer_timeout=0.5)
    with fastmsg.Receiver("tcp://127.0.0.1:0", **opts) as rx, FaultProxy(rx.endpoint) as proxy, \
            fastmsg.Sender(proxy.endpoint, **opts) as tx:
        # A busy stream: the receiver hears the sender all the time and PINGs nothing; the sender
        # hears its ACKs (or, were they slower than half the timeout, the PONGs to its PINGs).
        n = 0
        deadline = time.monotonic() + 10
        while tx.stats()["acknowledged"] < 1 and tx.stats()["pongs_received"] < 1:
            assert time.monotonic() < deadline, f"the sender heard nothing back: {tx.stats()}"
            tx.send_many([b"before %d" % (n + i) for i in range(50)])
            n += 50
            try:
                rx.recv_many(1000, timeout=0.02)
            except fastmsg.Timeout:
                pass
        assert tx.stats()["connects"] == 1 and tx.stats()["dead_peers"] == 0
        assert rx.stats()["pings_sent"] == 0  # it only PINGs a sender gone quiet

        proxy.black_hole()
        t0 = time.monotonic()
        tx.send_many([b"held %d" % i for i in range(10)])  # kept until acknowledged, resent after
        drain(rx, lambda _: rx.stats()["dead_peers"] >= 1 and rx.stats()["connections"] == 0, 5,
              "the receiver to drop the silent connection")
        wait_for(lambda: tx.stats()["dead_peers"] >= 1, timeout=5, what="the sender to find the receiver dead")
        assert time.monotonic() - t0 < 3, "dead peers found too slowly for a 0.5 s timeout"
        st = tx.stats()
        assert st["disconnects"] >= 1 and st["protocol_errors"] == 0
        assert "no sign of life" in st["last_error"]
        assert rx.stats()["protocol_errors"] == 0

        proxy.heal()
        wait_for(lambda: tx.stats()["connects"] >= 2, timeout=15, what="the sender to reconnect")
        tx.send_many([b"after %d" % i for i in range(100)])
        got = drain(rx, lambda got: b"after 99" in got, 10, "the messages sent after the heal")
        assert [g for g in got if g.startswith(b"after")] == [b"after %d" % i for i in range(100)]
        assert tx.stats()["protocol_errors"] == 0 and rx.stats()["protocol_errors"] == 0


def test_idle_connection_stays_up(ctx):
    opts = dict(context=ctx, heartbeat_interval=0.05, dead_peer_timeout=0.3)
    with fastmsg.Receiver("tcp://127.0.0.1:0", **opts) as rx, fastmsg.Sender(rx.endpoint, **opts) as tx:
        tx.send(b"hello")
        assert bytes(rx.recv(timeout=10)) == b"hello"
        # About a second of silence, part of it with a thread blocked in recv (which then holds
        # the receiver's sockets): the PINGs keep both sides alive.
        with pytest.raises(fastmsg.Timeout):
            rx.recv(timeout=0.4)
        wait_for(lambda: tx.stats()["pings_sent"] >= 20, timeout=10, what="20 PINGs from the idle sender")
        ts, rs = tx.stats(), rx.stats()
        assert ts["disconnects"] == 0 and ts["dead_peers"] == 0 and ts["connects"] == 1
        assert rs["dead_peers"] == 0 and rs["connections"] == 1 and rs["protocol_errors"] == 0
        assert ts["pongs_received"] >= ts["pings_sent"] - 2
        # The receiver answers; it PINGs only if the sender's PINGs come late (a loaded machine).
        assert rs["pings_sent"] <= ts["pings_sent"] // 4, (ts, rs)
        tx.send(b"still here")
        assert bytes(rx.recv(timeout=10)) == b"still here"


def welcome(sock):
    """Reads HELLO and answers WELCOME; the HELLO's fields."""
    kind, h = read_frame(sock)
    assert kind == "HELLO"
    sock.sendall(proto.encode_hello(K["WELCOME"], session_id=h["session_id"], seq=h["seq"],
                                    max_message=1 << 20, max_batch=1 << 16))
    return h


def test_sender_answers_ping_and_takes_close(ctx):
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        endpoint = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        with fastmsg.Sender(endpoint, context=ctx, heartbeat_interval=0.05, dead_peer_timeout=5) as tx:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(10)
                h = welcome(conn)
                assert h["capabilities"] & 2, "HELLO does not announce heartbeats"
                assert h["heartbeat_ms"] == 50
                conn.sendall(proto.encode_control(K["PING"], 0x1234))
                seen = []
                while ("PONG", 0x1234) not in seen or "PING" not in [k for k, _ in seen]:
                    kind, fields = read_frame(conn)
                    seen.append((kind, fields.get("value")))
                    if kind == "PING":  # the idle sender's own: answer it
                        conn.sendall(proto.encode_control(K["PONG"], fields["value"]))
                    assert len(seen) < 1000, seen[-5:]
                wait_for(lambda: tx.stats()["pongs_received"] >= 1, what="the sender to count a PONG")
                assert tx.stats()["pings_sent"] >= 1
                conn.sendall(proto.encode_control(K["CLOSE"], 0))
                wait_for(lambda: tx.stats()["disconnects"] >= 1, what="the sender to leave after CLOSE")
            second, _ = server.accept()  # it comes back, with its backoff
            with second:
                second.settimeout(10)
                welcome(second)
                wait_for(lambda: tx.stats()["connects"] >= 2, what="the sender to reconnect")
            st = tx.stats()
            assert st["protocol_errors"] == 0 and st["dead_peers"] == 0, st
            assert "closed" in st["last_error"]


def test_receiver_grants_heartbeats_only_when_asked(ctx):
    with fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, heartbeat_interval=0.25) as rx:
        host, port = rx.endpoint[len("tcp://"):].rsplit(":", 1)
        for caps, granted in ((0, False), (2, True)):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(proto.encode_hello(K["HELLO"], session_id=0x99 + caps, seq=0, max_message=1 << 20,
                                             max_batch=1 << 16, capabilities=caps, heartbeat_ms=1000))
                kind, w = read_frame(s)
                assert kind == "WELCOME"
                assert bool(w["capabilities"] & 2) == granted
                assert w["heartbeat_ms"] == (250 if granted else 0)


@pytest.mark.parametrize("cls", ["Sender", "Receiver"])
def test_heartbeat_options_are_checked(cls):
    make = getattr(fastmsg, cls)
    ep = "tcp://127.0.0.1:1" if cls == "Sender" else "tcp://127.0.0.1:0"
    for bad in (0, -1, float("nan"), 1e9):
        with pytest.raises(ValueError, match="heartbeat_interval"):
            make(ep, heartbeat_interval=bad)
        with pytest.raises(ValueError, match="dead_peer_timeout"):
            make(ep, dead_peer_timeout=bad)
    for interval, timeout in ((1.0, 1.0), (1.0, 0.5), (2.0, 1.5)):
        with pytest.raises(ValueError, match="dead_peer_timeout must be greater than heartbeat_interval"):
            make(ep, heartbeat_interval=interval, dead_peer_timeout=timeout)
    make(ep, heartbeat_interval=0.5, dead_peer_timeout=0.6).close()
    make(ep, heartbeat_interval=10).close()  # the default timeout follows the interval


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_slow_consumer_is_not_taken_for_dead(ctx, transport, tmp_path):
    """A receiver whose application reads nothing (its ring full, its socket unread) for four
    dead-peer timeouts is slow, not dead: it PINGs meanwhile, so the sender, which hears no ACK,
    neither reconnects nor writes everything again (before, it did so every timeout)."""
    opts = dict(context=ctx, heartbeat_interval=0.05, dead_peer_timeout=0.3)
    where = "tcp://127.0.0.1:0" if transport == "tcp" else f"ipc://{tmp_path}/slow.sock"
    with fastmsg.Receiver(where, ring_bytes=1 << 16, **opts) as rx, \
            fastmsg.Sender(rx.endpoint, hwm_bytes=1 << 24, **opts) as tx:
        sent = 0
        while True:  # until the receiver's ring, both sockets' buffers and the sender's ring are full
            try:
                tx.send(b"%08d" % sent + b"." * 1000, timeout=0.2)
            except fastmsg.Timeout:
                break
            sent += 1
            assert sent < 1_000_000, "the sender never felt the receiver's backpressure"
        time.sleep(1.2)  # the fault under test: an application that reads nothing for 4 timeouts
        got = drain(rx, lambda got: len(got) >= sent, 20, f"the {sent} messages sent")
        assert [int(g[:8]) for g in got] == list(range(sent))
        ts, rs = tx.stats(), rx.stats()
        assert ts["dead_peers"] == 0 and ts["connects"] == 1 and ts["resent"] == 0, ts
        assert rs["dead_peers"] == 0 and rs["duplicates"] == 0, rs
