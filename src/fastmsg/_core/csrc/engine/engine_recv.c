/* The receiving side: the listener, each connection's handshake, and frames read straight into
 * the connection's ring, checked, and published for Python to consume in place. */
#define _GNU_SOURCE
#include "engine/engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>

#define FM_RX_SESSIONS_MAX 4096u
/* How long after a reader's wait the sockets stay with the reader (see fm_receiver.lent): long
 * against a round trip, short against a heartbeat. */
#define FM_RX_LEASE_NS (2 * FM_MS)
/* How long a reader that found the token taken waits on the ready queue before trying again. */
#define FM_RX_RETRY_NS (100 * 1000)

struct fm_rxconn {
    fm_handle h;
    fm_receiver *rx;
    fm_rxconn *next;
    int fd;
    int ready;           /* handshake done */
    int64_t deadline_ns; /* handshake deadline */
    uint32_t interest;
    struct fm_session *session;
    fm_rxbuf *buf;
    fastmsg_ring w;      /* producer handle: w.wpos is the end of the last whole frame */
    uint64_t at;         /* where the next frame starts: w.wpos, or past a PAD not yet published */
    uint64_t fill;       /* bytes read so far (>= at) */
    uint8_t *big;        /* a frame too large for the ring, read into its own buffer */
    size_t big_size, big_have;
    int big_done;        /* read and checked, waiting for room for its marker */
    uint8_t out[16 + FASTMSG_ERROR_MAX_TEXT + 64]; /* WELCOME, PONG or ERROR on its way out */
    size_t out_len, out_off;
    int closing;         /* close once `out` is written */
};

/* ---- the shared buffer ---- */

static fm_rxbuf *rxbuf_new(fm_ctx *ctx, uint64_t capacity) {
    fm_rxbuf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->mem = calloc(1, sizeof(fastmsg_ring_ctl) + capacity);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->ctx = ctx;
    b->capacity = capacity;
    b->ctl = b->mem;
    b->data = (uint8_t *)b->mem + sizeof(fastmsg_ring_ctl);
    return b;
}

fastmsg_ring_ctl *fm_rxbuf_ctl(fm_rxbuf *b) { return b->ctl; }
uint8_t *fm_rxbuf_data(fm_rxbuf *b) { return b->data; }
uint64_t fm_rxbuf_capacity(fm_rxbuf *b) { return b->capacity; }
int fm_rxbuf_closed(fm_rxbuf *b) { return (int)__atomic_load_n(&b->closed, __ATOMIC_ACQUIRE); }
void fm_rxbuf_incref(fm_rxbuf *b) { __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED); }

void fm_rxbuf_decref(fm_rxbuf *b) {
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL)) return;
    /* Frames too large for the ring that nobody took: free them. */
    fastmsg_ring r;
    fastmsg_ring_rec rec;
    fastmsg_ring_init(&r, b->ctl, b->data, b->capacity);
    while (fastmsg_ring_next(&r, &rec) > 0) {
        if (rec.flags == FM_RX_EXTERNAL) {
            void *p;
            memcpy(&p, rec.data, sizeof p);
            free(p);
        }
    }
    free(b->mem);
    free(b);
}

void fm_rxbuf_space_released(fm_rxbuf *b) {
    if (__atomic_load_n(&b->blocked, __ATOMIC_SEQ_CST) && !__atomic_load_n(&b->closed, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&b->resume, 1, __ATOMIC_SEQ_CST);
        fm_ctx_kick(b->ctx);
    }
}

/* ---- receiver, Python side ---- */

fm_receiver *fm_receiver_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_receiver_config *cfg,
                             char *err, size_t errlen) {
    int fd = fastmsg_listen(addr, addrlen, 128);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen: %s", strerror(-fd));
        return NULL;
    }
    fm_receiver *rx = calloc(1, sizeof *rx);
    if (!rx) {
        fastmsg_close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rx->h.kind = FM_H_LISTENER;
    rx->ctx = ctx;
    rx->cfg = *cfg;
    rx->lfd = fd;
    rx->nest.h.kind = FM_H_RXPOLL;
    rx->nest.rx = rx;
    rx->poller = ctx->poller;
    rx->waker.kind = FM_H_WAKER;
    rx->wake.rd = rx->wake.wr = -1;
    if (fastmsg_poller_fd(ctx->poller) >= 0) {
        /* A poller of its own, filled before anyone else can see it; if it cannot be made, the
         * receiver works through the I/O thread alone. */
        fastmsg_poller *own = fastmsg_poller_new(FASTMSG_POLLER_AUTO);
        if (own && fastmsg_poller_add(own, fd, FASTMSG_POLL_IN, rx) == 0 && fm_waker_open(&rx->wake) == 0 &&
            fastmsg_poller_add(own, rx->wake.rd, FASTMSG_POLL_IN, &rx->waker) == 0) {
            rx->poller = own;
        } else {
            fm_waker_close(&rx->wake);
            fastmsg_poller_free(own);
        }
    }
    pthread_mutex_init(&rx->qlock, NULL);
    fm_ctx_command(ctx, FM_CMD_ADD_RECEIVER, rx, NULL);
    return rx;
}

