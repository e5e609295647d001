# cython: freethreading_compatible = True
"""Routing for the Balancer: which member takes a message, by strategy (csrc/route/).

Argument checking and the GIL policy live here; the strategies, the hashing and all per-key work
are C. Calls on one Router are serialised (a critical section on free-threaded builds; the GIL
otherwise), and route_many releases the GIL over a copy of the member table.
"""

import math
import operator
import os

cimport cython
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from fastmsg._core.includes.routing cimport (
    FM_ROUTE_BROADCAST, FM_ROUTE_HASH, FM_ROUTE_LATENCY, FM_ROUTE_LEAST_LOADED, FM_ROUTE_NEAREST,
    FM_ROUTE_ROUND_ROBIN, FM_ROUTE_WEIGHTED, fm_ewma_at, fm_ewma_observe, fm_keyhash_init,
    fm_keyhash_kernel_names, fm_keyhash_name, fm_keyhash_runs, fm_keyhash_select, fm_neg_log_unit, fm_pick,
    fm_rdv_key_hash, fm_rdv_member, fm_rdv_rank, fm_rdv_route, fm_rdv_route_u64, fm_rdv_score, fm_rdv_table,
    fm_route_strategy, fm_router, fm_router_free, fm_router_init, fm_router_now,
    fm_router_set_load, fm_router_set_members, fm_router_set_up, fm_router_table, fm_sipkey,
    fm_sipkey_from_bytes, fm_sipkey_from_seed, fm_siphash, fm_siphash13,
)

STRATEGIES = ("round_robin", "weighted", "hash", "least_loaded", "latency", "nearest", "broadcast")
cdef dict _STRATEGY_CODES = {
    "round_robin": FM_ROUTE_ROUND_ROBIN, "weighted": FM_ROUTE_WEIGHTED, "hash": FM_ROUTE_HASH,
    "least_loaded": FM_ROUTE_LEAST_LOADED, "latency": FM_ROUTE_LATENCY,
    "nearest": FM_ROUTE_NEAREST, "broadcast": FM_ROUTE_BROADCAST,
}

# Below this many keys route_many keeps the GIL: copying the member table and releasing and
# retaking the GIL would cost more than the routing it frees.
cdef Py_ssize_t NOGIL_MIN_KEYS = 2048

cdef object _np = None


cdef object _numpy():
    global _np
    if _np is None:
        import numpy
        _np = numpy
    return _np


cdef bytes _seed_bytes(object seed, str what):
    if isinstance(seed, (bytes, bytearray, memoryview)):
        return bytes(seed)
    raise TypeError(f"{what} seed must be bytes, not {type(seed).__name__}")


cdef fm_sipkey _key_of_seed(bytes seed):
    cdef uint8_t key[16]
    fm_sipkey_from_seed(<const uint8_t *>PyBytes_AS_STRING(seed), <size_t>PyBytes_GET_SIZE(seed), key)
    return fm_sipkey_from_bytes(key)


def member_id(str endpoint, seed):
    """The stable 64-bit id of a member: SipHash-1-3 of its endpoint (UTF-8) keyed by the seed."""
    cdef bytes data = endpoint.encode("utf-8")
    cdef fm_sipkey key = _key_of_seed(_seed_bytes(seed, "member_id()"))
    return fm_siphash13(key, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))


def _siphash(key, data, int c_rounds=1, int d_rounds=3):
    """SipHash-c-d of bytes under a 16-byte key; for the test vectors."""
    if not isinstance(key, bytes) or len(key) != 16 or not isinstance(data, bytes):
        raise TypeError("_siphash() takes a 16-byte bytes key and bytes data")
    return fm_siphash(<const uint8_t *>PyBytes_AS_STRING(key), PyBytes_AS_STRING(data),
                      <size_t>len(data), c_rounds, d_rounds)


def _neg_log_unit(uint64_t h):
    """-ln(u) for the variate u that the score hash h stands for; exposed for tests."""
    return fm_neg_log_unit(h)


def _sip_key(seed):
    """The 16-byte SipHash key a seed gives (the seed itself when it is 16 bytes)."""
    cdef bytes s = _seed_bytes(seed, "_sip_key()")
    cdef uint8_t key[16]
    fm_sipkey_from_seed(<const uint8_t *>PyBytes_AS_STRING(s), <size_t>PyBytes_GET_SIZE(s), key)
    return bytes((<char *>key)[:16])


