# Timeouts in seconds, as the public API takes them, turned into the C waits' deadlines.
from libc.stdint cimport int64_t

from fastmsg._core.includes.ring cimport fastmsg_monotonic_ns


cdef inline int64_t deadline_ns(object timeout, int64_t *now=NULL) except? -2:
    """Absolute monotonic deadline in ns for a timeout in seconds; -1 for None (no limit). `now`,
    if given, receives the clock reading the deadline counts from (made for None too), for a wait
    that follows at once (wait_until's `now`): a clock read costs 25-30 ns on a virtual machine."""
    cdef double t = 0
    if timeout is not None:
        t = timeout
        if t < 0 or t != t:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
    elif now == NULL:
        return -1
    cdef int64_t start = fastmsg_monotonic_ns()
    if now != NULL:
        now[0] = start
    if timeout is None or t > 1e9:
        return -1
    return start + <int64_t>(t * 1e9)
