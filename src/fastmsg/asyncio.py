"""fastmsg.asyncio: Sender and Receiver whose waits are coroutines.

Each class wraps the synchronous one of the same name and takes the same options:

    rx = fastmsg.asyncio.Receiver("tcp://127.0.0.1:0")
    tx = fastmsg.asyncio.Sender(rx.endpoint)
    await tx.send(b"hello")
    msg = await rx.recv(timeout=1.0)
    async for msg in rx: ...            # ends when the Receiver is closed
    reply = await tx.request(b"question", timeout=1.0)   # answered with msg.reply()

A coroutine makes the non-blocking call itself (recv(timeout=0), send(timeout=0)) while it runs.
When that call finds nothing to do it has armed the endpoint's readiness fd (see
Receiver.fileno), so the coroutine waits for the event loop to see the fd readable
(loop.add_reader), then tries again: no thread per call, no polling. Messages are only ever taken
by the coroutine that returns them, never in a callback, so a cancelled recv() loses nothing:
the message stays for the next one, and a cancelled request() ends its request (a reply that
comes later is counted late). Works on any loop with add_reader (the default loop, uvloop); on
Windows that is asyncio.SelectorEventLoop, not the default ProactorEventLoop, which has none:
    asyncio.run(main(), loop_factory=asyncio.SelectorEventLoop)
Use an object from its event loop's thread only.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import fastmsg
from fastmsg._core.transport import OWN_LINGER, _OwnLinger
from fastmsg.errors import Closed, Full, Timeout

if TYPE_CHECKING:
    from typing_extensions import Buffer, Self, Unpack

    from fastmsg._core.transport import Message
    from fastmsg.endpoint import Endpoint
    from fastmsg.types import ReceiverOptions, ReceiverStats, SenderOptions, SenderStats

__all__ = ["Receiver", "Sender"]

_OWN_LINGER = OWN_LINGER  # Sender.close/aclose: the Sender's own `linger` option (as fastmsg.Sender.close's)


if sys.platform == "win32":
    # There the readiness fd and a lent socket are sockets (WSAPoll waits on nothing else), which
    # os.read and os.close, made for the C runtime's descriptors, do not take.
    def _drain(fd):
        s = socket.socket(fileno=fd)
        try:
            s.recv(64)
        finally:
            s.detach()  # (the endpoint keeps it)

    def _close(fd):
        socket.socket(fileno=fd).close()
else:
    def _drain(fd):
        os.read(fd, 64)  # an eventfd's counter (8 bytes), or a pipe's few bytes

    _close = os.close


def _add_reader(loop, fd, callback):
    try:
        loop.add_reader(fd, callback)
    except NotImplementedError:
        raise RuntimeError(f"fastmsg.asyncio needs an event loop that watches file descriptors (add_reader), and "
                           f"{type(loop).__name__} does not; on Windows use asyncio.SelectorEventLoop, e.g. "
                           f"asyncio.run(main(), loop_factory=asyncio.SelectorEventLoop)") from None


class _NotYet(Exception):
    """A look at a condition that does not hold yet (it armed the readiness fd)."""


class _Readiness:
    """Waits in the running event loop until one endpoint's readiness fd turns readable, and
    retries a non-blocking call until it succeeds. Every waiter is woken when the fd fires; each
    retries, and those that still find nothing arm the fd again and wait again."""

    __slots__ = ("_endpoint", "_fd", "_loop", "_waiters", "_deadlines", "_timer", "_timer_at")

    def __init__(self, endpoint):
        self._endpoint = endpoint  # the synchronous Sender or Receiver
        self._fd = -1
        self._loop = None          # the loop whose add_reader watches _fd
        self._waiters = set()      # futures of the coroutines waiting for the fd
        # One loop timer for all the waits with a deadline, armed for the earliest and left
        # armed when that wait ends early: a run of requests with a timeout then costs a loop
        # timer per timeout's length, not one per request (call_at, then cancel, each time).
        self._deadlines = {}       # future -> its deadline (loop time)
        self._timer = None
        self._timer_at = None

    async def until(self, call, busy, timeout, timeout_text):
        """call() until it does not raise `busy`, which it raises, having armed the fd, when it
        cannot proceed now (busy None: until it returns something else than None, which it
        returns instead); Timeout(timeout_text.format(timeout)) once `timeout` seconds passed
        (None: no limit, 0: one try)."""
        got = _once(call, busy)
        if got is not _NOT_YET:
            return got
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._loop is not loop:
            self._watch(loop)  # the first wait makes the fd: the call above could not arm it
            got = _once(call, busy)
            if got is not _NOT_YET:
                return got
        while True:
            if deadline is not None and loop.time() >= deadline:
                raise Timeout(timeout_text.format(timeout))
            await self._wait(loop, deadline)
            got = _once(call, busy)
            if got is not _NOT_YET:
                return got

    def _watch(self, loop):
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(f"{self._endpoint!r} is already used from another event loop")
        self._fd = self._endpoint._reader_fileno()  # _on_readable empties it, arming does not
        _add_reader(loop, self._fd, self._on_readable)
        if self._timer is not None:  # (a closed loop's)
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._deadlines.clear()
        self._loop = loop

    async def _wait(self, loop, deadline):
        fut = loop.create_future()
        self._waiters.add(fut)
        if deadline is not None:
            self._deadlines[fut] = deadline
            if self._timer_at is None or deadline < self._timer_at:
                self._arm(loop, deadline)
        try:
            await fut
        finally:
            self._waiters.discard(fut)
            self._deadlines.pop(fut, None)

    def _arm(self, loop, when):
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_timer, loop)
        self._timer_at = when

    def _on_timer(self, loop):
        """Wakes the waits whose deadline passed (each then sees it and raises Timeout), and arms
        the timer for the next one."""
        self._timer = self._timer_at = None
        now, earliest = loop.time(), None
        for fut, deadline in self._deadlines.items():
            if deadline <= now:
                _wake(fut)
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None:
            self._arm(loop, earliest)

    def _on_readable(self):
        # Emptied here, as the loop calls a reader for as long as its fd is readable; the engine
        # writes it again only once a retry that finds nothing has armed it.
        try:
            _drain(self._fd)
        except (BlockingIOError, InterruptedError):
            pass
        for fut in self._waiters:
            _wake(fut)

    def wake_all(self):
        for fut in self._waiters:
            _wake(fut)

    def close(self):
        """Stops watching the fd (before the endpoint closes it) and wakes every waiter, whose
        retry then raises Closed."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._loop = None
        for fut in self._waiters:
            _wake(fut)


