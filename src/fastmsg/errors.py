"""The exceptions fastmsg raises. Every one derives from FastmsgError."""


class FastmsgError(Exception):
    """Base class of every fastmsg error."""


class Closed(FastmsgError):
    """The object was used after close()."""


class Full(FastmsgError):
    """No room to queue the data without waiting, and the caller asked not to wait."""


class Timeout(FastmsgError, TimeoutError):
    """The operation did not complete within its timeout."""


class ProtocolError(FastmsgError):
    """Bytes that do not follow fastmsg's layout: a foreign peer, a foreign shared-memory segment,
    an incompatible version, or corruption. `code` is the wire protocol's error code, if any."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code
