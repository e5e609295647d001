# Message: a received message as a read-only zero-copy buffer (`obj = self`), backed by the frame
# it lies in (a Record of the connection ring, or a _BigFrame), which it keeps until released: the
# frame gives its space back when its last Message lets go of it, so a Message needs no
# finalizer of its own (Cython's costs a small message a tenth of its receive). A
# request's Message can be replied to; a reply returned by Sender.request() is a Message too, over
# a heap block of its own (a _BigFrame without marker).

@cython.final
@cython.freelist(64)  # (one a reply: a request's round trip)
@cython.no_gc  # (its marker, a Record, refers only to its ring: no cycle passes through it)
cdef class _BigFrame:
    """A DATA frame too large for a connection ring, in its own allocation (or a reply's payload)."""
    cdef uint8_t *frame        # the whole frame, header first (a reply: its payload); freed with the last Message
    cdef object marker         # the Record of its marker in the ring: released with the frame, as
                               # the receiver acknowledges a frame once its ring space came back

    def __dealloc__(self):
        free(self.frame)


@cython.final
@cython.no_gc  # (it refers to a weak reference only)
cdef class _BatchRequest:
    """A request of a recv_many() batch whose replies are held for one write (Receiver._hold_batch):
    tells the Receiver once that it was answered or let go (reply, release, or the Message freed)."""
    cdef object receiver       # a weak reference to the Receiver
    cdef uint64_t batch        # the batch's number; 0 once settled

    cdef bint settle(self, bint send) noexcept:
        """True if the replies held are to go now; then, with `send`, they go. Once only."""
        cdef uint64_t batch = self.batch
        if not batch:
            return True
        self.batch = 0
        rx = self.receiver()
        return rx is None or (<Receiver>rx)._settled(batch, send)  # (a Receiver gone sends nothing)

    def __dealloc__(self):
        self.settle(True)


@cython.final
@cython.freelist(1024)
@cython.no_gc  # (no cycle can pass through a Message: it refers only to its frame, a str and a
               # weak reference; the collector's tracking was a tenth of a small message's cost)
