# Receiver: each connection's ring is read in place; DATA frames are handed out message by message
# as zero-copy Message views (message.pxi), their layout read with wire_decode.pxi.

cdef int _receiver_wait_direct(void *rx, uint64_t unused, int64_t deadline) noexcept nogil:
    """fm_receiver_wait_direct as a wait_fn: a connection has a record for the consumer."""
    return fm_receiver_wait_direct(<fm_receiver *>rx, deadline)


cdef class _ConnRing(_Ring):
    """One connection's receive ring: the I/O thread writes frames, the Receiver reads them."""
    cdef fm_rxbuf *buf
    cdef object owner  # a weak reference to the Receiver (Messages may outlive it)
    cdef object peer   # its sender's verified certificate name (str), or None

    cdef int _bind(self, fm_rxbuf *buf, object owner) except -1:
        cdef const char *peer = fm_rxbuf_peer(buf)
        self.owner = owner
        self.peer = None if peer == NULL else peer.decode("utf-8", "replace")
        fm_rxbuf_incref(buf)
        self.buf = buf
        self.mapped = True
        fastmsg_ring_init(&self.r, fm_rxbuf_ctl(buf), fm_rxbuf_data(buf), fm_rxbuf_capacity(buf))
        self._setup_release(fm_rxbuf_capacity(buf), 0)
        return 0

    cdef void _give_back(self, uint64_t start, uint64_t end) noexcept:
        _Ring._give_back(self, start, end)
        if self.buf != NULL and fm_rxbuf_space_released(self.buf) and not _write_acks(self.owner):
            fm_rxbuf_ack_kick(self.buf)

    cdef void _unmap(self) noexcept:
        if self.mapped:
            self.mapped = False
            fm_rxbuf_decref(self.buf)
            self.buf = NULL

    def __dealloc__(self):
        self._unmap()


