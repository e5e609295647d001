"""What TLS costs: fastmsg over TLS against fastmsg in clear, and against pyzmq in clear (pyzmq
has no TLS; its CurveZMQ is another kind of encryption and is not measured here).

(a) 1 KiB messages, msgs/s: fastmsg over TLS (send_many, 1,024 a call) against pyzmq PUSH/PULL
    (one send() a message, copied below 64 KiB, as fastmsg._bench.peer_pyzmq drives it: pyzmq
    has no call that takes a batch, and libzmq batches the writes itself), and fastmsg in clear.
(b) 1 MiB messages, MB/s: fastmsg over TLS against fastmsg in clear.
(c) 64 B request/reply, one request at a time: each round trip's median and p99, TLS and clear.

Run: pytest benchmarks/bench_tls.py --benchmark-group-by=group
  or python benchmarks/bench_tls.py   (alternating rounds: medians of the rates and of the ratios)
Every receiver and replier runs in a process of its own, on loopback TCP; the certificates are
made for the run (tests/tls_helpers.py), ECDSA P-256. A
throughput round is COUNT messages and the wait for their delivery: fastmsg's flush() (every
message acknowledged, which its receiver does once it has released it), and for pyzmq the
receiving process's answer once the round's last message came (with the number it counted).
The link is made before the rounds, so no handshake is inside them.
"""

import multiprocessing
import pathlib
import ssl
import statistics
import sys
import tempfile
import time

import pytest

import fastmsg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
import tls_helpers  # noqa: E402 (the certificates the tests use)

from event_loops import zmq  # noqa: E402
from rounds import median_seconds  # noqa: E402

KiB, MiB = 1 << 10, 1 << 20
THROUGHPUT = {"1KiB": (KiB, 100_000, 1024), "1MiB": (MiB, 300, 4)}  # size, messages a round, per send_many
ROUND_TRIPS = 2_000
TIMEOUT = 30.0


# ---- servers, each in its own process: they run until terminated ----

def _server_context(cert, key):
    if cert is None:
        return {}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return {"ssl": ctx}


def serve_fastmsg(where, reply, cert=None, key=None):
    """A Receiver that releases every message at once, or (reply) answers each request with its
    own bytes; over TLS when given a certificate."""
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", **_server_context(cert, key))
    where.put(rx.endpoint)
    while True:
        try:
            msgs = rx.recv_many(4096, timeout=1.0)
        except fastmsg.Timeout:
            continue
        for m in msgs:
            if reply:
                m.reply(m)
            m.release()


LAST = b"\xff"  # the first byte of a round's last message (every other message starts with 0)


def serve_zmq(where):
    """A PULL socket that counts messages; at a round's last one it answers the count on a PUSH."""
    ctx = zmq.Context()
    pull, back = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    back.setsockopt(zmq.SNDTIMEO, int(TIMEOUT * 1000))
    where.put((pull.bind_to_random_port("tcp://127.0.0.1"), back.bind_to_random_port("tcp://127.0.0.1")))
    recv, n = pull.recv, 0
    while True:
        msg = recv()  # (copy=True: a 1 KiB message, as fastmsg._bench.peer_pyzmq receives it)
        n += 1
        if msg[:1] == LAST:
            back.send(b"%d" % n)
            n = 0


def start(target, *args):
    ctx = multiprocessing.get_context("spawn")
    where = ctx.Queue()
    proc = ctx.Process(target=target, args=(where, *args), daemon=True)
    proc.start()
    return proc, where.get(timeout=TIMEOUT)


class Servers:
    """Every server of the benchmark, for as long as the context lasts."""

    def __enter__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="fastmsg-tls-")
        self.pki = tls_helpers.make_pki(self.dir.name)
        cert = (self.pki.server.cert, self.pki.server.key)
        self.procs = {"fastmsg tls": start(serve_fastmsg, False, *cert),
                      "fastmsg plain": start(serve_fastmsg, False),
                      "request tls": start(serve_fastmsg, True, *cert),
                      "request plain": start(serve_fastmsg, True)}
        if zmq:
            self.procs["pyzmq plain"] = start(serve_zmq)
        self.where = {name: where for name, (_, where) in self.procs.items()}
        return self

    def __exit__(self, *exc):
        for proc, _ in self.procs.values():
            proc.terminate()
            proc.join(10)
        self.dir.cleanup()


# ---- clients: one round each call ----

