"""Shared-key authentication, allow lists and per-source limits, over real sockets: the right key
works both ways, every wrong or missing key is refused on both sides with the reason and a count,
a recorded handshake replayed on a new connection is refused, and a Receiver's allow list and
max_connections_per_source hold while other senders are served."""

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

from fastmsg._core import protocol as proto
from transport_helpers import read_frame
from platforms import ipc_param, needs_unix_sockets

K = proto.KINDS
KEY, OTHER = b"k" * 32, b"o" * 32
FAST = dict(handshake_timeout=2.0)


def wait_for(cond, timeout=10.0, what="condition"):
    """Polls cond() until true: waits on an outcome, never a guessed duration."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def exchange(rx, tx, n=5):
    """Sends n messages and receives them; True if all came, in order, and were acknowledged."""
    for i in range(n):
        tx.send(b"m%d" % i)
    got = []
    for _ in range(n):
        m = rx.recv(timeout=5)
        got.append(bytes(m))
        m.release()
    return got == [b"m%d" % i for i in range(n)] and tx.flush(timeout=5)


def refused(rx, tx, text, tx_text=None):
    """Both sides report an authentication failure naming `text`, and nothing arrives."""
    tx.send(b"secret data")
    wait_for(lambda: tx.stats()["auth_failures"] >= 1 and rx.stats()["auth_failures"] >= 1, what="auth_failures")
    assert text in rx.stats()["last_error"]
    assert "authentication failed" in tx.stats()["last_error"]
    assert (tx_text or text) in tx.stats()["last_error"]
    assert not tx.flush(timeout=0.2)
    with pytest.raises(fastmsg.Timeout):
        rx.recv(timeout=0)
    assert rx.stats()["received_messages"] == 0


def pair(rx_opts, tx_opts, endpoint="tcp://127.0.0.1:0"):
    rx = fastmsg.Receiver(endpoint, **rx_opts, **FAST)
    tx = fastmsg.Sender(rx.endpoint, **tx_opts, **FAST)
    return rx, tx


def close(*objs):
    for o in objs:
        o.close(linger=0) if isinstance(o, fastmsg.Sender) else o.close()


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:0", ipc_param()])
def test_the_right_key_works_and_counts_nothing(endpoint, tmp_path):
    ep = f"ipc://{tmp_path}/auth.sock" if endpoint == "ipc" else endpoint
    rx, tx = pair(dict(secret=KEY), dict(secret=KEY), ep)
    try:
        assert exchange(rx, tx)
        assert tx.stats()["auth_failures"] == rx.stats()["auth_failures"] == 0
    finally:
        close(tx, rx)


def test_a_sender_in_another_process_authenticates():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", secret=KEY)
    code = ("import sys, fastmsg\n"
            "with fastmsg.Sender(sys.argv[1], secret=sys.argv[2].encode()) as tx:\n"
            "    tx.send_many([b'%d' % i for i in range(100)])\n"
            "    tx.flush(timeout=30)\n")
    child = subprocess.Popen([sys.executable, "-c", code, rx.endpoint, KEY.decode()])
    try:
        got = []
        for _ in range(100):
            m = rx.recv(timeout=30)
            got.append(bytes(m))
            m.release()
        assert got == [b"%d" % i for i in range(100)]
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        rx.close()


def test_a_wrong_key_is_refused_on_both_sides():
    rx, tx = pair(dict(secret=KEY), dict(secret=OTHER))
    try:
        refused(rx, tx, "wrong key")
    finally:
        close(tx, rx)


def test_a_secret_on_the_receiver_only_is_refused():
    rx, tx = pair(dict(secret=KEY), dict())
    try:
        refused(rx, tx, "this receiver requires a secret, the sender has none")
    finally:
        close(tx, rx)


def test_a_secret_on_the_sender_only_is_refused_and_nothing_goes_in_clear():
    rx, tx = pair(dict(), dict(secret=KEY))
    try:
        refused(rx, tx, "the sender has a secret, this receiver has none")
    finally:
        close(tx, rx)


def test_key_rotation_two_keys_on_the_receiver():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", secrets={"2025": KEY, "2026": OTHER})
    old = fastmsg.Sender(rx.endpoint, secret=KEY, key_id="2025")
    new = fastmsg.Sender(rx.endpoint, secret=OTHER, key_id="2026")
    mixed = fastmsg.Sender(rx.endpoint, secret=KEY, key_id="2026", **FAST)  # the wrong key for its id
    try:
        assert exchange(rx, old) and exchange(rx, new)
        wait_for(lambda: mixed.stats()["auth_failures"] >= 1, what="the mismatched sender's refusal")
        assert "wrong key" in mixed.stats()["last_error"]
    finally:
        close(old, new, mixed, rx)


def test_an_unknown_key_id_is_refused():
    rx, tx = pair(dict(secrets={1: KEY}), dict(secret=KEY, key_id=2))
    try:
        refused(rx, tx, "unknown key id")
    finally:
        close(tx, rx)


class Recorder:
    """A TCP relay that records what the client sends, frame by frame as it passes."""

    def __init__(self, target_port):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target = target_port
        self.upstream = bytearray()
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target))
        for a, b, record in ((client, server, True), (server, client, False)):
            threading.Thread(target=self._pump, args=(a, b, record), daemon=True).start()

    def _pump(self, a, b, record):
        while True:
            try:
                data = a.recv(65536)
            except OSError:
                return
            if not data:
                return
            if record:
                self.upstream += data
            try:
                b.sendall(data)
            except OSError:
                return


def frames(data):
    out, at = [], 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from("<II", data, at)
        size = 8 + ((length + 7) & ~7)
        out.append((kind, bytes(data[at:at + size])))
        at += size
    return out


def test_a_replayed_handshake_is_refused():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", secret=KEY)
    relay = Recorder(int(rx.endpoint.rsplit(":", 1)[1]))
    tx = fastmsg.Sender(f"tcp://127.0.0.1:{relay.port}", secret=KEY)
    try:
        assert exchange(rx, tx, 1)
        recorded = dict(frames(relay.upstream))  # the first HELLO and AUTH the sender wrote
        hello, auth = recorded[K["HELLO"]], recorded[K["AUTH"]]
        before = rx.stats()["auth_failures"]
        with socket.create_connection(("127.0.0.1", int(rx.endpoint.rsplit(":", 1)[1]))) as s:
            s.sendall(hello)
            name, challenge = read_frame(s)
            assert name == "CHALLENGE"  # a fresh nonce: the recorded proof cannot match it
            s.sendall(auth)
            name, err = read_frame(s)
        assert (name, err["code"]) == ("ERROR", 10)
        assert "wrong key" in err["text"]
        wait_for(lambda: rx.stats()["auth_failures"] == before + 1, what="the replay's count")
        assert rx.stats()["received_messages"] == 1
    finally:
        close(tx, rx)


def test_a_proof_is_hmac_over_both_nonces_as_documented():
    """The engine's proofs (libcrypto) agree with Python's hmac over the documented input."""
    from test_protocol import auth_proof
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", secrets={9: KEY})
    port = int(rx.endpoint.rsplit(":", 1)[1])
    nonce_s = bytes(range(100, 132))
    hello = proto.encode_hello(K["HELLO"], session_id=77, seq=0, max_message=1 << 20, max_batch=1 << 16,
                               capabilities=1 | 8, auth=(9, nonce_s))
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(hello)
            _, ch = read_frame(s)
            assert ch["proof"] == auth_proof(KEY, b"fastmsg receiver", 77, 9, nonce_s, ch["nonce"])
            s.sendall(proto.encode_auth(auth_proof(KEY, b"fastmsg sender", 77, 9, nonce_s, ch["nonce"])))
            name, welcome = read_frame(s)
            assert name == "WELCOME" and welcome["session_id"] == 77
    finally:
        rx.close()


def test_an_unproven_hello_does_not_take_over_a_session():
    """A HELLO naming a live sender's session, without the key, must not disconnect that sender."""
    rx, tx = pair(dict(secret=KEY), dict(secret=KEY))
    try:
        assert exchange(rx, tx, 1)
        with socket.create_connection(("127.0.0.1", int(rx.endpoint.rsplit(":", 1)[1]))) as s:
            # the sender's session id is not public; any id shows that nothing is touched before AUTH
            s.sendall(proto.encode_hello(K["HELLO"], session_id=5, seq=0, max_message=1 << 20, max_batch=1 << 16,
                                         capabilities=1 | 8, auth=(0, bytes(32))))
            assert read_frame(s)[0] == "CHALLENGE"
            s.sendall(proto.encode_auth(bytes(32)))
            assert read_frame(s)[1]["code"] == 10
        assert rx.stats()["replaced_connections"] == 0 and rx.stats()["sessions"] == 1
        assert exchange(rx, tx, 3)
    finally:
        close(tx, rx)