cdef class Receiver:
    """Receiver(endpoint, *, context=None, max_message_size=16777216, max_batch_bytes=262144,
             max_connections=65536, ring_bytes=4194304, handshake_timeout=5.0,
             max_sessions=65536, ack='released', heartbeat_interval=1.0,
             dead_peer_timeout=None, reply_hwm_bytes=4194304, secret=None, secrets=None,
             allow=None, max_connections_per_source=None, rate_limit=None, ssl=None, busy_poll=None)
--

    Accepts any number of Senders (fan-in) on one endpoint and hands out their messages.

    Messages from one sender arrive in the order sent; recv() takes them from the connections
    in turn. Each Message is a view into the receive ring, valid until released.
    """
    cdef fm_receiver *rx       # the engine's receiver; NULL once closed
    cdef object __weakref__
    cdef Context _context
    cdef readonly str endpoint
    cdef int gen               # the fork generation it was made in
    cdef dict rings            # fm_rxbuf address -> _ConnRing
    cdef _ConnRing cur         # the connection ring being drained
    cdef _ConnRing last        # the ring drained last (a connection mostly comes back next)
    cdef fm_rxbuf *cur_buf     # its queue reference, handed back with fm_receiver_done
    cdef object frame          # the frame the next messages come from (Record or _BigFrame)
    cdef const uint8_t *p      # next message record in the frame
    cdef uint32_t left         # messages left in the frame
    cdef Py_ssize_t requests_taken  # requests _take() handed out (recv_many counts its batch's)
    cdef object unlink_path    # an ipc endpoint's socket file, removed by close()
    cdef Py_ssize_t batch_budget  # bytes one recv_many may hand out
    cdef fm_gated_lock lock       # one consumer at a time; close() takes it too
    cdef PyThread_type_lock gate  # where a thread waiting for `lock` sleeps (gated_lock.h)
    cdef bint closing             # close() has begun: a waiting recv() gives up
    cdef fm_notifier *notifier    # its readiness fd, once fileno() made it (NULL: nobody watches)
    cdef readonly uint64_t reply_hwm_bytes  # replies queued or unacknowledged at which reply() raises Full
    cdef uint64_t batch           # the number of the latest recv_many() that returned requests (under the GIL)
    cdef Py_ssize_t batch_left    # its requests neither replied to nor released
    cdef bint replies_held        # replies queued for the end of a batch, not sent yet
    cdef object ssl_context       # ssl=: kept alive, as the engine uses its SSL_CTX (and callbacks)
    cdef object self_ref          # a weak reference to itself, which its requests (Message.replier) hold

    def __init__(self, endpoint, *, Context context=None, max_message_size=DEFAULT_MAX_MESSAGE,
                 max_batch_bytes=DEFAULT_MAX_BATCH, max_connections=DEFAULT_MAX_CONNECTIONS,
                 ring_bytes=DEFAULT_CONN_RING, handshake_timeout=DEFAULT_HANDSHAKE_TIMEOUT,
                 max_sessions=DEFAULT_MAX_SESSIONS, ack="released",
                 heartbeat_interval=DEFAULT_HEARTBEAT_INTERVAL, dead_peer_timeout=None,
                 reply_hwm_bytes=DEFAULT_REPLY_HWM_BYTES, secret=None, secrets=None, allow=None,
                 max_connections_per_source=None, rate_limit=None, ssl=None, busy_poll=None):
        ep = _parse_endpoint(endpoint)
        _check_message_limits(max_message_size, max_batch_bytes)
        self.gate = new_gate("receiver")
        # Connections cost a descriptor each and little memory while idle (their ring's pages
        # are touched only as bytes arrive); the process's descriptor limit is the usual bound.
        if not 1 <= max_connections <= MAX_RECEIVER_LIMIT:
            raise ValueError(f"max_connections must be in 1..{MAX_RECEIVER_LIMIT}, got {max_connections}")
        # Sessions remembered for senders that reconnect (about 64 bytes each); beyond this the
        # longest idle is forgotten and its sender, if it returns, starts afresh.
        if not 1 <= max_sessions <= MAX_RECEIVER_LIMIT:
            raise ValueError(f"max_sessions must be in 1..{MAX_RECEIVER_LIMIT}, got {max_sessions}")
        cdef fm_receiver_config cfg
        memset(&cfg, 0, sizeof(cfg))
        _receiver_access(&cfg, secret, secrets, allow, max_connections_per_source, ssl is not None)
        _receiver_rate(&cfg, rate_limit)
        cfg.conn_ring_capacity = _pow2(max(ring_bytes, 4 * (max_batch_bytes + 64)))
        cfg.max_message = max_message_size
        cfg.max_batch = max_batch_bytes
        cfg.max_connections = max_connections
        cfg.max_sessions = max_sessions
        cfg.handshake_timeout_ms = _timeout_ms("handshake_timeout", handshake_timeout)
        if ack not in ACK_MODES:
            raise ValueError(f"ack must be one of {ACK_MODES}, got {ack!r}")
        cfg.ack_on_receipt = ack == "received"
        cfg.heartbeat_ms, cfg.dead_peer_ms = _heartbeat_ms(heartbeat_interval, dead_peer_timeout)
        cfg.busy_poll_ns = _busy_poll_ns(busy_poll, &cfg.busy_poll_auto)
        if reply_hwm_bytes < 4096:
            raise ValueError(f"reply_hwm_bytes must be at least 4096, got {reply_hwm_bytes}")
        cfg.reply_hwm_bytes = reply_hwm_bytes
        self.reply_hwm_bytes = reply_hwm_bytes
        self.batch_budget = cfg.conn_ring_capacity // 4
        family, addr = ep.resolve(passive=True)[0]
        cfg.dual_stack = ep.host == "*"
        if ep.scheme == "ipc":
            _clear_stale_socket(ep, family)
        cdef sockaddr_storage sa
        cdef socklen_t salen
        _sockaddr(family, addr, &sa, &salen)
        self._context = context if context is not None else default_context()
        cdef fm_ctx *ctx = self._context._use(self)
        cdef fm_error err
        _tls_context(&cfg.tls, ssl, True, None)
        self.ssl_context = ssl
        with nogil:  # (the engine owns cfg.tls from here, whatever the outcome)
            self.rx = fm_receiver_new(ctx, <sockaddr *>&sa, salen, &cfg, &err)
        if self.rx == NULL:
            raise_engine_error(err.errnum, f"cannot bind {ep}", err.text, ep, BindError)
        self.gen = _generation
        self.self_ref = weakref.ref(self)
        self.rings = {}
        if ep.scheme == "ipc":
            self.endpoint = str(ep)
            self.unlink_path = ep.path
        else:
            fm_receiver_local_addr(self.rx, &sa, &salen)
            self.endpoint = _tcp_endpoint(&sa)

    cdef int _check(self) except -1:
        if self.rx == NULL:
            raise Closed("the Receiver is closed")
        _check_generation(self.gen, self)
        return 0

    # ---- taking messages (the hot path) ----

    cdef int _start_frame(self, fastmsg_ring_rec *rec) except -1:
        """Sets up the messages of a DATA frame (in the ring, or big) at rec; 0 if it has none."""
        cdef const uint8_t *body
        cdef uint32_t skip, count, i
        cdef _BigFrame big
        cdef uint8_t *ptr
        cdef Record r = self.cur._record(rec)
        if rec.flags == FM_RX_EXTERNAL:
            # Take the big frame over from the ring; the marker goes with it.
            ptr = fm_marker_take(<uint8_t *>rec.data)
            big = _BigFrame.__new__(_BigFrame)
            big.frame = ptr
            big.marker = r
            self.frame = big
            body = fastmsg_frame_body(ptr)
        else:
            self.frame = r
            body = rec.data
        skip = fastmsg_data_skip(body)
        count = fastmsg_data_count(body)
        self.p = fastmsg_data_records(body)
        for i in range(skip):
            self.p += fastmsg_ring_slot(fastmsg_rec_len(self.p))
        self.left = count - skip
        if self.left == 0:
            self._end_frame()
        return 0

    cdef void _end_frame(self) noexcept:
        # (the frame's Messages keep it: the last to let go gives its space back)
        self.frame = None

    cdef Message _take(self):
        """The next message, or None if no connection has one now."""
        if not self.left and not self._advance():  # (a call only between frames)
            return None
        cdef uint32_t length = fastmsg_rec_len(self.p)
        cdef Message m = Message.__new__(Message)
        m.owner = self.frame
        m._peer = self.cur.peer
        m.data = self.p + FASTMSG_REC_HDR
        m.length = length
        if fastmsg_rec_flags(self.p):  # a request (the only flag the I/O thread lets through)
            m.request_id = fastmsg_load_le64(m.data)
            m.data += FASTMSG_REQUEST_ID_LEN
            m.length -= FASTMSG_REQUEST_ID_LEN
            m.session_id = fm_rxbuf_session(self.cur.buf)
            m.replier = self.self_ref
            self.requests_taken += 1
        self.p += fastmsg_ring_slot(length)
        self.left -= 1
        if self.left == 0:
            self._end_frame()
        return m

    cdef bint _advance(self) except -1:
        """Moves to the next message (past control frames and drained rings) without taking it:
        True if one is here now."""
        cdef fastmsg_ring_rec rec
        cdef int rc
        cdef fm_rxbuf *buf
        while True:
            if self.left:
                return True
            if self.cur is not None:
                rc = fastmsg_ring_next(&self.cur.r, &rec)
                if rc > 0:
                    if _is_data(rec.flags):
                        self._start_frame(&rec)
                    else:  # handshake and control frames: the I/O thread has acted on them
                        self.cur._skip(&rec)
                    continue
                if rc < 0:
                    raise ProtocolError("a connection ring broke fastmsg's layout (memory corruption?)")
                buf = self.cur_buf
                closed = fm_rxbuf_closed(buf)
                self.cur_buf = NULL
                fm_receiver_done(self.rx, buf, self.cur.r.rpos)
                if closed and self.cur.r.rpos == fastmsg_load_tail(self.cur):
                    self.rings.pop(<size_t>buf, None)
                    self.last = None
                self.cur = None
            buf = fm_receiver_next_ready(self.rx)
            if buf == NULL:
                return False
            # (a ring holds a reference on its buffer, so no other buffer can have that address)
            if self.last is not None and self.last.buf == buf:
                ring = self.last
            else:
                ring = self.rings.get(<size_t>buf)
                if ring is None:
                    ring = _ConnRing.__new__(_ConnRing)
                    (<_ConnRing>ring)._bind(buf, self.self_ref)
                    self.rings[<size_t>buf] = ring
                self.last = ring
            self.cur = ring
            self.cur_buf = buf

    # ---- replies (Message.reply) ----

    cdef bint _settled(self, uint64_t batch, bint send) noexcept:
        """A request of recv_many() batch `batch` is answered or let go (Message._settle): True if
        the replies held are to go now (it was the last of the latest batch, or of an older one).
        Then, with `send`, they go (the last request was released without a reply)."""
        if batch == self.batch:
            self.batch_left -= 1
            if self.batch_left:
                return False
        if send:
            self._send_held()
        return True

    cdef void _send_held(self) noexcept:
        """Sends the replies held for the end of a batch."""
        if self.replies_held and self.rx != NULL:
            self.replies_held = False
            fm_receiver_send_replies(self.rx)

    cdef void _hold_batch(self, list out) noexcept:
        """recv_many() returns `out`: if it holds several requests, their replies are held until
        the last is answered or released (or the next recv), and go out in one write."""
        cdef Message m
        cdef Py_ssize_t n = 0
        for m in out:
            if m.replier is not None:
                n += 1
        if n < 2:
            return
        self.batch += 1
        self.batch_left = n
        cdef _BatchRequest held
        for m in out:
            if m.replier is not None:
                held = _BatchRequest.__new__(_BatchRequest)
                held.receiver = m.replier
                held.batch = self.batch
                m.replier = held

    cdef int _reply(self, uint64_t session_id, uint64_t request_id, object data, bint write_now) except -1:
        """Queues a reply (under the GIL: close() cannot free the engine's receiver meanwhile);
        `write_now`: this thread writes the queue if it can. Never blocks."""
        cdef Py_buffer view
        cdef int rc
        self._check()
        if isinstance(data, str):
            raise TypeError("replies are bytes-like objects, not str; encode it first")
        PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
        try:
            rc = fm_receiver_reply(self.rx, session_id, request_id, <const uint8_t *>view.buf, view.len, write_now)
            if not write_now:
                self.replies_held = True
        finally:
            PyBuffer_Release(&view)
        if rc == -EAGAIN:
            raise Full(f"replies of reply_hwm_bytes ({self.reply_hwm_bytes}) wait for their senders' "
                       f"acknowledgement; this reply was not sent")
        if rc == -EMSGSIZE:
            raise MessageTooLarge(f"a {view.len}-byte reply is larger than any record", size=view.len)
        if rc:
            raise MemoryError("cannot queue the reply")
        if write_now:
            self.replies_held = False
        return 0

    # ---- waiting ----

    cdef int _wait(self, int64_t deadline, object timeout, int64_t now=-1) except -1:
        # This thread reads the sockets itself while it waits (fm_receiver_wait_direct). A
        # signal or a close() from another thread interrupts the wait.
        cdef int end = wait_until(_receiver_wait_direct, self.rx, 0, deadline, 0, &self.closing, now)
        if end == WAIT_CLOSED:
            raise Closed("the Receiver was closed while recv() waited")
        if end == WAIT_TIMED_OUT:
            raise Timeout(f"no message arrived within {timeout} s")
        return 0

    cdef int _enter(self) except -1:
        """Takes the consumer lock (waiting without the GIL if another thread holds it)."""
        self._check()
        if not fm_glock_try(&self.lock):
            with nogil:
                gated_lock_take(&self.lock, self.gate)
        if self.rx == NULL:
            gated_lock_give(&self.lock, self.gate)
            raise Closed("the Receiver is closed")
        return 0

    cdef Message _recv(self, object timeout):
        self._send_held()  # (a batch still unanswered: its replies wait no longer)
        cdef Message m = self._take()
        if m is not None:
            return m
        cdef int64_t now
        cdef int64_t deadline = deadline_ns(timeout, &now)
        while True:
            if timeout is not None and timeout == 0:
                if self._arm_and_look():
                    return self._take()
                raise Timeout("no message is waiting")
            self._wait(deadline, timeout, now)
            now = -1
            m = self._take()
            if m is not None:
                return m

    cdef bint _arm_and_look(self) except -1:
        """Found nothing: arms the readiness fd if an event loop watches it, then looks again, so
        that a message published meanwhile is either seen now or makes the fd readable."""
        if self.notifier == NULL:
            return False
        fm_notifier_arm(self.notifier)
        return self._advance()

    # ---- public ----

    def fileno(self):
        """A file descriptor that an event loop can watch for readability (made on the first
        call, closed by close(); one watcher at a time).

        Readable means "try again": call recv(timeout=0) (or recv_many) until it raises Timeout,
        then wait for the fd again. A recv(timeout=0) that raises Timeout arms the fd, so nothing
        that arrives after it is missed; the fd starts readable (so a first wait returns at
        once), and may turn readable with nothing to take (a message another caller took). It is
        an eventfd (a pipe where there is none) that the engine writes only while armed:
        unwatched, it costs nothing. close() wakes an armed fd, then closes it: stop watching it
        first. fastmsg.asyncio and fastmsg.poll use it."""
        self._check()
        if self.notifier == NULL:
            fd = _notifier_fd(fm_receiver_notifier(self.rx), "the Receiver")
            self.notifier = fm_receiver_notifier(self.rx)
            return fd
        return fm_notifier_fd(self.notifier)

    def _reader_fileno(self):
        """fileno() for a watcher that empties the fd itself (see Sender._reader_fileno)."""
        fd = self.fileno()
        fm_notifier_reader_drains(self.notifier)
        return fd

    def _poll_ready(self):
        """For fastmsg.poll: True if recv() would return at once (a message is here, or the
        Receiver is closed and it would raise); otherwise arms the fd (fileno() first)."""
        if self.rx == NULL:
            return True
        self._enter()
        try:
            return self._advance() or self._arm_and_look()
        finally:
            gated_lock_give(&self.lock, self.gate)

    def recv(self, timeout=None):
        """The next message. Waits for one: timeout=None as long as it takes, otherwise raises
        Timeout (also a TimeoutError) after that many seconds; 0 raises at once if none is here."""
        self._enter()
        try:
            return self._recv(timeout)
        finally:
            gated_lock_give(&self.lock, self.gate)

    def recv_many(self, Py_ssize_t max_messages, timeout=None):
        """Up to max_messages messages, at least one: waits for the first as recv() does.

        Messages are views into a connection's ring, so one call returns at most a quarter of
        a ring's bytes: a caller that keeps the previous batch alive while it asks for the next
        still leaves the connection room to go on."""
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        cdef Message m
        cdef list out
        cdef Py_ssize_t budget
        self._enter()
        try:
            m = self._recv(timeout)
            self.requests_taken = m.replier is not None
            out = [m]
            budget = self.batch_budget - m.length
            while len(out) < max_messages and budget > 0:
                m = self._take()
                if m is None:
                    break
                out.append(m)
                budget -= m.length + 8
            if self.requests_taken > 1:  # (a stream of plain messages pays no pass over them)
                self._hold_batch(out)
            return out
        finally:
            gated_lock_give(&self.lock, self.gate)

    def __iter__(self):
        """Each message as it comes; the iteration ends when the Receiver is closed (here between
        two messages, or by another thread while it waits)."""
        while True:
            try:
                m = self.recv()
            except Closed:
                return
            yield m

    def connections(self):
        """The open connections: a list of {"address": the sender's "host:port" (None over a Unix
        socket), "peer": its verified certificate name over TLS, or None}."""
        self._check()
        cdef size_t room = 64, n
        cdef fm_conn_info *infos
        while True:
            infos = <fm_conn_info *>PyMem_Malloc(room * sizeof(fm_conn_info))
            if infos == NULL:
                raise MemoryError("cannot list the connections")
            try:
                with nogil:
                    n = fm_receiver_connections(self.rx, infos, room)
                if n <= room:
                    return [{"address": _tcp_endpoint(&infos[i].addr)[6:] if infos[i].addr.ss_family in (socket.AF_INET, socket.AF_INET6) else None,
                             "peer": infos[i].peer.decode(errors="replace") or None} for i in range(n)]
            finally:
                PyMem_Free(infos)
            room = n + n // 4 + 16  # (more came meanwhile)

    def stats(self):
        """Exact counters: messages and bytes received, batches, read calls, connections,
        sessions, acknowledgements, replies, refusals...; last_error: the last refusal or
        accept() failure ("" if none); notifications: writes of the readiness fd."""
        cdef uint64_t values[FM_STAT_COUNT]
        self._check()
        fm_receiver_stats(self.rx, values)
        cdef int accept_error = fm_receiver_accept_error(self.rx)
        cdef char refusal[FM_LAST_ERROR_MAX]
        fm_receiver_last_refusal(self.rx, refusal, sizeof(refusal))
        return _stats(values, RECEIVER_STATS,
                      {"last_error": refusal.decode(errors="replace") or
                                     (f"accept failed: {os.strerror(accept_error)}" if accept_error else ""),
                       "notifications": fm_notifier_signals(fm_receiver_notifier(self.rx))})

    def close(self):
        """Stops accepting and closes every connection, at once. Messages already received stay
        valid until released. Returns True if nothing was left behind: no message that had
        arrived and was not yet taken by recv(), and no reply unacknowledged by its Sender
        (their Senders send such messages again, to whoever binds next, unless ack="received";
        such replies are lost). Idempotent: True once closed. It takes no `linger`: a Receiver
        has nothing of its own to wait for, as its Senders resend what it did not acknowledge."""
        if self.rx == NULL:
            return True
        self.closing = True
        cdef bint clean = True
        cdef fm_receiver *rx = self.rx
        if self.gen == _generation:  # (after fork() the lock may be held by a thread now gone)
            fm_receiver_interrupt(rx)
            with nogil:  # a recv() in progress gives up first
                gated_lock_take(&self.lock, self.gate)
            rx = self.rx
            try:  # (under the lock, which the look at the rings needs)
                clean = rx == NULL or (fm_receiver_reply_bytes(rx) == 0 and not self._advance())
            except ProtocolError:  # (a broken ring: whatever it held is left behind; close all the same)
                clean = False
            self.rx = NULL
            gated_lock_give(&self.lock, self.gate)
        self.rx = NULL
        self.notifier = NULL
        if rx == NULL:
            return True
        if self.gen == _generation:
            if self.cur_buf != NULL:
                fm_rxbuf_decref(self.cur_buf)
                self.cur_buf = NULL
            with nogil:
                fm_receiver_close(rx)
            if self.unlink_path is not None:
                try:
                    os.unlink(self.unlink_path)
                except OSError:
                    pass
        self.cur = None
        self.last = None
        self.rings = {}
        return clean

    @property
    def closed(self):
        """True after close()."""
        return self.rx == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.rx != NULL and self.gen == _generation:
            if self.cur_buf != NULL:
                fm_rxbuf_decref(self.cur_buf)
            with nogil:
                fm_receiver_close(self.rx)
        if self.gate != NULL:
            PyThread_free_lock(self.gate)

    def __repr__(self):
        return f"<fastmsg.Receiver {self.endpoint}{' closed' if self.rx == NULL else ''}>"


