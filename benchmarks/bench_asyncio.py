"""asyncio: fastmsg.asyncio against pyzmq's zmq.asyncio, over loopback TCP, both ends as tasks of
one event loop (the default loop, and uvloop when installed).

Run: pytest benchmarks/bench_asyncio.py --benchmark-group-by=group
A round is a fixed number of 64-byte round trips (`await send`, then `await recv` of the echo
that another task sends back), or of one-way messages (one `await send` each; the receiving task
takes them with recv_many for fastmsg, one `await recv` each for pyzmq, which has no batch
receive), so the time per round is the transfer time and lower is better; extra_info holds the
time per round trip or per message.
"""

import asyncio

import pytest

import fastmsg.asyncio as fa

PAYLOAD = b"x" * 64
ROUND_TRIPS = 2_000
MESSAGES = 50_000


from event_loops import LOOPS, zmq
from rounds import median_seconds


class FastmsgPeers:
    """Two fastmsg.asyncio Sender/Receiver pairs: a to b, and b back to a."""

    def __init__(self):
        self.rx_a, self.rx_b = fa.Receiver("tcp://127.0.0.1:0"), fa.Receiver("tcp://127.0.0.1:0")
        self.tx_a, self.tx_b = fa.Sender(self.rx_b.endpoint), fa.Sender(self.rx_a.endpoint)

    async def round_trips(self, n):
        async def echo():
            for _ in range(n):
                with await self.rx_b.recv() as msg:
                    await self.tx_b.send(msg)

        echoing = asyncio.create_task(echo())
        for _ in range(n):
            await self.tx_a.send(PAYLOAD)
            with await self.rx_a.recv():
                pass
        await echoing

    async def one_way(self, n):
        async def drain():
            got = 0
            while got < n:
                got += len(await self.rx_b.recv_many(4096))  # (the batch is released at once)

        draining = asyncio.create_task(drain())
        for _ in range(n):
            await self.tx_a.send(PAYLOAD)
        await draining

    def close(self):
        for end in (self.tx_a, self.tx_b):
            end.close(linger=0)
        for end in (self.rx_a, self.rx_b):
            end.close()


class PyzmqPeers:
    """Two zmq.asyncio PAIR sockets over TCP, the usual way to pair two peers in pyzmq."""

    def __init__(self):
        import zmq.asyncio

        self.ctx = zmq.asyncio.Context()
        self.a, self.b = self.ctx.socket(zmq.PAIR), self.ctx.socket(zmq.PAIR)
        port = self.a.bind_to_random_port("tcp://127.0.0.1")
        self.b.connect(f"tcp://127.0.0.1:{port}")

    async def round_trips(self, n):
        async def echo():
            for _ in range(n):
                await self.b.send(await self.b.recv(copy=False), copy=False)

        echoing = asyncio.create_task(echo())
        for _ in range(n):
            await self.a.send(PAYLOAD)
            await self.a.recv(copy=False)
        await echoing

    async def one_way(self, n):
        async def drain():
            for _ in range(n):
                await self.b.recv(copy=False)

        draining = asyncio.create_task(drain())
        for _ in range(n):
            await self.a.send(PAYLOAD)
        await draining

    def close(self):
        self.a.close(linger=0)
        self.b.close(linger=0)
        self.ctx.term()


PEERS = {"fastmsg": FastmsgPeers, **({"pyzmq": PyzmqPeers} if zmq else {})}


@pytest.fixture(scope="module", params=list(LOOPS))
def runner(request):
    with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
        r.loop_name = request.param
        yield r


@pytest.fixture(params=list(PEERS))
def peers(request, runner):
    made = runner.run(_make(PEERS[request.param]))  # made in the loop: zmq.asyncio binds to it
    made.name = request.param
    yield made
    made.close()


async def _make(cls):
    return cls()


def test_round_trip_64B(benchmark, runner, peers):
    benchmark.group = f"asyncio round trip 64B tcp {runner.loop_name}"
    benchmark.pedantic(lambda: runner.run(peers.round_trips(ROUND_TRIPS)), rounds=5, iterations=1, warmup_rounds=1)
    if median_seconds(benchmark) is not None:
        benchmark.extra_info.update(us_per_round_trip=median_seconds(benchmark) / ROUND_TRIPS * 1e6)


def test_one_way_64B(benchmark, runner, peers):
    benchmark.group = f"asyncio one-way 64B tcp {runner.loop_name}"
    benchmark.pedantic(lambda: runner.run(peers.one_way(MESSAGES)), rounds=5, iterations=1, warmup_rounds=1)
    if median_seconds(benchmark) is not None:
        benchmark.extra_info.update(msgs_per_s=round(MESSAGES / median_seconds(benchmark)))
