"""TLS over real sockets (TCP on 127.0.0.1 and Unix sockets), with certificates made for the run
(tls_helpers.py): everything works as in plaintext (send, send_many, recv_many, request/reply,
fastmsg.asyncio, the Balancer, messages of every size); mutual TLS names the peer of each message;
an allow list admits certificates by name; every handshake that must fail does, counted and
explained, the refused sender retrying while well-configured ones are served; and a stream gets
through resets, bit flips on the encrypted bytes, and a receiving process killed and restarted.

No sleep synchronises anything: waits are on conditions, each with a deadline."""

import asyncio
import multiprocessing
import os
import random
import re
import signal
import struct
import threading
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)
pytest.importorskip("cryptography", reason="the TLS tests make their certificates with it (pip install '.[test]')")

import fastmsg.asyncio as fa
from fastmsg.testing import FaultProxy

import tls_helpers as th
from asyncio_helpers import run  # noqa: F401 (fixture)
from fault_helpers import check_mixed, mixed_payload, read_record, stream_killing_once
from reply_helpers import answer, serve_in_thread
from transport_helpers import free_port, wait_for
from platforms import ipc_param, needs_posix_signals, needs_sigkill, needs_unix_sockets

SPAWN = multiprocessing.get_context("spawn")
KiB, MiB = 1 << 10, 1 << 20
FAST = dict(handshake_timeout=2.0)
A, B = th.CLIENTS


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return th.make_pki(str(tmp_path_factory.mktemp("pki")))


def test_the_certificates_behave_as_meant(tmp_path):
    """The helpers' own check, with Python's ssl module: the good certificates verify, each bad one
    fails for its own reason (so a refusal below is for the reason its test names)."""
    th.check_certificates(str(tmp_path))


def where(kind, tmp_path, name="tls.sock"):
    """The endpoint a Receiver binds: an ephemeral TCP port on 127.0.0.1 (or ::1), or a Unix socket."""
    return {"tcp": "tcp://127.0.0.1:0", "tcp6": "tcp://[::1]:0"}.get(kind, f"ipc://{tmp_path}/{name}")


def host_for(endpoint):
    """server_hostname for a Sender: none over TCP (127.0.0.1 is checked against the IP
    subjectAltName), "localhost" over a Unix socket (which has no host to check)."""
    return "localhost" if endpoint.startswith("ipc://") else None


def receiver(endpoint, ctx=None, **options):
    return fastmsg.Receiver(endpoint, **({} if ctx is None else {"ssl": ctx}), **FAST, **options)


def sender(endpoint, ctx=None, server_hostname=None, **options):
    """A Sender with `ctx` (None: plaintext); server_hostname as host_for() says unless given."""
    if ctx is not None:
        options["ssl"] = ctx
        options["server_hostname"] = server_hostname or host_for(endpoint)
    return fastmsg.Sender(endpoint, **FAST, **options)


def close(*objs):
    for o in objs:
        o.close(linger=0) if isinstance(o, fastmsg.Sender) else o.close()


def exchange(rx, tx, n=20, tag=b"m"):
    """tx sends n tagged messages, rx receives them: True if exactly these came, in order, and
    were acknowledged."""
    want = [tag + b"%d" % i for i in range(n)]
    tx.send_many(want, timeout=10)
    got = []
    for _ in range(n):
        with rx.recv(timeout=10) as m:
            got.append(bytes(m))
    return got == want and tx.flush(timeout=10)


# ---- messages of every size, in order, byte for byte ----

SEQ = struct.Struct("<Q")


def tls_payload(seq):
    """Message `seq`: mostly fault_helpers' mixed sizes (8 B..20 KB, one in 50 of 100 KB), one in
    250 of 1 MiB, one in 250 of 64 KiB + a few bytes (past one TLS record's 16 KiB, unaligned)."""
    if seq % 250 == 125:
        return SEQ.pack(seq) + random.Random(seq).randbytes(MiB - SEQ.size)
    if seq % 250 == 60:
        return SEQ.pack(seq) + random.Random(seq).randbytes(64 * KiB + seq % 7)
    return mixed_payload(seq, large_every=50)