def test_secrets_are_checked_at_construction():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        fastmsg.Sender("tcp://127.0.0.1:1", secret=b"short")
    with pytest.raises(ValueError, match="not both"):
        fastmsg.Receiver("tcp://127.0.0.1:0", secret=KEY, secrets={1: KEY})
    with pytest.raises(ValueError, match="need secret"):
        fastmsg.Receiver("tcp://127.0.0.1:0", allow=["key:1"])
    with pytest.raises(ValueError, match="need ssl"):
        fastmsg.Receiver("tcp://127.0.0.1:0", allow=["cn:client.example"])
    with pytest.raises(ValueError, match="neither a network"):
        fastmsg.Receiver("tcp://127.0.0.1:0", allow=["10.0.0.0/33"])


# ---- allow lists and per-source limits ----

def raw_hello(port, source, session_id):
    """Connects from `source` and sends a HELLO; returns the socket and the answer's (name, fields)."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(proto.encode_hello(K["HELLO"], session_id=session_id, seq=0, max_message=1 << 20, max_batch=1 << 16,
                                 capabilities=1))
    return s, read_frame(s)


def test_allow_list_by_network():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", allow=["127.0.0.2/32", "::1/128"])
    port = int(rx.endpoint.rsplit(":", 1)[1])
    tx = fastmsg.Sender(rx.endpoint)  # from 127.0.0.1: outside the list
    try:
        s, (name, fields) = raw_hello(port, "127.0.0.2", 11)
        assert name == "WELCOME"
        s.close()
        wait_for(lambda: rx.stats()["refused_peers"] >= 1, what="the sender's refusal")
        assert "address not allowed" in rx.stats()["last_error"]
        wait_for(lambda: "address not allowed" in tx.stats()["last_error"], what="the sender's last_error")
        s, (name, fields) = raw_hello(port, "127.0.0.3", 12)
        assert (name, fields["code"]) == ("ERROR", 11)
        s.close()
    finally:
        close(tx, rx)


def test_allow_list_by_key_id():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", secrets={"a": KEY, "b": OTHER}, allow=["key:a"])
    good = fastmsg.Sender(rx.endpoint, secret=KEY, key_id="a")
    held = fastmsg.Sender(rx.endpoint, secret=OTHER, key_id="b")  # a key it holds but does not allow
    try:
        assert exchange(rx, good)
        wait_for(lambda: rx.stats()["refused_peers"] >= 1, what="the key id's refusal")
        # (the receiver counts the refusal before its ERROR frame reaches the sender)
        wait_for(lambda: "key id not allowed" in held.stats()["last_error"], what="the sender's last_error")
        assert rx.stats()["auth_failures"] == 0
    finally:
        close(good, held, rx)


def test_a_flood_from_one_source_is_refused_while_another_is_served():
    rx = fastmsg.Receiver("tcp://0.0.0.0:0", max_connections_per_source=4, handshake_timeout=30.0)
    port = int(rx.endpoint.rsplit(":", 1)[1])
    tx = fastmsg.Sender(f"tcp://127.0.0.1:{port}")
    flood = []
    try:
        assert exchange(rx, tx, 1)
        for _ in range(20):  # idle connections from 127.0.0.2: they hold their slot until the timeout
            s = socket.socket()
            s.settimeout(10)
            s.bind(("127.0.0.2", 0))
            s.connect(("127.0.0.1", port))
            flood.append(s)
        wait_for(lambda: rx.stats()["refused_per_source"] == 16, what="16 refusals")
        refusals = 0
        for s in flood[4:]:
            name, fields = read_frame(s)
            assert (name, fields["code"]) == ("ERROR", 9)
            assert "too many connections from this address" in fields["text"]
            refusals += 1
        assert refusals == 16
        assert exchange(rx, tx, 100)  # the other source is served throughout
    finally:
        for s in flood:
            s.close()
        close(tx, rx)


# ---- the rate limit ----

def test_the_rate_limit_holds_a_fast_sender_to_the_rate_and_loses_nothing():
    rate, burst, count = 2000, 100, 3000
    # The bucket is charged per DATA frame: a frame goes through while the bucket is not in debt,
    # so the receiver's max_batch_bytes (here 1 KiB: 64 of these records) bounds the overshoot.
    frame = 1024 // 16
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", rate_limit=(rate, burst), ack="received", max_batch_bytes=1024)
    tx = fastmsg.Sender(rx.endpoint)
    try:
        tx.send_many([b"%d" % i for i in range(count)])  # as fast as the sender can write
        got = []
        m = rx.recv(timeout=10)
        start = time.monotonic()  # from the first message: the burst is spent from here on
        got.append(bytes(m))
        m.release()
        while len(got) < count:
            for m in rx.recv_many(1024, timeout=10):
                got.append(bytes(m))
                m.release()
        elapsed = time.monotonic() - start
        assert got == [b"%d" % i for i in range(count)]  # in order, nothing lost
        # Over the window, no more than the rate (after the burst and one frame), 10 % for the clock.
        measured = (count - burst - frame) / elapsed
        assert measured <= rate * 1.1, f"{measured:.0f} msg/s"
        assert elapsed >= (count - burst - frame) / rate / 1.1
        assert rx.stats()["rate_limited"] >= 1
        assert tx.flush(timeout=10)
    finally:
        close(tx, rx)


def test_rate_limit_is_checked_at_construction():
    with pytest.raises(TypeError):
        fastmsg.Receiver("tcp://127.0.0.1:0", rate_limit=5)
    with pytest.raises(ValueError):
        fastmsg.Receiver("tcp://127.0.0.1:0", rate_limit=(0, 10))


@needs_unix_sockets
def test_networks_do_not_apply_to_unix_socket_peers_but_key_ids_do(tmp_path):
    rx = fastmsg.Receiver(f"ipc://{tmp_path}/allow.sock", secrets={"a": KEY, "b": OTHER},
                          allow=["10.0.0.0/8", "key:a"])
    good = fastmsg.Sender(rx.endpoint, secret=KEY, key_id="a")
    other = fastmsg.Sender(rx.endpoint, secret=OTHER, key_id="b")
    try:
        assert exchange(rx, good)  # no address: the network entry does not refuse it
        wait_for(lambda: "key id not allowed" in other.stats()["last_error"], what="the key id's refusal")
    finally:
        close(good, other, rx)


def test_a_refused_sender_keeps_failing_and_counting_until_fixed():
    rx, tx = pair(dict(secret=KEY), dict(secret=OTHER))
    try:
        wait_for(lambda: tx.stats()["auth_failures"] >= 3, what="three refusals, one per reconnect")
        tx.send(b"x")
        assert not tx.flush(timeout=0.1)
        assert "authentication failed" in tx.stats()["last_error"]
        assert tx.stats()["connects"] == 0  # no handshake ever completed
    finally:
        close(tx, rx)


def test_allow_list_by_ipv6_network():
    try:
        ok = fastmsg.Receiver("tcp://[::1]:0", allow=["::1/128"])
    except OSError:
        pytest.skip("no IPv6 loopback here")
    refusing = fastmsg.Receiver("tcp://[::1]:0", allow=["fd00::/8", "127.0.0.0/8"])
    a, b = fastmsg.Sender(ok.endpoint), fastmsg.Sender(refusing.endpoint)
    try:
        assert exchange(ok, a)
        wait_for(lambda: refusing.stats()["refused_peers"] >= 1, what="the IPv6 refusal")
        wait_for(lambda: "address not allowed" in b.stats()["last_error"], what="the sender's last_error")
    finally:
        close(a, b, ok, refusing)


def test_a_balancer_passes_its_secret_to_each_member():
    rxs = [fastmsg.Receiver("tcp://127.0.0.1:0", secret=KEY) for _ in range(2)]
    bal = fastmsg.Balancer([rx.endpoint for rx in rxs], strategy="broadcast", secret=KEY)
    try:
        assert bal.wait_up(timeout=10)  # (a broadcast skips a member not up yet)
        bal.send(b"to both")
        for rx in rxs:
            m = rx.recv(timeout=10)
            assert bytes(m) == b"to both"
            m.release()
        assert all(rx.stats()["auth_failures"] == 0 for rx in rxs)
    finally:
        bal.close()
        for rx in rxs:
            rx.close()