# What a Unix socket file is on Windows, which stat.S_ISSOCK does not see there: a reparse point
# of this tag (IO_REPARSE_TAG_AF_UNIX).
_REPARSE_TAG_AF_UNIX = 0x80000023
# How long a connect still in progress may take to be refused (Winsock's Unix sockets may answer
# so; POSIX ones refuse at once).
_PROBE_NS = 200_000_000


cdef int _clear_stale_socket(ep, family) except -1:
    """Before binding ipc://path: a socket file that nothing listens on any more (its Receiver
    died without close()) is removed, so that a restarted service binds again. A live socket is
    left for bind() to refuse (address in use); anything else at the path is refused here,
    saying what it is, rather than as an address in use."""
    try:
        st = os.lstat(ep.path)
    except FileNotFoundError:
        return 0
    mode = st.st_mode
    if not (stat.S_ISSOCK(mode) or getattr(st, "st_reparse_tag", 0) == _REPARSE_TAG_AF_UNIX):
        what = ("a directory" if stat.S_ISDIR(mode) else "a regular file" if stat.S_ISREG(mode)
                else "a symbolic link" if stat.S_ISLNK(mode) else "a file that is not a socket")
        exc = BindError(errno.EEXIST, f"cannot bind {ep}: {ep.path} is {what}, not a Unix socket; "
                                      f"remove it or choose another path")
        exc.endpoint = str(ep)
        raise exc
    # Only a refused connection proves the socket stale; a listener that accepts (or whose
    # backlog is full: EAGAIN) is alive. Any other error is left for bind() to report.
    cdef sockaddr_storage sa
    cdef socklen_t salen
    cdef int rc
    cdef int64_t wait_ns = _PROBE_NS
    _sockaddr(family, ep.path, &sa, &salen)
    with nogil:
        rc = fastmsg_probe_listener(<sockaddr *>&sa, salen, wait_ns)
    if rc != -ECONNREFUSED:
        return 0
    try:
        os.unlink(ep.path)
    except FileNotFoundError:
        pass  # (another process cleared it first)
    return 0


# The tail a connection ring's producer published (read where the consumer knows it is final).
cdef inline uint64_t fastmsg_load_tail(_ConnRing ring) noexcept:
    return ring.r.ctl.tail


cdef bint _write_acks(object owner) noexcept:
    """A release made an acknowledgement due: writes it from this thread if the Receiver is open
    and nobody is in recv() (fm_receiver_write_acks). False: the I/O thread has to write it."""
    cdef Receiver receiver = owner() if owner is not None else None
    cdef bint done
    if receiver is None or receiver.gen != _generation:
        return False
    # The consumer lock keeps close() from freeing the engine's receiver meanwhile (without the
    # GIL too); if a recv() holds it, that thread holds the sockets or soon will.
    if not fm_glock_try(&receiver.lock):
        return False
    done = receiver.rx != NULL and fm_receiver_write_acks(receiver.rx) == 0
    gated_lock_give(&receiver.lock, receiver.gate)
    return done