def receive_checked(rx, count, deadline_s, alive=lambda: True):
    """Receives until `count` messages came (or the time ran out, or alive() turned false); returns
    (the seqs in arrival order, the mismatches: seqs whose length or CRC32C differ from what
    tls_payload() made)."""
    seqs, wrong = [], []
    deadline = time.monotonic() + deadline_s
    while len(seqs) < count and time.monotonic() < deadline:
        try:
            batch = rx.recv_many(1024, timeout=0.5)
        except fastmsg.Timeout:
            if not alive():
                break
            continue
        for m in batch:
            with m:
                seq = SEQ.unpack_from(m)[0]
                want = tls_payload(seq)
                if len(m) != len(want) or fastmsg.crc32c(m) != fastmsg.crc32c(want):
                    wrong.append(seq)
                seqs.append(seq)
    return seqs, wrong


def send_in_thread(tx, count, one_by_one=False, make=tls_payload, chunk=64):
    """Sends make(0..count-1) from a thread (send() each, or send_many() chunks), then flush();
    returns the thread and a dict that gets "flushed" or "error"."""
    out = {}

    def run_():
        try:
            for start in range(0, count, chunk):
                msgs = [make(i) for i in range(start, min(count, start + chunk))]
                if one_by_one:
                    for msg in msgs:
                        tx.send(msg, timeout=30)
                else:
                    tx.send_many(msgs, timeout=30)
            out["flushed"] = tx.flush(timeout=30)
        except Exception as e:  # (reported by the test, with the stream's figures)
            out["error"] = repr(e)

    t = threading.Thread(target=run_, daemon=True)
    t.start()
    return t, out


@pytest.mark.parametrize("how", ["send_many", "send"])
@pytest.mark.parametrize("kind", ["tcp", ipc_param()])
def test_messages_of_every_size_arrive_in_order_and_intact(pki, tmp_path, kind, how):
    count = 1_000
    rx = receiver(where(kind, tmp_path), th.server_context(pki))
    tx = sender(rx.endpoint, th.client_context(pki))
    try:
        t, out = send_in_thread(tx, count, one_by_one=how == "send")
        seqs, wrong = receive_checked(rx, count, 60)
        t.join(60)
        assert seqs == list(range(count)), f"{len(seqs)} arrived, first out of place: " \
            f"{next((i for i, s in enumerate(seqs) if s != i), None)}"
        assert wrong == [], f"messages with wrong contents: {wrong[:10]}"
        assert out.get("flushed") is True, out
        st, rst = tx.stats(), rx.stats()
        assert st["tls_failures"] == rst["tls_failures"] == 0, (st, rst)
        assert st["acknowledged"] == count and rst["received_messages"] == count
    finally:
        close(tx, rx)


@pytest.mark.parametrize("kind", ["tcp", "tcp6", ipc_param()])
def test_request_and_reply(pki, tmp_path, kind):
    """(Over [::1] the certificate's IP subjectAltName ::1 is what the host name check matches.)"""
    try:
        rx = receiver(where(kind, tmp_path), th.server_context(pki))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    tx = sender(rx.endpoint, th.client_context(pki))
    t, stop = serve_in_thread(rx)
    try:
        sizes = (0, 1, 100, 17 * KiB, 70_000, 2 * MiB)
        for size in sizes:
            data = random.Random(size).randbytes(size)
            with tx.request(data, timeout=10) as reply:
                assert bytes(reply) == answer(data)
        replies = tx.request_many([b"q%d" % i for i in range(100)], timeout=10)
        assert [bytes(r) for r in replies] == [answer(b"q%d" % i) for i in range(100)]
        for r in replies:
            r.release()
        st = tx.stats()
        assert st["requests"] == st["replies_received"] == len(sizes) + 100 and st["tls_failures"] == 0
    finally:
        stop.set()
        t.join(5)
        close(tx, rx)


def test_asyncio_recv_and_request(pki, run):
    """fastmsg.asyncio on TLS: send_many and recv in order, then requests answered by a
    coroutine on the same loop; each message names its sender's certificate."""
    rx = fa.Receiver("tcp://127.0.0.1:0", ssl=th.server_context(pki, client_certs="required"))
    tx = fa.Sender(rx.endpoint, ssl=th.client_context(pki, A))

    async def main():
        assert await tx.send_many([b"a%d" % i for i in range(300)]) == 300
        got, peers = [], set()
        for _ in range(300):
            with await rx.recv(timeout=10) as m:
                got.append(bytes(m))
                peers.add(m.peer)
        assert got == [b"a%d" % i for i in range(300)]
        assert peers == {A}
        assert await tx.flush(timeout=10)

        async def serve():
            async for m in rx:
                with m:
                    m.reply(answer(m))

        server = asyncio.create_task(serve())
        for i in range(50):
            with await tx.request(b"r%d" % i, timeout=10) as reply:
                assert bytes(reply) == answer(b"r%d" % i)
        rx.close()
        await server

    try:
        run(main)
        assert tx.stats()["replies_received"] == 50 and tx.stats()["tls_failures"] == 0
    finally:
        tx.close(linger=0)
        rx.close()