int fm_receiver_local_addr(fm_receiver *rx, struct sockaddr_storage *out, socklen_t *len) {
    return fastmsg_local_addr(rx->lfd, out, len);
}

fm_rxbuf *fm_receiver_next_ready(fm_receiver *rx) {
    fm_rxbuf *b = NULL;
    pthread_mutex_lock(&rx->qlock);
    if (rx->qlen) {
        b = rx->queue[rx->qhead];
        rx->qhead = (rx->qhead + 1) % rx->qcap;
        rx->qlen--;
    }
    pthread_mutex_unlock(&rx->qlock);
    return b;
}

/* Appends b (whose reference the queue takes over). */
static void enqueue(fm_receiver *rx, fm_rxbuf *b) {
    pthread_mutex_lock(&rx->qlock);
    if (rx->qlen == rx->qcap) {
        uint32_t cap = rx->qcap ? rx->qcap * 2 : 64;
        fm_rxbuf **q = malloc(sizeof *q * cap);
        while (!q) q = malloc(sizeof *q * cap); /* a lost entry would strand its records */
        for (uint32_t i = 0; i < rx->qlen; i++) q[i] = rx->queue[(rx->qhead + i) % rx->qcap];
        free(rx->queue);
        rx->queue = q;
        rx->qhead = 0;
        rx->qcap = cap;
    }
    rx->queue[(rx->qhead + rx->qlen) % rx->qcap] = b;
    rx->qlen++;
    pthread_mutex_unlock(&rx->qlock);
    __atomic_fetch_add(&rx->ready_seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&rx->waiters, __ATOMIC_SEQ_CST)) fastmsg_futex_wake_all(&rx->ready_seq);
}

/* Makes b visible to the consumer unless it already is (queued or being drained). */
static void notify(fm_receiver *rx, fm_rxbuf *b) {
    if (__atomic_exchange_n(&b->queued, 1, __ATOMIC_SEQ_CST)) return;
    fm_rxbuf_incref(b);
    enqueue(rx, b);
}

void fm_receiver_done(fm_receiver *rx, fm_rxbuf *b, uint64_t consumed) {
    /* A reader stopped for want of room may find that the consumer holds every record it was
     * given: then it goes on in a new ring (chain_ring) rather than wait for releases. */
    __atomic_store_n(&b->consumed, consumed, __ATOMIC_SEQ_CST);
    fm_rxbuf_space_released(b);
    /* Let the producer queue it again, then look once more: records published between the
     * consumer's last look and this store found it still queued and did not queue it. */
    __atomic_store_n(&b->queued, 0, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&b->ctl->tail, __ATOMIC_SEQ_CST) != consumed &&
        !__atomic_exchange_n(&b->queued, 1, __ATOMIC_SEQ_CST)) {
        enqueue(rx, b); /* the caller's reference goes to the queue */
        return;
    }
    fm_rxbuf_decref(b);
}

void fm_receiver_interrupt(fm_receiver *rx) {
    __atomic_store_n(&rx->interrupted, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&rx->ready_seq, 1, __ATOMIC_SEQ_CST);
    fastmsg_futex_wake_all(&rx->ready_seq);
    if (rx->wake.wr >= 0) fm_waker_signal(&rx->wake);
}

int fm_receiver_wait(fm_receiver *rx, int64_t deadline_ns) {
    int rc = FASTMSG_WAIT_TIMEOUT;
    __atomic_fetch_add(&rx->waiters, 1, __ATOMIC_SEQ_CST);
    for (unsigned attempt = 0;; attempt++) {
        uint32_t seq = __atomic_load_n(&rx->ready_seq, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&rx->interrupted, __ATOMIC_SEQ_CST)) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
        pthread_mutex_lock(&rx->qlock);
        uint32_t n = rx->qlen;
        pthread_mutex_unlock(&rx->qlock);
        if (n) {
            rc = FASTMSG_WAIT_READY;
            break;
        }
        int64_t left = -1;
        if (deadline_ns >= 0) {
            left = deadline_ns - fastmsg_monotonic_ns();
            if (left <= 0) break;
        }
        if (fastmsg_futex_wait(&rx->ready_seq, seq, left, attempt)) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
    }
    __atomic_fetch_sub(&rx->waiters, 1, __ATOMIC_SEQ_CST);
    return rc;
}

