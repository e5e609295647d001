# cython: freethreading_compatible = True
"""Sender, Receiver, Message and Context: the Python face of the I/O engine (csrc/engine*.c).

Python threads copy messages into a sender's ring and read them in place from a connection's
ring; the engine's I/O thread does every socket call. Layout: docs/architecture.md."""

cimport cython
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_release_lock, PyThread_type_lock)
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy, memset

from fastmsg._core.includes.crc32c cimport use_selected_kernel
from fastmsg._core.includes.engine cimport *
from fastmsg._core.includes.ring cimport *
from fastmsg._core.includes.deadline cimport deadline_ns
from fastmsg._core.ring cimport Record, _Ring

import os
import secrets
import socket
import threading
import weakref
from collections import deque

from fastmsg.endpoint import parse as _parse_endpoint
from fastmsg.errors import Closed, FastmsgError, Full, ProtocolError, Timeout

use_selected_kernel()

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1

DEFAULT_HWM_BYTES = 4 << 20
DEFAULT_MAX_MESSAGE = 16 << 20
DEFAULT_MAX_BATCH = 256 << 10
DEFAULT_CONN_RING = 4 << 20
# A send this long after the previous one, with nothing queued, writes from the caller's thread.
cdef int64_t DIRECT_GAP_NS = 20 * 1000
# Blocking waits wake at least this often to notice a close() from another thread.
cdef int64_t WAIT_SLICE_NS = 50 * 1000 * 1000
# A message bigger than this fraction of the sender's ring goes outside it (an external record).
cdef uint64_t RING_SHARE = 4

STAT_NAMES = tuple(fm_stat_names[i].decode() for i in range(FM_STAT_COUNT))

# ---- fork: objects made before fork() refuse to work in the child ----

cdef int _generation = 0


def _after_fork_in_child():
    global _generation, _default
    _generation += 1
    _default = None  # its I/O thread did not survive the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


cdef inline int _check_generation(int gen, object obj) except -1:
    if gen != _generation:
        raise FastmsgError(f"{type(obj).__name__} was created before fork(); make a new one in this process")
    return 0


cdef uint64_t _pow2(uint64_t n):
    cdef uint64_t c = 64
    while c < n:
        c <<= 1
    return c


cdef int _sockaddr(object family, object addr, sockaddr_storage *out, socklen_t *length) except -1:
    cdef int rc
    cdef bytes host
    if family == socket.AF_UNIX:
        path = os.fsencode(addr)
        rc = fastmsg_make_sockaddr(family, NULL, 0, 0, path, out, length)
    else:
        host = addr[0].encode()
        rc = fastmsg_make_sockaddr(family, host, addr[1], addr[3] if len(addr) > 3 else 0, NULL, out, length)
    if rc != 0:
        raise ValueError(f"cannot use address {addr!r}")
    return 0


# ---- Context ----

cdef class Context:
    """One I/O thread and the endpoints it serves. A default context is made on first use."""
    cdef fm_ctx *ctx
    cdef object endpoints   # weak set of the Senders and Receivers to close with it
    cdef int gen
    cdef readonly str poller

    def __init__(self, int io_threads=1, str poller=None):
        if io_threads != 1:
            raise ValueError("io_threads must be 1 in this version")
        choice = poller or os.environ.get("FASTMSG_POLLER", "") or "auto"
        kinds = {"auto": FASTMSG_POLLER_AUTO, "epoll": FASTMSG_POLLER_EPOLL, "poll": FASTMSG_POLLER_POLL}
        if choice not in kinds:
            raise ValueError(f"poller must be one of {sorted(kinds)}, got {choice!r}")
        cdef char err[256]
        cdef fastmsg_poller_kind kind = kinds[choice]
        with nogil:
            self.ctx = fm_ctx_new(kind, err, sizeof(err))
        if self.ctx == NULL:
            raise FastmsgError(f"cannot start the I/O thread: {err.decode()}")
        self.endpoints = weakref.WeakSet()
        self.gen = _generation
        self.poller = fm_ctx_poller_name(self.ctx).decode()

    cdef fm_ctx *_use(self, object endpoint) except NULL:
        _check_generation(self.gen, self)
        if self.ctx == NULL:
            raise Closed("the Context is closed")
        self.endpoints.add(endpoint)
        return self.ctx

    def close(self):
        """Closes every Sender and Receiver of this context, then stops its I/O thread."""
        if self.ctx == NULL:
            return
        for endpoint in list(self.endpoints):
            endpoint.close(linger=0)
        cdef fm_ctx *ctx = self.ctx
        self.ctx = NULL
        if self.gen == _generation:
            with nogil:
                fm_ctx_free(ctx)

    @property
    def closed(self):
        return self.ctx == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.ctx != NULL and self.gen == _generation:
            with nogil:
                fm_ctx_free(self.ctx)