cdef class Message:
    """Message()
--

    A received message: a read-only zero-copy buffer over the receive ring. (Not made by
    calling the class: Receiver.recv() and Sender.request() return them.)

    bytes(msg), memoryview(msg), len(msg); like bytes, msg[i] is an int and msg[a:b] a bytes copy
    of that part, msg == b"..." compares the bytes, msg.decode() makes a str straight from the
    ring. release() (or the end of a with-block, or garbage collection) gives its memory back, once
    no view of it is alive; after it, these raise Closed. A message sent with
    Sender.request() is a request: its bytes are the application's (the request id is not among
    them), and reply() answers it. Sender.request() returns its reply as a Message as well.
    """
    cdef object owner          # the frame: a Record of the ring, or a _BigFrame. The frame gives its
                               # space back when the last Message over it lets it go (its refcount)
    cdef const uint8_t *data   # the payload, inside the frame
    cdef Py_ssize_t length     # payload bytes
    cdef Py_ssize_t exports    # buffer views alive
    cdef bint _released        # release() called: no new views, the frame let go at exports == 0
    cdef object replier        # a request's: a weak reference to its Receiver, which reply() goes
                               # through (a strong one could close a cycle), or its _BatchRequest;
                               # None for a plain message
    cdef uint64_t session_id   # a request's: the session of the Sender that made it
    cdef uint64_t request_id   # a request's: its id, chosen by that Sender
    cdef object _peer          # the sender's verified certificate name (TLS), or None

    def __init__(self):
        raise TypeError("Messages come from Receiver.recv()")

    def release(self):
        """Gives the message's memory back (once no view of it remains); idempotent."""
        self._release()

    cdef int _release(self) except -1:
        # release() and __exit__ share this: __exit__ calling release() went through an attribute
        # lookup and a bound method, and its *exc built a tuple, some 850 instructions of a 64 B
        # round trip on each side (benchmarks/instructions.py --requests)
        if self._released:
            return 0
        self._released = True
        if type(self.replier) is _BatchRequest:
            (<_BatchRequest>self.replier).settle(True)
        if self.exports == 0:
            self.owner = None
        return 0

    def reply(self, data):
        """Answers this request with `data` (any bytes-like object, copied): it goes back to the
        Sender whose request() made it, over the connection the request came on (or that
        sender's next one), and returns at once. Replies are checked by CRC and acknowledged like
        messages; one to a Sender that has gone is dropped and counted (the Receiver's
        stats()["undeliverable_replies"]), not an error. Raises FastmsgError if this message is
        not a request, Full when reply_hwm_bytes of replies wait for acknowledgement already,
        Closed once the Receiver is closed (a request does not keep its Receiver alive). It may be
        called after release(), and from any thread; a second reply to one request reaches its
        Sender as a late reply."""
        cdef bint write_now = True
        cdef object ref = self.replier
        if ref is None:
            raise FastmsgError("this message is not a request (only messages sent with Sender.request() "
                               "can be replied to)")
        if type(ref) is _BatchRequest:
            # Replies to the requests of one recv_many() go out together, once the last of them
            # is answered or released, or at the Receiver's next recv (one write for the batch).
            write_now = (<_BatchRequest>ref).settle(False)
            ref = (<_BatchRequest>ref).receiver
        rx = ref()
        if rx is None:
            raise Closed("the Receiver this request came from is closed")
        (<Receiver>rx)._reply(self.session_id, self.request_id, data, write_now)

    @property
    def peer(self):
        """The sender's identity as its TLS certificate proved it (its first DNS subjectAltName,
        else its subject CN), or None: no TLS, or no client certificate."""
        return self._peer

    @property
    def is_request(self):
        """True if this message was sent with Sender.request() and can be replied to."""
        return self.replier is not None

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
            self.owner = None

    cdef int _check_live(self) except -1:
        if self._released:
            raise Closed("this message was released; its memory may have been reused")
        return 0

    def __bytes__(self):
        self._check_live()
        return PyBytes_FromStringAndSize(<const char *>self.data, self.length)

    def tobytes(self):
        """bytes(msg): a copy of the message (as memoryview.tobytes)."""
        self._check_live()
        return PyBytes_FromStringAndSize(<const char *>self.data, self.length)

    def decode(self, encoding="utf-8", errors="strict"):
        """The message as a str (as bytes.decode), decoded from the ring without a bytes copy."""
        self._check_live()
        return PyUnicode_Decode(<const char *>self.data, self.length, encoding.encode(), errors.encode())

    def __len__(self):
        self._check_live()
        return self.length

    def __getitem__(self, index):
        """msg[i]: the byte at i, an int; msg[a:b:c]: those bytes, as a bytes object (a copy)."""
        cdef Py_ssize_t i, start, stop, step, n
        self._check_live()
        if isinstance(index, slice):
            start, stop, step = index.indices(self.length)
            if step == 1:
                return PyBytes_FromStringAndSize(<const char *>self.data + start, max(0, stop - start))
            return PyBytes_FromStringAndSize(<const char *>self.data, self.length)[index]
        i = index  # (any integer-like object; TypeError otherwise, OverflowError if huge)
        n = i + self.length if i < 0 else i
        if not 0 <= n < self.length:
            raise IndexError(f"index {i} out of range for a {self.length}-byte message")
        return self.data[n]

    def __contains__(self, item):
        # Defined so that `b"ab" in msg` searches the bytes, as for bytes (iteration would
        # compare each int byte with b"ab" and answer False).
        return item in self.tobytes()

    def __eq__(self, other):
        cdef Py_buffer view
        if not isinstance(other, (bytes, bytearray, memoryview, Message)):
            return NotImplemented
        self._check_live()
        try:
            PyObject_GetBuffer(other, &view, PyBUF_C_CONTIGUOUS)  # (compared in place: no copies)
        except BufferError:  # (a strided memoryview)
            return self.tobytes() == bytes(other)
        try:
            return view.len == self.length and memcmp(view.buf, self.data, self.length) == 0
        finally:
            PyBuffer_Release(&view)

    __hash__ = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):  # (named: *exc built a tuple a call)
        self._release()

    def __repr__(self):
        return "<fastmsg.Message released>" if self._released else f"<fastmsg.Message {self.length} bytes>"
