/* Single-producer single-consumer ring of variable-length records; the record layout is the
 * wire layout (docs/architecture.md, "Ring buffers").
 *
 * A record is an 8-byte header (uint32 LE payload length, uint32 LE flags), the payload, and
 * zero bytes up to the next multiple of 8. A record never wraps: when one does not fit before
 * the end of the ring, a PAD record fills the rest and the record starts at offset 0.
 *
 * Positions are byte counts that only grow (offset = position & mask). The producer publishes
 * records with a release store of `tail` after writing their bytes; the consumer gives space back
 * with a release store of `head` after it is done reading. Each side keeps a cached copy of the
 * other's position and reloads it (acquire) only when the cache says "full" or "empty".
 *
 * Hot functions are inline so that Cython callers (and the I/O engine) pay no call. Blocking
 * waits live in ring_wait.c. Nothing here allocates or needs the GIL. */
#ifndef FASTMSG_RING_H
#define FASTMSG_RING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/atomics.h"
#include "base/common.h"

#define FASTMSG_REC_HDR 8u              /* bytes of a record header */
#define FASTMSG_REC_PAD 0x80000000u     /* flags bit: padding to the end of the ring, skip it */
#define FASTMSG_RING_LINE 128           /* positions written by different sides sit this far apart */
#define FASTMSG_RING_MIN_CAPACITY 64u
#define FASTMSG_RING_MAX_CAPACITY ((uint64_t)1 << 32)

/* Everything both sides touch: in the handle for an in-process ring, in the segment for a shared
 * one. One line per writer, so neither side's stores evict the other's cached line; the waiter
 * line is written only by a side about to sleep (and by the wake that follows). */
typedef struct fastmsg_ring_ctl {
    uint64_t tail;    /* published producer position: every record before it is complete */
    uint64_t records; /* records published so far (stored just before tail; for len() only) */
    uint8_t pad0_[FASTMSG_RING_LINE - 16];
    uint64_t head; /* released consumer position: bytes before it may be overwritten */
    uint8_t pad1_[FASTMSG_RING_LINE - 8];
    uint32_t data_seq;      /* futex word: bumped to wake a consumer waiting for records */
    uint32_t data_waiters;  /* consumers asleep (or about to be) waiting for records */
    uint32_t space_seq;     /* futex word: bumped to wake a producer waiting for space */
    uint32_t space_waiters; /* producers asleep (or about to be) waiting for space */
    uint8_t pad2_[FASTMSG_RING_LINE - 16];
} fastmsg_ring_ctl;

/* A process-local handle: where the ring is, plus each side's private cursor and cache. */
typedef struct fastmsg_ring {
    fastmsg_ring_ctl *ctl;
    uint8_t *data;
    uint64_t capacity; /* a power of two */
    uint64_t mask;     /* capacity - 1 */
    uint8_t pad0_[FASTMSG_RING_LINE - 32];
    /* producer side */
    uint64_t wpos;   /* end of the last staged record; == ctl->tail when nothing is staged */
    uint64_t wlimit; /* cached ctl->head + capacity: bytes before it are free to write */
    uint64_t resv;   /* position of the open reservation's header (after any PAD) */
    uint32_t resv_len; /* payload bytes reserved */
    uint32_t resv_open; /* 1 while a reservation is open */
    uint64_t wcount; /* records staged so far */
    uint32_t no_spin; /* wait for space without spinning first: the consumer may share this CPU */
    uint8_t pad1_[FASTMSG_RING_LINE - 44];
    /* consumer side */
    uint64_t rpos;   /* cursor: where the next record (or PAD) to hand out starts */
    uint64_t rlimit; /* cached ctl->tail */
    uint64_t rcount; /* records handed out so far */
    uint8_t pad2_[FASTMSG_RING_LINE - 24];
} fastmsg_ring;

/* One record as the consumer sees it. [start, end) covers any PAD skipped before it, so that
 * releasing records in order releases every byte. */
typedef struct fastmsg_ring_rec {
    const uint8_t *data; /* payload */
    uint32_t len;        /* payload length */
    uint32_t flags;      /* flags from the header (never PAD) */
    uint64_t start;      /* position where this record's span begins */
    uint64_t end;        /* position just past its padding */
} fastmsg_ring_rec;

/* A record header: payload length and flags, both uint32 little-endian. */
static inline uint32_t fastmsg_rec_len(const uint8_t *h) { return fastmsg_load_le32(h); }
static inline uint32_t fastmsg_rec_flags(const uint8_t *h) { return fastmsg_load_le32(h + 4); }
static inline void fastmsg_rec_put_hdr(uint8_t *h, uint32_t len, uint32_t flags) {
    fastmsg_store_le32(h, len);
    fastmsg_store_le32(h + 4, flags);
}

