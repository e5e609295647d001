"""The exceptions fastmsg raises for its own reasons. Every one derives from FastmsgError.

A failure of the operating system keeps its errno: BindError and ResolveError are OSErrors too,
and other system failures are OSError itself (its subclasses: PermissionError...). Wrong
arguments raise ValueError or TypeError, and a lack of memory MemoryError."""

from __future__ import annotations

import socket


class FastmsgError(Exception):
    """Base class of every fastmsg error."""


class Closed(FastmsgError):
    """The object was used after close()."""


class Full(FastmsgError):
    """No room to queue the data without waiting, and the caller asked not to wait."""


class Timeout(FastmsgError, TimeoutError):
    """The operation did not complete within its timeout."""


class MessageTooLarge(FastmsgError, ValueError):
    """A message larger than a limit: the Sender's own max_message_size, or the receiver's.

    Raised by send() for the message given, or, for messages queued before the receiver had
    said its limit (they are dropped unsent), by the next send(), send_many() or flush().
    `size` is the message's size (the latest, when several), `limit` the limit it exceeds and
    `dropped` how many queued messages were dropped (0 when the message given is refused)."""

    size: int | None
    limit: int | None
    dropped: int

    def __init__(self, message: str, size: int | None = None, limit: int | None = None, dropped: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.dropped = dropped


class ProtocolError(FastmsgError):
    """Bytes that do not follow fastmsg's layout: a foreign peer, a foreign shared-memory segment,
    an incompatible version, or corruption. `code` is the wire protocol's error code, if any."""

    code: int | None

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class BindError(FastmsgError, OSError):
    """A Receiver could not bind or listen on its endpoint: the address is in use, not allowed
    (EACCES), not on this host, or, for ipc://, a file that is not a socket lies at the path.
    `errno` is the system's error code and `endpoint` the endpoint."""


class ResolveError(FastmsgError, socket.gaierror):
    """An endpoint's host name could not be resolved. `errno` is getaddrinfo's error code (as
    for socket.gaierror, which this also is)."""
