# Declarations of csrc/engine/notifier.h: an endpoint's readiness fd for event loops.
from libc.stdint cimport uint64_t

cdef extern from "engine/notifier.h" nogil:
    ctypedef struct fm_notifier:
        pass

    int fm_notifier_fd(fm_notifier *n)       # made on the first call; the fd, or -errno
    void fm_notifier_arm(fm_notifier *n)     # empty it, arm it; then look at the condition again
    void fm_notifier_reader_drains(fm_notifier *n)  # its watcher empties it: arming leaves it be
    uint64_t fm_notifier_signals(fm_notifier *n)
