"""fastmsg.Relay: a Receiver feeding a Balancer, one hop of a chain. An upstream message is
released (so acknowledged to its sender) only once the downstream receiver has acknowledged its
copy: a relay that dies loses nothing, as its upstream senders send again what it had not
released (at-least-once across hops: what went downstream and was not yet released upstream may
arrive twice)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import fastmsg
from fastmsg.errors import Closed, Timeout

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from fastmsg._core.transport import Message
    from fastmsg.balancer import Balancer
    from fastmsg.endpoint import Endpoint
    from fastmsg.types import BalancerSenderOptions, ReceiverOptions, Strategy

# A relay with nothing to do still looks at its downstream members this often (s), so that the
# upstream messages their acknowledgements settle are released.
IDLE_LOOK = 0.005


class Relay:
    """Receives on `endpoint` (ack="released") and sends each message on through a Balancer over
    `to` by `strategy` (not "broadcast", which settles nothing per message; "hash" routes by the
    first `key_bytes` bytes of each message). receiver_options go to the Receiver, sender_options
    to the Balancer's Senders."""

    def __init__(self, endpoint: str | Endpoint, to: str | Iterable[str], strategy: Strategy = "round_robin", *,
                 key_bytes: int | None = None, receiver_options: ReceiverOptions | None = None,
                 **sender_options: Unpack[BalancerSenderOptions]) -> None:
        if strategy == "broadcast":
            raise ValueError("a Relay cannot broadcast: an upstream message is released once one "
                             "downstream receiver has it")
        if (strategy == "hash") != (key_bytes is not None):
            raise ValueError("the 'hash' strategy needs key_bytes (the key is that many first bytes), "
                             "and only it takes them")
        self._key_bytes = key_bytes
        # (an ack= among receiver_options is refused, as a second value for it)
        self._rx = fastmsg.Receiver(endpoint, ack="released", **(receiver_options or {}))  # type: ignore[misc]
        try:
            self._out = fastmsg.Balancer(to, strategy, on_settled=_release, **sender_options)
        except BaseException:
            self._rx.close()
            raise
        self._closing = threading.Event()

    @property
    def endpoint(self) -> str:
        """The endpoint it receives on, with the real port when 0 was asked."""
        return self._rx.endpoint

    @property
    def balancer(self) -> Balancer:
        """The Balancer it sends through (its stats(), endpoints, add() and remove())."""
        return self._out

    def run(self, timeout: float | None = None) -> int:
        """Relays until close() (from another thread) or, with a timeout, that many seconds of
        nothing arriving; returns how many messages it relayed."""
        relayed = 0
        idle = 0.0
        key_bytes = self._key_bytes
        while not self._closing.is_set():
            try:
                batch = self._rx.recv_many(1024, timeout=IDLE_LOOK)
            except Timeout:
                try:
                    self._out._look_now()  # (downstream acknowledgements release upstream messages)
                except Closed:
                    break
                idle += IDLE_LOOK
                if timeout is not None and idle >= timeout:
                    break
                continue
            except Closed:
                break
            idle = 0.0
            try:
                for m in batch:
                    # the Message itself is the token: released once its copy is settled downstream
                    key = bytes(memoryview(m)[:key_bytes]) if key_bytes else None
                    self._out._send_slow(m, key, None, token=m)
                    relayed += 1
            except Closed:
                break
        return relayed

    def close(self, linger: float | None = 1.0) -> bool:
        """Stops run(), waits up to `linger` for downstream acknowledgements (releasing what they
        settle), then closes both sides. True if nothing was left behind: everything relayed was
        acknowledged downstream, and nothing that had arrived was left unrelayed (see
        Balancer.close and Receiver.close). Idempotent."""
        self._closing.set()
        done = self._out.close(linger)
        return self._rx.close() and done

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(message: Message) -> None:
    message.release()
