# The Balancer's per-message path (fastmsg/balancer/): pick a member, queue into its Sender
# without waiting, in one call from Python. Everything else (no member up, a full member, messages
# taken back waiting, broadcast) is the Balancer's own send, in Python.


cdef class _Spread:
    """Holds the Router's pick and the Senders by member index. send() has the Balancer look at
    its members each time `countdown` fast sends have passed."""
    cdef object pick          # the Router's pick()
    cdef object set_load      # and its set_load(): the member of a run that ends tells its load
    cdef list senders         # Sender of each member index (the Balancer replaces the list whole)
    cdef list pendings        # each member's deque of (number, key, token), when keys are kept
    cdef object slow          # slow(data, key, timeout): the Balancer's full send
    cdef object look          # look(): the Balancer's look at its members (resets countdown);
                              # False while messages taken back wait (the slow path keeps order)
    cdef public Py_ssize_t countdown  # fast sends left before the Balancer's next look
    cdef public bint fast     # False: every message takes the slow path (broadcast)
    cdef public bint keyed    # "hash": a key per message, a pick per message
    cdef public bint keep_keys  # each message's key is kept until it is settled (for a failover)
    cdef public Py_ssize_t run  # messages per pick: a run to one member keeps its batches large
    cdef Py_ssize_t run_left  # messages the current run may still take
    cdef Py_ssize_t current   # the member of the current run (-1: none)
    cdef int64_t run_start_ns # when the current run began

    def __init__(self, pick, set_load, slow, look):
        self.pick = pick
        self.set_load = set_load
        self.slow = slow
        self.look = look
        self.senders = []
        self.pendings = []
        self.fast = False
        self.countdown = 0
        self.run = 1
        self.run_left = 0
        self.current = -1

    def set_senders(self, list senders, list pendings):
        self.senders = senders
        self.pendings = pendings
        self.run_left = 0
        self.current = -1

    cdef bint _fast(self, object data, object key) except -1:
        """Queues data on the fast path: True, or False if the slow path must take it."""
        cdef Sender tx
        cdef Py_ssize_t i
        cdef int64_t now = 0
        cdef bint streaming = False
        if not self.fast or (self.countdown <= 0 and not self.look()):
            return False
        if self.keyed:
            if key is None:
                return False  # (the slow path says what is wrong)
            i = self.pick(key)
        elif self.run_left > 0:
            i = self.current
        else:
            if self.current >= 0:
                self._tell_load(self.current)
            i = self.current = self.pick()
            self.run_left = self.run
            now = fastmsg_monotonic_ns()
            streaming = now - self.run_start_ns < DIRECT_GAP_NS * self.run  # (else a pause)
            self.run_start_ns = now
        if i < 0:
            self.run_left = 0
            return False
        tx = <Sender?>self.senders[i]
        if streaming:
            # A stream that moves on from another member: batched by the I/O thread, not written
            # from this thread (each link alone would see a pause and write directly, a system
            # call per run).
            tx.last_send_ns = now
        if tx.s == NULL or not tx._send_now(data):
            self.run_left = 0
            return False
        if self.keep_keys:
            (<object>self.pendings[i]).append((tx.ring.ctl.records, key, None))
        self.countdown -= 1
        self.run_left -= 1
        return True

    cdef int _tell_load(self, Py_ssize_t i) except -1:
        """The Router learns the load of the member whose run ends (between the Balancer's looks,
        which tell it every member's)."""
        cdef Sender tx = <Sender?>self.senders[i]
        cdef uint64_t load
        if tx.s != NULL:
            load = fm_sender_queued(tx.s) + tx.held_bytes
            self.set_load(i, load, load * 4 >= tx.hwm * 3)  # (saturated: as the Balancer's SATURATED)
        return 0

    def send(self, data, *, key=None, timeout=None):
        if not self._fast(data, key):
            self.slow(data, key, timeout)

    def send_many(self, items, *, keys=None, timeout=None):
        cdef Py_ssize_t n = 0
        cdef double deadline = -1.0
        if keys is not None:
            items = list(items)
            if len(keys) != len(items):
                raise ValueError(f"send_many() needs one key per item: {len(keys)} keys for {len(items)} items")
        if timeout is not None and timeout > 0:
            deadline = time.monotonic() + timeout
        try:
            for data in items:
                key = keys[n] if keys is not None else None
                if not self._fast(data, key):
                    self.slow(data, key, timeout if deadline < 0 else max(1e-6, deadline - time.monotonic()))
                n += 1
        except BaseException as exc:
            exc.queued = n  # (those before it are queued, and will be sent)
            raise
        return n
