# cython: freethreading_compatible = True
"""Ring buffers from Python: RingBuffer (in-process), SharedRing (shared memory), Record.

The C core (csrc/ring.h) is a single-producer single-consumer ring: one thread (or process)
writes, one reads. Records are handed out in order and their space is given back in order; a
record released early is marked and given back with the first one before it.
"""

cimport cython
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawCalloc, PyMem_RawFree
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, strerror

from fastmsg._core.includes.ring cimport *
from fastmsg._core.includes.deadline cimport deadline_ns
from fastmsg._core.includes.shm cimport *
from fastmsg._core.waiting cimport WAIT_CLOSED, WAIT_TIMED_OUT, ring_wait_data, ring_wait_space, wait_until

from operator import index as _index

from fastmsg.errors import Closed, Full, ProtocolError, Timeout

# A RingBuffer's allocation: the control block, then the records.
cdef size_t CTL_BYTES = sizeof(fastmsg_ring_ctl)


def _capacity(capacity):
    """The capacity actually used: at least 64, at most 2**32, rounded up to a power of two."""
    n = _index(capacity)
    if n < FASTMSG_RING_MIN_CAPACITY or n > FASTMSG_RING_MAX_CAPACITY:
        raise ValueError(f"ring capacity must be in {FASTMSG_RING_MIN_CAPACITY}..{FASTMSG_RING_MAX_CAPACITY} "
                         f"bytes, got {n}")
    return 1 << (n - 1).bit_length()


cdef int _get_view(object data, Py_buffer *view) except -1:
    if isinstance(data, str):
        raise TypeError("ring records are bytes-like objects, not str")
    PyObject_GetBuffer(data, view, PyBUF_C_CONTIGUOUS)  # a record is one run of bytes


