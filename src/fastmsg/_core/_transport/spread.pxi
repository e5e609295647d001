# The Balancer's per-message path (fastmsg/balancer/): pick a member, queue into its Sender
# without waiting, in one call from Python. Everything else (no member up, a full member, keys kept
# for a failover, the periodic look at the members) is the Balancer's own send, in Python.


cdef class _Spread:
    """Holds the Router's pick and the Senders by member index. send() has the Balancer look at
    its members each time `countdown` fast sends have passed."""
    cdef object pick          # the Router's pick()
    cdef list senders         # Sender of each member index (the Balancer replaces the list whole)
    cdef object slow          # slow(data, key, timeout): the Balancer's full send
    cdef object look          # look(): the Balancer's look at its members (resets countdown);
                              # False while messages taken back wait (the slow path keeps order)
    cdef public Py_ssize_t countdown  # fast sends left before the Balancer's next look
    cdef public bint fast     # False: every message takes the slow path (keys kept, broadcast)
    cdef public Py_ssize_t run  # messages per pick: a run to one member keeps its batches large
    cdef Py_ssize_t run_left  # messages the current run may still take
    cdef object current       # the member of the current run

    def __init__(self, pick, slow, look):
        self.pick = pick
        self.slow = slow
        self.look = look
        self.senders = []
        self.fast = False
        self.countdown = 0
        self.run = 1
        self.run_left = 0

    def set_senders(self, list senders):
        self.senders = senders
        self.run_left = 0

    def send(self, data, *, key=None, timeout=None):
        cdef Sender tx
        if self.fast and key is None and (self.countdown > 0 or self.look()):
            if self.run_left > 0:
                i = self.current
            else:
                i = self.current = self.pick()
                self.run_left = self.run
            if i >= 0:
                tx = <Sender?>self.senders[i]
                if tx.s != NULL and tx._send_now(data):
                    self.countdown -= 1
                    self.run_left -= 1
                    return
        self.run_left = 0
        self.slow(data, key, timeout)
