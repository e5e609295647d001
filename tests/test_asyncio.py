"""fastmsg.asyncio over real sockets, on the default event loop and on uvloop.

No sleep synchronises anything here: a task is known to wait once the loop has run it up to its
await (asyncio.sleep(0) yields to it), and the engine's write of a readiness fd is seen in the
`notifications` counter."""

import asyncio
import threading

import pytest

import fastmsg
import fastmsg.asyncio as fa
from asyncio_helpers import pair, run, until_waiting  # noqa: F401 (fixtures)
from transport_helpers import wait_for


def test_send_recv_in_order(run, pair):
    rx, tx = pair

    async def main():
        for i in range(200):
            await tx.send(b"m%d" % i)
        got = [bytes(await rx.recv(timeout=10)) for _ in range(200)]
        assert got == [b"m%d" % i for i in range(200)]
        assert await tx.flush(timeout=10)
        assert tx.unacknowledged == 0

    run(main)


def test_recv_waits_on_the_fd(run, pair):
    rx, tx = pair

    async def main():
        await tx.send(b"first")  # (connected, its handshake records consumed)
        assert bytes(await rx.recv(timeout=10)) == b"first"
        before = rx.stats()["notifications"]
        task = asyncio.create_task(rx.recv(timeout=10))
        await until_waiting(task)
        await tx.send(b"late")
        assert bytes(await task) == b"late"
        assert rx.stats()["notifications"] == before + 1  # the engine woke it through the fd, once

    run(main)


def test_recv_many_and_send_many(run, pair):
    rx, tx = pair

    async def main():
        assert await tx.send_many([b"%d" % i for i in range(1000)]) == 1000
        got = []
        while len(got) < 1000:
            got += [bytes(m) for m in await rx.recv_many(300, timeout=10)]
        assert got == [b"%d" % i for i in range(1000)]

    run(main)


def test_async_for_ends_when_closed(run, pair):
    rx, tx = pair

    got, all_in = [], asyncio.Event()

    async def consume():
        async for m in rx:
            got.append(bytes(m))
            if len(got) == 3:
                all_in.set()
        return "ended"

    async def main():
        task = asyncio.create_task(consume())
        await tx.send_many([b"a", b"b", b"c"])
        await all_in.wait()
        rx.close()
        assert await task == "ended"
        assert got == [b"a", b"b", b"c"]
        with pytest.raises(fastmsg.Closed):
            await rx.recv()

    run(main)


def test_cancelled_recv_loses_nothing(run, pair):
    rx, tx = pair

    async def main():
        first = asyncio.create_task(rx.recv())
        await until_waiting(first)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await tx.send(b"kept")
        assert bytes(await rx.recv(timeout=10)) == b"kept"

    run(main)


def test_recv_cancelled_after_its_wake_up_loses_nothing(run, pair):
    rx, tx = pair

    async def main():
        waiter = asyncio.create_task(rx.recv())
        await until_waiting(waiter)
        await tx.send(b"kept")
        # The engine has written the fd, but the loop has not run since: the waiter is cancelled
        # before it could take the message, which must still be there.
        wait_for(lambda: rx.stats()["notifications"] == 1, what="the engine's write of the fd")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bytes(await rx.recv(timeout=10)) == b"kept"

    run(main)


def test_many_waiting_tasks_get_distinct_messages(run, pair):
    rx, tx = pair
    tasks, per_task = 8, 50

    async def take(n):
        return [bytes(await rx.recv(timeout=10)) for _ in range(n)]

    async def main():
        takers = [asyncio.create_task(take(per_task)) for _ in range(tasks)]
        await asyncio.sleep(0)
        for i in range(tasks * per_task):
            await tx.send(b"%d" % i)
        got = [m for batch in await asyncio.gather(*takers) for m in batch]
        assert sorted(got) == sorted(b"%d" % i for i in range(tasks * per_task))

    run(main)


