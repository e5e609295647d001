# Message: a received message as a read-only zero-copy buffer (`obj = self`), backed by the frame
# it lies in (a Record of the connection ring, or a _BigFrame), which it keeps until released.

@cython.final
cdef class _BigFrame:
    """A DATA frame too large for a connection ring, in its own allocation."""
    cdef uint8_t *frame        # the whole frame, header first; freed with the last Message
    cdef object marker         # the Record of its marker in the ring: released with the frame, as
                               # the receiver acknowledges a frame once its ring space came back

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
    cdef const uint8_t *data   # the payload, inside the frame
    cdef Py_ssize_t length     # payload bytes
    cdef Py_ssize_t exports    # buffer views alive
    cdef bint _released        # release() called: no new views, the frame let go at exports == 0

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