_NOT_YET = object()


def _once(call, busy):
    """One try of _Readiness.until's call: its result, or _NOT_YET."""
    if busy is None:
        got = call()
        return _NOT_YET if got is None else got
    try:
        return call()
    except busy:
        return _NOT_YET


def _wake(fut):
    if not fut.done():
        fut.set_result(None)


class Receiver:
    """fastmsg.Receiver with coroutine waits: `await recv()`, `await recv_many(n)`, `async for`.

    Takes the same arguments as fastmsg.Receiver and binds at once. Several tasks may await
    recv() on one Receiver; each message goes to one of them."""

    def __init__(self, endpoint: str | Endpoint, **options: Unpack[ReceiverOptions]) -> None:
        self._rx = fastmsg.Receiver(endpoint, **options)
        self._ready = _Readiness(self._rx)
        self._recv_now = functools.partial(self._rx.recv, timeout=0)

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message (a fastmsg.Message). Waits for one: timeout=None as long as it takes,
        otherwise raises fastmsg.Timeout after that many seconds (0: at once if none is here).
        Raises Closed once the Receiver is closed. Cancelling it loses no message."""
        return await self._ready.until(self._recv_now, Timeout, timeout, "no message arrived within {} s")

    async def recv_many(self, max_messages: int, timeout: float | None = None) -> list[Message]:
        """Up to max_messages messages, at least one: waits for the first as recv() does (see
        fastmsg.Receiver.recv_many for how many one call returns)."""
        call = functools.partial(self._rx.recv_many, max_messages, timeout=0)
        return await self._ready.until(call, Timeout, timeout, "no message arrived within {} s")

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        """The next message; the iteration ends when the Receiver is closed."""
        try:
            return await self.recv()
        except Closed:
            raise StopAsyncIteration from None

    def fileno(self) -> int:
        """The readiness fd (fastmsg.Receiver.fileno); this object watches it itself."""
        return self._rx.fileno()

    def stats(self) -> ReceiverStats:
        """The Receiver's counters (fastmsg.Receiver.stats)."""
        return self._rx.stats()

    @property
    def endpoint(self) -> str:
        """The bound endpoint, with the real port when 0 was asked."""
        return self._rx.endpoint

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._rx.closed

    def close(self) -> bool:
        """Stops accepting and closes every connection; a recv() awaiting raises Closed (an
        `async for` ends). Messages already received stay valid until released. Returns True if
        nothing was left behind, as fastmsg.Receiver.close. Idempotent."""
        self._ready.close()
        return self._rx.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fastmsg.asyncio.Receiver {self.endpoint}{' closed' if self.closed else ''}>"


