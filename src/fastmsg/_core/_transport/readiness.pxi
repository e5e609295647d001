# Readiness fds for event loops (csrc/engine/notifier.h): what Sender.fileno() and
# Receiver.fileno() return. A non-blocking call that finds nothing arms the fd and looks again
# (Receiver._arm_and_look, Sender._arm_and_check), so the fd turns readable on the next change.


cdef int _notifier_fd(fm_notifier *n, str owner) except -1:
    """n's fd, made on the first call; OSError if it cannot be (out of descriptors)."""
    cdef int fd = fm_notifier_fd(n)
    if fd < 0:
        raise OSError(-fd, f"cannot make {owner}'s readiness fd: {os.strerror(-fd)}")
    return fd
