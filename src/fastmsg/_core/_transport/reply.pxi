# A request's wait for its reply (csrc/engine/sender_reply.c), and the reply as a Message. The
# Sender queues the request (sender.pxi, Sender.request); everything after that is here.


cdef int _request_wait(void *r, uint64_t unused, int64_t deadline) noexcept nogil:
    """fm_request_wait as a wait_fn: the request's reply is here."""
    return fm_request_wait(<fm_request *>r, deadline)


cdef Message _reply_message(fm_request *r):
    """The reply of a ready request, as a Message over its own heap block."""
    cdef size_t length
    cdef _BigFrame block = _BigFrame.__new__(_BigFrame)
    block.frame = fm_request_take_reply(r, &length)
    cdef Message m = Message.__new__(Message)
    m.owner = block
    m.data = block.frame
    m.length = <Py_ssize_t>length
    return m


cdef Message _await_reply(fm_request *r, int64_t deadline, object timeout, const bint *closing):
    """Waits for r's reply within the request's deadline, in slices that notice a close()."""
    cdef int end = wait_until(_request_wait, r, 0, deadline, WAIT_SLICE_NS, closing)
    if end == WAIT_READY or fm_request_ready(r):  # (a reply just at the deadline is still its reply)
        return _reply_message(r)
    if end == WAIT_CLOSED:
        raise Closed("the Sender was closed while request() waited for the reply")
    raise Timeout(f"no reply within {timeout} s; a reply that comes later is dropped (late_replies)")