void fm_receiver_stats(fm_receiver *rx, uint64_t out[FM_STAT_COUNT]) {
    for (int i = 0; i < FM_STAT_COUNT; i++) out[i] = __atomic_load_n(&rx->stats[i], __ATOMIC_RELAXED);
}

void fm_receiver_close(fm_receiver *rx) {
    fm_ctx_command(rx->ctx, FM_CMD_CLOSE_RECEIVER, rx, &rx->closed_done);
    fm_rxbuf *b;
    while ((b = fm_receiver_next_ready(rx))) fm_rxbuf_decref(b);
    if (rx->poller != rx->ctx->poller) fastmsg_poller_free(rx->poller);
    fm_waker_close(&rx->wake);
    free(rx->queue);
    free(rx->sessions);
    pthread_mutex_destroy(&rx->qlock);
    free(rx);
}

/* ---- I/O thread ---- */

static void set_interest(fm_rxconn *c, uint32_t ev) {
    if (ev != c->interest) {
        fastmsg_poller_modify(c->rx->poller, c->fd, ev, c);
        c->interest = ev;
    }
}

static void close_conn(fm_rxconn *c) {
    fm_receiver *rx = c->rx;
    fm_rxconn **pp = &rx->conns;
    while (*pp && *pp != c) pp = &(*pp)->next;
    if (*pp) *pp = c->next;
    rx->nconns--;
    FM_STAT_ADD(rx, FM_CONNECTIONS, (uint64_t)-1);
    fastmsg_poller_remove(rx->poller, c->fd);
    fastmsg_close(c->fd);
    free(c->big);
    __atomic_store_n(&c->buf->closed, 1, __ATOMIC_RELEASE);
    notify(rx, c->buf); /* the consumer learns it is gone once it has drained it */
    fm_rxbuf_decref(c->buf);
    free(c);
}

/* Writes what is pending in `out`; closes the connection afterwards if asked to. 0, or -1 if
 * the connection was closed. */