@pytest.mark.parametrize("size", [1000, 100_000], ids=["in-ring", "large"])
def test_send_waits_for_room(run, size):
    rx = fa.Receiver("tcp://127.0.0.1:0")
    tx = fa.Sender(rx.endpoint, hwm_bytes=4096)

    async def main():
        # Fill the queue: the receiver takes nothing, so nothing is acknowledged.
        queued = 0
        with pytest.raises(fastmsg.Full):
            while True:
                tx._tx.send(b"q" * size, timeout=0)
                queued += 1
        sending = asyncio.create_task(tx.send(b"last" * (size // 4)))
        await until_waiting(sending)
        held = [await rx.recv(timeout=10) for _ in range(queued)]
        assert not sending.done()  # the receiver still holds them: nothing acknowledged yet
        del held  # released: acknowledged, room comes back, the send goes through
        await sending
        assert tx.stats()["notifications"] >= 1
        assert bytes(await rx.recv(timeout=10)) == b"last" * (size // 4)

    try:
        run(main)
    finally:
        tx.close(linger=0)
        rx.close()


def test_timeouts(run):
    rx = fa.Receiver("tcp://127.0.0.1:0")
    tx = fa.Sender(rx.endpoint, hwm_bytes=4096)

    async def main():
        with pytest.raises(TimeoutError) as info:  # the loop's own timeouts cancel cleanly
            async with asyncio.timeout(0.05):
                await rx.recv()
        assert not isinstance(info.value, fastmsg.Timeout)
        with pytest.raises(fastmsg.Timeout):
            await rx.recv(timeout=0)
        with pytest.raises(fastmsg.Timeout) as info:
            await rx.recv_many(10, timeout=0.05)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(fastmsg.Full):
            while True:
                tx._tx.send(b"q" * 1000, timeout=0)
        with pytest.raises(fastmsg.Timeout):
            await tx.send(b"q" * 1000, timeout=0.05)
        assert await tx.flush(timeout=0.05) is False  # never taken, so never acknowledged

    try:
        run(main)
    finally:
        tx.close(linger=0)
        rx.close()


def test_close_wakes_waiters(run, pair):
    rx, tx = pair

    async def main():
        waiting = asyncio.create_task(rx.recv())
        await until_waiting(waiting)
        rx.close()
        with pytest.raises(fastmsg.Closed):
            await waiting

    run(main)


def test_aclose_waits_for_acknowledgements(run):
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    drained = []

    def take():  # a plain thread on the other side
        for _ in range(100):
            drained.append(bytes(rx.recv(timeout=10)))

    async def main():
        async with fa.Sender(rx.endpoint) as tx:
            await tx.send_many([b"x"] * 100)
            assert await tx.aclose(linger=10) is True  # every message acknowledged
        assert tx.closed

    taker = threading.Thread(target=take)
    taker.start()
    try:
        run(main)
        taker.join(10)
        assert drained == [b"x"] * 100
    finally:
        rx.close()


def test_other_loop_is_refused(pair):
    rx, _ = pair

    async def wait_briefly():
        with pytest.raises(fastmsg.Timeout):
            await rx.recv(timeout=0.01)

    with asyncio.Runner() as first:
        first.run(wait_briefly())
        with asyncio.Runner() as second:
            with pytest.raises(RuntimeError, match="another event loop"):
                second.run(rx.recv(timeout=0.01))
    with asyncio.Runner() as third:  # the first loop is closed: a new one may take over
        third.run(wait_briefly())


def test_unwatched_endpoints_never_write_the_fd():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        rx.fileno(), tx.fileno()  # made, but nobody arms them: blocking calls only
        for i in range(50):
            tx.send(b"%d" % i)
            assert bytes(rx.recv(timeout=10)) == b"%d" % i
        assert tx.flush(timeout=10)
        assert rx.stats()["notifications"] == 0 and tx.stats()["notifications"] == 0


def test_one_write_per_arming():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        rx.fileno()
        with pytest.raises(fastmsg.Timeout):
            rx.recv(timeout=0)  # arms
        tx.send_many([b"a"] * 10)
        tx.send(b"b")
        wait_for(lambda: rx.stats()["notifications"] == 1, what="the fd's write")
        got = [bytes(rx.recv(timeout=10)) for _ in range(11)]
        assert got == [b"a"] * 10 + [b"b"]
        assert rx.stats()["notifications"] == 1


class NoReaderLoop(asyncio.SelectorEventLoop):
    """A loop that cannot watch descriptors, as Windows's default ProactorEventLoop."""

    def add_reader(self, fd, callback, *args):
        raise NotImplementedError


def test_a_loop_without_add_reader_is_refused_saying_which_loop_to_use():
    from reply_helpers import answer, serve_in_thread

    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    tx = fa.Sender(rx.endpoint)
    arx = fa.Receiver("tcp://127.0.0.1:0")
    t, stop = serve_in_thread(rx)
    try:
        for call in (lambda: arx.recv(timeout=5), lambda: tx.request(b"q", timeout=5)):
            with asyncio.Runner(loop_factory=NoReaderLoop) as runner:
                with pytest.raises(RuntimeError, match="NoReaderLoop.*SelectorEventLoop"):
                    runner.run(call())
        # The socket the request would have lent the loop was given back: requests still work.
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            assert bytes(runner.run(tx.request(b"again", timeout=10))) == answer(b"again")
    finally:
        stop.set()
        t.join(5)
        tx.close(linger=0)
        arx.close()
        rx.close()
