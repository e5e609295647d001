"""fastmsg.poll: one thread waits on many Receivers and Senders, as zmq.Poller does.

Each object's readiness fd (fileno()) is armed by the object's own look at its state, so the
wait is select.poll() on those fds and nothing else: no thread, no polling loop. (On Windows,
which has no select.poll(), the fds are sockets and the wait is select.select().)
"""

from __future__ import annotations

import math
import select
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar, overload

if TYPE_CHECKING:
    from fastmsg._core.transport import Receiver, Sender

__all__ = ["poll"]

_Ready = TypeVar("_Ready", bound="Receiver | Sender")


# poll([rx1, rx2]) gives a list[Receiver]; poll([rx, tx]) a list[Receiver | Sender].
@overload
def poll(objects: Iterable[_Ready], timeout: float | None = None) -> list[_Ready]: ...
@overload
def poll(  # type: ignore[overload-cannot-match]  # (it does, where the first cannot infer one type)
    objects: Iterable[Receiver | Sender], timeout: float | None = None) -> list[Receiver | Sender]: ...


def poll(objects: Iterable[_Ready], timeout: float | None = None) -> list[_Ready]:
    """The objects among `objects` (Receivers and Senders) that are ready, in the order given:
    a Receiver with a message waiting (recv() returns at once), a Sender with room (at most half
    of its ring queued, so a message of up to a quarter of it is queued at once). A closed
    object counts as ready, as a call on it raises at once.

    Waits until one is ready: timeout=None as long as it takes, otherwise at most that many
    seconds, then returns an empty list (0: look once; no objects: an empty list at once). Takes
    no message and sends nothing; one poll() at a time per object (they share its readiness fd)."""
    objects = list(objects)
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    deadline = None if timeout is None else time.monotonic() + timeout
    fds = {obj.fileno() for obj in objects}
    poller = select.poll() if hasattr(select, "poll") else None
    if poller is not None:
        for fd in fds:
            poller.register(fd, select.POLLIN)
    while True:
        # Each look that finds nothing arms the object's fd first, so that what changes after
        # it makes the fd readable and ends the wait below.
        ready = [obj for obj in objects if obj._poll_ready()]
        if ready or not objects:
            return ready
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            wait_ms = math.ceil(left * 1000)  # never return before the deadline
        if poller is not None:
            poller.poll(wait_ms)
        else:
            select.select(list(fds), [], [], None if wait_ms is None else wait_ms / 1000)
