"""fastmsg: a fast, checked message transport with a native core."""

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

from fastmsg._core.transport import Context, Message, Receiver, Sender, default_context
from fastmsg.polling import poll  # (fastmsg.asyncio is imported on its own: `import fastmsg.asyncio`)

__all__ += ["Context", "Message", "Receiver", "Sender", "default_context", "poll"]

from fastmsg.balancer import Balancer  # noqa: E402 (after the transport, which it builds on)
from fastmsg.relay import Relay  # noqa: E402

__all__ += ["Balancer", "Relay"]
