# A request's wait for its reply (csrc/engine/sender_reply.c), and the reply as a Message. The
# Sender queues the request (sender.pxi, Sender._start_request); everything after that is here:
# the blocking wait of Sender.request, and _Request, the handle that fastmsg.asyncio polls.


cdef struct _ReplyWait:
    fm_sender *s    # the request's sender
    uint32_t own    # requests of the caller's in flight on it (request_many's), r among them
    int unwritten   # r's message is published, but nobody was asked to write it yet (request())


cdef int _request_wait(void *r, uint64_t wait, int64_t deadline) noexcept nogil:
    """fm_request_wait_direct as a wait_fn (`wait` is a _ReplyWait *): the request's reply is
    here."""
    cdef _ReplyWait *w = <_ReplyWait *><uintptr_t>wait
    cdef int unwritten = w.unwritten
    w.unwritten = 0
    return fm_request_wait_direct(w.s, <fm_request *>r, w.own, deadline, unwritten)


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


cdef Message _await_reply(fm_sender *s, fm_request *r, uint32_t own, int64_t deadline, object timeout,
                          const bint *closing, bint unwritten=False, int64_t now=-1):
    """Waits for r's reply (a request of s, one of the caller's `own` in flight) within the
    request's deadline, in slices that notice a close(). `unwritten`: r's message is published
    but nobody was asked to write it (request(): its first wait writes it, in the same release
    of the GIL). `now`: as wait_until's."""
    if fm_request_ready(r):
        return _reply_message(r)
    cdef _ReplyWait w
    w.s = s
    w.own = own
    w.unwritten = unwritten
    cdef int end
    try:
        end = wait_until(_request_wait, r, <uintptr_t>&w, deadline, WAIT_SLICE_NS, closing, now)
    finally:
        if w.unwritten:  # (a signal handler raised before the first wait)
            fm_sender_kick(s)
    if end == WAIT_READY or fm_request_ready(r):  # (a reply just at the deadline is still its reply)
        return _reply_message(r)
    if end == WAIT_CLOSED:
        raise Closed("the Sender was closed while request() waited for the reply")
    raise Timeout(f"no reply within {timeout} s; a reply that comes later is dropped (late_replies)")


cdef class _Request:
    """_Request()
--

    A request in flight (Sender._request_nowait): take() its reply once it is here. Ending it
    frees its slot in the sender's table, after which its reply, if it comes, is counted in
    late_replies and dropped. take() ends it, so do end(), the Sender's close() and, at the
    latest, its freeing."""
    cdef Sender tx
    cdef fm_request *r  # NULL once ended
    cdef object __weakref__

    def take(self):
        """The reply, a Message, if it is here (the request ends). Otherwise arms the Sender's
        readiness fd (a reply fires it), looks once more, and raises Timeout. Raises Closed once
        the request has ended (its Sender was closed)."""
        m = self.poll()
        if m is None:
            raise Timeout("no reply yet")
        return m

    def poll(self):
        """take(), but None rather than Timeout when the reply is not here yet (an event loop
        asks often: an exception each time would cost more than the look)."""
        if self.r == NULL:
            raise Closed("the Sender was closed while request() waited for the reply")
        if not fm_request_ready(self.r) and not self._arm_and_check():
            return None
        cdef Message m = _reply_message(self.r)
        self.end()
        return m

    cdef bint _arm_and_check(self):
        """As Sender._arm_and_check: the reply is stored (seq_cst) before the engine reads the
        flag, and the flag before this second look, so the look sees it or the fd fires."""
        if self.tx.notifier == NULL:
            return False
        if not self.tx._lent:  # (a blocking request's read may hold the socket a while)
            fm_sender_revoke_lease(self.tx.s)
        fm_notifier_arm(self.tx.notifier)
        return fm_request_ready(self.r)

    def end(self):
        """Ends the request (idempotent)."""
        if self.r != NULL:
            self._end()
            self.tx.requests.discard(self)

    cdef void _end(self) noexcept:
        if self.r != NULL:
            self.tx._end_request(self.r)
        self.r = NULL

    def __dealloc__(self):
        if self.tx is not None:
            self._end()