cdef class _Ring:
    """What RingBuffer and SharedRing share: writing, reading and the release bookkeeping."""

    def __cinit__(self, *args, **kwargs):
        self._closed = True  # until a subclass has set the ring up: a bare _Ring is unusable

    def __dealloc__(self):
        PyMem_RawFree(self.early)

    cdef int _setup_release(self, uint64_t capacity, uint64_t pos) except -1:
        self.early = <uint8_t *>PyMem_RawCalloc(1, capacity // 64)
        if self.early == NULL:
            raise MemoryError()
        self.release_pos = pos
        self.max_payload = fastmsg_ring_max_payload(capacity)
        self._closed = False
        return 0

    cdef int _check_open(self) except -1:
        if self._closed:
            raise Closed(f"{type(self).__name__} is closed")
        return 0

    cdef void _unmap(self) noexcept:
        pass

    cdef int _wait_data(self, object timeout) except -1:
        cdef int end = wait_until(ring_wait_data, &self.r, 0, deadline_ns(timeout), 0, &self._closed)
        if end == WAIT_TIMED_OUT:
            raise Timeout(f"no record arrived within {timeout} s")
        if end == WAIT_CLOSED:  # close() from another thread
            self._check_open()
        return 0

    cdef int _wait_space(self, Py_ssize_t size, object timeout) except -1:
        cdef int64_t deadline = deadline_ns(timeout)
        cdef uint64_t target = fastmsg_ring_space_target(&self.r, <uint32_t>size)
        cdef int end = wait_until(ring_wait_space, &self.r, target, deadline, 0, &self._closed)
        if end == WAIT_TIMED_OUT:
            raise Timeout(f"no room for a {size}-byte record within {timeout} s")
        if end == WAIT_CLOSED:  # close() from another thread
            self._check_open()
        return 0

    cdef inline int _check_size(self, Py_ssize_t size) except -1:
        if <uint64_t>size > self.max_payload:
            raise ValueError(f"a {size}-byte record is larger than this ring can ever hold: at most "
                             f"{self.max_payload} bytes in a ring of capacity {self.r.capacity} "
                             f"(a record takes at most half the ring, 8-byte header included)")
        return 0

    # ---- producer ----

    cdef int _put(self, object data, object timeout, bint publish) except -1:
        """Copies `data` in as one record: 1 when written, 0 when there is no room and
        timeout == 0 (otherwise waits as write() does). Published now, or only staged."""
        cdef Py_buffer view
        cdef const char *src
        cdef Py_ssize_t size
        cdef uint8_t *dst
        cdef bint is_bytes = PyBytes_CheckExact(data)
        if is_bytes:
            src = PyBytes_AS_STRING(data)
            size = PyBytes_GET_SIZE(data)
        else:
            _get_view(data, &view)
            src = <const char *>view.buf
            size = view.len
        try:
            self._check_size(size)
            dst = fastmsg_ring_reserve(&self.r, <uint32_t>size, 0)
            while dst == NULL:
                if timeout is not None and timeout == 0:
                    return 0
                self._wait_space(size, timeout)
                dst = fastmsg_ring_reserve(&self.r, <uint32_t>size, 0)
            memcpy(dst, src, size)
            if publish:
                fastmsg_ring_commit(&self.r, <uint32_t>size)
            else:
                fastmsg_ring_stage(&self.r, <uint32_t>size)
            return 1
        finally:
            if not is_bytes:
                PyBuffer_Release(&view)

    def write(self, data, timeout=0):
        """Copies `data` into the ring as one record. Returns False if there is no room (with the
        default timeout=0); with a timeout (None: no limit) waits for room or raises Timeout."""
        self._check_open()
        return self._put(data, timeout, True) == 1

    def write_many(self, buffers):
        """Copies as many of `buffers` as fit, in order, and publishes them at once. Returns how
        many were written. A buffer too large for the ring raises ValueError (those before it
        are written)."""
        cdef list items = buffers if type(buffers) is list else list(buffers)
        cdef Py_ssize_t n = 0
        self._check_open()
        try:
            for data in items:
                if not self._put(data, 0, False):
                    break
                n += 1
        finally:
            if n:
                fastmsg_ring_publish(&self.r)
        return n

    def reserve(self, Py_ssize_t size, timeout=0):
        """A context manager yielding a writable memoryview of `size` bytes inside the ring,
        committed as a record on a normal exit and dropped on an exception. Raises Full if there is
        no room (timeout=0), or waits as write() does."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self._check_open()
        self._check_size(size)
        return _Reservation(self, size, timeout)

    # ---- consumer ----

    cdef Record _record(self, fastmsg_ring_rec *rec):
        cdef Record r = Record.__new__(Record)
        r.ring = self
        r.data = rec.data
        r.length = rec.len
        r._flags = rec.flags
        r.start = rec.start
        r.end = rec.end
        with cython.critical_section(self):  # Records may be released from other threads
            self.live += 1
        return r

    cdef void _skip(self, fastmsg_ring_rec *rec) noexcept:
        """Gives the record at rec back as _record(rec).release() would, without making a Record
        (one that nobody is to see: a control frame the I/O thread has acted on)."""
        with cython.critical_section(self):
            self.live += 1
        self._give_back(rec.start, rec.end)

    def read(self, timeout=0):
        """The next record, or None if there is none (timeout=0); with a timeout (None: no limit)
        waits for one or raises Timeout."""
        cdef fastmsg_ring_rec rec
        cdef int rc
        self._check_open()
        rc = fastmsg_ring_next(&self.r, &rec)
        while rc == 0:
            if timeout is not None and timeout == 0:
                return None
            self._wait_data(timeout)
            rc = fastmsg_ring_next(&self.r, &rec)
        if rc < 0:
            raise ProtocolError("the ring's records break fastmsg's layout (corrupted memory?)")
        return self._record(&rec)

    def read_many(self, Py_ssize_t n, timeout=0):
        """Up to `n` records, in order; an empty list if there are none (timeout=0). With a timeout
        waits for the first one as read() does."""
        cdef fastmsg_ring_rec rec
        cdef list out = []
        cdef int rc
        self._check_open()
        if n <= 0:
            return out
        rc = fastmsg_ring_next(&self.r, &rec)
        while rc == 0:
            if timeout is not None and timeout == 0:
                return out
            self._wait_data(timeout)
            rc = fastmsg_ring_next(&self.r, &rec)
        while rc > 0:
            out.append(self._record(&rec))
            if len(out) == n:
                break
            rc = fastmsg_ring_next(&self.r, &rec)
        if rc < 0:
            raise ProtocolError("the ring's records break fastmsg's layout (corrupted memory?)")
        return out

    cdef void _give_back(self, uint64_t start, uint64_t end) noexcept:
        # A Record may be released on any thread; without the GIL (free-threaded builds) this
        # bookkeeping must still run one thread at a time.
        with cython.critical_section(self):
            self._give_back_locked(start, end)

    cdef void _give_back_locked(self, uint64_t start, uint64_t end) noexcept:
        # Space goes back in ring order. A span released before those ahead of it is marked in
        # `early`; when the span at release_pos goes, release_pos walks over the marked spans
        # after it (records hand out in order, so every span in the window is one of ours).
        cdef uint64_t bit
        self.live -= 1
        if self._closed:
            if self.live == 0:
                self._unmap()
            return
        if start != self.release_pos:
            bit = (start >> 3) & (self.r.capacity // 8 - 1)
            self.early[bit >> 3] |= <uint8_t>(1 << (bit & 7))
            self.n_early += 1
            return
        self.release_pos = end
        while self.n_early:
            bit = (self.release_pos >> 3) & (self.r.capacity // 8 - 1)
            if not (self.early[bit >> 3] & (1 << (bit & 7))):
                break
            self.early[bit >> 3] &= <uint8_t>~(1 << (bit & 7))
            self.n_early -= 1
            self.release_pos = fastmsg_ring_span_end(&self.r, self.release_pos)
        fastmsg_ring_release(&self.r, self.release_pos)

    def _send_readable(self, Py_ssize_t max_bytes):
        """What the I/O engine does with fastmsg_ring_readable, for tests: takes the longest run of
        whole records from the cursor (at most max_bytes), returns (bytes of the run, number of
        records) and releases it. Only when no Record of this ring is alive."""
        cdef const uint8_t *p
        cdef size_t nrec, n
        self._check_open()
        if self.live:
            raise RuntimeError("records of this ring are still alive")
        n = fastmsg_ring_readable(&self.r, <size_t>max_bytes, &p, &nrec)
        out = PyBytes_FromStringAndSize(<const char *>p, n)
        self.r.rpos += n
        self.r.rcount += nrec
        self.release_pos = self.r.rpos
        fastmsg_ring_release(&self.r, self.release_pos)
        return out, nrec

    # ---- state ----

    @property
    def capacity(self):
        """Bytes of records the ring holds (record headers and padding included)."""
        return self.r.capacity

    @property
    def max_record(self):
        """The largest payload a write can ever take: capacity / 2 - 8."""
        return self.max_payload

    @property
    def free(self):
        """Bytes the producer could write now (each record costs 8 + its length rounded up to 8)."""
        self._check_open()
        return fastmsg_ring_free(&self.r)

    @property
    def closed(self):
        """True after close()."""
        return self._closed

    def __len__(self):
        """Records published and not yet read."""
        self._check_open()
        return fastmsg_ring_pending_records(&self.r)

    def close(self):
        """Closes this handle; idempotent. Memory stays valid until the last Record is gone."""
        if self._closed:
            return
        self._closed = True
        if self.live == 0:
            self._unmap()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@cython.final
cdef class _Reservation:
    """The context manager of _Ring.reserve(): owns the writable view of the reserved bytes."""
    cdef _Ring ring
    cdef Py_ssize_t size
    cdef object timeout
    cdef uint8_t *ptr            # the reserved payload, NULL until entered
    cdef Py_ssize_t exports      # views alive
    cdef bint done               # committed or aborted: no new views
    cdef object view             # the memoryview handed to the with-block

    def __cinit__(self, _Ring ring, Py_ssize_t size, timeout):
        self.ring = ring
        self.size = size
        self.timeout = timeout

    def __enter__(self):
        cdef _Ring ring = self.ring
        if self.ptr != NULL or self.done:
            raise RuntimeError("a reservation can be entered once")
        ring._check_open()
        if ring.r.resv_open:
            raise RuntimeError("another reservation of this ring is open")
        self.ptr = fastmsg_ring_reserve(&ring.r, <uint32_t>self.size, 0)
        while self.ptr == NULL:
            if self.timeout is not None and self.timeout == 0:
                raise Full(f"no room for a {self.size}-byte record")
            ring._wait_space(self.size, self.timeout)
            self.ptr = fastmsg_ring_reserve(&ring.r, <uint32_t>self.size, 0)
        self.view = memoryview(self)
        return self.view

    def __exit__(self, exc_type, exc, tb):
        cdef _Ring ring = self.ring
        self.done = True
        try:
            self.view.release()
        except BufferError:  # something still holds a buffer of the view: caught just below
            pass
        self.view = None
        if ring._closed:
            return False
        if exc_type is not None:
            fastmsg_ring_abort(&ring.r)
            return False
        if self.exports:
            fastmsg_ring_abort(&ring.r)
            raise BufferError("a view of the reservation is still alive at the end of the with-block; "
                              "the record was dropped")
        fastmsg_ring_commit(&ring.r, <uint32_t>self.size)
        return False

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.done or self.ptr == NULL:
            raise Closed("the reservation is over")
        PyBuffer_FillInfo(buffer, self, self.ptr, self.size, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1


cdef inline int _check_record(Record rec) except -1:
    if rec._released:
        raise Closed("this record was released; its bytes may have been reused")
    return 0


cdef inline void _record_give_back(Record rec) noexcept:
    if not rec.given_back:
        rec.given_back = True
        rec.ring._give_back(rec.start, rec.end)


@cython.final
@cython.freelist(1024)
@cython.no_gc
cdef class Record:
    """Record()
--

    One record read from a ring: a read-only zero-copy buffer over the ring's memory. (Not made
    by calling the class: RingBuffer.read() and SharedRing.read() return them.)

    The slot is given back to the producer when the record is released (release(), the end of a
    with-block, or garbage collection), but never while a buffer view of it is alive: release()
    then only forbids new views, and the last view to go gives the slot back.
    """

    def __init__(self):
        raise TypeError("Records come from RingBuffer.read() / SharedRing.read()")

    def release(self):
        """Gives the record's space back (once no view of it remains); idempotent."""
        if self._released:
            return
        self._released = True
        if self.exports == 0:
            _record_give_back(self)

    def __dealloc__(self):
        if self.ring is not None:
            _record_give_back(self)

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        _check_record(self)
        if flags & PyBUF_WRITABLE:
            raise BufferError("a Record is read-only")
        PyBuffer_FillInfo(buffer, self, <void *>self.data, self.length, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1
        if self.exports == 0 and self._released:
            _record_give_back(self)

    def __bytes__(self):
        _check_record(self)
        return PyBytes_FromStringAndSize(<const char *>self.data, self.length)

    def __len__(self):
        _check_record(self)
        return self.length

    @property
    def flags(self):
        """The flags word of the record header (0 for records written from Python)."""
        _check_record(self)
        return self._flags

    @property
    def released(self):
        """True after release()."""
        return self._released

    def __enter__(self):
        _check_record(self)
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        if self._released:
            return "<fastmsg.Record released>"
        return f"<fastmsg.Record {self.length} bytes>"


cdef class RingBuffer(_Ring):
    """RingBuffer(capacity)
--

    An in-process single-producer single-consumer ring of byte records.

    `capacity` is rounded up to a power of two (64 bytes .. 4 GiB). Each record takes 8 header
    bytes plus its length rounded up to 8; a record may be at most capacity / 2 - 8 bytes.
    One thread writes and one thread reads (they may be the same thread).
    """

    def __cinit__(self, capacity):
        cdef uint64_t cap = _capacity(capacity)
        self.mem = PyMem_RawCalloc(1, CTL_BYTES + cap)
        if self.mem == NULL:
            raise MemoryError(f"cannot allocate a ring of {cap} bytes")
        self.mapped = True
        fastmsg_ring_init(&self.r, <fastmsg_ring_ctl *>self.mem, <uint8_t *>self.mem + CTL_BYTES, cap)
        self._setup_release(cap, 0)

    cdef void _unmap(self) noexcept:
        if self.mapped:
            self.mapped = False
            PyMem_RawFree(self.mem)
            self.mem = NULL

    def __dealloc__(self):
        self._unmap()

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self)} records"
        return f"<fastmsg.RingBuffer capacity={self.r.capacity} {state}>"


