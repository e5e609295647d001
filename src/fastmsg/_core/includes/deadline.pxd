# Timeouts in seconds, as the public API takes them, turned into the C waits' deadlines.
from libc.stdint cimport int64_t

from fastmsg._core.includes.ring cimport fastmsg_monotonic_ns


cdef inline int64_t deadline_ns(object timeout) except? -2:
    """Absolute monotonic deadline in ns for a timeout in seconds; -1 for None (no limit)."""
    if timeout is None:
        return -1
    cdef double t = timeout
    if t < 0 or t != t:
        raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
    if t > 1e9:
        return -1
    return fastmsg_monotonic_ns() + <int64_t>(t * 1e9)