/* Bytes a record of `len` payload bytes occupies. */
static inline uint64_t fastmsg_ring_slot(uint64_t len) { return FASTMSG_REC_HDR + ((len + 7u) & ~(uint64_t)7u); }

/* The largest payload a ring of `capacity` accepts: the record takes at most half the ring, so an
 * empty ring always has room for it plus the PAD that may precede it. */
static inline uint64_t fastmsg_ring_max_payload(uint64_t capacity) { return capacity / 2 - FASTMSG_REC_HDR; }

/* Records (not PADs) in [pos, end), walking headers; stops at anything outside the layout. */
static inline uint64_t fastmsg_ring_count_(const fastmsg_ring *r, uint64_t pos, uint64_t end) {
    uint64_t n = 0;
    if (end - pos > r->capacity)
        return 0;
    while (pos < end) {
        const uint8_t *h = r->data + (pos & r->mask);
        uint64_t slot = fastmsg_ring_slot(fastmsg_rec_len(h));
        if ((pos & r->mask) + slot > r->capacity)
            break;
        n += !(fastmsg_rec_flags(h) & FASTMSG_REC_PAD);
        pos += slot;
    }
    return n;
}

/* Sets up a handle over `ctl` and `data` (capacity bytes, 8-aligned), taking both sides' cursors
 * from the published positions: a fresh ring has zeroes there, a re-attached one resumes. */
static inline void fastmsg_ring_init(fastmsg_ring *r, fastmsg_ring_ctl *ctl, uint8_t *data, uint64_t capacity) {
    memset(r, 0, sizeof *r);
    r->ctl = ctl;
    r->data = data;
    r->capacity = capacity;
    r->mask = capacity - 1;
    r->wpos = fastmsg_load_acquire64(&ctl->tail);
    r->wcount = fastmsg_load_relaxed64(&ctl->records);
    r->wlimit = fastmsg_load_acquire64(&ctl->head) + capacity;
    r->rpos = fastmsg_load_acquire64(&ctl->head);
    r->rlimit = r->wpos;
    r->rcount = r->wcount - fastmsg_ring_count_(r, r->rpos, r->wpos);
}

/* Writes a PAD at `pos` over the rest of the ring (its length covers what follows its own header;
 * as the capacity and every record are multiples of 8, a header's worth of room always remains)
 * and returns the position after it, where the ring starts again. */
static inline uint64_t fastmsg_ring_put_pad(fastmsg_ring *r, uint64_t pos) {
    uint64_t to_end = r->capacity - (pos & r->mask);
    fastmsg_rec_put_hdr(r->data + (pos & r->mask), (uint32_t)(to_end - FASTMSG_REC_HDR), FASTMSG_REC_PAD);
    return pos + to_end;
}

/* The position of the record at `pos`: past the PAD there, if there is one (a PAD is always
 * published together with the record after it, at the ring's start). */
static inline uint64_t fastmsg_ring_skip_pad(const fastmsg_ring *r, uint64_t pos) {
    const uint8_t *h = r->data + (pos & r->mask);
    if (fastmsg_rec_flags(h) & FASTMSG_REC_PAD)
        pos += (uint64_t)fastmsg_rec_len(h) + FASTMSG_REC_HDR;
    return pos;
}

/* Slow paths, in ring_wait.c: wake whoever sleeps on the other side. */
void fastmsg_ring_wake_consumer(fastmsg_ring *r);
void fastmsg_ring_wake_producer(fastmsg_ring *r);

/* ---- producer ---- */

/* Opens a reservation for a record of `len` payload bytes and returns where the payload goes, or
 * NULL if the ring has no room now (or the record is larger than fastmsg_ring_max_payload). The
 * caller fills the payload and then stages, commits or aborts; one reservation at a time. */
static inline uint8_t *fastmsg_ring_reserve(fastmsg_ring *r, uint32_t len, uint32_t flags) {
    uint64_t slot = fastmsg_ring_slot(len);
    uint64_t pos = r->wpos;
    uint64_t to_end = r->capacity - (pos & r->mask);
    uint64_t pad = to_end < slot ? to_end : 0;
    if (slot > r->capacity / 2)
        return NULL;
    if (pos + pad + slot > r->wlimit) {
        /* acquire: the consumer's reads of these bytes happen before we overwrite them */
        r->wlimit = fastmsg_load_acquire64(&r->ctl->head) + r->capacity;
        if (pos + pad + slot > r->wlimit)
            return NULL;
    }
    if (pad)
        pos = fastmsg_ring_put_pad(r, pos);
    fastmsg_rec_put_hdr(r->data + (pos & r->mask), len, flags & ~FASTMSG_REC_PAD);
    r->resv = pos;
    r->resv_len = len;
    r->resv_open = 1;
    return r->data + (pos & r->mask) + FASTMSG_REC_HDR;
}