cdef str _shm_name(name):
    if not isinstance(name, str):
        raise TypeError(f"a shared ring's name is a str, not {type(name).__name__}")
    cdef str n = name if name.startswith("/") else "/" + name
    if len(n) < 2 or "/" in n[1:] or "\0" in n or len(n) > 250:
        raise ValueError(f"a shared ring's name is 1..249 characters without '/' or NUL, got {name!r}")
    return n


cdef int _check_shm(int rc, str name) except -1:
    """The one place where shm.c's error codes become Python exceptions."""
    if rc == FASTMSG_SHM_OK:
        return 0
    if rc > 0:
        raise OSError(rc, strerror(rc).decode(), name)
    if rc == FASTMSG_SHM_E_UNSUPPORTED:
        raise NotImplementedError("SharedRing needs POSIX shared memory (Linux, macOS, BSD)")
    if rc == FASTMSG_SHM_E_TRUNCATED:
        raise ProtocolError(f"shared segment {name!r} is truncated: smaller than its header says")
    if rc == FASTMSG_SHM_E_MAGIC:
        raise ProtocolError(f"shared segment {name!r} is not a fastmsg ring (or is still being created)")
    if rc == FASTMSG_SHM_E_VERSION:
        raise ProtocolError(f"shared segment {name!r} was written by an incompatible fastmsg version")
    raise ProtocolError(f"shared segment {name!r} has a ring layout this build cannot use")


