# Declarations of csrc/ring.h: the SPSC record ring, callable without the GIL.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "ring/ring.h" nogil:
    const uint32_t FASTMSG_REC_HDR
    const uint32_t FASTMSG_REC_PAD
    const uint64_t FASTMSG_RING_MIN_CAPACITY
    const uint64_t FASTMSG_RING_MAX_CAPACITY

    uint32_t fastmsg_rec_len(const uint8_t *header)    # a record's payload length
    uint32_t fastmsg_rec_flags(const uint8_t *header)  # and its flags

    ctypedef struct fastmsg_ring_ctl:
        uint64_t tail
        uint64_t records
        uint64_t head

    ctypedef struct fastmsg_ring:
        fastmsg_ring_ctl *ctl
        uint8_t *data
        uint64_t capacity
        uint64_t wpos
        uint64_t resv
        uint32_t resv_open
        uint64_t rpos
        uint64_t rcount

    ctypedef struct fastmsg_ring_rec:
        const uint8_t *data
        uint32_t len
        uint32_t flags
        uint64_t start
        uint64_t end

    enum:
        FASTMSG_WAIT_READY
        FASTMSG_WAIT_TIMEOUT
        FASTMSG_WAIT_INTERRUPTED

    uint64_t fastmsg_ring_slot(uint64_t length)
    uint64_t fastmsg_ring_max_payload(uint64_t capacity)
    void fastmsg_ring_init(fastmsg_ring *r, fastmsg_ring_ctl *ctl, uint8_t *data, uint64_t capacity)

    uint8_t *fastmsg_ring_reserve(fastmsg_ring *r, uint32_t length, uint32_t flags)
    void fastmsg_ring_stage(fastmsg_ring *r, uint32_t length)
    void fastmsg_ring_publish(fastmsg_ring *r)
    void fastmsg_ring_commit(fastmsg_ring *r, uint32_t length)
    void fastmsg_ring_abort(fastmsg_ring *r)
    uint64_t fastmsg_ring_space_target(const fastmsg_ring *r, uint32_t length)
    uint64_t fastmsg_ring_free(fastmsg_ring *r)
    uint64_t fastmsg_ring_pending_records(const fastmsg_ring *r)

    int fastmsg_ring_next(fastmsg_ring *r, fastmsg_ring_rec *out)
    ptrdiff_t fastmsg_ring_next_many(fastmsg_ring *r, fastmsg_ring_rec *out, size_t max)
    void fastmsg_ring_release(fastmsg_ring *r, uint64_t pos)
    uint64_t fastmsg_ring_span_end(const fastmsg_ring *r, uint64_t pos)
    size_t fastmsg_ring_readable(fastmsg_ring *r, size_t max, const uint8_t **p, size_t *nrec)

    int fastmsg_ring_wait_data(fastmsg_ring *r, int64_t deadline_ns)
    int fastmsg_ring_wait_space(fastmsg_ring *r, uint64_t target, int64_t deadline_ns)
    int64_t fastmsg_monotonic_ns()