_default = None
_default_lock = threading.Lock()


def default_context():
    """The context used when none is given; made on first use, closed at interpreter exit."""
    global _default
    ctx = _default
    if ctx is None or ctx.closed:
        with _default_lock:
            if _default is None or _default.closed:
                _default = Context()
            ctx = _default
    return ctx


def _close_default_at_exit():
    if _default is not None:
        _default.close()


import atexit
atexit.register(_close_default_at_exit)


SENDER_STATS = ("sent_messages", "sent_bytes", "sent_batches", "write_calls", "connects", "disconnects",
                "protocol_errors", "rejected")
RECEIVER_STATS = ("received_messages", "received_bytes", "received_batches", "read_calls", "accepted",
                  "connections", "crc_errors", "protocol_errors", "duplicates", "lost", "ring_chains")


cdef dict _stats(uint64_t *values, tuple names, dict extra):
    cdef dict out = {STAT_NAMES[i]: values[i] for i in range(FM_STAT_COUNT) if STAT_NAMES[i] in names}
    out.update(extra)
    return out


# ---- Sender ----

# No gc clear: `held` must outlive the engine's use of the payloads, which ends in __dealloc__.
@cython.no_gc_clear
cdef class Sender:
    """Sends byte messages to one Receiver; connects, and reconnects, in the background.

    send() copies the message into a ring and returns; the I/O thread writes batches of them,
    each with one CRC32C. A large bytes object is not copied: being immutable, it is written from
    where it lies and referenced until then. When hwm_bytes are queued, send() waits (timeout=0:
    raises Full).
    """
    cdef fm_sender *s
    cdef object __weakref__
    cdef fastmsg_ring *ring
    cdef Context _context
    cdef readonly str endpoint
    cdef uint64_t max_message, small_max, small_bytes_max, hwm
    cdef object held          # (ring position after its record, payload) of each external record
    cdef uint64_t held_bytes  # payload bytes in held, bounded by hwm
    cdef int gen
    cdef object lock          # one producer at a time on the ring; close() takes it too
    cdef bint closing         # close() has begun: waiting send() calls give up
    cdef int64_t last_send_ns # when send()/send_many() last published

    def __init__(self, endpoint, *, Context context=None, hwm_bytes=DEFAULT_HWM_BYTES,
                 max_message_size=DEFAULT_MAX_MESSAGE, max_batch_bytes=DEFAULT_MAX_BATCH):
        ep = _parse_endpoint(endpoint)
        if not 1 <= max_message_size <= 0xFFFF0000:
            raise ValueError(f"max_message_size must be in 1..{0xFFFF0000}, got {max_message_size}")
        if hwm_bytes < 4096:
            raise ValueError(f"hwm_bytes must be at least 4096, got {hwm_bytes}")
        if not 64 <= max_batch_bytes <= 64 << 20:
            raise ValueError(f"max_batch_bytes must be in 64..{64 << 20}, got {max_batch_bytes}")
        family, addr = ep.resolve()[0]
        cdef sockaddr_storage sa
        cdef socklen_t salen
        _sockaddr(family, addr, &sa, &salen)
        self._context = context if context is not None else default_context()
        cdef fm_sender_config cfg
        cfg.ring_capacity = _pow2(hwm_bytes)
        cfg.hwm_bytes = cfg.ring_capacity
        cfg.max_message = max_message_size
        cfg.max_batch = max_batch_bytes
        cfg.session_id = secrets.randbits(64) | 1
        self.max_message = max_message_size
        self.hwm = cfg.ring_capacity
        self.small_max = min(cfg.ring_capacity // RING_SHARE, <uint64_t>max_message_size)
        # A bytes object this large would fill a batch alone anyway: it is lent, not copied.
        self.small_bytes_max = min(self.small_max, <uint64_t>max_batch_bytes - 1)
        self.held = deque()
        cdef fm_ctx *ctx = self._context._use(self)
        with nogil:
            self.s = fm_sender_new(ctx, <sockaddr *>&sa, salen, &cfg)
        if self.s == NULL:
            raise MemoryError("cannot allocate the sender")
        self.ring = fm_sender_ring(self.s)
        self.endpoint = str(ep)
        self.gen = _generation
        self.lock = threading.Lock()

    cdef int _check(self) except -1:
        if self.s == NULL:
            raise Closed("the Sender is closed")
        _check_generation(self.gen, self)
        return 0

    cdef int _wait_room(self, uint64_t target, int64_t deadline, object timeout) except -1:
        """Waits until the I/O thread has released the ring up to `target`."""
        cdef int rc
        cdef int64_t until
        if deadline == -2:
            raise Full(f"the send queue is full ({self.hwm} bytes); nothing was sent")
        while True:
            # In slices, so that a close() from another thread is noticed.
            until = fastmsg_monotonic_ns() + WAIT_SLICE_NS
            if deadline >= 0 and deadline < until:
                until = deadline
            with nogil:
                rc = fastmsg_ring_wait_space(self.ring, target, until)
            if rc == FASTMSG_WAIT_READY:
                if self.held_bytes:
                    self._release_written()
                return 0
            if self.closing:
                raise Closed("the Sender was closed while send() waited; the message was not sent")
            if rc == FASTMSG_WAIT_TIMEOUT and until == deadline:
                raise Timeout(f"the send queue stayed full for {timeout} s; nothing was sent")
            PyErr_CheckSignals()

    cdef int _release_written(self) except -1:
        """Drops the payloads of external records the I/O thread has written or dropped."""
        cdef uint64_t released = fm_sender_released(self.s)
        while self.held and <uint64_t>self.held[0][0] <= released:
            self.held_bytes -= len(self.held.popleft()[1])
        return 0

    cdef int _put(self, const uint8_t *src, Py_ssize_t size, int64_t deadline, object timeout, bint publish,
                  object keep) except -1:
        """Queues one message. `keep` is the message when it is an exact bytes object, which a
        large message lends rather than copies; None for any other buffer."""
        cdef uint8_t *dst
        cdef uint64_t length = <uint64_t>size
        if <uint64_t>size > self.max_message:
            raise ValueError(f"a {size}-byte message is larger than max_message_size ({self.max_message})")
        cdef uint32_t peer_max = fm_sender_peer_max_message(self.s)
        if peer_max and <uint64_t>size > peer_max:
            raise ValueError(f"a {size}-byte message is larger than the receiver's max_message_size ({peer_max})")
        if length <= (self.small_max if keep is None else self.small_bytes_max):
            dst = fastmsg_ring_reserve(self.ring, <uint32_t>size, 0)
            while dst == NULL:
                if publish is False:
                    fastmsg_ring_publish(self.ring)
                    fm_sender_kick(self.s)
                self._wait_room(fastmsg_ring_space_target(self.ring, <uint32_t>size), deadline, timeout)
                dst = fastmsg_ring_reserve(self.ring, <uint32_t>size, 0)
            if size:
                memcpy(dst, src, size)
        else:
            self._put_external(src, length, deadline, timeout, keep)
            size = 16
        if publish:
            idle = fm_sender_queued(self.s) == 0
            fastmsg_ring_commit(self.ring, <uint32_t>size)
            self._hand_over(idle)
        else:
            fastmsg_ring_stage(self.ring, <uint32_t>size)
        return 0

    cdef int _put_external(self, const uint8_t *src, uint64_t length, int64_t deadline, object timeout,
                           object keep) except -1:
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
        if keep is None:  # the caller may change its buffer once send() returns: copy it now
            keep = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
            copy = PyBytes_AS_STRING(keep)
            with nogil:
                memcpy(copy, src, length)
            payload = <const uint8_t *>copy
        dst = fastmsg_ring_reserve(self.ring, 16, FM_REC_EXTERNAL)
        while dst == NULL:
            fastmsg_ring_publish(self.ring)
            fm_sender_kick(self.s)
            self._wait_room(fastmsg_ring_space_target(self.ring, 16), deadline, timeout)
            dst = fastmsg_ring_reserve(self.ring, 16, FM_REC_EXTERNAL)
        memcpy(dst, &payload, sizeof(payload))
        memcpy(dst + 8, &length, 8)
        self.held.append((self.ring.resv + fastmsg_ring_slot(16), keep))
        self.held_bytes += length
        return 0

    cdef void _hand_over(self, bint idle) noexcept:
        """After publishing: a message that follows a pause (nothing was queued, and the last
        send was a while ago) is written from this thread, sparing the wake-up of the I/O
        thread; in a stream of sends the I/O thread batches them instead."""
        cdef int64_t now = fastmsg_monotonic_ns()
        cdef int done = 0
        cdef fm_sender *s = self.s
        if idle and now - self.last_send_ns > DIRECT_GAP_NS:
            with nogil:
                done = fm_sender_write_direct(s)
        if not done:
            fm_sender_kick(s)
        self.last_send_ns = now

    def send(self, data, *, timeout=None):
        """Queues one message (any bytes-like object, as it is at the call: later changes to the
        buffer are not sent) and returns. Waits while the queue is full: timeout=None waits as
        long as it takes, 0 raises Full at once, a number of seconds raises Timeout when it runs
        out. Nothing is queued when it raises."""
        cdef Py_buffer view
        cdef int64_t deadline = -2 if (timeout is not None and timeout == 0) else deadline_ns(timeout)
        with self.lock:
            self._check()
            if self.held_bytes:
                self._release_written()
            if PyBytes_CheckExact(data):
                self._put(<const uint8_t *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), deadline, timeout, True,
                          data)
                return
            if isinstance(data, str):
                raise TypeError("messages are bytes-like objects, not str; encode it first")
            PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
            try:
                self._put(<const uint8_t *>view.buf, view.len, deadline, timeout, True, None)
            finally:
                PyBuffer_Release(&view)

    def send_many(self, buffers, *, timeout=None):
        """Queues every message of `buffers` in order, publishing them together; waits for room
        as send() does. Returns how many were queued (all of them, unless it raises)."""
        cdef Py_buffer view
        cdef Py_ssize_t n = 0
        cdef int64_t deadline = -2 if (timeout is not None and timeout == 0) else deadline_ns(timeout)
        cdef bint idle
        with self.lock:
            self._check()
            if self.held_bytes:
                self._release_written()
            idle = fm_sender_queued(self.s) == 0
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
            finally:
                fastmsg_ring_publish(self.ring)
                self._hand_over(idle)
        return n

    def flush(self, timeout=None):
        """Waits until every message queued so far has been written to the socket. True when
        done, False if the timeout ran out first."""
        cdef int rc
        cdef int64_t until, deadline = deadline_ns(timeout)
        with self.lock:  # the sender cannot be closed under the wait
            self._check()
            while True:
                until = fastmsg_monotonic_ns() + WAIT_SLICE_NS
                if deadline >= 0 and deadline < until:
                    until = deadline
                with nogil:
                    rc = fm_sender_flush(self.s, until)
                if rc == FASTMSG_WAIT_READY:
                    self._release_written()
                    return True
                if self.closing or (rc == FASTMSG_WAIT_TIMEOUT and until == deadline):
                    return False
                PyErr_CheckSignals()

    @property
    def connected(self):
        self._check()
        return bool(fm_sender_connected(self.s))

    def stats(self):
        """Exact counters: messages and bytes written, batches, write calls, connections..."""
        cdef uint64_t values[FM_STAT_COUNT]
        cdef char err[1200]
        self._check()
        fm_sender_stats(self.s, values)
        fm_sender_last_error(self.s, err, sizeof(err))
        return _stats(values, SENDER_STATS, {"queued_bytes": fm_sender_queued(self.s), "connected": bool(fm_sender_connected(self.s)),
                               "last_error": err.decode(errors="replace")})

    def close(self, linger=1.0):
        """Waits up to `linger` seconds (None: no limit, 0: not at all) for queued messages to be
        written, then closes. Returns True if nothing queued was left unwritten. Idempotent."""
        if self.s == NULL:
            return True
        cdef bint written = True
        if self.gen == _generation:
            written = self.flush(linger) if linger != 0 else fm_sender_queued(self.s) == 0
        self.closing = True
        with self.lock:  # a send() in progress finishes or gives up first
            if self.s == NULL:
                return written
            s = self.s
            self.s = NULL
            self.ring = NULL
        if self.gen == _generation:
            _close_sender(<size_t>s)
        # The engine no longer touches the payloads of unsent external records.
        self.held.clear()
        self.held_bytes = 0
        return written

    @property
    def closed(self):
        return self.s == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.s != NULL and self.gen == _generation:
            with nogil:
                fm_sender_close(self.s)

    def __repr__(self):
        return f"<fastmsg.Sender {self.endpoint}{' closed' if self.s == NULL else ''}>"


