"""Request/reply of 64 bytes over loopback TCP, each server in its own process.

Round trips, one request at a time: fastmsg (Sender.request, Message.reply, with the adaptive
busy_poll of the defaults; and the same with busy_poll=100 us on both sides, which polls rather
than sleeps in every wait: the two processes on two CPUs then spare each other's wake-up) against
a plain blocking socket echo (one connection, 4-byte length prefix) and pyzmq REQ/REP when
installed;
then the same from asyncio (fastmsg.asyncio request against an asyncio Protocol client of the
socket echo and zmq.asyncio REQ/REP, on the default loop and uvloop).

Requests in flight: 64 at a time from one client, fastmsg's Sender.request_stream (its batch
form, a replier answering recv_many batches) against pyzmq DEALER/ROUTER (a DEALER keeping 64
sent ahead of its replies, a ROUTER echoing each; pyzmq has no batch call).

Run: pytest benchmarks/bench_requests.py --benchmark-group-by=group
A round is ROUND_TRIPS requests, one after another, so the time per round is ROUND_TRIPS round
trips and lower is better; extra_info holds each request's own median and 99th percentile (us).
"""

import asyncio
import multiprocessing
import socket
import statistics
import struct
import time

import pytest

import fastmsg
import fastmsg.asyncio as fa

PAYLOAD = b"x" * 64
ROUND_TRIPS = 2_000
HEADER = struct.Struct("!I")


from event_loops import LOOPS, zmq
from rounds import median_seconds


# ---- servers, each in its own process: they answer until terminated ----

BUSY_POLL = 100e-6  # seconds


def serve_fastmsg(ports, **options):
    rx = fastmsg.Receiver("tcp://127.0.0.1:0", **options)
    ports.put(rx.endpoint)
    while True:
        with rx.recv() as m:
            m.reply(m)


def serve_fastmsg_busy(ports):
    serve_fastmsg(ports, busy_poll=BUSY_POLL)


def _recv_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def serve_socket(ports):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        ports.put(srv.getsockname()[1])
        while True:  # one client after another
            conn, _ = srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while True:
                    (length,) = HEADER.unpack(_recv_exact(conn, HEADER.size))
                    conn.sendall(HEADER.pack(length) + _recv_exact(conn, length))
            except ConnectionError:
                conn.close()


def serve_fastmsg_batches(ports):
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    ports.put(rx.endpoint)
    while True:
        for m in rx.recv_many(256):  # the batch's replies go out together
            m.reply(m)
            m.release()