class Sender:
    """fastmsg.Sender with coroutine waits: `await send()`, `await send_many()`, `await flush()`,
    `await request()`.

    Takes the same arguments as fastmsg.Sender. send() queues the message and returns, waiting
    (without blocking the loop) only while its ring or hwm_bytes is full of unacknowledged messages."""

    def __init__(self, endpoint: str | Endpoint, **options: Unpack[SenderOptions]) -> None:
        self._tx = fastmsg.Sender(endpoint, **options)
        self._ready = _Readiness(self._tx)
        self._lent_fd = -1      # a copy of the socket's fd that the loop watches for replies
        self._lent_loop = None

    # Replies are read by the loop itself, from a copy of the socket's descriptor that it
    # watches (Sender._lend_socket), rather than by the I/O thread, which would then have to
    # wake the loop through the readiness fd: one hand-off less per round trip. The readiness
    # fd stays armed for the replies the I/O thread still reads (the socket is not lent, or
    # was taken back).

    _loop_reads = True  # (tests of the readiness fd's own path turn the loop's reading off)

    def _lend(self, loop):
        if self._lent_fd >= 0 and self._lent_loop is not loop:
            self._unlend()  # (lent to a loop that is gone: this one takes it)
        if self._lent_fd >= 0 or not self._loop_reads or self._tx.closed:
            return
        fd = self._tx._lend_socket()
        if fd >= 0:
            try:
                _add_reader(loop, fd, self._on_socket)
            except BaseException:  # (a loop that cannot watch it: given back, not leaked)
                _close(fd)
                self._tx._unlent()
                raise
            self._lent_fd, self._lent_loop = fd, loop

    def _on_socket(self):
        if self._tx._read_lent() < 0:  # a new connection: lend its socket at the next request
            self._unlend()
        self._ready.wake_all()

    def _unlend(self):
        if self._lent_fd >= 0:
            if not self._lent_loop.is_closed():
                self._lent_loop.remove_reader(self._lent_fd)
            _close(self._lent_fd)
            self._lent_fd, self._lent_loop = -1, None
            self._tx._unlent()

    async def send(self, data: Buffer, *, timeout: float | None = None) -> None:
        """Queues one message (any bytes-like object, as it is at the call). Waits while the
        queue is full: timeout=None as long as it takes, otherwise raises fastmsg.Timeout after
        that many seconds (0: at once). Nothing is queued when it raises or is cancelled."""
        call = functools.partial(self._tx.send, data, timeout=0)
        await self._ready.until(call, Full, timeout, "the send queue stayed full for {} s; nothing was sent")

    async def send_many(self, buffers: Iterable[Buffer], *, timeout: float | None = None) -> int:
        """Queues every message of `buffers` in order, waiting for room as send() does; returns
        how many were queued. Whatever it raises (or a cancellation) carries `queued`: how many,
        from the first, were queued before it (they will be sent)."""
        pending = list(buffers)
        queued = 0

        def more():
            nonlocal queued
            try:
                queued += self._tx.send_many(pending[queued:] if queued else pending, timeout=0)
            except Full as exc:
                queued += exc.queued
                raise
            return queued

        try:
            return await self._ready.until(more, Full, timeout, "the send queue stayed full for {} s")
        except BaseException as exc:
            exc.queued = queued  # type: ignore[attr-defined]
            raise

    async def request(self, data: Buffer, *, timeout: float | None = None) -> Message:
        """Sends `data` as a request and returns its reply, a Message (as fastmsg.Sender.request).
        Any number of tasks may await requests at once; each gets its own reply. `timeout`
        covers the wait for room and the wait for the reply together: fastmsg.Timeout when it
        runs out. Raises Closed if the Sender is closed meanwhile. Cancelled, or timed out, it
        ends its request: a reply that comes later is dropped and counted in
        stats()["late_replies"], never given to another request."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self._lend(loop)  # (before the request, which may keep the I/O thread busy a moment)
        call = functools.partial(self._tx._request_nowait, data)
        req = await self._ready.until(call, Full, timeout, "the send queue stayed full for {} s; the request was not sent")
        try:
            left = None if timeout is None else max(0.0, timeout - (loop.time() - start))
            text = f"no reply within {timeout} s; a reply that comes later is dropped (late_replies)"
            return await self._ready.until(req.poll, None, left, text)
        finally:
            req.end()

    async def flush(self, timeout: float | None = None) -> bool:
        """Waits until the receiver has acknowledged every message queued so far (as
        fastmsg.Sender.flush). True when done, False if `timeout` seconds ran out first."""
        return await self._flush(timeout, True)

    async def _flush(self, timeout, report):
        mark = self._tx._flush_mark()

        def flushed():
            if not self._tx._poll_flushed(mark, report):
                raise _NotYet
            return True

        try:
            return await self._ready.until(flushed, _NotYet, timeout, "")
        except Timeout:
            return False

    def fileno(self) -> int:
        """The readiness fd (fastmsg.Sender.fileno); this object watches it itself."""
        return self._tx.fileno()

    def stats(self) -> SenderStats:
        """The Sender's counters (fastmsg.Sender.stats)."""
        return self._tx.stats()

    @property
    def endpoint(self) -> str:
        """The endpoint it connects to."""
        return self._tx.endpoint

    @property
    def connected(self) -> bool:
        """True while connected to the Receiver; False once closed."""
        return self._tx.connected

    @property
    def unacknowledged(self) -> int:
        """Messages queued and not yet acknowledged by the receiver (nor refused by it)."""
        return self._tx.unacknowledged

    @property
    def linger(self) -> float | None:
        """How long close() and aclose() wait for acknowledgements by default."""
        return self._tx.linger

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._tx.closed

    def close(self, linger: float | None | _OwnLinger = _OWN_LINGER) -> bool:
        """fastmsg.Sender.close: it blocks the event loop while it waits up to `linger` for
        acknowledgements; aclose() waits without blocking it. A send(), flush() or request()
        awaiting raises Closed. Returns True if nothing queued was left unacknowledged."""
        self._unlend()  # (the I/O thread reads the acknowledgements that close() waits for)
        self._ready.close()
        return self._tx.close() if linger is _OWN_LINGER else self._tx.close(linger)

    async def aclose(self, linger: float | None | _OwnLinger = _OWN_LINGER) -> bool:
        """Waits up to `linger` seconds (None: no limit; by default the Sender's own option) for
        the queued messages to be acknowledged, without blocking the loop, then closes. Returns
        True if nothing queued was left unacknowledged (as fastmsg.Sender.close)."""
        if self.closed:
            return True
        linger = self._tx.linger if isinstance(linger, _OwnLinger) else linger
        loop = asyncio.get_running_loop()
        start = loop.time()
        done = linger != 0 and await self._flush(linger, False)
        # Acknowledged: close() then only settles (a PONG owed, at most a round trip) and closes.
        left = 0 if not done else None if linger is None else max(0.0, linger - (loop.time() - start))
        return self.close(left)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<fastmsg.asyncio.Sender {self.endpoint}{' closed' if self.closed else ''}>"