cdef void _close_sender(size_t s) noexcept:
    with nogil:
        fm_sender_close(<fm_sender *>s)


# ---- Receiver ----

cdef class _ConnRing(_Ring):
    """One connection's receive ring: the I/O thread writes frames, the Receiver reads them."""
    cdef fm_rxbuf *buf

    cdef int _bind(self, fm_rxbuf *buf) except -1:
        fm_rxbuf_incref(buf)
        self.buf = buf
        self.mapped = True
        fastmsg_ring_init(&self.r, fm_rxbuf_ctl(buf), fm_rxbuf_data(buf), fm_rxbuf_capacity(buf))
        self._setup_release(fm_rxbuf_capacity(buf), 0)
        return 0

    cdef void _give_back(self, uint64_t start, uint64_t end) noexcept:
        _Ring._give_back(self, start, end)
        if self.buf != NULL:
            fm_rxbuf_space_released(self.buf)

    cdef void _unmap(self) noexcept:
        if self.mapped:
            self.mapped = False
            fm_rxbuf_decref(self.buf)
            self.buf = NULL

    def __dealloc__(self):
        self._unmap()


@cython.final
cdef class _BigFrame:
    """A DATA frame too large for a connection ring, in its own allocation."""
    cdef uint8_t *frame

    def __dealloc__(self):
        free(self.frame)


