# The one blocking-wait loop of the Python side, shared by ring.pyx and transport.pyx.
#
# Every C wait of the core (ring data or space, a sender's flush, a receiver's direct read) sleeps
# without the GIL until its condition holds, a deadline passes, or a signal or wake-up
# interrupts it. wait_until() drives one such wait: it releases the GIL around each call, runs
# Python's signal handlers when the wait was interrupted (so Ctrl-C works), notices a close() made
# by another thread, and says how the wait ended. The caller turns that into its own exception.
from libc.stdint cimport int64_t, uint64_t

from fastmsg._core.includes.ring cimport (FASTMSG_WAIT_READY, FASTMSG_WAIT_TIMEOUT, fastmsg_monotonic_ns,
                                          fastmsg_ring, fastmsg_ring_wait_data, fastmsg_ring_wait_space)

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

# A C wait: sleeps on `handle` until its condition holds or `deadline` (monotonic ns, -1: none)
# passes; returns FASTMSG_WAIT_READY, _TIMEOUT or _INTERRUPTED. `arg` is the wait's own operand
# (the ring position to wait for, for a space wait), unused by the others.
ctypedef int (*wait_fn)(void *handle, uint64_t arg, int64_t deadline) noexcept nogil

# How wait_until() ended.
cdef enum wait_end:
    WAIT_READY      # the condition holds
    WAIT_CLOSED     # *closing became true (close() from another thread)
    WAIT_TIMED_OUT  # the caller's deadline passed


# The longest piece of any wait: a signal that lands between the look at Python's flag and the
# system call (the thread preempted there) interrupts nothing, and is seen at the end of the piece.
cdef enum:
    SIGNAL_SLICE_NS = 1000000000


cdef inline int wait_until(wait_fn wait, void *handle, uint64_t arg, int64_t deadline, int64_t slice_ns,
                           const bint *closing, int64_t now=-1) except -1:
    """Waits with `wait` until it says READY, `*closing` is set (NULL: never), or `deadline` passes;
    returns the wait_end that says which.

    slice_ns > 0 cuts the wait into slices that long, for waits that a close() from another
    thread cannot interrupt: each slice ends with a look at `*closing`. 0 (or more than a second)
    waits in slices of a second, for signals. `now`: the caller's clock reading of a moment ago
    (deadline_ns's), which the first slice counts from, or -1.
    Raises only what a signal handler raises."""
    cdef int rc
    cdef int64_t until
    while True:
        # A signal that came while this thread ran C code with the GIL (on the way here) set
        # Python's flag without interrupting any system call: the wait below would not end for it.
        PyErr_CheckSignals()
        if now < 0:
            now = fastmsg_monotonic_ns()
        until = now + (slice_ns if 0 < slice_ns < SIGNAL_SLICE_NS else SIGNAL_SLICE_NS)
        now = -1
        if deadline >= 0 and deadline < until:
            until = deadline
        with nogil:
            rc = wait(handle, arg, until)
        if rc == FASTMSG_WAIT_READY:
            return WAIT_READY
        if closing != NULL and closing[0]:
            return WAIT_CLOSED
        if rc == FASTMSG_WAIT_TIMEOUT and until == deadline:
            return WAIT_TIMED_OUT


# The ring's own waits, in wait_fn form (`handle` is a fastmsg_ring *).

cdef inline int ring_wait_data(void *ring, uint64_t unused, int64_t deadline) noexcept nogil:
    return fastmsg_ring_wait_data(<fastmsg_ring *>ring, deadline)


cdef inline int ring_wait_space(void *ring, uint64_t target, int64_t deadline) noexcept nogil:
    return fastmsg_ring_wait_space(<fastmsg_ring *>ring, target, deadline)
