"""Types for annotating code that uses fastmsg: what stats() and connections() return, and the
options that fastmsg.asyncio and Balancer pass on to Sender and Receiver, and Balancer's
strategies.

The dicts are TypedDicts (plain dicts at run time), so ``stats()["sent_messages"]`` is an int to
a type checker and a misspelt key is an error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ssl import SSLContext
from typing import TYPE_CHECKING, Literal, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from fastmsg._core.transport import Context

__all__ = [
    "BalancerSenderOptions",
    "BalancerMemberStats",
    "BalancerStats",
    "BalancerTotals",
    "ConnectionInfo",
    "FaultProxyStats",
    "ReceiverOptions",
    "ReceiverStats",
    "SenderOptions",
    "SenderStats",
    "Strategy",
]

#: A Balancer's routing strategy (fastmsg._core.routing.STRATEGIES).
Strategy = Literal["round_robin", "weighted", "hash", "least_loaded", "latency", "nearest", "broadcast"]


class SenderStats(TypedDict):
    """Sender.stats(): exact counters since the Sender was made, and its state now."""

    sent_messages: int
    sent_bytes: int
    sent_batches: int
    write_calls: int
    connects: int
    disconnects: int
    protocol_errors: int
    crc_errors: int
    rejected: int
    acknowledged: int
    resent: int
    pings_sent: int
    pongs_received: int
    dead_peers: int
    requests: int
    replies_received: int
    late_replies: int
    auth_failures: int
    tls_failures: int
    peer: str | None        # the receiver's verified certificate name (TLS), else None
    queued_bytes: int
    unacknowledged: int     # messages
    connected: bool
    last_error: str         # "" if none
    notifications: int      # writes of the readiness fd
    ack_rtt_ns: int         # the latest acknowledgement round trip
    ack_rtt_samples: int


class ReceiverStats(TypedDict):
    """Receiver.stats(): exact counters since the Receiver was made."""

    received_messages: int
    received_bytes: int
    received_batches: int
    read_calls: int
    accepted: int
    connections: int
    crc_errors: int
    protocol_errors: int
    duplicates: int
    lost: int
    ring_chains: int
    acks: int
    early_acks: int
    replaced_connections: int
    sessions: int
    evicted_sessions: int
    accept_errors: int
    pings_sent: int
    pongs_received: int
    dead_peers: int
    replies_sent: int
    resent_replies: int
    undeliverable_replies: int
    auth_failures: int
    refused_peers: int
    refused_per_source: int
    rate_limited: int
    refused_connections: int
    tls_failures: int
    last_error: str         # the last refusal or accept() failure; "" if none
    notifications: int      # writes of the readiness fd


class ConnectionInfo(TypedDict):
    """One entry of Receiver.connections()."""

    address: str | None     # the sender's "host:port"; None over a Unix socket
    peer: str | None        # its verified certificate name over TLS, else None


class BalancerMemberStats(TypedDict):
    """One member (endpoint) of Balancer.stats()["endpoints"]."""

    endpoint: str
    state: Literal["up", "down"]
    saturated: bool
    sent: int
    acknowledged: int
    in_flight: int
    in_flight_bytes: int
    latency_ns: int
    last_rtt_ns: int
    tier: int
    weight: float
    failovers: int
    moved: int


class BalancerTotals(TypedDict):
    """Balancer.stats()["totals"]."""

    sent: int
    acknowledged: int
    in_flight: int
    moved: int
    failovers: int
    broadcast_skipped: int
    waiting: int
    up: int


class BalancerStats(TypedDict):
    """Balancer.stats()."""

    endpoints: list[BalancerMemberStats]
    totals: BalancerTotals


class FaultProxyStats(TypedDict):
    """fastmsg.testing.FaultProxy.stats()."""

    connections: int
    resets: int
    bits_flipped: int
    bytes_forwarded: int
    refused: int
    open: int


class BalancerSenderOptions(TypedDict, total=False):
    """The keyword options of fastmsg.Sender but `context`: what Balancer and Relay pass on to
    each of their Senders."""

    hwm_bytes: int
    ring_bytes: int
    max_message_size: int
    max_batch_bytes: int
    handshake_timeout: float
    heartbeat_interval: float
    dead_peer_timeout: float | None
    linger: float | None
    secret: Buffer | None
    key_id: int | str | None
    ssl: SSLContext | None
    server_hostname: str | None
    busy_poll: float | None


class SenderOptions(BalancerSenderOptions, total=False):
    """The keyword options of fastmsg.Sender, which fastmsg.asyncio.Sender passes on."""

    context: Context | None


class ReceiverOptions(TypedDict, total=False):
    """The keyword options of fastmsg.Receiver (fastmsg.asyncio.Receiver passes them on)."""

    context: Context | None
    max_message_size: int
    max_batch_bytes: int
    max_connections: int
    ring_bytes: int
    handshake_timeout: float
    max_sessions: int
    ack: Literal["released", "received"]
    heartbeat_interval: float
    dead_peer_timeout: float | None
    reply_hwm_bytes: int
    secret: Buffer | None
    secrets: Mapping[int | str, Buffer] | None
    allow: Iterable[str] | None
    max_connections_per_source: int | None
    rate_limit: tuple[int, int] | None
    ssl: SSLContext | None
    busy_poll: float | None