static int flush_out(fm_rxconn *c) {
    while (c->out_off < c->out_len) {
        struct iovec iov = {c->out + c->out_off, c->out_len - c->out_off};
        ptrdiff_t w = fastmsg_writev(c->fd, &iov, 1);
        if (w == -EAGAIN) {
            set_interest(c, c->interest | FASTMSG_POLL_OUT);
            return 0;
        }
        if (w < 0) {
            close_conn(c);
            return -1;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->closing) {
        close_conn(c);
        return -1;
    }
    set_interest(c, c->interest & ~(uint32_t)FASTMSG_POLL_OUT);
    return 0;
}

static int queue_out(fm_rxconn *c, const uint8_t *frame, size_t n) {
    if (c->out_len + n > sizeof c->out) return -1;
    memcpy(c->out + c->out_len, frame, n);
    c->out_len += n;
    return 0;
}

/* Refuses the peer: ERROR with the reason (best effort), then close. Returns -1. */
static int refuse(fm_rxconn *c, int code) {
    const char *text = fastmsg_proto_strerror(code);
    uint8_t frame[16 + FASTMSG_ERROR_MAX_TEXT + 8];
    size_t n = fastmsg_encode_error(frame, (uint32_t)code, text, strlen(text));
    FM_STAT_ADD(c->rx, code == FASTMSG_PERR_CRC ? FM_CRC_ERRORS : FM_PROTOCOL_ERRORS, 1);
    c->out_len = c->out_off = 0; /* whatever was pending matters less than the reason */
    queue_out(c, frame, n);
    c->closing = 1;
    c->deadline_ns = fastmsg_monotonic_ns() + 1000 * FM_MS; /* a peer that will not read is dropped */
    set_interest(c, FASTMSG_POLL_OUT);
    flush_out(c);
    return -1;
}

static struct fm_session *session_for(fm_receiver *rx, uint64_t id) {
    for (uint32_t i = 0; i < rx->nsessions; i++)
        if (rx->sessions[i].id == id) return &rx->sessions[i];
    if (rx->nsessions == rx->session_cap) {
        if (rx->session_cap == FM_RX_SESSIONS_MAX) {
            /* forget the oldest session: it can no longer resume, only start afresh */
            memmove(rx->sessions, rx->sessions + 1, sizeof *rx->sessions * (rx->nsessions - 1));
            rx->nsessions--;
        } else {
            uint32_t cap = rx->session_cap ? rx->session_cap * 2 : 16;
            struct fm_session *s = realloc(rx->sessions, sizeof *s * cap);
            if (!s) return NULL;
            rx->sessions = s;
            rx->session_cap = cap;
        }
    }
    struct fm_session *s = &rx->sessions[rx->nsessions++];
    s->id = id;
    s->next_seq = 0;
    return s;
}

static int handle_hello(fm_rxconn *c, const uint8_t *f, size_t size) {
    fastmsg_hello h;
    int rc = fastmsg_decode_hello(f, size, &h);
    if (rc) return refuse(c, rc);
    if (fastmsg_load_le32(f + 4) != FASTMSG_HELLO) return refuse(c, FASTMSG_PERR_BAD_KIND);
    struct fm_session *s = session_for(c->rx, h.session_id);
    if (!s) return refuse(c, FASTMSG_PERR_LIMIT);
    for (fm_rxconn *o = c->rx->conns; o; o = o->next)
        if (o != c && o->ready && o->session == s) return refuse(c, FASTMSG_PERR_LIMIT); /* one live connection per session */
    if (h.seq > s->next_seq) {
        /* The sender starts past what arrived: those messages were lost on its side. */
        if (s->next_seq) FM_STAT_ADD(c->rx, FM_LOST, h.seq - s->next_seq);
        s->next_seq = h.seq;
    }
    c->session = s;
    fastmsg_hello w = {FASTMSG_PROTO_MAJOR, FASTMSG_PROTO_MINOR, 0, h.session_id, s->next_seq,
                       c->rx->cfg.max_message, c->rx->cfg.max_batch, 0, 0};
    uint8_t frame[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY];
    queue_out(c, frame, fastmsg_encode_hello(frame, FASTMSG_WELCOME, &w));
    c->ready = 1;
    return flush_out(c);
}

/* Checks a whole DATA frame, drops what arrived before, and notes how many of its records the
 * consumer must skip in the (already checked) CRC field. */
static int handle_data(fm_rxconn *c, uint8_t *f, size_t size) {
    fastmsg_limits lim = {c->rx->cfg.max_message, c->rx->cfg.max_batch};
    uint32_t count;
    uint64_t first;
    int rc = fastmsg_decode_data(f, size, &lim, &count, &first);
    if (rc) return refuse(c, rc);
    struct fm_session *s = c->session;
    if (first > s->next_seq) return refuse(c, FASTMSG_PERR_SEQUENCE);
    uint64_t skip = s->next_seq - first;
    if (skip > count) skip = count;
    FM_STAT_ADD(c->rx, FM_DUPLICATES, skip);
    uint32_t skip32 = (uint32_t)skip;
    memcpy(f + 8, &skip32, 4);
    if (first + count > s->next_seq) s->next_seq = first + count; /* a stale batch never rewinds it */
    uint64_t bytes = 0;
    const uint8_t *p = f + FASTMSG_FRAME_HDR + FASTMSG_DATA_HDR;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t len = fastmsg_load_le32(p);
        if (i >= skip) bytes += len;
        p += fastmsg_ring_slot(len);
    }
    FM_STAT_ADD(c->rx, FM_RECV_MESSAGES, count - skip);
    FM_STAT_ADD(c->rx, FM_RECV_BYTES, bytes);
    FM_STAT_ADD(c->rx, FM_RECV_BATCHES, 1);
    return 0;
}

/* A whole frame at f: act on it. The frame stays in the ring as a record; the consumer reads
 * DATA and skips the rest. 0, or -1 if the connection was closed. */
static int handle_frame(fm_rxconn *c, uint8_t *f, size_t size, uint32_t kind) {
    if (!c->ready) {
        if (kind != FASTMSG_HELLO) return refuse(c, FASTMSG_PERR_BAD_KIND);
        return handle_hello(c, f, size);
    }
    switch (kind) {
    case FASTMSG_DATA: return handle_data(c, f, size);
    case FASTMSG_PING: {
        uint64_t v;
        if (fastmsg_decode_control(f, size, &v)) return refuse(c, FASTMSG_PERR_MALFORMED);
        uint8_t pong[16];
        queue_out(c, pong, fastmsg_encode_control(pong, FASTMSG_PONG, v));
        return flush_out(c);
    }
    case FASTMSG_CLOSE: return 0;
    default: return refuse(c, FASTMSG_PERR_BAD_KIND);
    }
}

/* Room for a record of `size` bytes at c->at, putting a PAD before it and moving the bytes
 * already read of it to the ring's start when it would cross the end. 0, or 1 if the consumer
 * must release space first. */
