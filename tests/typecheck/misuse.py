"""Misuses that the types must catch, checked with `mypy --strict` (tests/test_typing.py).

Never run. Each line marked `# error: <code>` must draw exactly that mypy error code on that
line, and no other line any error: the test fails if a mistake here type-checks (or if anything
else is reported)."""

from __future__ import annotations

import fastmsg
import fastmsg.asyncio
import fastmsg.testing
from fastmsg.balancer import Balancer


def transport(rx: fastmsg.Receiver, tx: fastmsg.Sender, msg: fastmsg.Message) -> None:
    tx.send("text")  # error: arg-type
    tx.send(b"x", timeout="soon")  # error: arg-type
    rx.recv_mny(3)  # error: attr-defined
    rx.recv(timeout="soon")  # error: arg-type
    rx.recv_many("3")  # error: arg-type
    tx.send_many(["a", "b"])  # error: list-item
    fastmsg.Sender("tcp://127.0.0.1:5555", hwm_bytes="4M")  # error: arg-type
    fastmsg.Sender("tcp://127.0.0.1:5555", None)  # error: call-arg
    fastmsg.Sender("tcp://127.0.0.1:5555", hwm=1 << 20)  # error: call-arg
    fastmsg.Sender(5555)  # error: arg-type
    fastmsg.Sender("tcp://127.0.0.1:5555", ssl=True)  # error: arg-type
    fastmsg.Receiver("tcp://127.0.0.1:0", ack="sometimes")  # error: arg-type
    fastmsg.Receiver("tcp://127.0.0.1:0", rate_limit=100)  # error: arg-type
    fastmsg.Context(io_threads="1")  # error: arg-type
    text: str = rx.recv_many(3)  # error: assignment
    count: str = tx.stats()["sent_messages"]  # error: assignment
    tx.stats()["sent_mesages"]  # error: typeddict-item
    rx.stats()["sent_messages"]  # error: typeddict-item
    rx.connections()[0]["host"]  # error: typeddict-item
    msg.reply("text")  # error: arg-type
    msg.peer.upper()  # error: union-attr
    closed: str = tx.close()  # error: assignment
    fastmsg.poll([rx], timeout="never")  # error: call-overload
    fastmsg.poll([b"not an endpoint"])  # error: type-var


async def with_asyncio(arx: fastmsg.asyncio.Receiver, atx: fastmsg.asyncio.Sender) -> None:
    await atx.send("text")  # error: arg-type
    fastmsg.asyncio.Sender("tcp://127.0.0.1:5555", hwm_bytes="4M")  # error: arg-type
    fastmsg.asyncio.Receiver("tcp://127.0.0.1:0", max_connection=8)  # error: call-arg
    arx.recv(timeout=1).release()  # error: attr-defined
    message: bytes = await arx.recv()  # error: assignment


def others(bal: Balancer, ring: fastmsg.RingBuffer) -> None:
    Balancer(["tcp://127.0.0.1:5555"], "fastest")  # error: arg-type
    Balancer(["tcp://127.0.0.1:5555"], hwm=1)  # error: call-arg
    bal.send(b"x", key="k")  # error: arg-type
    bal.stats()["totals"]["lost"]  # error: typeddict-item
    ring.write("text")  # error: arg-type
    ring.read().release()  # error: union-attr
    fastmsg.crc32c("text")  # error: arg-type
    fastmsg.testing.FaultProxy("tcp://127.0.0.1:5555").flip_bits(0.1, direction="sideways")  # error: arg-type
    raise fastmsg.MessageTooLarge(1024)  # error: arg-type