/* Closes the reservation with `len` (<= reserved) payload bytes, without publishing it yet:
 * a batch stages many records and publishes them with one release store. */
static inline void fastmsg_ring_stage(fastmsg_ring *r, uint32_t len) {
    uint8_t *rec = r->data + (r->resv & r->mask);
    uint64_t padded;
    if (len > r->resv_len)
        len = r->resv_len;
    if (len != r->resv_len)
        fastmsg_rec_put_hdr(rec, len, fastmsg_rec_flags(rec));
    padded = (len + 7u) & ~(uint64_t)7u;
    /* zero the tail padding: the bytes go on the wire and into CRCs, stale data must not (a
     * whole number of words, the common case, has none: the call would cost more than the copy) */
    if (padded != len)
        memset(rec + FASTMSG_REC_HDR + len, 0, (size_t)(padded - len));
    r->wpos = r->resv + FASTMSG_REC_HDR + padded;
    r->wcount++;
    r->resv_open = 0;
}

/* Makes every staged record visible to the consumer: one store (release, and sequentially
 * consistent so that it is ordered before the load of the waiter count that follows), and a
 * wake-up only if the consumer said it sleeps (the other half of the handshake: ring_wait.c). */
static inline void fastmsg_ring_publish(fastmsg_ring *r) {
    fastmsg_store_relaxed64(&r->ctl->records, r->wcount);
    fastmsg_store_seq_cst64(&r->ctl->tail, r->wpos);
    if (fastmsg_load_seq_cst32(&r->ctl->data_waiters))
        fastmsg_ring_wake_consumer(r);
}

static inline void fastmsg_ring_commit(fastmsg_ring *r, uint32_t len) {
    fastmsg_ring_stage(r, len);
    fastmsg_ring_publish(r);
}

/* Drops the open reservation; headers it wrote sit in free space and are overwritten later. */
static inline void fastmsg_ring_abort(fastmsg_ring *r) { r->resv_open = 0; }

/* Position the producer needs `head` to reach before a record of `len` fits (for waiting). */
static inline uint64_t fastmsg_ring_space_target(const fastmsg_ring *r, uint32_t len) {
    uint64_t slot = fastmsg_ring_slot(len);
    uint64_t to_end = r->capacity - (r->wpos & r->mask);
    return r->wpos + (to_end < slot ? to_end : 0) + slot - r->capacity;
}

/* ---- consumer ---- */

/* Hands out the next published record and moves the cursor past it, skipping a PAD. Returns 1,
 * 0 when there is none, or -1 when the bytes break the layout (a corrupted shared segment): the
 * header is checked against the published tail and the ring's end, so a bad length can never
 * send a reader outside the ring. */
static inline int fastmsg_ring_next(fastmsg_ring *r, fastmsg_ring_rec *out) {
    uint64_t pos = r->rpos, off, slot;
    const uint8_t *h;
    uint32_t len, flags;
    if (pos == r->rlimit) {
        /* acquire: the producer's writes of the records happen before we read them */
        r->rlimit = fastmsg_load_acquire64(&r->ctl->tail);
        if (pos == r->rlimit)
            return 0;
        if (r->rlimit - pos > r->capacity)
            return -1;
    }
    out->start = pos;
    off = pos & r->mask;
    pos = fastmsg_ring_skip_pad(r, pos);
    if (pos != out->start) {
        /* a PAD must end exactly at the ring's end, and come with the record after it */
        if (pos - out->start != r->capacity - off || pos >= r->rlimit)
            return -1;
        off = 0;
    }
    h = r->data + off;
    len = fastmsg_rec_len(h);
    flags = fastmsg_rec_flags(h);
    slot = fastmsg_ring_slot(len);
    if (off + slot > r->capacity || pos + slot > r->rlimit || (flags & FASTMSG_REC_PAD))
        return -1;
    out->data = h + FASTMSG_REC_HDR;
    out->len = len;
    out->flags = flags;
    out->end = pos + slot;
    r->rpos = out->end;
    r->rcount++;
    return 1;
}

/* Up to `max` records into `out`; returns how many, or -1 as fastmsg_ring_next. */
static inline ptrdiff_t fastmsg_ring_next_many(fastmsg_ring *r, fastmsg_ring_rec *out, size_t max) {
    size_t n = 0;
    int rc = 0;
    while (n < max && (rc = fastmsg_ring_next(r, &out[n])) > 0)
        n++;
    return (n == 0 && max && rc < 0) ? -1 : (ptrdiff_t)n;
}

/* End of the span that starts at `pos`: a record, or a PAD and the record after it. Only for
 * spans already handed out by fastmsg_ring_next (which checked them). */