static int make_room(fm_rxconn *c, uint64_t size) {
    fastmsg_ring *w = &c->w;
    uint64_t off = c->at & w->mask, head = __atomic_load_n(&w->ctl->head, __ATOMIC_ACQUIRE);
    if (off + size <= w->capacity) return c->at + size > head + w->capacity;
    uint64_t wrap = c->at + (w->capacity - off);
    if (wrap + size > head + w->capacity) return 1;
    size_t have = (size_t)(c->fill - c->at);
    memmove(w->data, w->data + off, have);
    uint32_t pad_len = (uint32_t)(w->capacity - off - FASTMSG_REC_HDR), pad_flags = FASTMSG_REC_PAD;
    memcpy(w->data + off, &pad_len, 4);
    memcpy(w->data + off + 4, &pad_flags, 4);
    c->at = wrap; /* w.wpos stays before the PAD: it is published with the frame after it */
    c->fill = wrap + have;
    return 0;
}

/* Stages the record that starts at c->at and is `slot` bytes long. */
static void stage(fm_rxconn *c, uint64_t slot) {
    c->at += slot;
    c->w.wpos = c->at;
    c->w.wcount++;
}

/* Writes the marker of the checked big frame at c->at and stages it; the caller made room. */
static void put_marker(fm_rxconn *c) {
    uint8_t *rec = c->w.data + (c->at & c->w.mask);
    uint32_t len = 16, flags = FM_RX_EXTERNAL;
    uint64_t size = c->big_size;
    memcpy(rec, &len, 4);
    memcpy(rec + 4, &flags, 4);
    memcpy(rec + 8, &c->big, sizeof c->big);
    memcpy(rec + 16, &size, 8);
    stage(c, fastmsg_ring_slot(16));
    c->big = NULL;
    c->big_done = 0;
}

/* Puts the marker of a big frame read outside the ring. 0, or 1 if there is no room yet. */
static int place_big(fm_rxconn *c) {
    if (make_room(c, fastmsg_ring_slot(16))) return 1;
    put_marker(c);
    c->fill = c->at;
    return 0;
}

/* A frame too large for the ring starts at c->at: it goes to its own buffer. If the ring
 * already holds all of it, it is checked at once and its marker takes its place, with the
 * bytes read after it moved up behind the marker. 1 if a marker was staged, 0 if the rest of
 * the frame is still to be read, -1 if the connection was closed. */
static int start_big(fm_rxconn *c, uint8_t *f, uint32_t kind, uint64_t size) {
    size_t have = (size_t)(c->fill - c->at);
    if (kind != FASTMSG_DATA) return refuse(c, FASTMSG_PERR_TOO_LARGE);
    c->big = malloc((size_t)size);
    if (!c->big) return refuse(c, FASTMSG_PERR_LIMIT);
    c->big_size = (size_t)size;
    if (have < size) {
        memcpy(c->big, f, have);
        c->big_have = have;
        c->fill = c->at;
        return 0;
    }
    memcpy(c->big, f, (size_t)size);
    if (handle_data(c, c->big, (size_t)size) < 0) return -1;
    size_t rest = have - (size_t)size;
    memmove(f + fastmsg_ring_slot(16), f + size, rest); /* the marker is smaller than the frame */
    put_marker(c);
    c->fill = c->at + rest;
    return 1;
}

/* Acts on every whole frame read so far. Returns 1 if frames were staged, 0 if none, -1 if the
 * connection was closed; sets *stalled when the ring has no room for the next frame. */
static int parse(fm_rxconn *c, int *stalled) {
    fastmsg_ring *w = &c->w;
    fastmsg_limits lim = {c->rx->cfg.max_message, c->rx->cfg.max_batch};
    int staged = 0;
    *stalled = 0;
    while (c->fill - c->at >= FASTMSG_FRAME_HDR) {
        uint8_t *f = w->data + (c->at & w->mask);
        uint32_t kind, len;
        int rc = fastmsg_frame_check(f, &lim, &kind, &len);
        if (rc) return refuse(c, rc);
        if (!c->ready && kind != FASTMSG_HELLO) return refuse(c, FASTMSG_PERR_BAD_KIND);
        uint64_t size = fastmsg_frame_size(len);
        if (size > w->capacity / 2) { /* too large for the ring: its own buffer */
            rc = start_big(c, f, kind, size);
            if (rc < 0) return -1;
            if (rc == 0) break;
            staged = 1;
            continue;
        }
        if (make_room(c, size)) {
            *stalled = 1;
            break;
        }
        f = w->data + (c->at & w->mask);
        if (c->fill - c->at < size) break;
        if (handle_frame(c, f, (size_t)size, kind) < 0) return -1;
        stage(c, size);
        staged = 1;
    }
    return staged;
}

/* Every record of the ring was handed to the consumer, which still holds the space: reading
 * cannot go on in this ring until Messages are released, which may never happen (a caller that
 * keeps them). */
static int held_by_consumer(fm_rxconn *c) {
    return __atomic_load_n(&c->buf->consumed, __ATOMIC_SEQ_CST) == __atomic_load_n(&c->buf->ctl->tail, __ATOMIC_SEQ_CST);
}

