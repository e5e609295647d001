"""fastmsg: a fast, checked message transport with a native core."""

import sys

from fastmsg._core.crc import crc32c, crc32c_combine
from fastmsg._core.crc import implementation as crc32c_implementation
from fastmsg._core.ring import Record, RingBuffer, SharedRing
from fastmsg.errors import (BindError, Closed, FastmsgError, Full, MessageTooLarge, ProtocolError, ResolveError,
                            Timeout)

__version__ = "0.1.0.dev0"

__all__ = [
    "BindError",
    "Closed",
    "FastmsgError",
    "Full",
    "MessageTooLarge",
    "ProtocolError",
    "Record",
    "ResolveError",
    "RingBuffer",
    "SharedRing",
    "Timeout",
    "__version__",
    "crc32c",
    "crc32c_combine",
    "crc32c_implementation",
]

if sys.platform != "win32":  # the I/O engine is POSIX-only for now (WSAPoll backend to come)
    from fastmsg._core.transport import Context, Message, Receiver, Sender, default_context
    from fastmsg.polling import poll  # (fastmsg.asyncio is imported on its own: `import fastmsg.asyncio`)

    __all__ += ["Context", "Message", "Receiver", "Sender", "default_context", "poll"]

    from fastmsg.balancer import Balancer
    from fastmsg.relay import Relay

    __all__ += ["Balancer", "Relay"]