cdef uint64_t _key_hash(const fm_rdv_table *t, object key) except? 0:
    """H(key) of a bytes-like key (bytes without the buffer machinery, the common case)."""
    cdef Py_buffer view
    cdef uint64_t h
    if PyBytes_CheckExact(key):
        return fm_rdv_key_hash(t, PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key))
    if key is None or isinstance(key, (str, int)):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    try:
        PyObject_GetBuffer(key, &view, PyBUF_C_CONTIGUOUS)
    except (TypeError, BufferError):
        raise TypeError(f"key must be bytes (or a C-contiguous buffer), not {type(key).__name__}") from None
    try:
        h = fm_rdv_key_hash(t, view.buf, <size_t>view.len)
    finally:
        PyBuffer_Release(&view)
    return h


cdef class Router:
    """Router(strategy, *, seed=None)
--

    The routing state of a Balancer: a member list and one strategy's choice among them.

    Member i of the list passed to set_members() is index i everywhere else. See
    docs/architecture.md, "Routing", for what each strategy does.
    """

    cdef fm_router r
    cdef str _strategy
    cdef bytes _seed

    def __cinit__(self, str strategy, *, seed=None):
        cdef uint8_t key[16]
        code = _STRATEGY_CODES.get(strategy)
        if code is None:
            raise ValueError(f"unknown routing strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
        self._seed = os.urandom(16) if seed is None else _seed_bytes(seed, "Router()")
        fm_sipkey_from_seed(<const uint8_t *>PyBytes_AS_STRING(self._seed),
                            <size_t>PyBytes_GET_SIZE(self._seed), key)
        fm_router_init(&self.r, <fm_route_strategy>code, key)
        self._strategy = strategy

    def __dealloc__(self):
        fm_router_free(&self.r)

    @property
    def strategy(self):
        """The strategy's name."""
        return self._strategy

    @property
    def seed(self):
        """The seed every hash and random choice is keyed by (Router(s, seed=r.seed) routes alike)."""
        return self._seed

    def __len__(self):
        return self.r.n

    def __repr__(self):
        return f"<Router {self._strategy} with {self.r.n} members>"

    cdef size_t _index(self, object index) except? <size_t>-1:
        cdef Py_ssize_t i = index  # TypeError for a non-integer
        if i < 0 or <size_t>i >= self.r.n:
            raise IndexError(f"member index {index} out of range for {self.r.n} members")
        return <size_t>i

    cdef int _need_hash(self, str what) except -1:
        if self.r.strategy != FM_ROUTE_HASH:
            raise ValueError(f"{what}() routes by key and needs the 'hash' strategy; this Router's "
                             f"is {self._strategy!r}")
        return 0

    def set_members(self, ids, weights, tiers):
        """Replaces the member list: ids (distinct ints in 0..2**64-1), weights (finite, > 0) and
        tiers (ints >= 0, 0 the nearest), one each per member. Members whose id was in the list
        before keep their health, load and latency estimate; new ones start up and unmeasured."""
        cdef Py_ssize_t n = len(ids), i
        if len(weights) != n or len(tiers) != n:
            raise ValueError(f"set_members() needs one weight and one tier per id: got {n} ids, "
                             f"{len(weights)} weights, {len(tiers)} tiers")
        if n > 0x7FFFFFFF:
            raise ValueError(f"set_members() takes at most 2**31-1 members, got {n}")
        cdef size_t cap = <size_t>(n if n > 0 else 1), dup = 0
        cdef uint64_t *c_ids = <uint64_t *>malloc(cap * sizeof(uint64_t))
        cdef double *c_weights = <double *>malloc(cap * sizeof(double))
        cdef uint32_t *c_tiers = <uint32_t *>malloc(cap * sizeof(uint32_t))
        cdef int rc
        try:
            if c_ids == NULL or c_weights == NULL or c_tiers == NULL:
                raise MemoryError()
            for i in range(n):
                c_ids[i] = _member_id_arg(ids[i], i)
                c_weights[i] = _weight_arg(weights[i], i)
                c_tiers[i] = _tier_arg(tiers[i], i)
            with cython.critical_section(self):
                rc = fm_router_set_members(&self.r, c_ids, c_weights, c_tiers, <size_t>n, &dup)
            if rc == -1:
                raise MemoryError()
            if rc == -2:
                raise ValueError(f"set_members() ids must be distinct: id {ids[dup]} repeats at index {dup}")
        finally:
            free(c_ids)
            free(c_weights)
            free(c_tiers)

    def set_up(self, index, bint up):
        """Marks a member up (healthy) or down; members start up. A down member is never picked."""
        with cython.critical_section(self):
            fm_router_set_up(&self.r, self._index(index), up)

    def set_load(self, index, unacked_bytes, bint saturated=False):
        """A member's bytes sent and not yet acknowledged, and whether its window is full."""
        if unacked_bytes < 0:
            raise ValueError(f"unacked_bytes must be >= 0, got {unacked_bytes}")
        cdef uint64_t unacked = unacked_bytes
        with cython.critical_section(self):
            fm_router_set_load(&self.r, self._index(index), unacked, saturated)

    def observe_rtt(self, index, rtt_ns):
        """One acknowledgement or reply round trip of a member, in ns (for the latency strategy)."""
        if rtt_ns < 0:
            raise ValueError(f"rtt_ns must be >= 0, got {rtt_ns}")
        cdef uint64_t rtt = rtt_ns
        with cython.critical_section(self):
            fm_ewma_observe(&self.r.m[self._index(index)], rtt, fm_router_now(&self.r))

    def pick(self, key=None):
        """The member for the next message, or -1 if none is up. "hash" needs the key (and is
        route(key)); the other strategies ignore it; "broadcast" has no single member."""
        cdef int32_t chosen
        if self.r.strategy == FM_ROUTE_HASH:
            if key is None:
                raise TypeError("pick() needs a key with the 'hash' strategy")
            return self._route(key)
        if self.r.strategy == FM_ROUTE_BROADCAST:
            raise ValueError("pick() has no single member with the 'broadcast' strategy: a message "
                             "goes to every up member")
        with cython.critical_section(self):
            chosen = fm_pick(&self.r)
        return chosen

    def route(self, key):
        """The member a key maps to now: the first up member of rank(key); -1 if none is up."""
        self._need_hash("route")
        return self._route(key)

    cdef int32_t _route(self, object key) except -2:
        cdef fm_rdv_table t
        cdef int32_t chosen
        with cython.critical_section(self):
            t = fm_router_table(&self.r)
            chosen = fm_rdv_route(&t, _key_hash(&t, key))
        return chosen

    def rank(self, key):
        """Every member (up or not) in the key's order of preference, best first."""
        cdef fm_rdv_table t
        cdef size_t n, i
        cdef fm_rdv_score *scratch
        cdef int32_t *out
        cdef uint64_t kh
        self._need_hash("rank")
        with cython.critical_section(self):
            t = fm_router_table(&self.r)
            n = t.n
            kh = _key_hash(&t, key)
            scratch = <fm_rdv_score *>malloc((n + 1) * sizeof(fm_rdv_score))
            out = <int32_t *>malloc((n + 1) * sizeof(int32_t))
            if scratch == NULL or out == NULL:
                free(scratch)
                free(out)
                raise MemoryError()
            fm_rdv_rank(&t, kh, scratch, out)
        try:
            return [out[i] for i in range(n)]
        finally:
            free(scratch)
            free(out)

    def route_many(self, keys):
        """route() for many keys: a numpy uint64 array (each key its 8 little-endian bytes) or a
        sequence of bytes. Returns a numpy int32 array of member indices (-1: none up)."""
        self._need_hash("route_many")
        np = _numpy()
        if isinstance(keys, np.ndarray):
            if keys.dtype != np.uint64:
                raise TypeError(f"route_many() needs a uint64 array (or a sequence of bytes), "
                                f"not a {keys.dtype} array")
            if keys.ndim != 1:
                raise ValueError(f"route_many() needs a one-dimensional array, not {keys.ndim}-d")
            return self._route_u64(np.ascontiguousarray(keys), np)
        if isinstance(keys, (bytes, bytearray, str, memoryview)):
            raise TypeError(f"route_many() takes many keys: a uint64 array or a sequence of bytes, "
                            f"not one {type(keys).__name__}")
        return self._route_seq(keys, np)

    cdef object _route_u64(self, const uint64_t[::1] keys, object np):
        cdef Py_ssize_t count = keys.shape[0]
        out = np.empty(count, dtype=np.int32)
        cdef int32_t[::1] dst = out
        cdef fm_rdv_table t
        cdef void *copy = NULL
        if count == 0:
            return out
        with cython.critical_section(self):
            t = fm_router_table(&self.r)
            if count >= NOGIL_MIN_KEYS:
                copy = _copy_table(&t)
            else:
                fm_rdv_route_u64(&t, &keys[0], <size_t>count, &dst[0])
        if count >= NOGIL_MIN_KEYS:
            try:
                with nogil:
                    fm_rdv_route_u64(&t, &keys[0], <size_t>count, &dst[0])
            finally:
                free(copy)
        return out

    cdef object _route_seq(self, object keys, object np):
        cdef list seq = list(keys)
        cdef Py_ssize_t count = len(seq), i
        out = np.empty(count, dtype=np.int32)
        cdef int32_t[::1] dst = out
        cdef fm_rdv_table t
        with cython.critical_section(self):
            t = fm_router_table(&self.r)
            for i in range(count):
                dst[i] = fm_rdv_route(&t, _key_hash(&t, seq[i]))
        return out

    def loads(self):
        """Per member: (up, unacked_bytes, saturated, ewma_rtt_ns), the last an int decayed to now
        (0 before the first sample)."""
        cdef size_t i
        cdef int64_t now
        with cython.critical_section(self):
            now = fm_router_now(&self.r)
            return [(bool(self.r.m[i].up), self.r.m[i].unacked, bool(self.r.m[i].saturated),
                     int(fm_ewma_at(&self.r.m[i], now) + 0.5)) for i in range(self.r.n)]

    def _set_clock(self, now_ns=None):
        """Fixes the time the latency estimates see (ns), or back to the monotonic clock (None)."""
        with cython.critical_section(self):
            self.r.clock_ns = -1 if now_ns is None else max(<int64_t>now_ns, 0)


cdef void *_copy_table(fm_rdv_table *t) except NULL:
    """Points t at a private copy of its member arrays, for a loop run without the GIL (a
    set_members from another thread would free the originals). Returns the block to free."""
    cdef size_t n = t.n
    cdef size_t members = n * sizeof(fm_rdv_member), weights = n * sizeof(double)
    cdef char *block = <char *>malloc(members + weights + n + 1)
    if block == NULL:
        raise MemoryError()
    memcpy(block, t.member, members)
    t.member = <const fm_rdv_member *>block
    if t.inv_weight != NULL:
        memcpy(block + members, t.inv_weight, weights)
        t.inv_weight = <const double *>(block + members)
    memcpy(block + members + weights, t.up, n)
    t.up = <const uint8_t *>(block + members + weights)
    return block


cdef object _integer(object value, str what, Py_ssize_t i):
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"set_members() {what}[{i}] must be an int, not {type(value).__name__}") from None


