# Interpreter exit: nothing queued is dropped quietly. Every Sender still open gets its linger to
# have its messages acknowledged (all lingering at once: the I/O thread serves them together);
# what is still unacknowledged then is reported on stderr with its count. The default context
# closes after that.

_live_senders = weakref.WeakSet()  # every Sender made in this process and not yet freed


class _OwnLinger:
    """close()'s default: the Sender's own `linger` option."""

    def __repr__(self):
        return "<the Sender's linger>"


OWN_LINGER = _OwnLinger()


cdef void _report_lost(str endpoint, uint64_t unacked, uint64_t refused, str when) noexcept:
    """One line on stderr, in the form of a ResourceWarning, for messages given up: `unacked` not
    acknowledged, `refused` dropped as too large for the receiver and never reported."""
    if unacked == 0 and refused == 0:
        return
    cdef list parts = []
    if unacked:
        parts.append(f"{unacked} message{'s' if unacked != 1 else ''} not acknowledged")
    if refused:
        parts.append(f"{refused} dropped as larger than the receiver's max_message_size")
    try:
        sys.stderr.write(f"fastmsg: ResourceWarning: Sender to {endpoint}: {' and '.join(parts)} {when}; "
                         f"they may not have been delivered\n")
        sys.stderr.flush()
    except Exception:  # (stderr closed or gone this late: nothing else can be done)
        pass


def _linger_at_exit():
    cdef int64_t start = fastmsg_monotonic_ns()
    cdef Sender tx
    for tx in list(_live_senders):
        if tx.closed or tx.gen != _generation:
            continue
        left = None if tx.linger is None else max(0.0, tx.linger - (fastmsg_monotonic_ns() - start) / 1e9)
        if not tx.close(linger=left):
            _report_lost(tx.endpoint, tx.unacked_at_close, tx.refused_at_close,
                         f"at interpreter exit, within the Sender's linger ({tx.linger} s)")
    if _default is not None:
        _default.close()


atexit.register(_linger_at_exit)
