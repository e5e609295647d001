# Defaults and limits of the endpoints' options, and their counters as a stats() dict.

DEFAULT_HWM_BYTES = 4 << 20
# A Sender's ring, at most: where its small messages are copied, and held until acknowledged.
# Room comes back a window after it was written, so a ring larger than the CPU's L2 cache (often
# 1 MiB) is reused cold: 1 KiB streams ran 1.13-1.73x as fast with 1 MiB as with 4 MiB (docs).
DEFAULT_SEND_RING = 1 << 20
DEFAULT_MAX_MESSAGE = 16 << 20
DEFAULT_MAX_BATCH = 256 << 10
DEFAULT_CONN_RING = 4 << 20
DEFAULT_REPLY_HWM_BYTES = 4 << 20  # a Receiver's replies queued or unacknowledged, at most
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
DEFAULT_HEARTBEAT_INTERVAL = 1.0
DEFAULT_LINGER = 1.0  # seconds a Sender's close() waits for acknowledgements, also at exit
DEAD_PEER_INTERVALS = 5  # dead_peer_timeout's default, in heartbeat intervals
MAX_TIMER_SECONDS = 24 * 3600.0  # timers are kept in milliseconds in a uint32

STAT_NAMES = tuple(fm_stat_names[i].decode() for i in range(FM_STAT_COUNT))
SENDER_STATS = ("sent_messages", "sent_bytes", "sent_batches", "write_calls", "connects", "disconnects",
                "protocol_errors", "crc_errors", "rejected", "acknowledged", "resent", "pings_sent", "pongs_received",
                "dead_peers", "requests", "replies_received", "late_replies", "auth_failures", "tls_failures")
RECEIVER_STATS = ("received_messages", "received_bytes", "received_batches", "read_calls", "accepted",
                  "connections", "crc_errors", "protocol_errors", "duplicates", "lost", "ring_chains", "acks", "early_acks",
                  "replaced_connections", "sessions", "evicted_sessions", "accept_errors",
                  "pings_sent", "pongs_received", "dead_peers",
                  "replies_sent", "resent_replies", "undeliverable_replies",
                  "auth_failures", "refused_peers", "refused_per_source", "rate_limited", "refused_connections", "tls_failures",
                  "last_error",  # (not a counter: the last accept() failure)
                  "notifications")  # (writes of the readiness fd, counted by its notifier)
ACK_MODES = ("released", "received")  # when a Receiver acknowledges a message
DEFAULT_MAX_CONNECTIONS = 65536
DEFAULT_MAX_SESSIONS = 65536
MAX_RECEIVER_LIMIT = 1 << 24  # max_connections and max_sessions: far above any descriptor limit


cdef int _check_message_limits(object max_message_size, object max_batch_bytes) except -1:
    """The limits a Sender and a Receiver both take (each side states its own)."""
    if not 1 <= max_message_size <= FASTMSG_MAX_MESSAGE_SIZE:
        raise ValueError(f"max_message_size must be in 1..{FASTMSG_MAX_MESSAGE_SIZE}, got {max_message_size}")
    if not 64 <= max_batch_bytes <= 64 << 20:
        raise ValueError(f"max_batch_bytes must be in 64..{64 << 20}, got {max_batch_bytes}")
    return 0


cdef uint32_t _timeout_ms(str name, object seconds) except 0:
    """A timer option in seconds as the engine takes it: whole milliseconds, at least 1."""
    cdef double t = seconds
    if not 0 < t <= MAX_TIMER_SECONDS:
        raise ValueError(f"{name} must be > 0 and at most {MAX_TIMER_SECONDS:g} seconds, got {seconds!r}")
    return max(1, <uint32_t>(t * 1000 + 0.5))


MAX_BUSY_POLL = 0.01  # seconds: a spin longer than a scheduler tick is never the cheaper wait


cdef uint32_t _busy_poll_ns(object busy_poll, uint32_t *adaptive) except? 1:
    """busy_poll= in seconds as nanoseconds: None, the default, is the adaptive window
    (*adaptive set: it looks only after a short wait, engine/busy_poll.h); 0 is off."""
    adaptive[0] = busy_poll is None
    if busy_poll is None:
        return FM_BUSY_POLL_AUTO_NS
    cdef double t = busy_poll
    if not 0 <= t <= MAX_BUSY_POLL:
        raise ValueError(f"busy_poll must be in 0..{MAX_BUSY_POLL:g} seconds (0: off; None: adaptive), "
                         f"got {busy_poll!r}")
    return <uint32_t>(t * 1e9 + 0.5)


cdef tuple _heartbeat_ms(object heartbeat_interval, object dead_peer_timeout):
    """(heartbeat_ms, dead_peer_ms) from the options in seconds; dead_peer_timeout None:
    DEAD_PEER_INTERVALS intervals. The timeout must exceed the interval."""
    cdef uint32_t interval_ms = _timeout_ms("heartbeat_interval", heartbeat_interval)
    if dead_peer_timeout is None:
        dead_peer_timeout = min(heartbeat_interval * DEAD_PEER_INTERVALS, MAX_TIMER_SECONDS)
    cdef uint32_t dead_ms = _timeout_ms("dead_peer_timeout", dead_peer_timeout)
    if dead_ms <= interval_ms:
        raise ValueError(f"dead_peer_timeout must be greater than heartbeat_interval ({heartbeat_interval!r} s), "
                         f"got {dead_peer_timeout!r}")
    return interval_ms, dead_ms


cdef uint64_t _pow2(uint64_t n):
    cdef uint64_t c = 64
    while c < n:
        c <<= 1
    return c


cdef dict _stats(uint64_t *values, tuple names, dict extra):
    cdef dict out = {STAT_NAMES[i]: values[i] for i in range(FM_STAT_COUNT) if STAT_NAMES[i] in names}
    out.update(extra)
    return out
