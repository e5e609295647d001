# Context: one I/O thread and the endpoints it serves.

cdef class Context:
    """Context(io_threads=1, poller=None)
--

    One I/O thread and the endpoints it serves. A default context is made on first use
    (default_context()). `poller`: "epoll", "kqueue", "poll" or "auto" (None: the FASTMSG_POLLER
    environment variable, else "auto"), and "wsapoll" on Windows, where "poll" is WSAPoll too; the
    `poller` attribute names the one in use."""
    cdef fm_ctx *ctx
    cdef object endpoints   # weak set of the Senders and Receivers to close with it
    cdef int gen            # the fork generation it was made in
    cdef readonly str poller

    def __init__(self, int io_threads=1, str poller=None):
        if io_threads != 1:
            raise ValueError("io_threads must be 1 in this version")
        choice = poller or os.environ.get("FASTMSG_POLLER", "") or "auto"
        kinds = {"auto": FASTMSG_POLLER_AUTO, "epoll": FASTMSG_POLLER_EPOLL, "kqueue": FASTMSG_POLLER_KQUEUE,
                 "poll": FASTMSG_POLLER_POLL}
        if sys.platform == "win32":
            kinds["wsapoll"] = FASTMSG_POLLER_POLL  # (poll() of Winsock, which "poll" also names there)
        if choice not in kinds:
            raise ValueError(f"poller must be one of {sorted(kinds)}, got {choice!r}")
        cdef fm_error err
        cdef fastmsg_poller_kind kind = kinds[choice]
        with nogil:
            self.ctx = fm_ctx_new(kind, &err)
        if self.ctx == NULL:
            raise_engine_error(err.errnum, "cannot start the I/O thread", err.text, None)
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
            if isinstance(endpoint, Sender):
                endpoint.close(linger=0)
            else:
                endpoint.close()
        cdef fm_ctx *ctx = self.ctx
        self.ctx = NULL
        if self.gen == _generation:
            with nogil:
                fm_ctx_free(ctx)

    @property
    def closed(self):
        """True after close()."""
        return self.ctx == NULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.ctx != NULL and self.gen == _generation:
            with nogil:
                fm_ctx_free(self.ctx)