static inline uint64_t fastmsg_ring_span_end(const fastmsg_ring *r, uint64_t pos) {
    pos = fastmsg_ring_skip_pad(r, pos);
    return pos + fastmsg_ring_slot(fastmsg_rec_len(r->data + (pos & r->mask)));
}

/* Bytes the producer could write now (the cached head may lag; this reloads it). */
static inline uint64_t fastmsg_ring_free(fastmsg_ring *r) {
    r->wlimit = fastmsg_load_acquire64(&r->ctl->head) + r->capacity;
    return r->wlimit - r->wpos;
}

/* Published records the consumer has not been handed yet. */
static inline uint64_t fastmsg_ring_pending_records(const fastmsg_ring *r) {
    uint64_t published = fastmsg_load_acquire64(&r->ctl->records);
    return published > r->rcount ? published - r->rcount : 0;
}

/* Gives every byte before `pos` back to the producer (pos <= cursor); in-order by construction. */
static inline void fastmsg_ring_release(fastmsg_ring *r, uint64_t pos) {
    fastmsg_store_seq_cst64(&r->ctl->head, pos);
    if (fastmsg_load_seq_cst32(&r->ctl->space_waiters))
        fastmsg_ring_wake_producer(r);
}

/* A run of whole published records from the consumer's cursor, contiguous in memory: what the
 * I/O engine hands to writev as it is (the record layout is the wire layout). */
typedef struct fastmsg_ring_run {
    const uint8_t *data; /* the first record's header */
    uint64_t start;      /* its position: the cursor, or past a PAD at the cursor */
    uint64_t end;        /* position just past the last record; == start for an empty run */
    size_t count;        /* records in the run */
    uint64_t payload;    /* payload bytes of those records */
} fastmsg_ring_run;

/* Finds the longest run of whole published records at the cursor and returns its count. A PAD at
 * the cursor is skipped (the cursor moves past it); the run stops before the published tail, a
 * PAD or the ring's end (PAD bytes never need to go on the wire, and a run is one slice), a record
 * with any of `stop_flags`, one with more than `max_len` payload bytes, and one that would take
 * the run past `max_bytes` unless it is the first (a record larger than a batch goes alone).
 * Otherwise the cursor does not move: the caller advances `rpos` to run->end and `rcount` by
 * run->count once the bytes are used. */
static inline size_t fastmsg_ring_readable_run(fastmsg_ring *r, uint64_t max_bytes, uint32_t max_len,
                                               uint32_t stop_flags, fastmsg_ring_run *run) {
    uint64_t pos = r->rpos, tail = fastmsg_load_acquire64(&r->ctl->tail);
    size_t n = 0;
    uint64_t payload = 0;
    r->rlimit = tail;
    if (pos < tail)
        r->rpos = pos = fastmsg_ring_skip_pad(r, pos);
    run->start = pos;
    run->data = r->data + (pos & r->mask);
    stop_flags |= FASTMSG_REC_PAD;
    while (pos < tail) {
        const uint8_t *h = r->data + (pos & r->mask);
        uint32_t len = fastmsg_rec_len(h);
        uint64_t slot = fastmsg_ring_slot(len);
        if ((fastmsg_rec_flags(h) & stop_flags) || len > max_len || (n && pos + slot - run->start > max_bytes) ||
            (n && (pos & r->mask) == 0))
            break;
        pos += slot;
        payload += len;
        n++;
    }
    run->end = pos;
    run->count = n;
    run->payload = payload;
    return n;
}

/* The run above for plain records: bytes of the run at *p, `*nrec` records, at most `max` bytes
 * unless the first record alone is larger. */
static inline size_t fastmsg_ring_readable(fastmsg_ring *r, size_t max, const uint8_t **p, size_t *nrec) {
    fastmsg_ring_run run;
    *nrec = fastmsg_ring_readable_run(r, max, UINT32_MAX, 0, &run);
    *p = run.data;
    return (size_t)(run.end - run.start);
}

/* ---- blocking waits (ring_wait.c) ---- */

enum { FASTMSG_WAIT_READY = 0, FASTMSG_WAIT_TIMEOUT = 1, FASTMSG_WAIT_INTERRUPTED = 2 };

/* Waits until a record is published past the cursor, or `deadline_ns` (fastmsg_monotonic_ns;
 * negative means never) passes. Spins briefly, then sleeps; returns INTERRUPTED on a signal so
 * the caller can run its handlers and call again. */
int fastmsg_ring_wait_data(fastmsg_ring *r, int64_t deadline_ns);

/* Waits until the consumer has released up to `target` (fastmsg_ring_space_target). */
int fastmsg_ring_wait_space(fastmsg_ring *r, uint64_t target, int64_t deadline_ns);

int64_t fastmsg_monotonic_ns(void);

#endif