@cython.final
@cython.freelist(1024)
cdef class Message:
    """A received message: a read-only zero-copy buffer over the receive ring.

    bytes(msg), memoryview(msg), len(msg); release() (or the end of a with-block, or garbage
    collection) gives its memory back, once no view of it is alive.
    """
    cdef object owner          # the frame Record in the ring, or a _BigFrame
    cdef const uint8_t *data
    cdef Py_ssize_t length
    cdef Py_ssize_t exports
    cdef bint _released

    def __init__(self):
        raise TypeError("Messages come from Receiver.recv()")

    cdef void _drop(self) noexcept:
        cdef Record frame
        if self.owner is None:
            return
        if type(self.owner) is Record:
            frame = <Record>self.owner
            frame.exports -= 1
            if frame.exports == 0 and frame._released and not frame.given_back:
                frame.given_back = 1
                frame.ring._give_back(frame.start, frame.end)
        self.owner = None

    def release(self):
        """Gives the message's memory back (once no view of it remains); idempotent."""
        if self._released:
            return
        self._released = True
        if self.exports == 0:
            self._drop()

    def __dealloc__(self):
        self._drop()

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self._released:
            raise Closed("this message was released; its memory may have been reused")
        if flags & PyBUF_WRITABLE:
            raise BufferError("a Message is read-only")
        PyBuffer_FillInfo(buffer, self, <void *>self.data, self.length, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1
        if self.exports == 0 and self._released:
            self._drop()

    def __bytes__(self):
        if self._released:
            raise Closed("this message was released; its memory may have been reused")
        return PyBytes_FromStringAndSize(<const char *>self.data, self.length)

    def __len__(self):
        if self._released:
            raise Closed("this message was released; its memory may have been reused")
        return self.length

    def __eq__(self, other):
        if isinstance(other, (bytes, bytearray, memoryview, Message)):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return "<fastmsg.Message released>" if self._released else f"<fastmsg.Message {self.length} bytes>"


cdef inline uint32_t _le32(const uint8_t *p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef class Receiver:
    """Accepts any number of Senders (fan-in) on one endpoint and hands out their messages.

    Messages from one sender arrive in the order sent; recv() takes them from the connections
    in turn. Each Message is a view into the receive ring, valid until released.
    """
    cdef fm_receiver *rx
    cdef object __weakref__
    cdef Context _context
    cdef readonly str endpoint
    cdef int gen
    cdef dict rings            # fm_rxbuf address -> _ConnRing
    cdef _ConnRing cur         # the connection ring being drained
    cdef fm_rxbuf *cur_buf     # its queue reference, handed back with fm_receiver_done
    cdef object frame          # the frame the next messages come from (Record or _BigFrame)
    cdef Record frame_rec      # the frame's Record when it lies in the ring
    cdef const uint8_t *p      # next message record in the frame
    cdef uint32_t left         # messages left in the frame
    cdef object unlink_path
    cdef Py_ssize_t batch_budget  # bytes one recv_many may hand out
    cdef PyThread_type_lock lock  # one consumer at a time; close() takes it too
    cdef bint closing             # close() has begun: a waiting recv() gives up

    def __init__(self, endpoint, *, Context context=None, max_message_size=DEFAULT_MAX_MESSAGE,
                 max_batch_bytes=DEFAULT_MAX_BATCH, max_connections=1024, ring_bytes=DEFAULT_CONN_RING,
                 handshake_timeout=5.0):
        ep = _parse_endpoint(endpoint)
        if not 1 <= max_message_size <= 0xFFFF0000:
            raise ValueError(f"max_message_size must be in 1..{0xFFFF0000}, got {max_message_size}")
        if not 64 <= max_batch_bytes <= 64 << 20:
            raise ValueError(f"max_batch_bytes must be in 64..{64 << 20}, got {max_batch_bytes}")
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError("cannot allocate the receiver's lock")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        cdef fm_receiver_config cfg
        cfg.conn_ring_capacity = _pow2(max(ring_bytes, 4 * (max_batch_bytes + 64)))
        cfg.max_message = max_message_size
        cfg.max_batch = max_batch_bytes
        cfg.max_connections = max_connections
        cfg.handshake_timeout_ms = <uint32_t>(handshake_timeout * 1000)
        self.batch_budget = cfg.conn_ring_capacity // 4
        family, addr = ep.resolve(passive=True)[0]
        cdef sockaddr_storage sa
        cdef socklen_t salen
        _sockaddr(family, addr, &sa, &salen)
        self._context = context if context is not None else default_context()
        cdef fm_ctx *ctx = self._context._use(self)
        cdef char err[256]
        with nogil:
            self.rx = fm_receiver_new(ctx, <sockaddr *>&sa, salen, &cfg, err, sizeof(err))
        if self.rx == NULL:
            raise OSError(f"cannot bind {ep}: {err.decode()}")
        self.gen = _generation
        self.rings = {}
        cdef char host[64]
        cdef int port
        if ep.scheme == "ipc":
            self.endpoint = str(ep)
            self.unlink_path = ep.path
        else:
            fm_receiver_local_addr(self.rx, &sa, &salen)
            fastmsg_sockaddr_host_port(&sa, host, sizeof(host), &port)
            h = host.decode()
            self.endpoint = f"tcp://[{h}]:{port}" if ":" in h else f"tcp://{h}:{port}"

    cdef int _check(self) except -1:
        if self.rx == NULL:
            raise Closed("the Receiver is closed")
        _check_generation(self.gen, self)
        return 0

    cdef int _start_frame(self, fastmsg_ring_rec *rec) except -1:
        """Sets up the messages of a DATA frame (in the ring, or big) at rec; 0 if it has none."""
        cdef const uint8_t *body
        cdef uint32_t skip, count, i
        cdef _BigFrame big
        cdef uint8_t *ptr
        cdef Record r = self.cur._record(rec)
        if rec.flags == FM_RX_EXTERNAL:
            # Take the big frame over from the ring, then let the marker go.
            memcpy(&ptr, rec.data, sizeof(ptr))
            memset(<void *>rec.data, 0, sizeof(ptr))
            big = _BigFrame.__new__(_BigFrame)
            big.frame = ptr
            r.release()
            self.frame = big
            self.frame_rec = None
            body = ptr + 8
        else:
            self.frame = r
            self.frame_rec = r
            body = rec.data
        skip = _le32(body)          # the I/O thread left here how many records arrived twice
        count = _le32(body + 4)
        self.p = body + 16
        for i in range(skip):
            self.p += fastmsg_ring_slot(_le32(self.p))
        self.left = count - skip
        if self.left == 0:
            self._end_frame()
        return 0

    cdef void _end_frame(self) noexcept:
        if self.frame_rec is not None:
            self.frame_rec.release()
        self.frame = None
        self.frame_rec = None

    cdef Message _take(self):
        """The next message, or None if no connection has one now."""
        cdef fastmsg_ring_rec rec
        cdef int rc
        cdef Message m
        cdef uint32_t length
        cdef fm_rxbuf *buf
        while True:
            if self.left:
                length = _le32(self.p)
                m = Message.__new__(Message)
                m.owner = self.frame
                m.data = self.p + 8
                m.length = length
                if self.frame_rec is not None:
                    self.frame_rec.exports += 1
                self.p += fastmsg_ring_slot(length)
                self.left -= 1
                if self.left == 0:
                    self._end_frame()
                return m
            if self.cur is not None:
                rc = fastmsg_ring_next(&self.cur.r, &rec)
                if rc > 0:
                    if rec.flags == 3 or rec.flags == FM_RX_EXTERNAL:  # DATA
                        self._start_frame(&rec)
                    else:  # handshake and control frames: the I/O thread has acted on them
                        self.cur._record(&rec).release()
                    continue
                if rc < 0:
                    raise ProtocolError("a connection ring broke fastmsg's layout (memory corruption?)")
                buf = self.cur_buf
                closed = fm_rxbuf_closed(buf)
                self.cur_buf = NULL
                fm_receiver_done(self.rx, buf, self.cur.r.rpos)
                if closed and self.cur.r.rpos == fastmsg_load_tail(self.cur):
                    self.rings.pop(<size_t>buf, None)
                self.cur = None
            buf = fm_receiver_next_ready(self.rx)
            if buf == NULL:
                return None
            ring = self.rings.get(<size_t>buf)
            if ring is None:
                ring = _ConnRing.__new__(_ConnRing)
                (<_ConnRing>ring)._bind(buf)
                self.rings[<size_t>buf] = ring
            self.cur = ring
            self.cur_buf = buf

    cdef int _wait(self, int64_t deadline, object timeout) except -1:
        cdef int rc
        cdef fm_receiver *rx = self.rx
        while True:
            # This thread reads the sockets itself while it waits (fm_receiver_wait_direct). A
            # signal or a close() from another thread interrupts the wait.
            with nogil:
                rc = fm_receiver_wait_direct(rx, deadline)
            if rc == FASTMSG_WAIT_READY:
                return 0
            if self.closing:
                raise Closed("the Receiver was closed while recv() waited")
            if rc == FASTMSG_WAIT_TIMEOUT:
                raise Timeout(f"no message arrived within {timeout} s")
            PyErr_CheckSignals()

    cdef int _enter(self) except -1:
        """Takes the consumer lock (waiting without the GIL if another thread holds it)."""
        self._check()
        if not PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            with nogil:
                PyThread_acquire_lock(self.lock, WAIT_LOCK)
        if self.rx == NULL:
            PyThread_release_lock(self.lock)
            raise Closed("the Receiver is closed")
        return 0

    cdef Message _recv(self, object timeout):
        cdef Message m = self._take()
        if m is not None:
            return m
        cdef int64_t deadline = deadline_ns(timeout)
        while True:
            if timeout is not None and timeout == 0:
                raise Timeout("no message is waiting")
            self._wait(deadline, timeout)
            m = self._take()
            if m is not None:
                return m

    def recv(self, timeout=None):
        """The next message. Waits for one: timeout=None as long as it takes, otherwise raises
        Timeout (also a TimeoutError) after that many seconds; 0 raises at once if none is here."""
        self._enter()
        try:
            return self._recv(timeout)
        finally:
            PyThread_release_lock(self.lock)

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
            out = [m]
            budget = self.batch_budget - m.length
            while len(out) < max_messages and budget > 0:
                m = self._take()
                if m is None:
                    break
                out.append(m)
                budget -= m.length + 8
            return out
        finally:
            PyThread_release_lock(self.lock)

    def __iter__(self):
        while True:
            yield self.recv()

    def stats(self):
        cdef uint64_t values[FM_STAT_COUNT]
        self._check()
        fm_receiver_stats(self.rx, values)
        return _stats(values, RECEIVER_STATS, {})

    def close(self, linger=None):
        """Stops accepting and closes every connection. Messages already received stay valid
        until released. Idempotent. (`linger` is accepted for symmetry with Sender.close.)"""
        if self.rx == NULL:
            return
        self.closing = True
        cdef fm_receiver *rx = self.rx
        if self.gen == _generation:  # (after fork() the lock may be held by a thread now gone)
            fm_receiver_interrupt(rx)
            with nogil:  # a recv() in progress gives up first
                PyThread_acquire_lock(self.lock, WAIT_LOCK)
            rx = self.rx
            self.rx = NULL
            PyThread_release_lock(self.lock)
        self.rx = NULL
        if rx == NULL:
            return
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
        self.rings = {}

    @property
    def closed(self):
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
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    def __repr__(self):
        return f"<fastmsg.Receiver {self.endpoint}{' closed' if self.rx == NULL else ''}>"


cdef inline uint64_t fastmsg_load_tail(_ConnRing ring) noexcept:
    return ring.r.ctl.tail