class FastmsgStream:
    def __init__(self, endpoint, pki=None):
        tls = {} if pki is None else {"ssl": tls_helpers.client_context(pki)}
        self.tx = fastmsg.Sender(endpoint, **tls)

    def round(self, size, count, per_call):
        batch = [bytes(size)] * per_call
        for _ in range(count // per_call):
            self.tx.send_many(batch, timeout=TIMEOUT)
        assert self.tx.flush(timeout=TIMEOUT), "the round was not acknowledged in time"

    def close(self):
        self.tx.close(linger=0)


class ZmqStream:
    def __init__(self, ports):
        self.ctx = zmq.Context()
        self.push, self.done = self.ctx.socket(zmq.PUSH), self.ctx.socket(zmq.PULL)
        for sock in (self.push, self.done):
            sock.setsockopt(zmq.SNDTIMEO, int(TIMEOUT * 1000))
            sock.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
            sock.setsockopt(zmq.LINGER, 0)
        self.push.connect(f"tcp://127.0.0.1:{ports[0]}")
        self.done.connect(f"tcp://127.0.0.1:{ports[1]}")

    def round(self, size, count, per_call):
        payload, send = bytes(size), self.push.send
        for _ in range(count - 1):
            send(payload)
        send(LAST + payload[1:])
        got = int(self.done.recv())
        assert got == count, f"the receiver counted {got} of {count}"

    def close(self):
        self.push.close()
        self.done.close()
        self.ctx.term()


def stream_client(servers, link):
    if link == "pyzmq plain":
        return ZmqStream(servers.where[link])
    return FastmsgStream(servers.where[link], servers.pki if link == "fastmsg tls" else None)


def round_trips(tx, n, samples):
    payload = bytes(64)
    for _ in range(n):
        t0 = time.perf_counter_ns()
        tx.request(payload, timeout=10).release()
        samples.append(time.perf_counter_ns() - t0)


def request_client(servers, link):
    tls = {"ssl": tls_helpers.client_context(servers.pki)} if link == "tls" else {}
    return fastmsg.Sender(servers.where[f"request {link}"], **tls)


# ---- pytest-benchmark ----

@pytest.fixture(scope="module")
def servers():
    with Servers() as s:
        yield s


STREAM_LINKS = {"1KiB": ["fastmsg tls", "fastmsg plain", "pyzmq plain"], "1MiB": ["fastmsg tls", "fastmsg plain"]}


@pytest.mark.parametrize("case, link", [(case, link) for case, links in STREAM_LINKS.items() for link in links])
def test_throughput(benchmark, servers, case, link):
    if link not in servers.where:
        pytest.skip("pyzmq is not installed")
    size, count, per_call = THROUGHPUT[case]
    client = stream_client(servers, link)
    benchmark.group = f"throughput {case}, TLS against clear"
    try:
        client.round(size, count // 10, per_call)  # warm-up: connected, handshake done, buffers touched
        benchmark.pedantic(client.round, args=(size, count, per_call), rounds=5, iterations=1)
    finally:
        client.close()
    seconds = median_seconds(benchmark)
    if seconds is not None:
        benchmark.extra_info.update(msgs_per_s=round(count / seconds), mb_per_s=round(count * size / seconds / 1e6, 1))


@pytest.mark.parametrize("link", ["tls", "plain"])
def test_request_reply_64B(benchmark, servers, link):
    tx = request_client(servers, link)
    samples = []
    benchmark.group = "request/reply 64 B, TLS against clear"
    try:
        round_trips(tx, 200, samples)  # warm-up: connected
        samples.clear()
        benchmark.pedantic(round_trips, args=(tx, ROUND_TRIPS, samples), rounds=5, iterations=1)
    finally:
        tx.close(linger=0)
    samples.sort()
    benchmark.extra_info.update(p50_us=round(statistics.median(samples) / 1e3, 2),
                                p99_us=round(samples[int(len(samples) * 0.99)] / 1e3, 2))


# ---- alternating rounds ----

def _timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main(rounds=5):
    """Rounds alternate between the links compared, so that a neighbour's load on a shared machine
    falls on both sides of a ratio; medians of the rates and of the per-round ratios are printed."""
    median = statistics.median
    with Servers() as servers:
        for case, links in STREAM_LINKS.items():
            size, count, per_call = THROUGHPUT[case]
            clients = {link: stream_client(servers, link) for link in links if link in servers.where}
            try:
                for c in clients.values():
                    c.round(size, count // 10, per_call)
                rates = {link: [] for link in clients}
                for _ in range(rounds):
                    for link, c in clients.items():
                        rates[link].append(count / _timed(c.round, size, count, per_call))
            finally:
                for c in clients.values():
                    c.close()
            tls = rates["fastmsg tls"]
            for link, r in rates.items():
                ratio = "" if link == "fastmsg tls" else \
                    f", TLS / this: median {median([a / b for a, b in zip(tls, r)]):.2f}x"
                print(f"{case} {link:14} median {median(r) / 1e3:9.1f} k msg/s "
                      f"{median(r) * size / 1e6:8.1f} MB/s{ratio}")
        p50 = {}
        txs = {link: request_client(servers, link) for link in ("tls", "plain")}
        try:
            samples = {link: [] for link in txs}
            for link, tx in txs.items():
                round_trips(tx, 200, [])
            for _ in range(rounds):
                for link, tx in txs.items():
                    round_trips(tx, ROUND_TRIPS, samples[link])
        finally:
            for tx in txs.values():
                tx.close(linger=0)
        for link, s in samples.items():
            s.sort()
            p50[link] = median(s) / 1e3
            print(f"request/reply 64 B {link:5}: p50 {p50[link]:.1f} us, p99 {s[int(len(s) * 0.99)] / 1e3:.1f} us")
        print(f"request/reply 64 B: TLS p50 / clear p50 = {p50['tls'] / p50['plain']:.2f}x")


if __name__ == "__main__":
    main()