@pytest.mark.parametrize("kind", ["tcp", ipc_param()])
def test_a_balancer_passes_ssl_and_server_hostname_to_each_member(pki, tmp_path, kind):
    """Over ipc a member without server_hostname could not even be made (check_hostname is on),
    so the broadcast reaching both receivers shows that the Balancer passed it on."""
    rxs = [receiver(where(kind, tmp_path, f"b{i}.sock"), th.server_context(pki)) for i in range(2)]
    bal = fastmsg.Balancer([rx.endpoint for rx in rxs], strategy="broadcast", ssl=th.client_context(pki),
                           server_hostname=host_for(rxs[0].endpoint))
    try:
        assert bal.wait_up(timeout=10)
        bal.send(b"to both")
        for rx in rxs:
            with rx.recv(timeout=10) as m:
                assert bytes(m) == b"to both"
        assert bal.flush(timeout=10)
        assert all(rx.stats()["tls_failures"] == 0 for rx in rxs)
    finally:
        bal.close()
        for rx in rxs:
            rx.close()


# ---- mutual TLS: who sent each message ----

def peers_of(rx, n):
    """The (payload, peer) of the next n messages."""
    out = []
    for _ in range(n):
        with rx.recv(timeout=10) as m:
            out.append((bytes(m), m.peer))
    return out


@pytest.mark.parametrize("kind", ["tcp", ipc_param()])
def test_each_message_names_its_senders_certificate(pki, tmp_path, kind):
    rx = receiver(where(kind, tmp_path), th.server_context(pki, client_certs="required"))
    # client-a and client-b by DNS SAN; one with a CN only; one whose first SAN is not its CN
    names = {A: A, B: B, th.CN_ONLY: th.CN_ONLY, th.MULTI_CN: th.MULTI_SANS[0]}
    txs = {name: sender(rx.endpoint, th.client_context(pki, name)) for name in names}
    try:
        for name, tx in txs.items():  # one sender at a time: their messages do not interleave
            tx.send_many([name.encode() + b"/%d" % i for i in range(10)])
            got = peers_of(rx, 10)
            assert got == [(name.encode() + b"/%d" % i, names[name]) for i in range(10)]
            assert all(type(peer) is str for _, peer in got)
            assert tx.stats()["peer"] == "localhost"  # the receiver's certificate, first DNS SAN
        conns = rx.connections()
        assert sorted(c["peer"] for c in conns) == sorted(names.values())
        for c in conns:  # an address over TCP, none over a Unix socket
            assert (c["address"] is None) == (kind == "ipc"), c
            if kind == "tcp":
                assert c["address"].startswith("127.0.0.1:"), c
        assert rx.stats()["tls_failures"] == 0
    finally:
        close(*txs.values(), rx)


def test_no_client_certificate_means_no_peer(pki):
    """When the receiver does not require one: a sender without a certificate is served, its
    messages' peer is None, next to one with a certificate, named; with client certificates not
    asked for at all, and with no TLS, every peer is None."""
    optional = receiver("tcp://127.0.0.1:0", th.server_context(pki, client_certs="optional"))
    not_asked = receiver("tcp://127.0.0.1:0", th.server_context(pki))
    plain = receiver("tcp://127.0.0.1:0")
    anonymous = sender(optional.endpoint, th.client_context(pki))
    named = sender(optional.endpoint, th.client_context(pki, A))
    unasked = sender(not_asked.endpoint, th.client_context(pki, A))  # has one; it is not asked for
    clear = sender(plain.endpoint)
    try:
        anonymous.send(b"anonymous")
        assert peers_of(optional, 1) == [(b"anonymous", None)]
        named.send(b"named")
        assert peers_of(optional, 1) == [(b"named", A)]
        unasked.send(b"unasked")
        assert peers_of(not_asked, 1) == [(b"unasked", None)]
        clear.send(b"clear")
        assert peers_of(plain, 1) == [(b"clear", None)]
        assert sorted(c["peer"] or "" for c in optional.connections()) == ["", A]
        [conn] = plain.connections()
        assert conn["peer"] is None and conn["address"].startswith("127.0.0.1:"), conn
        assert clear.stats()["peer"] is None and anonymous.stats()["peer"] == "localhost"
    finally:
        close(anonymous, named, unasked, clear, optional, not_asked, plain)