/* Goes on in a new ring: the bytes of the frame in progress move there, and the old ring is
 * marked closed, so the consumer drops it once drained (it is, see held_by_consumer) and frees
 * it when its last Message goes. Order holds: nothing more is published in the old ring. */
static int chain_ring(fm_rxconn *c) {
    fm_rxbuf *old = c->buf, *nb = rxbuf_new(old->ctx, old->capacity);
    if (!nb) return -1; /* stay blocked: releases still make room */
    size_t have = (size_t)(c->fill - c->at);
    memcpy(nb->data, old->data + (c->at & c->w.mask), have);
    c->buf = nb;
    fastmsg_ring_init(&c->w, nb->ctl, nb->data, nb->capacity);
    c->at = 0;
    c->fill = have;
    __atomic_store_n(&old->closed, 1, __ATOMIC_RELEASE);
    notify(c->rx, old);
    fm_rxbuf_decref(old);
    FM_STAT_ADD(c->rx, FM_RING_CHAINS, 1);
    return 0;
}

static void publish(fm_rxconn *c) {
    fm_progress++;
    fastmsg_ring_publish(&c->w);
    notify(c->rx, c->buf);
}

/* Reads and parses until the socket is drained, the ring is full, or enough rounds passed. */
static void pump_in(fm_rxconn *c) {
    fastmsg_ring *w = &c->w;
    for (int rounds = 0; rounds < 16; rounds++) {
        int stalled = 0, staged = 0, drained = 0;
        if (c->big_done) {
            if (place_big(c)) stalled = 1;
            else staged = 1;
        } else if (c->big) {
            size_t want = c->big_size - c->big_have;
            ptrdiff_t n = fastmsg_read(c->fd, c->big + c->big_have, want);
            FM_STAT_ADD(c->rx, FM_READ_CALLS, 1);
            if (n == -EAGAIN) return;
            if (n <= 0) {
                FM_STAT_ADD(c->rx, FM_PROTOCOL_ERRORS, 1); /* cut mid-frame */
                close_conn(c);
                return;
            }
            c->big_have += (size_t)n;
            if ((size_t)n < want) return; /* drained: the poller tells when more comes */
            if (c->big_have < c->big_size) continue;
            if (handle_data(c, c->big, c->big_size) < 0) return;
            c->big_done = 1;
            continue;
        } else {
            uint64_t off = c->fill & w->mask, head = __atomic_load_n(&w->ctl->head, __ATOMIC_ACQUIRE);
            uint64_t room = head + w->capacity - c->fill, to_end = w->capacity - off;
            if (room > to_end) room = to_end;
            /* Bytes of a frame in progress must stay contiguous: one that ran into the ring's
             * end is moved to its start (parse, make_room) before anything more is read. */
            if (off == 0 && c->fill != c->at) room = 0;
            if (room == 0) {
                stalled = 1;
            } else {
                ptrdiff_t n = fastmsg_read(c->fd, w->data + off, (size_t)room);
                FM_STAT_ADD(c->rx, FM_READ_CALLS, 1);
                if (n == -EAGAIN) return;
                if (n <= 0) {
                    if (w->wpos != __atomic_load_n(&w->ctl->tail, __ATOMIC_RELAXED)) publish(c);
                    if (c->fill != c->at) FM_STAT_ADD(c->rx, FM_PROTOCOL_ERRORS, 1); /* cut mid-frame */
                    close_conn(c);
                    return;
                }
                c->fill += (uint64_t)n;
                drained = (uint64_t)n < room; /* a short read emptied the socket */
            }
            staged = parse(c, &stalled);
            if (staged < 0) return;
        }
        if (staged) publish(c);
        if (stalled && held_by_consumer(c) && chain_ring(c) == 0) continue;
        if (stalled) {
            /* Wait for the consumer: stop reading (TCP then holds the sender back) until it
             * releases space. Announce it first and look once more, so that a release made
             * before the announcement is not missed; releases after it set `resume`. */
            if (!__atomic_load_n(&c->buf->blocked, __ATOMIC_SEQ_CST)) {
                __atomic_store_n(&c->buf->blocked, 1, __ATOMIC_SEQ_CST);
                continue;
            }
            set_interest(c, c->interest & ~(uint32_t)FASTMSG_POLL_IN);
            return;
        }
        if (__atomic_load_n(&c->buf->blocked, __ATOMIC_RELAXED)) __atomic_store_n(&c->buf->blocked, 0, __ATOMIC_SEQ_CST);
        if (drained) return; /* saves the read that would say EAGAIN: the poller reports more */
    }
}

void fm_rxconn_event(fm_rxconn *c, uint32_t events, int64_t now) {
    (void)now;
    if (events & FASTMSG_POLL_OUT) {
        if (flush_out(c) < 0) return;
    }
    if (events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)) pump_in(c);
}