cdef uint64_t _member_id_arg(object value, Py_ssize_t i) except? 0:
    value = _integer(value, "ids", i)
    if value < 0 or value >= 2**64:
        raise ValueError(f"set_members() ids[{i}] must be in 0..2**64-1, got {value}")
    return <uint64_t>value


cdef double _weight_arg(object value, Py_ssize_t i) except? -1.0:
    cdef double w
    try:
        w = value
    except TypeError:
        raise TypeError(f"set_members() weights[{i}] must be a number, not {type(value).__name__}") from None
    if not (w > 0.0 and math.isfinite(w)):
        raise ValueError(f"set_members() weights[{i}] must be finite and > 0, got {value!r}")
    return w


cdef uint32_t _tier_arg(object value, Py_ssize_t i) except? 0xFFFFFFFF:
    value = _integer(value, "tiers", i)
    if value < 0 or value > 0xFFFFFFFE:
        raise ValueError(f"set_members() tiers[{i}] must be in 0..2**32-2, got {value}")
    return <uint32_t>value


def hash_kernels():
    """(name, runs on this CPU) for every key-hashing kernel of route_many, fastest first."""
    cdef const char *const *names = fm_keyhash_kernel_names()
    cdef list out = []
    cdef Py_ssize_t i = 0
    while names[i] != NULL:
        out.append((names[i].decode(), bool(fm_keyhash_runs(names[i]))))
        i += 1
    return out


def _use_hash_kernel(str name):
    """Selects route_many's key-hashing kernel by name (all give the same results); for tests and
    benchmarks. Returns the name in use before."""
    global hash_kernel
    before = hash_kernel
    rc = fm_keyhash_select(name.encode())
    if rc != 0:
        raise ValueError(f"hash kernel {name!r} is unknown or cannot run on this CPU; "
                         f"runnable: {[n for n, ok in hash_kernels() if ok]}")
    hash_kernel = name
    return before


def _select_from_environment():
    forced = os.environ.get("FASTMSG_ROUTE_KERNEL", "").strip()
    if forced and fm_keyhash_select(forced.encode()) != 0:
        raise ImportError(f"FASTMSG_ROUTE_KERNEL={forced!r} names no kernel this CPU runs; "
                          f"runnable: {[n for n, ok in hash_kernels() if ok]}")


fm_keyhash_init()
_select_from_environment()
hash_kernel = fm_keyhash_name().decode()