# ---- handshakes that must fail, while others are served ----

def tls_failures(*ends):
    return sum(e.stats()["tls_failures"] for e in ends)


def refused_while_others_are_served(rx, bad, good, detected_by, certificate):
    """`bad` fails its handshakes, counted in tls_failures on `detected_by`, and keeps trying;
    `good` is served throughout; nothing of bad's arrives."""
    detector = {"sender": bad, "receiver": rx}[detected_by]
    bad.send(b"must never arrive")
    wait_for(lambda: detector.stats()["tls_failures"] >= 1, what=f"the {detected_by}'s first TLS failure")
    assert exchange(rx, good, 20, b"good-")
    seen = detector.stats()["tls_failures"]
    wait_for(lambda: detector.stats()["tls_failures"] >= seen + 2, timeout=20,
             what="the refused sender to try twice more")
    assert exchange(rx, good, 20, b"still good-")
    err = bad.stats()["last_error"]
    assert "TLS" in err, err
    if certificate:
        assert "certificate" in err, err
    assert not bad.flush(timeout=0.2)
    assert bad.stats()["connects"] == 0  # no handshake ever completed
    assert bad.stats()["acknowledged"] == 0
    assert good.stats()["tls_failures"] == 0
    assert rx.stats()["received_messages"] == 40