void fm_receiver_accept(fm_receiver *rx, int64_t now) {
    for (int i = 0; i < 64; i++) {
        int fd = fastmsg_accept(rx->lfd);
        if (fd < 0) return; /* EAGAIN, or a transient error (EMFILE...) that the next round retries */
        fm_rxconn *c = calloc(1, sizeof *c);
        fm_rxbuf *b = c ? rxbuf_new(rx->ctx, rx->cfg.conn_ring_capacity) : NULL;
        if (!b || rx->nconns >= rx->cfg.max_connections) {
            /* refuse over the limit: an ERROR the peer can show, then close */
            static const char text[] = "too many connections";
            uint8_t frame[64];
            size_t n = fastmsg_encode_error(frame, FASTMSG_PERR_LIMIT, text, sizeof text - 1);
            struct iovec iov = {frame, n};
            fastmsg_writev(fd, &iov, 1);
            fastmsg_close(fd);
            free(c);
            if (b) fm_rxbuf_decref(b);
            FM_STAT_ADD(rx, FM_PROTOCOL_ERRORS, 1);
            continue;
        }
        c->h.kind = FM_H_RXCONN;
        c->rx = rx;
        c->fd = fd;
        c->buf = b;
        fastmsg_ring_init(&c->w, b->ctl, b->data, b->capacity);
        c->at = c->fill = 0;
        c->deadline_ns = now + (int64_t)rx->cfg.handshake_timeout_ms * FM_MS;
        c->interest = FASTMSG_POLL_IN;
        if (fastmsg_poller_add(rx->poller, fd, c->interest, c) != 0) {
            fastmsg_close(fd);
            fm_rxbuf_decref(b);
            free(c);
            continue;
        }
        c->next = rx->conns;
        rx->conns = c;
        rx->nconns++;
        FM_STAT_ADD(rx, FM_ACCEPTS, 1);
        FM_STAT_ADD(rx, FM_CONNECTIONS, 1);
    }
}

/* ---- who reads: the token ---- */

