"""Receiver.fileno() and Sender.fileno() in a loop other than asyncio: trio.

The example the README shows: the non-blocking call arms the fd when it finds nothing, so
waiting for readability after it misses nothing."""

import threading

import pytest

import fastmsg

trio = pytest.importorskip("trio", reason="trio is not installed (pip install '.[test]')")


async def trio_recv(rx):
    """The next message of a fastmsg.Receiver, awaited in trio."""
    while True:
        try:
            return rx.recv(timeout=0)
        except fastmsg.Timeout:  # nothing now, and the fd is armed: wait for it
            await trio.lowlevel.wait_readable(rx.fileno())


async def trio_send(tx, data):
    """Queues data on a fastmsg.Sender, waiting in trio while its queue is full."""
    while True:
        try:
            return tx.send(data, timeout=0)
        except fastmsg.Full:
            await trio.lowlevel.wait_readable(tx.fileno())


def test_trio_receives_and_sends():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    tx = fastmsg.Sender(rx.endpoint, hwm_bytes=4096)
    count = 300
    got = []

    async def main():
        with trio.fail_after(30):
            await exchange()

    async def exchange():
        async with trio.open_nursery() as nursery:
            async def consume():
                for _ in range(count):
                    got.append(bytes(await trio_recv(rx)))

            nursery.start_soon(consume)
            for i in range(count):  # 1000-byte messages into a 4 KiB queue: send waits for room
                await trio_send(tx, b"%04d" % i + b"." * 996)

    try:
        trio.run(main)
        assert [m[:4] for m in got] == [b"%04d" % i for i in range(count)]
        assert rx.stats()["notifications"] >= 1 and tx.stats()["notifications"] >= 1
    finally:
        tx.close(linger=0)
        rx.close()


def test_trio_wakes_on_a_message_from_another_thread():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        async def main():
            with trio.fail_after(30):
                threading.Thread(target=tx.send, args=(b"from a thread",)).start()
                return bytes(await trio_recv(rx))

        assert trio.run(main) == b"from a thread"
