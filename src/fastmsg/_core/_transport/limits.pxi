# Defaults and limits of the endpoints' options, and their counters as a stats() dict.

DEFAULT_HWM_BYTES = 4 << 20
DEFAULT_MAX_MESSAGE = 16 << 20
DEFAULT_MAX_BATCH = 256 << 10
DEFAULT_CONN_RING = 4 << 20

STAT_NAMES = tuple(fm_stat_names[i].decode() for i in range(FM_STAT_COUNT))
SENDER_STATS = ("sent_messages", "sent_bytes", "sent_batches", "write_calls", "connects", "disconnects",
                "protocol_errors", "rejected")
RECEIVER_STATS = ("received_messages", "received_bytes", "received_batches", "read_calls", "accepted",
                  "connections", "crc_errors", "protocol_errors", "duplicates", "lost", "ring_chains")


cdef int _check_message_limits(object max_message_size, object max_batch_bytes) except -1:
    """The limits a Sender and a Receiver both take (each side states its own)."""
    if not 1 <= max_message_size <= 0xFFFF0000:
        raise ValueError(f"max_message_size must be in 1..{0xFFFF0000}, got {max_message_size}")
    if not 64 <= max_batch_bytes <= 64 << 20:
        raise ValueError(f"max_batch_bytes must be in 64..{64 << 20}, got {max_batch_bytes}")
    return 0


cdef uint64_t _pow2(uint64_t n):
    cdef uint64_t c = 64
    while c < n:
        c <<= 1
    return c


cdef dict _stats(uint64_t *values, tuple names, dict extra):
    cdef dict out = {STAT_NAMES[i]: values[i] for i in range(FM_STAT_COUNT) if STAT_NAMES[i] in names}
    out.update(extra)
    return out