static int take(fm_receiver *rx) {
    uint32_t free_ = 0;
    return __atomic_compare_exchange_n(&rx->token, &free_, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static void give(fm_receiver *rx) { __atomic_store_n(&rx->token, 0, __ATOMIC_SEQ_CST); }

void fm_receiver_attach(fm_receiver *rx) {
    if (rx->poller == rx->ctx->poller) fastmsg_poller_add(rx->poller, rx->lfd, FASTMSG_POLL_IN, rx);
    else fastmsg_poller_add(rx->ctx->poller, fastmsg_poller_fd(rx->poller), FASTMSG_POLL_IN, &rx->nest);
}

void fm_receiver_detach(fm_receiver *rx) {
    /* Python closes a receiver only when no thread is in recv: a holder gives it back soon. */
    while (!take(rx)) sched_yield();
    while (rx->conns) close_conn(rx->conns);
    fastmsg_poller_remove(rx->poller, rx->lfd);
    if (rx->poller != rx->ctx->poller) fastmsg_poller_remove(rx->ctx->poller, fastmsg_poller_fd(rx->poller));
    fastmsg_close(rx->lfd);
}

static void dispatch(fm_receiver *rx, const fastmsg_poll_event *ev, int n, int64_t now) {
    for (int i = 0; i < n; i++) {
        fm_handle *h = ev[i].data;
        if (h->kind == FM_H_LISTENER) fm_receiver_accept(rx, now);
        else if (h->kind == FM_H_WAKER) fm_waker_drain(&rx->wake); /* `interrupted` says why */
        else fm_rxconn_event((fm_rxconn *)h, ev[i].events, now);
    }
}

void fm_receiver_poll(fm_receiver *rx, int64_t now) {
    int nest = fastmsg_poller_fd(rx->poller);
    if (!take(rx)) {
        /* A reader took it and is about to take the sockets on lease (the nest disarmed); do
         * that now, or the level-triggered nest would spin this thread while the reader is
         * preempted. fm_receiver_step arms the nest again when the lease ends; if the token is
         * free again already, this thread restores what `lent` says at once. */
        fastmsg_poller_rearm(rx->ctx->poller, nest, 0);
        if (!take(rx)) return;
        if (!rx->lent) fastmsg_poller_rearm(rx->ctx->poller, nest, FASTMSG_POLL_IN);
    }
    fastmsg_poll_event ev[64];
    int n = fastmsg_poller_wait(rx->poller, ev, 64, 0);
    dispatch(rx, ev, n, now);
    give(rx);
}

static void step_held(fm_receiver *rx, int64_t now, int64_t *next);

/* Skipped while a reader holds the token: the reader runs the same timers itself, and this
 * thread looks again a lease later to take the sockets back. */
void fm_receiver_step(fm_receiver *rx, int64_t now, int64_t *next) {
    if (!take(rx)) {
        if (now + FM_RX_LEASE_NS < *next) *next = now + FM_RX_LEASE_NS;
        return;
    }
    if (rx->lent) {
        if (now >= rx->lease_end_ns) {
            rx->lent = 0;
            fastmsg_poller_rearm(rx->ctx->poller, fastmsg_poller_fd(rx->poller), FASTMSG_POLL_IN);
        } else if (rx->lease_end_ns < *next) {
            *next = rx->lease_end_ns;
        }
    }
    step_held(rx, now, next);
    give(rx);
}

static int has_ready(fm_receiver *rx) {
    pthread_mutex_lock(&rx->qlock);
    uint32_t n = rx->qlen;
    pthread_mutex_unlock(&rx->qlock);
    return n != 0;
}

int fm_receiver_wait_direct(fm_receiver *rx, int64_t deadline_ns) {
    fm_ctx *ctx = rx->ctx;
    if (rx->poller == ctx->poller) return fm_receiver_wait(rx, deadline_ns);
    while (!take(rx)) {
        /* The I/O thread holds it for a moment. It may leave the sockets lent (unwatched), so
         * wait for its records only briefly before trying again. */
        int64_t until = fastmsg_monotonic_ns() + FM_RX_RETRY_NS;
        if (deadline_ns >= 0 && deadline_ns <= until) return fm_receiver_wait(rx, deadline_ns);
        int rc = fm_receiver_wait(rx, until);
        if (rc != FASTMSG_WAIT_TIMEOUT) return rc;
    }
    if (!rx->lent) { /* the I/O thread stops watching these sockets */
        fastmsg_poller_rearm(ctx->poller, fastmsg_poller_fd(rx->poller), 0);
        rx->lent = 1;
    }
    fastmsg_poll_event ev[64];
    int rc = FASTMSG_WAIT_TIMEOUT;
    int64_t now = fastmsg_monotonic_ns();
    for (;;) {
        /* No timer unless a deadline needs one: arming and cancelling one costs more than the
         * rest of the wait (a VM exit each, in a virtual machine). */
        int64_t next = INT64_MAX;
        step_held(rx, now, &next);
        if (has_ready(rx)) {
            rc = FASTMSG_WAIT_READY;
            break;
        }
        if (__atomic_load_n(&rx->interrupted, __ATOMIC_SEQ_CST)) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
        if (deadline_ns >= 0) {
            if (now >= deadline_ns) break;
            if (deadline_ns < next) next = deadline_ns;
        }
        int64_t wait_ms = next == INT64_MAX ? -1 : (next - now + FM_MS - 1) / FM_MS;
        int timeout_ms = wait_ms > 3600 * 1000 ? 3600 * 1000 : (int)wait_ms; /* (the loop goes on) */
        int n = fastmsg_poller_wait(rx->poller, ev, 64, timeout_ms);
        if (n == -EINTR) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
        now = fastmsg_monotonic_ns();
        dispatch(rx, ev, n, now);
    }
    rx->lease_end_ns = now + FM_RX_LEASE_NS;
    give(rx);
    return rc;
}

static void step_held(fm_receiver *rx, int64_t now, int64_t *next) {
    for (fm_rxconn *c = rx->conns, *n; c; c = n) {
        n = c->next;
        if (c->closing) {
            if (now >= c->deadline_ns) close_conn(c);
            else if (c->deadline_ns < *next) *next = c->deadline_ns;
            continue;
        }
        if (!c->ready) {
            if (now >= c->deadline_ns) {
                FM_STAT_ADD(rx, FM_PROTOCOL_ERRORS, 1);
                close_conn(c); /* no HELLO in time */
                continue;
            }
            if (c->deadline_ns < *next) *next = c->deadline_ns;
        }
        if (__atomic_load_n(&c->buf->resume, __ATOMIC_SEQ_CST)) {
            __atomic_store_n(&c->buf->resume, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&c->buf->blocked, 0, __ATOMIC_SEQ_CST);
            set_interest(c, c->interest | FASTMSG_POLL_IN);
            pump_in(c);
        }
    }
}

int fm_receiver_has_work(fm_receiver *rx) {
    /* A reader holding the token resumes the connections itself (at the latest when its wait
     * slice ends). */
    if (!take(rx)) return 0;
    int work = 0;
    for (fm_rxconn *c = rx->conns; c && !work; c = c->next)
        work = (int)__atomic_load_n(&c->buf->resume, __ATOMIC_SEQ_CST);
    give(rx);
    return work;
}