def serve_zmq_router(ports):
    router = zmq.Context().socket(zmq.ROUTER)
    ports.put(router.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        router.send_multipart(router.recv_multipart())


def serve_zmq(ports):
    rep = zmq.Context().socket(zmq.REP)
    ports.put(rep.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        rep.send(rep.recv())


def _server(target):
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=target, args=(ports,), daemon=True)
    proc.start()
    return proc, ports.get(timeout=30)


@pytest.fixture(scope="module")
def servers():
    started = {"fastmsg": _server(serve_fastmsg), "fastmsg busy_poll": _server(serve_fastmsg_busy),
               "socket": _server(serve_socket),
               "fastmsg batches": _server(serve_fastmsg_batches)}
    if zmq:
        started["pyzmq"] = _server(serve_zmq)
        started["pyzmq router"] = _server(serve_zmq_router)
    yield {name: where for name, (_, where) in started.items()}
    for proc, _ in started.values():
        proc.terminate()
        proc.join(10)


# ---- clients: one round trip each call ----

def _fastmsg_client(endpoint, **options):
    tx = fastmsg.Sender(endpoint, **options)

    def once():
        tx.request(PAYLOAD).release()

    return once, lambda: tx.close(linger=0)


def _socket_client(port):
    conn = socket.create_connection(("127.0.0.1", port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    frame = HEADER.pack(len(PAYLOAD)) + PAYLOAD

    def once():
        conn.sendall(frame)
        _recv_exact(conn, len(frame))

    return once, conn.close


def _zmq_client(port):
    req = zmq.Context.instance().socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port}")

    def once():
        req.send(PAYLOAD)
        req.recv()

    return once, lambda: req.close(linger=0)


def _record(benchmark, samples):
    """Each request's median and p99 (us), from per-request samples (ns)."""
    samples.sort()
    benchmark.extra_info["median_us"] = round(statistics.median(samples) / 1e3, 2)
    benchmark.extra_info["p99_us"] = round(samples[int(len(samples) * 0.99)] / 1e3, 2)


SYNC = {"fastmsg": _fastmsg_client, "fastmsg busy_poll": lambda e: _fastmsg_client(e, busy_poll=BUSY_POLL),
        "socket": _socket_client, "pyzmq": _zmq_client}


@pytest.mark.parametrize("name", list(SYNC))
def test_sync_round_trip(benchmark, servers, name):
    if name not in servers:
        pytest.skip("pyzmq is not installed")
    once, close = SYNC[name](servers[name])
    samples = []

    def round_of_requests():
        for _ in range(ROUND_TRIPS):
            t0 = time.perf_counter_ns()
            once()
            samples.append(time.perf_counter_ns() - t0)

    benchmark.group = "request/reply 64 B, sync client"
    try:
        round_of_requests()  # warm-up: connected
        samples.clear()
        benchmark.pedantic(round_of_requests, rounds=5, iterations=1)
    finally:
        close()
    _record(benchmark, samples)


@pytest.mark.parametrize("then_flush", [False, True], ids=["request", "request + flush"])
def test_flush_after_request(benchmark, servers, then_flush):
    """flush() right after a request: it asks for the ACK at once, so it should add about a round
    trip (it once waited out the 10 ms lease on the socket the ACK lay in)."""
    tx = fastmsg.Sender(servers["fastmsg"])
    samples = []

    def round_of_requests():
        for _ in range(ROUND_TRIPS // 10):
            t0 = time.perf_counter_ns()
            tx.request(PAYLOAD).release()
            if then_flush and not tx.flush(timeout=5):
                raise AssertionError("flush() timed out")
            samples.append(time.perf_counter_ns() - t0)

    benchmark.group = "request/reply 64 B, then flush()"
    try:
        round_of_requests()
        samples.clear()
        benchmark.pedantic(round_of_requests, rounds=5, iterations=1)
    finally:
        tx.close(linger=0)
    _record(benchmark, samples)


# ---- asyncio clients ----

async def _fastmsg_async(endpoint, rounds, samples):
    async with fa.Sender(endpoint) as tx:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            (await tx.request(PAYLOAD)).release()
            samples.append(time.perf_counter_ns() - t0)


async def _zmq_async(port, rounds, samples):
    import zmq.asyncio

    req = zmq.asyncio.Context.instance().socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{port}")
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            await req.send(PAYLOAD)
            await req.recv()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        req.close(linger=0)


class _Echoed(asyncio.Protocol):
    """The asyncio Protocol side of the socket echo: a future per round trip."""

    def __init__(self, size):
        self.size, self.got, self.waiter = size, 0, None

    def data_received(self, data):
        self.got += len(data)
        if self.got >= self.size and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def _socket_async(port, rounds, samples):
    loop = asyncio.get_running_loop()
    frame = HEADER.pack(len(PAYLOAD)) + PAYLOAD
    transport, echoed = await loop.create_connection(lambda: _Echoed(len(frame)), "127.0.0.1", port)
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            echoed.waiter, echoed.got = loop.create_future(), 0
            transport.write(frame)
            await echoed.waiter
            samples.append(time.perf_counter_ns() - t0)
    finally:
        transport.close()


ASYNC = {"fastmsg": _fastmsg_async, "socket": _socket_async, "pyzmq": _zmq_async}


@pytest.mark.parametrize("loop", list(LOOPS))
@pytest.mark.parametrize("name", list(ASYNC))
def test_async_round_trip(benchmark, servers, name, loop):
    if name not in servers:
        pytest.skip("pyzmq is not installed")
    samples = []
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        def round_of_requests():
            runner.run(ASYNC[name](servers[name], ROUND_TRIPS, samples))

        benchmark.group = f"request/reply 64 B, asyncio client ({loop})"
        round_of_requests()  # warm-up: connected
        samples.clear()
        benchmark.pedantic(round_of_requests, rounds=5, iterations=1)
    _record(benchmark, samples)


# ---- 64 requests in flight ----

IN_FLIGHT = 64
STREAMED = 20_000


def _fastmsg_in_flight(endpoint):
    tx = fastmsg.Sender(endpoint)

    def stream():
        n = 0
        for reply in tx.request_stream((PAYLOAD for _ in range(STREAMED)), window=IN_FLIGHT, timeout=30):
            reply.release()
            n += 1
        assert n == STREAMED

    return stream, lambda: tx.close(linger=0)


def _zmq_in_flight(port):
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def stream():
        for _ in range(IN_FLIGHT):
            dealer.send(PAYLOAD)
        for i in range(STREAMED):
            dealer.recv()
            if i < STREAMED - IN_FLIGHT:
                dealer.send(PAYLOAD)

    return stream, lambda: dealer.close(linger=0)


IN_FLIGHT_PEERS = {"fastmsg batches": _fastmsg_in_flight, "pyzmq router": _zmq_in_flight}


@pytest.mark.parametrize("name", list(IN_FLIGHT_PEERS))
def test_requests_in_flight(benchmark, servers, name):
    """A round is STREAMED requests with IN_FLIGHT outstanding: requests/s = STREAMED / time."""
    if name not in servers:
        pytest.skip("pyzmq is not installed")
    stream, close = IN_FLIGHT_PEERS[name](servers[name])
    benchmark.group = f"{IN_FLIGHT} requests in flight, 64 B ({STREAMED} per round)"
    try:
        stream()  # warm-up: connected
        benchmark.pedantic(stream, rounds=5, iterations=1)
    finally:
        close()
    if median_seconds(benchmark) is not None:
        benchmark.extra_info["requests_per_s"] = round(STREAMED / median_seconds(benchmark))