# case: (receiver asks client certificates, bad sender's client cert, its CA, its server_hostname,
#        which side detects it, whether its last_error names the certificate)
REFUSALS = {
    "server certificate from an untrusted CA": (None, None, "other", None, "sender", True),
    "wrong host name": (None, None, None, "wrong.example", "sender", True),
    "expired client certificate": ("required", th.EXPIRED_CLIENT, None, None, "receiver", False),
    "client certificate from an untrusted CA": ("required", th.ROGUE_CLIENT, None, None, "receiver", False),
    "missing client certificate": ("required", None, None, None, "receiver", False),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_failed_handshake_is_counted_and_retried_while_others_are_served(pki, case):
    asks, cert, ca, hostname, detected_by, certificate = REFUSALS[case]
    rx = receiver("tcp://127.0.0.1:0", th.server_context(pki, client_certs=asks))
    good = sender(rx.endpoint, th.client_context(pki, A if asks else None))
    bad = sender(rx.endpoint, th.client_context(pki, cert, cafile=pki.other_ca if ca else None),
                 server_hostname=hostname)
    try:
        refused_while_others_are_served(rx, bad, good, detected_by, certificate)
    finally:
        close(good, bad, rx)


@needs_unix_sockets
def test_wrong_host_name_over_a_unix_socket(pki, tmp_path):
    rx = receiver(where("ipc", tmp_path), th.server_context(pki))
    good = sender(rx.endpoint, th.client_context(pki), server_hostname="localhost")
    bad = sender(rx.endpoint, th.client_context(pki), server_hostname="wrong.example")
    try:
        refused_while_others_are_served(rx, bad, good, "sender", True)
    finally:
        close(good, bad, rx)


def test_a_plaintext_sender_to_a_tls_receiver_is_refused(pki):
    rx = receiver("tcp://127.0.0.1:0", th.server_context(pki))
    good = sender(rx.endpoint, th.client_context(pki))
    bad = sender(rx.endpoint)  # no ssl
    try:
        refused_while_others_are_served(rx, bad, good, "receiver", False)
    finally:
        close(good, bad, rx)


def test_a_tls_sender_to_a_plaintext_receiver_fails_and_sends_nothing_in_clear(pki):
    rx = receiver("tcp://127.0.0.1:0")
    good = sender(rx.endpoint)  # plaintext, as the receiver is
    bad = sender(rx.endpoint, th.client_context(pki))
    try:
        refused_while_others_are_served(rx, bad, good, "sender", False)
    finally:
        close(good, bad, rx)


@pytest.mark.parametrize("which", ["expired", "rogue"])
def test_a_receiver_with_a_bad_certificate_gets_nothing(pki, which):
    """An expired server certificate, or one from a CA the sender does not trust: the sender
    refuses it, says why, and keeps trying; nothing is delivered."""
    cert = pki.expired_server if which == "expired" else pki.rogue_server
    rx = receiver("tcp://127.0.0.1:0", th.server_context(pki, cert=cert))
    tx = sender(rx.endpoint, th.client_context(pki))
    try:
        tx.send(b"must never arrive")
        wait_for(lambda: tx.stats()["tls_failures"] >= 3, timeout=20, what="three failed handshakes, one per retry")
        err = tx.stats()["last_error"]
        assert "TLS" in err and "certificate" in err, err
        if which == "expired":
            assert "expired" in err, err
        assert not tx.flush(timeout=0.2)
        assert tx.stats()["connects"] == 0
        with pytest.raises(fastmsg.Timeout):
            rx.recv(timeout=0)
        assert rx.stats()["received_messages"] == 0
    finally:
        close(tx, rx)


def test_a_refused_sender_is_served_once_its_receiver_is_fixed(pki):
    """A sender whose handshakes fail is not stuck: once a receiver with the right certificate
    is on that endpoint, what it queued meanwhile is delivered, once, in order."""
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    wrong = receiver(endpoint, th.server_context(pki, cert=pki.rogue_server))
    tx = sender(endpoint, th.client_context(pki))
    right = None
    try:
        tx.send_many([b"q%d" % i for i in range(100)])
        wait_for(lambda: tx.stats()["tls_failures"] >= 2, what="the sender's failed handshakes")
        assert wrong.stats()["received_messages"] == 0
        wrong.close()
        right = receiver(endpoint, th.server_context(pki))
        got = []
        for _ in range(100):
            with right.recv(timeout=10) as m:
                got.append(bytes(m))
        assert got == [b"q%d" % i for i in range(100)]
        assert tx.flush(timeout=10)
        assert tx.stats()["connects"] == 1
    finally:
        close(tx, wrong, *([right] if right else []))


# ---- the allow list ----

def test_allow_list_by_certificate_name(pki):
    """Entries match a certificate's DNS SANs (any of them) or its CN, exactly; every other
    certificate is refused while the allowed ones are served."""
    rx = receiver("tcp://127.0.0.1:0", th.server_context(pki, client_certs="required"),
                  allow=[f"cert:{A}", f"cert:{th.MULTI_SANS[1]}", f"cert:{th.CN_ONLY}"])
    allowed = {name: sender(rx.endpoint, th.client_context(pki, name)) for name in (A, th.MULTI_CN, th.CN_ONLY)}
    refused = sender(rx.endpoint, th.client_context(pki, B))
    try:
        refused.send(b"must never arrive")
        wait_for(lambda: rx.stats()["refused_peers"] >= 1, what="client-b's refusal")
        for name, tx in allowed.items():
            assert exchange(rx, tx, 10, name.encode()), name
        wait_for(lambda: re.search(r"refused|not allowed", refused.stats()["last_error"]),
                 what="the refused sender's last_error")
        assert not refused.flush(timeout=0.2)
        assert rx.stats()["received_messages"] == 30
    finally:
        close(*allowed.values(), refused, rx)


def test_allow_list_matches_the_cn_too_and_refuses_a_sender_without_certificate(pki):
    rx = receiver("tcp://127.0.0.1:0", th.server_context(pki, client_certs="optional"),
                  allow=[f"cert:{th.MULTI_CN}"])  # its CN; its SANs are other names
    by_cn = sender(rx.endpoint, th.client_context(pki, th.MULTI_CN))
    other = sender(rx.endpoint, th.client_context(pki, A))
    anonymous = sender(rx.endpoint, th.client_context(pki))  # no certificate: no name to allow
    try:
        other.send(b"must never arrive")
        anonymous.send(b"must never arrive either")
        wait_for(lambda: rx.stats()["refused_peers"] >= 2, what="two refusals")
        assert exchange(rx, by_cn, 10)
        for tx in (other, anonymous):
            wait_for(lambda: re.search(r"refused|not allowed", tx.stats()["last_error"]),
                     what="the refused sender's last_error")
            assert not tx.flush(timeout=0.2)
        assert rx.stats()["received_messages"] == 10
    finally:
        close(by_cn, other, anonymous, rx)


# ---- faults ----

def order_report(seqs, count):
    seen = set(seqs)
    return dict(delivered=len(seqs), lost=count - len(seen & set(range(count))), twice=len(seqs) - len(seen),
                first_out_of_order=next((i for i, s in enumerate(seqs) if s != i), None))


def stream_through(proxy, rx, pki, count, deadline_s, hwm_bytes=1 * MiB):
    """Streams mixed_payload(0..count-1) through the proxy to rx over TLS; returns the seqs rx
    received (each checked byte by byte), what the sending thread reported, and its stats."""
    tx = sender(proxy.endpoint, th.client_context(pki), max_batch_bytes=16 * KiB, hwm_bytes=hwm_bytes)
    try:
        t, out = send_in_thread(tx, count, make=mixed_payload, chunk=256)
        seqs = []
        deadline = time.monotonic() + deadline_s
        while len(seqs) < count and time.monotonic() < deadline:
            try:
                batch = rx.recv_many(4096, timeout=0.5)
            except fastmsg.Timeout:
                continue
            for m in batch:
                with m:
                    seqs.append(check_mixed(m))
        t.join(deadline_s)
        return seqs, out, tx.stats()
    finally:
        tx.close(linger=0)


def test_a_stream_survives_connection_resets(pki):
    """Each reset is a new connection and a new TLS handshake; the stream resumes from the first
    unacknowledged message, delivering each exactly once, in order."""
    count = 8_000
    with receiver("tcp://127.0.0.1:0", th.server_context(pki), max_batch_bytes=16 * KiB) as rx, \
            FaultProxy(rx.endpoint, seed=31) as proxy:
        proxy.reset_after(20_000, 200_000)
        seqs, out, tst = stream_through(proxy, rx, pki, count, 60)
        rst, pst = rx.stats(), proxy.stats()
    figures = dict(order_report(seqs, count), resets=pst["resets"], connects=tst["connects"],
                   resent=tst["resent"], duplicates_discarded=rst["duplicates"], tls_failures=tst["tls_failures"])
    assert seqs == list(range(count)), figures
    assert out.get("flushed") is True, (out, figures)
    assert pst["resets"] >= 10, figures
    assert tst["connects"] >= 10, figures  # a handshake after (nearly) every reset
    assert tst["acknowledged"] == count and rst["lost"] == 0 and rst["crc_errors"] == 0, figures


def test_bit_flips_in_the_tls_stream_are_refused_by_tls(pki):
    """A flipped bit in an encrypted record fails the record's authentication: the connection is
    dropped and replaced, and nothing corrupt reaches fastmsg's own checks (no CRC error)
    or the application (check_mixed on every message), nothing is lost or delivered twice."""
    count = 10_000
    with receiver("tcp://127.0.0.1:0", th.server_context(pki), max_batch_bytes=16 * KiB) as rx, \
            FaultProxy(rx.endpoint, seed=37) as proxy:
        proxy.flip_bits(4e-7)  # both ways: data records and the receiver's acknowledgements
        seqs, out, tst = stream_through(proxy, rx, pki, count, 60, hwm_bytes=256 * KiB)
        rst, pst = rx.stats(), proxy.stats()
    figures = dict(order_report(seqs, count), bits_flipped=pst["bits_flipped"], connections=pst["connections"],
                   connects=tst["connects"], rx_crc_errors=rst["crc_errors"], tx_crc_errors=tst["crc_errors"],
                   rx_tls_failures=rst["tls_failures"], tx_tls_failures=tst["tls_failures"])
    assert seqs == list(range(count)), figures
    assert out.get("flushed") is True, (out, figures)
    assert pst["bits_flipped"] >= 10, figures
    assert pst["connections"] >= 5 and tst["connects"] >= 5, f"connections were not replaced: {figures}"
    assert rst["crc_errors"] == 0 and tst["crc_errors"] == 0, f"a corrupted record got past TLS: {figures}"
    assert rst["tls_failures"] + tst["tls_failures"] >= 5, f"refused records were not counted: {figures}"
    assert rst["lost"] == 0 and tst["acknowledged"] == count, figures


def start_tls_recorder(pki, port, path):
    ready = SPAWN.Event()
    p = SPAWN.Process(target=th.receive_and_record_tls, args=(port, path, ready, pki.server.cert, pki.server.key),
                      daemon=True)
    p.start()
    assert ready.wait(30), "the receiver child did not start"
    return p


@needs_sigkill
def test_receiver_process_killed_and_restarted(pki, tmp_path):
    """A TLS receiver in another process, killed with SIGKILL mid-stream and started again on the
    same port: the sender handshakes with the new one and everything is delivered; each receiver
    sees an unbroken run, and only what the first had not acknowledged comes twice."""
    count = 20_000
    port = free_port()
    files = [str(tmp_path / "rx1"), str(tmp_path / "rx2")]
    procs = [start_tls_recorder(pki, port, files[0])]
    try:
        with sender(f"tcp://127.0.0.1:{port}", th.client_context(pki), max_batch_bytes=16 * KiB,
                    hwm_bytes=MiB) as tx:
            def kill():
                os.kill(procs[0].pid, signal.SIGKILL)
                procs[0].join(10)
                procs.append(start_tls_recorder(pki, port, files[1]))
            acked_before_kill = stream_killing_once(tx, count, files[0], kill)
            flushed = tx.flush(30)
            tst = tx.stats()
        first, second = read_record(files[0]), read_record(files[1])
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    figures = dict(first=len(first), second=len(second), second_first=second[0] if second else None,
                   acked_before_kill=acked_before_kill, connects=tst["connects"], tls_failures=tst["tls_failures"])
    assert flushed and tst["acknowledged"] == count, figures
    assert first == list(range(len(first))), figures
    assert second and second == list(range(second[0], count)), figures
    assert second[0] >= acked_before_kill, f"a message acknowledged before the kill came again: {figures}"
    assert tst["connects"] >= 2, figures


# ---- arguments ----

def test_ssl_must_be_an_ssl_context(pki):
    close(fastmsg.Sender("tcp://127.0.0.1:1", ssl=th.client_context(pki)))  # (the keyword itself is known)
    with pytest.raises(TypeError):
        fastmsg.Sender("tcp://127.0.0.1:1", ssl="client")
    with pytest.raises(TypeError):
        fastmsg.Sender("tcp://127.0.0.1:1", ssl=True)
    with pytest.raises(TypeError):
        fastmsg.Receiver("tcp://127.0.0.1:0", ssl=object())
    with pytest.raises(TypeError):
        fastmsg.Receiver("tcp://127.0.0.1:0", ssl=pki.server.cert)  # a file name, not a context


def test_a_context_must_be_for_its_side(pki):
    with pytest.raises(ValueError):
        fastmsg.Sender("tcp://127.0.0.1:1", ssl=th.server_context(pki))
    with pytest.raises(ValueError):
        fastmsg.Receiver("tcp://127.0.0.1:0", ssl=th.client_context(pki))


def test_unsupported_context_settings_are_refused(pki, tmp_path):
    server = th.server_context(pki)
    server.sni_callback = lambda sock, name, ctx: None
    with pytest.raises(ValueError):
        fastmsg.Receiver("tcp://127.0.0.1:0", ssl=server)
    logging_server = th.server_context(pki)
    logging_server.keylog_filename = str(tmp_path / "server.keys")
    with pytest.raises(ValueError):
        fastmsg.Receiver("tcp://127.0.0.1:0", ssl=logging_server)
    logging_client = th.client_context(pki)
    logging_client.keylog_filename = str(tmp_path / "client.keys")
    with pytest.raises(ValueError):
        fastmsg.Sender("tcp://127.0.0.1:1", ssl=logging_client)


@needs_unix_sockets
def test_a_unix_socket_needs_server_hostname_when_host_names_are_checked(pki, tmp_path):
    rx = receiver(where("ipc", tmp_path), th.server_context(pki))
    try:
        with pytest.raises(ValueError):
            fastmsg.Sender(rx.endpoint, ssl=th.client_context(pki))
        # without a host name to check, the chain is still verified, and that is enough to connect
        tx = fastmsg.Sender(rx.endpoint, ssl=th.client_context(pki, check_hostname=False), **FAST)
        try:
            assert exchange(rx, tx)
        finally:
            close(tx)
    finally:
        close(rx)


def test_certificate_names_in_an_allow_list_need_ssl(pki):
    close(receiver("tcp://127.0.0.1:0", th.server_context(pki, client_certs="required"), allow=[f"cert:{A}"]))
    with pytest.raises(ValueError):
        fastmsg.Receiver("tcp://127.0.0.1:0", allow=[f"cert:{A}"])


def test_replies_read_ahead_inside_tls_are_not_left_there(pki):
    """Thousands of replies at once: TLS reads records ahead, so a Sender's read often stops (its
    rounds used up) with replies decrypted or buffered inside TLS, which no poller reports; the
    next step reads on. Every reply comes, intact and in order, on that path. (Heartbeats are
    made rare; the ACKs that follow replies would also bring a read, so a regression here shows
    as slowness more often than as a Timeout.)"""
    rx = receiver("tcp://127.0.0.1:0", th.server_context(pki), heartbeat_interval=60)
    tx = sender(rx.endpoint, th.client_context(pki), heartbeat_interval=60)
    t, stop = serve_in_thread(rx)
    try:
        rng = random.Random(7)
        for round_ in range(20):
            requests = [rng.randbytes(rng.randrange(1, 400)) for _ in range(3000)]
            replies = tx.request_many(requests, timeout=10)
            assert [bytes(r) for r in replies] == [answer(q) for q in requests], f"round {round_}"
            for r in replies:
                r.release()
    finally:
        stop.set()
        t.join(5)
        close(tx, rx)


def test_hostile_bytes_in_a_tls_handshake_are_refused_while_others_are_served(pki):
    """Garbage that starts like a TLS record (so it goes to OpenSSL, not to the plaintext check):
    each such connection is dropped and counted, at once or at the handshake timeout; a good
    sender is served meanwhile."""
    import socket

    rng = random.Random(11)
    with receiver("tcp://127.0.0.1:0", th.server_context(pki)) as rx, \
            sender(rx.endpoint, th.client_context(pki)) as good:
        host, port = rx.endpoint[len("tcp://"):].rsplit(":", 1)
        for i in range(20):
            blob = bytes([0x16, 0x03, 0x01]) + rng.randbytes(rng.randrange(2, 3000))
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(blob)
                if i % 2:  # half of them end there; the others leave OpenSSL waiting for more
                    s.shutdown(socket.SHUT_WR)  # (until the handshake timeout)
                try:  # the receiver ends the connection (an alert, then EOF; or a reset)
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
            assert exchange(rx, good, 5, b"round %d-" % i)
        wait_for(lambda: rx.stats()["tls_failures"] >= 20, what="each hostile handshake counted")
        assert rx.stats()["received_messages"] == 100


# ---- the process survives what the ssl module's own callbacks, or SIGPIPE, would do ----

CALLBACKS_AFTER_HANDOVER = r"""
import ssl, sys, time, fastmsg
ca, cert, key, keylog = sys.argv[1:5]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(cert, key)
rx = fastmsg.Receiver("tcp://127.0.0.1:0", ssl=server, handshake_timeout=2.0)
server._msg_callback = lambda *args: None  # set after the handover: never called (it would crash)
with fastmsg.Sender(rx.endpoint, ssl=ssl.create_default_context(cafile=ca)) as tx:
    tx.send(b"one")
    with rx.recv(timeout=10) as m:
        assert bytes(m) == b"one"
server.keylog_filename = keylog  # set after the handover: new connections are refused
tx = fastmsg.Sender(rx.endpoint, ssl=ssl.create_default_context(cafile=ca), handshake_timeout=2.0)
tx.send(b"two")
deadline = time.monotonic() + 10
while rx.stats()["tls_failures"] == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
print(rx.stats()["tls_failures"], rx.stats()["last_error"])
tx.close(linger=0)
"""


def test_callbacks_set_on_a_context_after_it_was_handed_over_do_not_crash(pki, tmp_path):
    """The ssl module's message and keylog callbacks expect its own socket objects: a message
    callback is switched off on fastmsg's connections, and a keylog file set later makes new
    connections fail, counted and explained (before the fix: a segfault at the next handshake)."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", CALLBACKS_AFTER_HANDOVER, pki.ca, pki.server.cert, pki.server.key,
                        str(tmp_path / "keys.log")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    failures, why = r.stdout.split(" ", 1)
    assert int(failures) >= 1 and "keylog_filename" in why, r.stdout


SIGPIPE_NOT_IGNORED = r"""
import signal, ssl, sys, threading, fastmsg
from fastmsg.testing import FaultProxy
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a program that does not ignore SIGPIPE
ca, cert, key = sys.argv[1:4]
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(cert, key)
count = 4000
with fastmsg.Receiver("tcp://127.0.0.1:0", ssl=server) as rx, FaultProxy(rx.endpoint, seed=41) as proxy:
    proxy.reset_after(5_000, 60_000)
    tx = fastmsg.Sender(proxy.endpoint, ssl=ssl.create_default_context(cafile=ca), max_batch_bytes=16384)
    t = threading.Thread(target=lambda: tx.send_many([b"%06d" % i + bytes(1000) for i in range(count)], timeout=60))
    t.start()
    seen = set()
    while len(seen) < count:
        for m in rx.recv_many(1024, timeout=30):
            with m:
                seen.add(int(bytes(m)[:6]))
    t.join(60)
    print(len(seen), tx.flush(timeout=30), proxy.stats()["resets"])
    tx.close(linger=0)
"""


@needs_posix_signals
def test_writes_to_a_reset_connection_raise_no_sigpipe(pki):
    """OpenSSL writes with write(): in a process that does not ignore SIGPIPE, a write to a
    connection reset under it must fail with EPIPE, not kill the process."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", SIGPIPE_NOT_IGNORED, pki.ca, pki.server.cert, pki.server.key],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    seen, flushed, resets = r.stdout.split()
    assert int(seen) == 4000 and flushed == "True" and int(resets) >= 5, r.stdout