cdef class SharedRing(_Ring):
    """SharedRing()
--

    A single-producer single-consumer ring in a named POSIX shared-memory segment.

    One process creates it (SharedRing.create), another attaches (SharedRing.attach); one of them
    writes and the other reads. The name lives until unlink() (by either side); each mapping lives
    until its close() (deferred while Records from it are alive).
    """

    def __init__(self):
        raise TypeError("use SharedRing.create(name, capacity) or SharedRing.attach(name)")

    @staticmethod
    def create(name, capacity):
        """Creates the segment `name` (FileExistsError if it exists) with a fresh ring."""
        cdef str n = _shm_name(name)
        cdef uint64_t cap = _capacity(capacity)
        cdef SharedRing self = SharedRing.__new__(SharedRing)
        _check_shm(fastmsg_shm_create(n.encode(), cap, &self.shm), n)
        self._setup(n)
        return self

    @staticmethod
    def attach(name):
        """Maps the existing segment `name` after validating its header (ProtocolError if it is
        foreign, truncated or of another version; FileNotFoundError if it does not exist)."""
        cdef str n = _shm_name(name)
        cdef SharedRing self = SharedRing.__new__(SharedRing)
        _check_shm(fastmsg_shm_attach(n.encode(), &self.shm), n)
        self._setup(n)
        return self

    cdef _setup(self, str name):
        self._name = name
        self.mapped = True
        fastmsg_ring_init(&self.r, self.shm.ctl, self.shm.data, self.shm.capacity)
        self._setup_release(self.shm.capacity, self.r.rpos)

    @property
    def name(self):
        """The segment's name, with its leading "/"."""
        return self._name

    def unlink(self):
        """Removes the segment's name (others can no longer attach); mappings stay valid."""
        _check_shm(fastmsg_shm_unlink(self._name.encode()), self._name)

    cdef void _unmap(self) noexcept:
        if self.mapped:
            self.mapped = False
            fastmsg_shm_unmap(&self.shm)

    def __dealloc__(self):
        self._unmap()

    def __repr__(self):
        return f"<fastmsg.SharedRing {self._name!r} capacity={self.r.capacity}{' closed' if self._closed else ''}>"
