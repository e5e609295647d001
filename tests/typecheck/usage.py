"""The public API as an application uses it, checked with `mypy --strict` (tests/test_typing.py).

Never run: it is here for its types. Each assert_type() states what the stubs must say; a call
that mypy rejects, or an inferred type that is Any, fails the check."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Literal

from typing_extensions import assert_type

import fastmsg
import fastmsg.asyncio
import fastmsg.testing
from fastmsg.balancer import Balancer
from fastmsg.endpoint import Endpoint, parse
from fastmsg.errors import Closed, FastmsgError, Full, MessageTooLarge, ProtocolError, Timeout
from fastmsg.types import (BalancerStats, ConnectionInfo, FaultProxyStats, ReceiverOptions, ReceiverStats,
                           SenderOptions, SenderStats)


def transport(tls_server: ssl.SSLContext, tls_client: ssl.SSLContext) -> None:
    with fastmsg.Context(poller="epoll") as ctx:
        assert_type(ctx.poller, str)
        rx = fastmsg.Receiver("tcp://127.0.0.1:0", context=ctx, max_message_size=1 << 20, ack="received",
                              secrets={1: b"k" * 16, "ops": bytearray(32)}, allow=["127.0.0.1/32", "key:1"],
                              rate_limit=(1000, 100), ssl=tls_server, dead_peer_timeout=None, busy_poll=1e-4)
        tx = fastmsg.Sender(rx.endpoint, context=ctx, hwm_bytes=1 << 20, linger=None, secret=b"k" * 16, key_id=1,
                            ssl=tls_client, server_hostname="localhost", busy_poll=None)
        with rx, tx:
            assert_type(tx.endpoint, str)
            tx.send(b"bytes")
            tx.send(bytearray(b"bytearray"), timeout=0)
            tx.send(memoryview(b"view"), timeout=1.5)
            assert_type(tx.send_many([b"a", bytearray(b"b"), memoryview(b"c")], timeout=None), int)
            assert_type(tx.flush(timeout=1), bool)
            assert_type(tx.connected, bool)
            assert_type(tx.unacknowledged, int)
            assert_type(tx.queued_count - tx.settled_count, int)
            assert_type(tx.fileno(), int)
            assert_type(tx.linger, float | None)

            msg = rx.recv(timeout=1.0)
            assert_type(msg, fastmsg.Message)
            assert_type(bytes(msg), bytes)
            assert_type(memoryview(msg), memoryview)
            assert_type(len(msg), int)
            assert_type(msg.peer, str | None)
            assert_type(msg.is_request, bool)
            assert_type(msg == b"bytes", bool)
            assert_type(msg[0], int)
            assert_type(msg[1:3], bytes)
            assert_type(msg.decode(), str)
            assert_type(msg.tobytes(), bytes)
            assert_type(b"by" in msg, bool)
            assert_type(fastmsg.crc32c(msg), int)  # a Message is a Buffer wherever one is taken
            tx.send(msg)
            with msg:
                pass
            msg.release()

            batch = rx.recv_many(64, timeout=0)
            assert_type(batch, list[fastmsg.Message])
            for m in batch:
                if m.is_request:
                    m.reply(b"answer")
            assert_type(iter(rx), Iterator[fastmsg.Message])

            reply = tx.request(b"question", timeout=1.0)
            assert_type(reply, fastmsg.Message)
            assert_type(tx.request_many([b"q1", b"q2"]), list[fastmsg.Message])
            for r in tx.request_stream((b"q%d" % i for i in range(3)), window=8, timeout=None):
                assert_type(r, fastmsg.Message)

            conns = rx.connections()
            assert_type(conns, list[ConnectionInfo])
            assert_type(conns[0]["address"], str | None)
            assert_type(conns[0]["peer"], str | None)

            sstats = tx.stats()
            assert_type(sstats, SenderStats)
            assert_type(sstats["sent_messages"], int)
            assert_type(sstats["peer"], str | None)
            assert_type(sstats["connected"], bool)
            assert_type(sstats["last_error"], str)
            rstats = rx.stats()
            assert_type(rstats, ReceiverStats)
            assert_type(rstats["received_messages"] + rstats["tls_failures"], int)
            assert_type(rstats["last_error"], str)

            assert_type(fastmsg.poll([rx], timeout=0.5), list[fastmsg.Receiver])
            assert_type(fastmsg.poll([tx]), list[fastmsg.Sender])
            assert_type(fastmsg.poll([rx, tx]), list[fastmsg.Receiver | fastmsg.Sender])
            assert_type(rx.closed, bool)
            assert_type(tx.close(linger=0), bool)
            assert_type(tx.close(), bool)
            rx.close()
    assert_type(fastmsg.default_context(), fastmsg.Context)
    fastmsg.Sender(Endpoint.tcp("127.0.0.1", 5555)).close()


def errors() -> None:
    try:
        fastmsg.Sender("tcp://127.0.0.1:1").send(b"x", timeout=0)
    except MessageTooLarge as exc:
        assert_type(exc.size, int | None)
        assert_type(exc.limit, int | None)
        assert_type(exc.dropped, int)
    except ProtocolError as exc:
        assert_type(exc.code, int | None)
    except (Full, Timeout, Closed):
        pass
    except FastmsgError:
        pass
    assert issubclass(fastmsg.Timeout, TimeoutError)


async def with_asyncio() -> None:
    options: ReceiverOptions = {"max_message_size": 1 << 16, "ack": "released"}
    async with fastmsg.asyncio.Receiver("tcp://127.0.0.1:0", **options) as rx:
        sender_options: SenderOptions = {"hwm_bytes": 1 << 16, "linger": 2.0}
        async with fastmsg.asyncio.Sender(rx.endpoint, **sender_options) as tx:
            await tx.send(b"hello", timeout=1)
            assert_type(await tx.send_many([b"a", b"b"]), int)
            msg = await rx.recv(timeout=1.0)
            assert_type(msg, fastmsg.Message)
            assert_type(await rx.recv_many(10), list[fastmsg.Message])
            assert_type(await tx.request(b"q", timeout=1.0), fastmsg.Message)
            assert_type(await tx.flush(), bool)
            assert_type(tx.stats(), SenderStats)
            assert_type(rx.stats(), ReceiverStats)
            assert_type(tx.linger, float | None)
            assert_type(tx.fileno() + rx.fileno(), int)
            assert_type(await tx.aclose(linger=1.0), bool)
            async for m in rx:
                assert_type(m, fastmsg.Message)
                break


def balancing(ctx: fastmsg.Context) -> None:
    with Balancer(["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"], "hash", seed=b"seed", weights=[1.0, 2.0],
                  zones=["a", None], zone="a", run=4, on_settled=print, context=ctx,
                  hwm_bytes=1 << 20, heartbeat_interval=0.5) as bal:
        bal.send(b"x", key=b"k")
        assert_type(bal.send_many([b"1", b"2"], keys=[b"a", b"b"], timeout=0), int)
        assert_type(bal.request(b"q", key=b"k"), fastmsg.Message)
        assert_type(bal.wait_up(1, timeout=1.0), bool)
        assert_type(bal.route(b"k"), int)
        assert_type(bal.endpoints, list[str])
        bal.add("tcp://127.0.0.1:5557", weight=2.0)
        bal.remove("tcp://127.0.0.1:5557")
        stats = bal.stats()
        assert_type(stats, BalancerStats)
        assert_type(stats["endpoints"][0]["state"], Literal["up", "down"])
        assert_type(stats["totals"]["failovers"], int)
        assert_type(bal.flush(timeout=1.0), bool)
        assert_type(bal.close(), bool)
    with fastmsg.Relay("tcp://127.0.0.1:0", "tcp://127.0.0.1:5555", receiver_options={"max_connections": 8},
                       linger=1.0) as relay:
        assert_type(relay.endpoint, str)
        assert_type(relay.balancer, Balancer)
        assert_type(relay.run(timeout=0.1), int)


def rings_and_crc() -> None:
    with fastmsg.RingBuffer(1 << 12) as ring:
        assert_type(ring.write(b"record"), bool)
        assert_type(ring.write_many([b"a", b"b"]), int)
        with ring.reserve(16) as view:
            assert_type(view, memoryview)
            view[:4] = b"abcd"
        rec = ring.read(timeout=None)
        assert_type(rec, fastmsg.Record | None)
        if rec is not None:
            assert_type(bytes(rec), bytes)
            assert_type(memoryview(rec), memoryview)
            rec.release()
        assert_type(ring.read_many(8), list[fastmsg.Record])
        assert_type(ring.capacity + ring.free + ring.max_record + len(ring), int)
    shared = fastmsg.SharedRing.create("fastmsg-typing", 1 << 12)
    assert_type(fastmsg.SharedRing.attach("fastmsg-typing"), fastmsg.SharedRing)
    assert_type(shared.name, str)
    shared.unlink()
    assert_type(fastmsg.crc32c(b"data", fastmsg.crc32c(bytearray(b"more"))), int)
    assert_type(fastmsg.crc32c_combine(1, 2, 3), int)
    assert_type(fastmsg.crc32c_implementation, str)
    assert_type(parse("ipc:///tmp/x.sock"), Endpoint)


def faults() -> None:
    with fastmsg.testing.FaultProxy("tcp://127.0.0.1:5555", seed=7) as proxy:
        assert_type(proxy.endpoint, str)
        proxy.reset_after(1000, 2000)
        proxy.flip_bits(1e-5, direction="to_client")
        proxy.delay(0.01)
        proxy.stall(0.1)
        proxy.black_hole()
        proxy.heal()
        proxy.reset_all()
        assert_type(proxy.stats(), FaultProxyStats)
        assert_type(proxy.stats()["bits_flipped"], int)


def main() -> None:
    asyncio.run(with_asyncio())
