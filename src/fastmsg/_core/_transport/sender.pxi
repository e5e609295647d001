# Sender: messages into the sender's ring, the I/O thread (or, after a pause, the caller's own
# thread) writes them out. Sections: setup; waiting for room; queueing a message; large messages
# (lend or copy); the direct write; the public methods.

# A send this long after the previous one, with nothing queued, writes from the caller's thread.
cdef int64_t DIRECT_GAP_NS = 20 * 1000
# A message bigger than this fraction of the sender's ring goes outside it (an external record).
cdef uint64_t RING_SHARE = 4


cdef int _sender_wait_flush(void *s, uint64_t unused, int64_t deadline) noexcept nogil:
    """fm_sender_flush as a wait_fn: every record queued so far written (or dropped)."""
    return fm_sender_flush(<fm_sender *>s, deadline)


# No gc clear: `held` must outlive the engine's use of the payloads, which ends in __dealloc__.
@cython.no_gc_clear
cdef class Sender:
    """Sender(endpoint, *, context=None, hwm_bytes=4194304, ring_bytes=1048576,
           max_message_size=16777216, max_batch_bytes=262144, handshake_timeout=5.0, heartbeat_interval=1.0,
           dead_peer_timeout=None, linger=1.0, secret=None, key_id=None, ssl=None,
           server_hostname=None, busy_poll=None)
--

    Sends byte messages to one Receiver; connects, and reconnects, in the background.

    send() copies the message into a ring and returns; the I/O thread writes batches of them,
    each with one CRC32C. A large bytes object is not copied: being immutable, it is written from
    where it lies and referenced until then. Every message is held until the receiver
    acknowledges it: small ones in a ring of ring_bytes (at most hwm_bytes), large ones (over a
    quarter of the ring) where they lie, up to hwm_bytes of them. When either is full, send() waits
    (timeout=0: raises Full).
    """
    cdef fm_sender *s         # the engine's sender; NULL once closed
    cdef object __weakref__
    cdef fastmsg_ring *ring   # its send ring: this side produces, the I/O thread consumes
    cdef Context _context
    cdef readonly str endpoint
    cdef uint64_t max_message       # max_message_size
    cdef uint64_t small_max         # the largest message copied into the ring ...
    cdef uint64_t small_bytes_max   # ... and the largest exact bytes object (bigger ones are lent)
    cdef uint32_t peer_max          # the receiver's max_message_size (0: not known yet), as _check() last read it
    cdef uint64_t hwm               # hwm_bytes (rounded up to a power of two): the bound of held_bytes
    cdef readonly uint64_t _ring_capacity  # the ring's: hwm_bytes or ring_bytes, the smaller
    cdef object held          # (ring position after its record, payload) of each external record
    cdef uint64_t held_bytes  # payload bytes in held, bounded by hwm
    cdef int gen              # the fork generation it was made in
    cdef fm_gated_lock plock   # one producer at a time on the ring; close() takes it too
    cdef PyThread_type_lock gate  # where a thread waiting for plock sleeps (gated_lock.h)
    cdef object waiters       # a Condition: counts flush() and request() waits, which close() awaits
    cdef int flushing         # flush() calls and request() waits in progress (under waiters, or the GIL)
    cdef Py_ssize_t _staged   # messages the send_many() in progress has queued so far
    cdef bint closing         # close() has begun: waiting send() and flush() calls give up
    cdef int64_t last_send_ns # when send()/send_many() last published to an idle connection
    cdef readonly object linger   # close()'s default wait, also given at interpreter exit
    cdef uint64_t refused_seen    # messages dropped as too large that an exception has reported
    cdef uint64_t unacked_at_close, refused_at_close  # what close() gave up (unreported drops)
    cdef fm_notifier *notifier    # its readiness fd, once fileno() made it (NULL: nobody watches)
    cdef uint64_t last_request_id # request ids are a counter (under the producer lock)
    cdef object requests          # a WeakSet of the _Request handles that close() must end
    cdef uint64_t lent_conn       # the connection whose socket an event loop watches (_lend_socket)
    cdef readonly bint _lent      # an event loop watches the socket (fastmsg.asyncio)
    cdef object ssl_context       # ssl=: kept alive, as the engine uses its SSL_CTX (and callbacks)

    def __init__(self, endpoint, *, Context context=None, hwm_bytes=DEFAULT_HWM_BYTES,
                 ring_bytes=DEFAULT_SEND_RING, max_message_size=DEFAULT_MAX_MESSAGE,
                 max_batch_bytes=DEFAULT_MAX_BATCH,
                 handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT, heartbeat_interval=DEFAULT_HEARTBEAT_INTERVAL,
                 dead_peer_timeout=None, linger=DEFAULT_LINGER, secret=None, key_id=None, ssl=None,
                 server_hostname=None, busy_poll=None):
        ep = _parse_endpoint(endpoint)
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError(f"server_hostname is a str, got {server_hostname!r}")
        if server_hostname is not None and ssl is None:
            raise ValueError("server_hostname= needs ssl=")
        _check_message_limits(max_message_size, max_batch_bytes)
        if hwm_bytes < 4096:
            raise ValueError(f"hwm_bytes must be at least 4096, got {hwm_bytes}")
        if ring_bytes < 4096:
            raise ValueError(f"ring_bytes must be at least 4096, got {ring_bytes}")
        deadline_ns(linger)  # (checks it)
        self.linger = linger
        family, addr = ep.resolve()[0]
        cdef sockaddr_storage sa
        cdef socklen_t salen
        _sockaddr(family, addr, &sa, &salen)
        self._context = context if context is not None else default_context()
        cdef fm_sender_config cfg
        memset(&cfg, 0, sizeof(cfg))
        _sender_key(&cfg, secret, key_id)
        cfg.ring_capacity = min(_pow2(hwm_bytes), _pow2(ring_bytes))
        cfg.hwm_bytes = cfg.ring_capacity
        cfg.max_message = max_message_size
        cfg.max_batch = max_batch_bytes
        cfg.session_id = secrets.randbits(64) | 1
        cfg.handshake_timeout_ms = _timeout_ms("handshake_timeout", handshake_timeout)
        cfg.heartbeat_ms, cfg.dead_peer_ms = _heartbeat_ms(heartbeat_interval, dead_peer_timeout)
        cfg.busy_poll_ns = _busy_poll_ns(busy_poll, &cfg.busy_poll_auto)
        self.max_message = max_message_size
        self.hwm = _pow2(hwm_bytes)
        self._ring_capacity = cfg.ring_capacity
        self.small_max = min(cfg.ring_capacity // RING_SHARE, <uint64_t>max_message_size)
        # A bytes object this large would fill a batch alone anyway: it is lent, not copied.
        self.small_bytes_max = min(self.small_max, <uint64_t>max_batch_bytes - 1)
        self.held = deque()
        cdef fm_ctx *ctx = self._context._use(self)
        cdef fm_error err
        _tls_context(&cfg.tls, ssl, False, server_hostname if server_hostname is not None else ep.host)
        self.ssl_context = ssl
        with nogil:  # (the engine owns cfg.tls from here, whatever the outcome)
            self.s = fm_sender_new(ctx, <sockaddr *>&sa, salen, &cfg, &err)
        if self.s == NULL:
            raise_engine_error(err.errnum, f"cannot make a Sender for {ep}", err.text, ep)
        self.ring = fm_sender_ring(self.s)
        self.endpoint = str(ep)
        self.gen = _generation
        self.gate = new_gate("sender")
        self.waiters = threading.Condition(threading.Lock())
        self.requests = weakref.WeakSet()
        _live_senders.add(self)

    cdef int _check(self) except -1:
        """Raises Closed after close(); reads the receiver's limit for the _put() calls that follow
        (a handshake that changes it meanwhile is met by the I/O thread, which drops and reports)."""
        if self.s == NULL:
            raise Closed("the Sender is closed")
        _check_generation(self.gen, self)
        self.peer_max = fm_sender_peer_max_message(self.s)
        return 0

    cdef int _check_refused(self, str then) except -1:
        """Raises MessageTooLarge, once, for messages the I/O thread dropped since the last
        report: queued before the receiver said its max_message_size, and larger than it."""
        cdef uint64_t size = 0
        cdef uint64_t n = fm_sender_refused(self.s, &size)
        if n == self.refused_seen:
            return 0
        cdef uint64_t new = n - self.refused_seen
        self.refused_seen = n  # (under the GIL since the read: reported by one call only)
        cdef uint32_t limit = fm_sender_peer_max_message(self.s)
        what = "a message queued earlier was" if new == 1 else f"{new} messages queued earlier were"
        raise MessageTooLarge(f"{what} dropped unsent: larger than the receiver's max_message_size ({limit}), "
                              f"the latest {size} bytes; {then}", size=size, limit=limit, dropped=new)

    # ---- waiting for room ----

    cdef int _wait_room(self, uint64_t target, int64_t deadline, object timeout) except -1:
        """Waits until the I/O thread has released the ring up to `target` (deadline -2: do not
        wait, raise Full). In slices, so that a close() from another thread is noticed."""
        cdef int end
        if deadline == -2:
            if not self._arm_and_check(target):
                raise Full(f"the send queue is full (a {self._ring_capacity}-byte ring, {self.hwm} bytes for "
                           f"large messages); nothing was sent")
        else:
            end = wait_until(ring_wait_space, self.ring, target, deadline, WAIT_SLICE_NS, &self.closing)
            if end == WAIT_CLOSED:
                raise Closed("the Sender was closed while send() waited; the message was not sent")
            if end == WAIT_TIMED_OUT:
                raise Timeout(f"the send queue stayed full for {timeout} s; nothing was sent")
        if self.held_bytes:
            self._release_written()
        return 0

    cdef bint _arm_and_check(self, uint64_t target) except -1:
        """A wait that will not happen (timeout=0): arms the readiness fd if an event loop watches
        it, then looks again, so that room given back meanwhile is either seen now or makes the
        fd readable. True if the ring is now released up to `target`."""
        if self.notifier == NULL:
            return False
        fm_notifier_arm(self.notifier)
        return fm_sender_released(self.s) >= target

    cdef int _acquire(self, int64_t deadline, object timeout) except -1:
        """Takes the producer lock within the caller's timeout: another thread's send() may hold
        it while it waits for room, and this call's timeout must be honoured all the same."""
        if fm_glock_try(&self.plock):
            return 0
        if deadline == -2:
            raise Full("another thread is sending into this Sender; nothing was sent")
        cdef long long left_us
        cdef PyLockStatus got
        fm_glock_announce(&self.plock)
        try:
            while not fm_glock_try(&self.plock):
                left_us = -1 if deadline < 0 else max(0, (deadline - fastmsg_monotonic_ns()) // 1000)
                with nogil:
                    got = PyThread_acquire_lock_timed(self.gate, left_us, 1)
                if got == PY_LOCK_ACQUIRED:
                    fm_glock_passed(&self.plock)
                elif got == PY_LOCK_FAILURE:
                    if fm_glock_try(&self.plock):
                        return 0
                    raise Timeout(f"another thread kept this Sender busy for {timeout} s; nothing was sent")
                else:
                    PyErr_CheckSignals()  # interrupted: run the handlers (Ctrl-C), then wait on
        finally:
            fm_glock_withdraw(&self.plock)
        return 0

    cdef void _release(self) noexcept nogil:
        """Gives the producer lock back, waking a thread that waits for it."""
        gated_lock_give(&self.plock, self.gate)

    cdef int _release_written(self) except -1:
        """Drops the payloads of external records acknowledged by the receiver (or dropped)."""
        cdef uint64_t released = fm_sender_released(self.s)
        while self.held and <uint64_t>self.held[0][0] <= released:
            self.held_bytes -= len(self.held.popleft()[1])
        return 0

    # ---- queueing a message ----

    cdef int _put(self, const uint8_t *src, Py_ssize_t size, int64_t deadline, object timeout, bint publish,
                  object keep, uint32_t flags=0, uint64_t request_id=0, bint waits=False) except -1:
        """Queues one message. `keep` is the message when it is an exact bytes object, which a
        large message lends rather than copies; None for any other buffer. flags REQUEST: the
        record is a request, `request_id` before the payload (keep None: a large one is copied);
        `waits`: request()'s, whose wait for the reply writes it (_await_reply)."""
        cdef uint8_t *dst
        cdef uint32_t tag = FASTMSG_REQUEST_ID_LEN if flags else 0  # bytes before the payload
        cdef uint64_t length = <uint64_t>size + tag
        size = <Py_ssize_t>length
        if <uint64_t>size > self.max_message:
            raise MessageTooLarge(f"a {size}-byte message is larger than max_message_size ({self.max_message}); "
                                  f"it was not sent", size=size, limit=self.max_message)
        cdef uint32_t peer_max = self.peer_max  # (read once a call, by _check)
        if peer_max and <uint64_t>size > peer_max:
            raise MessageTooLarge(f"a {size}-byte message is larger than the receiver's max_message_size "
                                  f"({peer_max}); it was not sent", size=size, limit=peer_max)
        if length <= (self.small_max if keep is None else self.small_bytes_max):
            dst = fastmsg_ring_reserve(self.ring, <uint32_t>size, flags)
            while dst == NULL:
                if publish is False:
                    fastmsg_ring_publish(self.ring)
                    fm_sender_kick(self.s)
                self._wait_room(fastmsg_ring_space_target(self.ring, <uint32_t>size), deadline, timeout)
                dst = fastmsg_ring_reserve(self.ring, <uint32_t>size, flags)
            if tag:
                fastmsg_store_le64(dst, request_id)
            if size > tag:
                memcpy(dst + tag, src, size - tag)
        else:
            self._put_external(src, length, deadline, timeout, keep, flags, request_id)
            size = FM_POINTER_REC_LEN
        if waits:  # request()'s: the first wait for its reply writes it (_await_reply)
            fastmsg_ring_commit(self.ring, <uint32_t>size)
        elif publish:
            idle = fm_sender_all_written(self.s)
            fastmsg_ring_commit(self.ring, <uint32_t>size)
            self._hand_over(idle)
        else:
            fastmsg_ring_stage(self.ring, <uint32_t>size)
        return 0

    # ---- large messages: lend or copy ----
    # Outside the ring, so that one large message never needs a huge ring. An exact bytes object
    # of max_batch_bytes or more is lent (immutable, it is written from where it lies); any other
    # buffer larger than a quarter of the ring is copied into a new bytes object, as the caller
    # may change it once send() returns. Either way `held` keeps the payload until the I/O thread is done.

    cdef int _put_external(self, const uint8_t *src, uint64_t length, int64_t deadline, object timeout,
                           object keep, uint32_t flags, uint64_t request_id) except -1:
        """Reserves a 16-byte record {pointer, length} for a payload outside the ring, which the I/O
        thread writes from where it lies; `held` keeps the payload alive until the ring is
        released past the record. The record is left for the caller to stage or commit."""
        cdef uint8_t *dst
        cdef const uint8_t *payload = src
        cdef char *copy
        # hwm_bytes bounds these payloads too (the ring holds only their records); one alone may
        # exceed it, or it could never be sent.
        self._release_written()
        while self.held_bytes and self.held_bytes + length > self.hwm:
            fastmsg_ring_publish(self.ring)  # a staged record must be published to be written
            fm_sender_kick(self.s)
            self._wait_room(self.held[0][0], deadline, timeout)
        cdef uint32_t tag = FASTMSG_REQUEST_ID_LEN if flags else 0  # a request's id, before its payload
        if keep is None:  # the caller may change its buffer once send() returns: copy it now
            keep = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
            copy = PyBytes_AS_STRING(keep)
            if tag:
                fastmsg_store_le64(copy, request_id)
            with nogil:
                memcpy(copy + tag, src, length - tag)
            payload = <const uint8_t *>copy
        dst = fastmsg_ring_reserve(self.ring, FM_POINTER_REC_LEN, FM_REC_EXTERNAL | flags)
        while dst == NULL:
            fastmsg_ring_publish(self.ring)
            fm_sender_kick(self.s)
            self._wait_room(fastmsg_ring_space_target(self.ring, FM_POINTER_REC_LEN), deadline, timeout)
            dst = fastmsg_ring_reserve(self.ring, FM_POINTER_REC_LEN, FM_REC_EXTERNAL | flags)
        fm_pointer_rec_put(dst, payload, length)
        self.held.append((self.ring.resv + fastmsg_ring_slot(FM_POINTER_REC_LEN), keep))
        self.held_bytes += length
        return 0

    # ---- the direct write ----

    cdef void _hand_over(self, bint idle) noexcept:
        """After publishing: a message that follows a pause (nothing was queued, and the last
        send was a while ago) is written from this thread, sparing the wake-up of the I/O
        thread; in a stream of sends the I/O thread batches them instead. A request that this
        thread waits for (request()'s) is not handed over here: the wait for its reply writes
        it from this thread whatever the pause, in the same release of the GIL (_await_reply,
        fm_request_wait_direct). Nothing can follow it from here before its reply, so there is
        nothing to batch, and a round trip is about as long as the pause (a kick of the parked
        I/O thread in one request in two, each followed by its rounds of yields, loop.c).

        The clock is read only by a send that finds the connection idle: the sends of a stream
        that the I/O thread has not caught up with need no time, as the pause is measured from
        the later of the last idle send and the I/O thread's last write (fm_sender_written_ns,
        about as late as any send it wrote). A clock read costs a tenth of a small send()."""
        cdef int64_t now, last
        cdef int done = 0
        cdef fm_sender *s = self.s
        if idle:
            now = fastmsg_monotonic_ns()
            last = max(self.last_send_ns, fm_sender_written_ns(s))
            if now - last > DIRECT_GAP_NS:
                with nogil:
                    done = fm_sender_write_direct(s)
            self.last_send_ns = now
        if not done:
            fm_sender_kick(s)

    # ---- public ----

    def send(self, data, *, timeout=None):
        """Queues one message (any bytes-like object, as it is at the call: later changes to the
        buffer are not sent) and returns. Waits while the queue is full: timeout=None waits as
        long as it takes, 0 raises Full at once, a number of seconds raises Timeout when it runs
        out. Nothing is queued when it raises."""
        self._send(data, -2 if (timeout is not None and timeout == 0) else deadline_ns(timeout), timeout)

    cdef int _send_now(self, object data) except -1:
        """send(data, timeout=0) for a Balancer's per-message path: 1 if queued, 0 if there was no
        room (or another thread was sending), so that it can try another member."""
        try:
            self._send(data, -2, 0)
        except Full:
            return 0
        return 1

    cdef int _send(self, object data, int64_t deadline, object timeout) except -1:
        cdef Py_buffer view
        self._check()
        self._check_refused("this message was not sent")
        self._acquire(deadline, timeout)
        try:
            self._check()  # (closed meanwhile?)
            if self.held_bytes:
                self._release_written()
            if PyBytes_CheckExact(data):
                self._put(<const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline, timeout, True,
                          data)
                return 0
            if isinstance(data, str):
                raise TypeError("messages are bytes-like objects, not str; encode it first")
            PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
            try:
                self._put(<const uint8_t *>view.buf, view.len, deadline, timeout, True, None)
            finally:
                PyBuffer_Release(&view)
        finally:
            self._release()
        return 0

    def request(self, data, *, timeout=None):
        """Sends one message (any bytes-like object) as a request and returns its reply, a
        Message (release it, or use `with`, when done with it). The Receiver's side answers with
        Message.reply(); the reply comes back on the same connection.

        Many requests may be in flight at once, from any number of threads: each gets its own
        reply, in whatever order the replies come. `timeout` (seconds; None: no limit) covers
        queueing the request (which waits for room as send() does) and the wait for its reply
        together; when it runs out, Timeout is raised, and a reply that comes later is dropped
        and counted in stats()["late_replies"]. Raises Closed if close() is called meanwhile.
        A request is acknowledged like any message (by default when the replier releases it):
        a replier that dies after that without replying leaves the request to its Timeout."""
        cdef int64_t now  # (the first wait's too: a queueing that waited only shortens its first slice)
        cdef int64_t deadline = deadline_ns(timeout, &now)
        cdef fm_request *r = self._start_request(data, deadline, timeout, None)
        try:
            return _await_reply(self.s, r, 1, deadline, timeout, &self.closing, True, now)
        finally:
            self._end_request(r)
            self._request_done()

    cdef int _request_done(self) except -1:
        """A request() wait ended. Without the Condition of flush()'s count, which costs some 3% of
        a round trip: both run under the GIL, and close() sets `closing` before it takes the
        Condition and counts, so either it sees the count down or it is told here."""
        self.flushing -= 1
        if self.closing:
            with self.waiters:
                self.waiters.notify_all()
        return 0

    def request_many(self, buffers, *, timeout=None):
        """Sends every message of `buffers` as a request, published together as send_many()
        publishes, and returns their replies: a list of Messages in the order of `buffers`,
        whatever order the replies came in. Many requests in flight from one call cost about
        what as many send_many() messages do, where request() in a loop waits a round trip each.

        `timeout` (seconds; None: no limit) covers queueing them and all their replies. When it
        runs out, Timeout is raised with `replies`: that list with None where no reply came
        (those requests end; replies that come later are dropped and counted in late_replies).
        An error while queueing raises as send_many()'s do, with `queued` (the first ones were
        sent; their replies are dropped as late). Raises Closed if close() is called meanwhile."""
        cdef int64_t deadline = deadline_ns(timeout)
        cdef list reqs = self._start_requests(buffers, deadline, timeout)
        cdef list replies = [None] * len(reqs)
        cdef _Request req
        cdef Py_ssize_t i
        try:
            for i in range(len(reqs)):
                req = <_Request>reqs[i]
                replies[i] = _await_reply(self.s, req.r, len(reqs), deadline, timeout, &self.closing)
        except Timeout as exc:
            for i in range(len(reqs)):  # those that came, after the one that did not
                req = <_Request>reqs[i]
                if replies[i] is None and fm_request_ready(req.r):
                    replies[i] = _reply_message(req.r)
            exc.replies = replies
            raise
        finally:
            for req in reqs:
                req._end()
            self._request_done()
        return replies

    def request_stream(self, buffers, *, window=64, timeout=None):
        """Sends every message of the iterable `buffers` as a request and yields their replies
        (Messages) in order, keeping up to `window` requests in flight: as replies come, the
        next requests go, published together. The pipelined form of request(): a stream of
        requests costs about what a stream of send() calls does, not a round trip each.

        `timeout` (seconds; None: no limit) bounds each wait for the next reply (and for room to
        queue). When it runs out, Timeout is raised and the requests still in flight end (their
        replies are dropped and counted in late_replies), as they do when the caller stops
        iterating early. Raises Closed if close() is called meanwhile."""
        if not 1 <= window <= (1 << 20):
            raise ValueError(f"window must be in 1..{1 << 20}, got {window!r}")
        it = iter(buffers)
        pending = deque()
        cdef bint more = True
        cdef Py_ssize_t room
        cdef _Request head
        try:
            while True:
                room = window - len(pending)
                # Refill in batches (a quarter of the window at least) rather than one by one.
                if more and (room >= max(1, window // 4) or not pending):
                    chunk = []
                    for data in it:
                        chunk.append(data)
                        if len(chunk) == room:
                            break
                    more = len(chunk) == room
                    if chunk:
                        pending.extend(self._start_requests(chunk, deadline_ns(timeout), timeout, False))
                if not pending:
                    return
                head = <_Request>pending.popleft()
                self._check()
                self.flushing += 1  # (close() waits for it, as for request()'s)
                try:
                    reply = _await_reply(self.s, head.r, len(pending) + 1, deadline_ns(timeout), timeout,
                                         &self.closing)
                finally:
                    head._end()
                    self._request_done()
                yield reply
        finally:
            for head in pending:
                head._end()

    cdef list _start_requests(self, object buffers, int64_t deadline, object timeout, bint waits=True):
        """Registers and queues a request per buffer (published together) and, with `waits`,
        counts the wait for their replies, as _start_request does for one."""
        cdef list reqs = []
        cdef _Request req
        cdef bint idle
        self._check()
        try:
            self._check_refused("none of these requests was sent")
            self._acquire(deadline, timeout)
        except BaseException as exc:
            raise _partial(exc, 0) from None
        try:
            self._check()  # (closed meanwhile?)
            if self.held_bytes:
                self._release_written()
            idle = fm_sender_all_written(self.s)
            try:
                for data in buffers:
                    req = _Request.__new__(_Request)
                    req.tx = self
                    req.r = self._queue_request(data, deadline, timeout, False, len(reqs) > 0)
                    reqs.append(req)
            except BaseException as exc:
                for req in reqs:  # queued, and sent: nobody waits for their replies
                    req._end()
                raise _partial(exc, len(reqs)) from None
            finally:
                fastmsg_ring_publish(self.ring)
                self._hand_over(idle)
            if waits:
                self.flushing += 1  # (under the producer lock, as in _start_request)
        finally:
            self._release()
        return reqs

    def _lend_socket(self):
        """For fastmsg.asyncio: a copy of the connected socket's descriptor, for the event loop to
        watch and call _read_lent() when it is readable (the loop then reads replies itself,
        sparing the I/O thread's hand-off); -1 if it cannot be lent now. The caller closes it,
        and calls _unlent(), when it stops watching."""
        cdef uint64_t conn = 0
        self._check()
        cdef int fd = fm_sender_lend_fd(self.s, &conn)
        if fd < 0:
            return -1
        self.lent_conn = conn
        self._lent = True
        return fd

    def _read_lent(self):
        """The lent socket is readable: reads and acts on what came. 1 done, 0 busy (the I/O
        thread reads it), -1 its connection is gone (stop watching, close the copy)."""
        if self.s == NULL:
            return -1
        return fm_sender_read_lent(self.s, self.lent_conn)

    def _unlent(self):
        """The event loop stopped watching the socket: the I/O thread takes it back at once."""
        self._lent = False
        if self.s != NULL:
            fm_sender_revoke_lease(self.s)

    def _request_nowait(self, data):
        """request() in steps, for fastmsg.asyncio: queues the request at once (raises Full, having
        armed the readiness fd, when there is no room) and returns its _Request, whose take()
        returns the reply once it is here."""
        cdef _Request req = _Request.__new__(_Request)
        req.tx = self
        self._start_request(data, -2, 0, req)
        return req

    cdef fm_request *_start_request(self, object data, int64_t deadline, object timeout, _Request handle) except NULL:
        """Queues a request. With `handle` None it is request()'s: close() waits for the end of
        its wait (which notices close()), and the caller ends it (_end_request). Otherwise it
        becomes handle's, which close() ends itself. (request() makes no handle: an object fewer
        per round trip.)"""
        cdef fm_request *r
        self._check()
        self._check_refused("this request was not sent")
        self._acquire(deadline, timeout)
        try:
            self._check()  # (closed meanwhile?)
            r = self._queue_request(data, deadline, timeout, True, False, handle is None)
            if handle is None:  # (under the producer lock, which close() takes before it counts them)
                self.flushing += 1
            else:
                handle.r = r
                self.requests.add(handle)
        finally:
            self._release()
        return r

    cdef void _end_request(self, fm_request *r) noexcept:
        """Ends a request (frees its slot; a reply that comes later is counted late)."""
        if self.s != NULL and self.gen == _generation:
            fm_request_end(self.s, r)

    cdef fm_request *_queue_request(self, object data, int64_t deadline, object timeout, bint publish=True,
                                    bint more=False, bint waits=False) except NULL:
        """Registers a request (before it is queued: no reply can come first) and queues its
        message (staged, not published, unless `publish`; `more`: not the first of a
        request_many; `waits`: request()'s, _put's); under the producer lock."""
        cdef Py_buffer view
        if isinstance(data, str):
            raise TypeError("messages are bytes-like objects, not str; encode it first")
        self.last_request_id += 1
        cdef fm_request *r = fm_request_new(self.s, self.last_request_id, more)
        if r == NULL:
            raise MemoryError("cannot register the request")
        try:
            if self.held_bytes:
                self._release_written()
            PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
            try:
                self._put(<const uint8_t *>view.buf, view.len, deadline, timeout, publish, None, FASTMSG_REC_REQUEST,
                          self.last_request_id, waits)
            finally:
                PyBuffer_Release(&view)
        except BaseException:
            fm_request_end(self.s, r)
            raise
        return r

    def send_many(self, buffers, *, timeout=None):
        """Queues every message of `buffers` in order, publishing them together; waits for room
        as send() does. Returns how many were queued (all of them, unless it raises). Whatever it
        raises carries `queued`: how many of the messages, from the first, were queued before it
        (they will be sent); the text of its own Timeout, Full and Closed says so too."""
        cdef Py_ssize_t n = 0
        cdef int64_t deadline = -2 if (timeout is not None and timeout == 0) else deadline_ns(timeout)
        self._check()
        try:
            self._check_refused("none of these messages was queued")
            self._acquire(deadline, timeout)
        except BaseException as exc:
            raise _partial(exc, 0) from None
        try:
            n = self._send_many(buffers, deadline, timeout)
        except BaseException as exc:
            raise _partial(exc, self._staged) from None
        finally:
            self._release()
        return n

    cdef Py_ssize_t _send_many(self, object buffers, int64_t deadline, object timeout) except -1:
        cdef Py_buffer view
        cdef Py_ssize_t n = 0
        cdef bint idle
        self._staged = 0
        self._check()
        if self.held_bytes:
            self._release_written()
        idle = fm_sender_all_written(self.s)
        try:
            for data in buffers:
                if PyBytes_CheckExact(data):
                    self._put(<const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline, timeout,
                              False, data)
                else:
                    if isinstance(data, str):
                        raise TypeError("messages are bytes-like objects, not str; encode them first")
                    PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
                    try:
                        self._put(<const uint8_t *>view.buf, view.len, deadline, timeout, False, None)
                    finally:
                        PyBuffer_Release(&view)
                n += 1
                self._staged = n
        finally:
            fastmsg_ring_publish(self.ring)
            self._hand_over(idle)
        return n

    def flush(self, timeout=None):
        """Waits until the receiver has acknowledged every message queued so far (by default once
        its application released them; see Receiver's `ack`). True when done, False if the
        timeout ran out first. Raises MessageTooLarge if messages were dropped unsent as larger
        than the receiver accepts (once for each: the next flush() may be True)."""
        return self._flush(timeout, True)

    cdef bint _flush(self, object timeout, bint report) except -1:
        """flush(); close() has it not `report` drops, which it returns as False instead."""
        if timeout is not None and timeout == 0:
            return self._flushed_now(self.ring.ctl.tail if self.s != NULL else 0, report)
        cdef int64_t deadline = deadline_ns(timeout)
        cdef int end
        # Not under the producer lock: a send() waiting for room holds it, and this timeout must
        # be honoured all the same. close() waits for flushes in progress before freeing.
        with self.waiters:
            self._check()
            if report:
                self._check_refused("flush() did not wait; the other messages are sent as usual")
            if fm_sender_unacked(self.s):
                fm_sender_ask_ack(self.s)
            self.flushing += 1
        try:
            end = wait_until(_sender_wait_flush, self.s, 0, deadline, WAIT_SLICE_NS, &self.closing)
        finally:
            with self.waiters:
                self.flushing -= 1
                self.waiters.notify_all()
        if end != WAIT_READY:
            return False  # timed out, or close() from another thread
        if fm_glock_try(&self.plock):  # (a send() in progress drops them itself)
            try:
                if self.s != NULL:
                    self._release_written()
            finally:
                self._release()
        if report and self.s != NULL:  # (a drop is counted before the acknowledgements pass it)
            self._check_refused("every other message queued is acknowledged")
        return True

    cdef bint _flushed_now(self, uint64_t mark, bint report) except -1:
        """flush(timeout=0) for the messages queued before ring position `mark`: True if they are
        all acknowledged; otherwise arms the readiness fd (if made) and returns False."""
        self._check()
        if report:
            self._check_refused("flush() did not wait; the other messages are sent as usual")
        if fm_sender_released(self.s) < mark and not self._arm_and_check(mark):
            return False
        if fm_glock_try(&self.plock):  # (a send() in progress drops them itself)
            try:
                self._release_written()
            finally:
                self._release()
        if report:
            self._check_refused("every other message queued is acknowledged")
        return True

    # ---- readiness, for event loops ----

    def fileno(self):
        """A file descriptor that an event loop can watch for readability (made on the first
        call, closed by close(); one watcher at a time).

        Readable means "try again": after send(timeout=0) raised Full, or flush(timeout=0)
        returned False, the fd turns readable once acknowledgements give room back; call again,
        and wait for the fd again if it still cannot proceed. Those non-blocking calls arm the
        fd, so nothing that happens after them is missed; the fd starts readable (so a first
        wait returns at once), and may turn readable with no room for your message yet. It is an
        eventfd (a pipe where there is none) that the engine writes only while armed: unwatched,
        it costs nothing. fastmsg.asyncio and fastmsg.poll use it."""
        self._check()
        if self.notifier == NULL:
            fd = _notifier_fd(fm_sender_notifier(self.s), "the Sender")
            self.notifier = fm_sender_notifier(self.s)
            return fd
        return fm_notifier_fd(self.notifier)

    def _reader_fileno(self):
        """fileno() for a watcher that empties the fd itself when it turns readable, then wakes all
        its waiters (fastmsg.asyncio): arming no longer empties it (fm_notifier_reader_drains)."""
        fd = self.fileno()
        fm_notifier_reader_drains(self.notifier)
        return fd

    def _poll_ready(self):
        """For fastmsg.poll: True if at most half of the ring is queued (so a message of up to a
        quarter of it is queued at once), or the Sender is closed (send() would raise at once);
        otherwise arms the fd (fileno() first)."""
        if self.s == NULL:
            return True
        cdef uint64_t half = self._ring_capacity // 2
        if fm_sender_queued(self.s) <= half:
            return True
        if self.notifier == NULL:
            return False
        fm_notifier_arm(self.notifier)
        return fm_sender_queued(self.s) <= half

    def _flush_mark(self):
        """Where flush() would wait to: the end of what is queued now (for fastmsg.asyncio)."""
        self._check()
        return self.ring.ctl.tail

    def _poll_flushed(self, uint64_t mark, bint report=True):
        """flush(timeout=0) for the messages queued before _flush_mark() returned `mark`;
        `report` False leaves drops unreported, as close() does."""
        return self._flushed_now(mark, report)

    @property
    def connected(self):
        """True while a connection to the Receiver is up (handshake done); False once closed."""
        if self.s == NULL:
            return False
        _check_generation(self.gen, self)
        return bool(fm_sender_connected(self.s))

    @property
    def unacknowledged(self):
        """Messages queued and not yet acknowledged by the receiver (nor refused by it); once
        closed, those close() gave up."""
        if self.s == NULL:
            return self.unacked_at_close
        _check_generation(self.gen, self)
        return fm_sender_unacked(self.s)

    # ---- what a Balancer watches ----

    @property
    def queued_count(self):
        """Messages (requests included) queued since the Sender was made: a count that only grows.
        The message queued last is settled once `settled_count` reaches this value."""
        self._check()
        return self.ring.ctl.records

    @property
    def settled_count(self):
        """Messages acknowledged by the receiver, or refused as too large for it (which send(),
        send_many() or flush() raise), since the Sender was made: a count that only grows.
        Acknowledgements come in queueing order, so a relay can release upstream what the n-th
        message carried once it is n or more (a refused message counts when it is refused)."""
        self._check()
        return fm_sender_done(self.s)

    def _observe(self):
        """(up, unacknowledged bytes, unacknowledged messages, settled_count, round-trip samples,
        the latest sample in ns, when the batch being timed now was written (monotonic ns; 0:
        none), fill): a few atomic loads, cheap enough for a Balancer to call every few
        milliseconds. A round trip runs from a batch's write to the ACK that covers it, so it
        includes the receiver's time to release its messages (by default). `fill` is how full the
        fuller of the two bounds is, 0.0 to 1.0 or a little more: the ring (small messages) against
        its capacity, the large messages held against hwm_bytes."""
        cdef uint64_t last = 0
        cdef int64_t since = 0
        self._check()
        cdef uint64_t samples = fm_sender_rtt(self.s, &last, &since)
        cdef uint64_t queued = fm_sender_queued(self.s)
        fill = max(queued / <double>self._ring_capacity, self.held_bytes / <double>self.hwm)
        return (bool(fm_sender_connected(self.s)), queued + self.held_bytes,
                fm_sender_unacked(self.s), fm_sender_done(self.s), samples, last, since, fill)

    def _take_unacked(self):
        """Closes the Sender at once and returns, in order, every message it had queued and not
        had acknowledged, as bytes, so that they can go to another receiver. The Sender sends none
        of them again. Requests are not returned: their request() raises Closed, as after close().
        A message the receiver got but had not acknowledged is among them (at-least-once)."""
        if self.s == NULL:
            raise Closed("the Sender is closed")
        _check_generation(self.gen, self)
        return self._shut(True)

    def stats(self):
        """Exact counters: messages and bytes written, batches, write calls, connections...;
        ack_rtt_ns: the latest acknowledgement round trip (a batch's write to its ACK); peer: the
        receiver's verified certificate name over TLS (None before the first TLS handshake, or
        without TLS)."""
        cdef uint64_t values[FM_STAT_COUNT]
        cdef char err[FM_LAST_ERROR_MAX]
        cdef char peer[FM_TLS_NAME_MAX]
        cdef uint64_t rtt_last = 0
        cdef int64_t since = 0
        self._check()
        cdef uint64_t rtt_samples = fm_sender_rtt(self.s, &rtt_last, &since)
        fm_sender_stats(self.s, values)
        fm_sender_last_error(self.s, err, sizeof(err))
        fm_sender_peer(self.s, peer, sizeof(peer))
        return _stats(values, SENDER_STATS, {"peer": peer.decode(errors="replace") or None,"queued_bytes": fm_sender_queued(self.s),
                                             "unacknowledged": fm_sender_unacked(self.s),
                                             "connected": bool(fm_sender_connected(self.s)),
                                             "last_error": err.decode(errors="replace"),
                                             "notifications": fm_notifier_signals(fm_sender_notifier(self.s)),
                                             "ack_rtt_ns": rtt_last, "ack_rtt_samples": rtt_samples})

    def close(self, linger=OWN_LINGER):
        """Waits up to `linger` seconds (None: no limit, 0: not at all; by default the Sender's
        own `linger` option) for queued messages to be acknowledged, then closes. Returns True
        if nothing queued was left unacknowledged (nor dropped unreported). Idempotent."""
        if self.s == NULL:
            return True
        if linger is OWN_LINGER:
            linger = self.linger
        cdef bint written = True
        cdef uint64_t size
        cdef int64_t deadline = deadline_ns(linger)
        cdef fm_sender *settling = self.s
        if self.gen == _generation:
            written = self._flush(linger, False) if linger != 0 else fm_sender_unacked(self.s) == 0
            if self.s != NULL and fm_sender_refused(self.s, &size) != self.refused_seen:
                written = False  # dropped as too large, and never reported
            if linger != 0 and self.s != NULL:
                # No PONG may arrive once the socket is closed (the kernel would reset the
                # connection and drop what it still had to send): wait for those owed.
                with nogil:
                    fm_sender_settle(settling, deadline)
        self._shut(False)
        return written

    cdef object _shut(self, bint take):
        """close()'s end: stops send() and flush() calls in progress and frees the engine's sender.
        `take`: first takes back the unacknowledged messages, and returns them (else None)."""
        cdef uint64_t size
        cdef fm_sender *s
        cdef list taken = None
        self.closing = True
        cdef bint here = self.gen == _generation  # (after fork() the lock may be held by a thread now gone)
        if here:
            with nogil:  # a send() in progress finishes or gives up first
                gated_lock_take(&self.plock, self.gate)
        try:
            if self.s == NULL:
                return [] if take else None
            with self.waiters:  # and so does a flush() (within a wait slice)
                while self.flushing:
                    self.waiters.wait()
                for req in list(self.requests):  # requests awaited on an event loop end here
                    req.end()
                s = self.s
                if take and here:
                    taken = self._take_records(s)
                self.unacked_at_close = 0 if taken is not None else fm_sender_unacked(s)
                self.refused_at_close = fm_sender_refused(s, &size) - self.refused_seen
                self.s = NULL
                self.ring = NULL
                self.notifier = NULL
        finally:
            if here:
                self._release()
        if here:
            _close_sender(<size_t>s)
        # The engine no longer touches the payloads of unsent external records.
        self.held.clear()
        self.held_bytes = 0
        if take:
            return taken if taken is not None else []
        return None

    cdef list _take_records(self, fm_sender *s):
        """Stops the engine's sender (its ring stays) and copies out the messages between the
        acknowledged position and the end of what was queued; a lent payload is returned as the
        bytes object held for it. Under the producer lock."""
        cdef list out = []
        cdef uint64_t pos, length
        cdef const uint8_t *payload
        cdef uint32_t flags
        with nogil:
            fm_sender_stop(s)
        pos = fm_sender_released(s)
        held = iter(self.held)
        entry = next(held, None)
        while fm_sender_next_unacked(s, &pos, &payload, &length, &flags):
            if flags & FM_REC_EXTERNAL:
                while entry is not None and <uint64_t>entry[0] < pos:
                    entry = next(held, None)
                keep = entry[1]
            if flags & FASTMSG_REC_REQUEST:
                continue  # its request() raises Closed, as the Sender is closed
            if flags & FM_REC_EXTERNAL:
                out.append(keep)  # (the lent object itself, or the copy made at send())
            else:
                out.append(PyBytes_FromStringAndSize(<const char *>payload, <Py_ssize_t>length))
        return out

    @property
    def closed(self):
        """True after close()."""
        return self.s == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        cdef uint64_t size
        if self.s != NULL and self.gen == _generation:
            _report_lost(self.endpoint, fm_sender_unacked(self.s), fm_sender_refused(self.s, &size) - self.refused_seen,
                         "when the Sender was freed without close()")
            with nogil:
                fm_sender_close(self.s)
        if self.gate != NULL:
            PyThread_free_lock(self.gate)

    def __repr__(self):
        return f"<fastmsg.Sender {self.endpoint}{' closed' if self.s == NULL else ''}>"


cdef void _close_sender(size_t s) noexcept:
    with nogil:
        fm_sender_close(<fm_sender *>s)


cdef object _partial(object exc, Py_ssize_t queued):
    """The exception a send_many() raises once `queued` of its messages were queued: it carries
    `queued`, and fastmsg's own Timeout, Full and Closed say it in their text."""
    cdef str said
    if queued and isinstance(exc, (Timeout, Full, Closed)):
        said = str(exc).replace("; nothing was sent", "").replace("; the message was not sent", "")
        exc = type(exc)(f"{said}; {queued} of the messages, from the first, were queued before it "
                        f"and will be sent; the rest were not")
    elif queued:
        exc.add_note(f"send_many() had queued {queued} of the messages, from the first, before this; "
                     f"they will be sent")
    exc.queued = queued
    return exc
