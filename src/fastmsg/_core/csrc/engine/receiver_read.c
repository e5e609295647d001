/* Reading a connection: bytes go straight into its ring, and each whole frame, once checked, is
 * published as the record it already is. A frame that would cross the ring's end moves to its
 * start behind a PAD; one too large for half the ring is read into a buffer of its own, with a
 * marker record in its place; a ring whose every record the consumer holds is left for a new one. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/receiver_internal.h"

/* Reads per event, so that one busy connection does not starve the others. */
#define READ_ROUNDS 16

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
    c->at = fastmsg_ring_put_pad(w, c->at); /* w.wpos stays before the PAD: it is published with the frame after it */
    c->fill = c->at + have;
    return 0;
}

/* Stages the record that starts at c->at and is `slot` bytes long. */
static void stage(fm_rxconn *c, uint64_t slot) {
    c->at += slot;
    c->w.wpos = c->at;
    c->w.wcount++;
    if (c->data_pending) { /* a DATA frame (or its marker): its messages await acknowledgement */
        c->data_pending = 0;
        fm_ack_frame_staged(c, c->at, c->data_end_seq, c->data_bytes);
    }
}

/* Writes the marker of the checked big frame at c->at and stages it; the caller made room. */
static void put_marker(fm_rxconn *c) {
    uint8_t *rec = c->w.data + (c->at & c->w.mask);
    fastmsg_rec_put_hdr(rec, FM_POINTER_REC_LEN, FM_RX_EXTERNAL);
    fm_pointer_rec_put(rec + FASTMSG_REC_HDR, c->big, c->big_size);
    stage(c, fastmsg_ring_slot(FM_POINTER_REC_LEN));
    c->big = NULL;
    c->big_done = 0;
}

/* Puts the marker of a big frame read outside the ring. 0, or 1 if there is no room yet. */
static int place_big(fm_rxconn *c) {
    if (make_room(c, fastmsg_ring_slot(FM_POINTER_REC_LEN))) return 1;
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
    if (kind != FASTMSG_DATA) return fm_rxconn_refuse(c, FASTMSG_PERR_TOO_LARGE);
    c->big = malloc((size_t)size);
    if (!c->big) return fm_rxconn_refuse(c, FASTMSG_PERR_LIMIT);
    c->big_size = (size_t)size;
    if (have < size) {
        memcpy(c->big, f, have);
        c->big_have = have;
        c->fill = c->at;
        return 0;
    }
    memcpy(c->big, f, (size_t)size);
    if (fm_rxconn_handle_data(c, c->big, (size_t)size) < 0) return -1;
    size_t rest = have - (size_t)size;
    memmove(f + fastmsg_ring_slot(FM_POINTER_REC_LEN), f + size, rest); /* the marker is smaller than the frame */
    put_marker(c);
    c->fill = c->at + rest;
    return 1;
}

/* Acts on every whole frame read so far. Returns 1 if frames were staged, 0 if none, -1 if the
 * connection was closed; sets *stalled when the ring has no room for the next frame. */
static int parse(fm_rxconn *c, int *stalled) {
    fastmsg_ring *w = &c->w;
    fastmsg_limits lim = {.max_message = c->rx->cfg.max_message, .max_batch = c->rx->cfg.max_batch};
    int staged = 0;
    *stalled = 0;
    while (c->fill - c->at >= FASTMSG_FRAME_HDR) {
        if (c->rate_until_ns) break; /* rate limit hook: the rest waits for the bucket */
        uint8_t *f = w->data + (c->at & w->mask);
        uint32_t kind, len;
        int rc = fastmsg_frame_check(f, &lim, &kind, &len);
        if (rc) return fm_rxconn_refuse(c, rc);
        if (!c->ready && kind != (c->auth_wait ? FASTMSG_AUTH : FASTMSG_HELLO) && !(c->auth_wait && kind == FASTMSG_ERROR))
            return fm_rxconn_refuse(c, FASTMSG_PERR_BAD_KIND);
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
        if (fm_rxconn_handle_frame(c, f, (size_t)size, kind) < 0) return -1;
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
    fm_rxbuf *old = c->buf, *nb = fm_rxbuf_new(old->ctx, old->capacity);
    if (!nb) return -1; /* stay blocked: releases still make room */
    nb->session_id = old->session_id;
    if (old->peer && !(nb->peer = strdup(old->peer))) {
        fm_rxbuf_decref(nb);
        return -1;
    }
    size_t have = (size_t)(c->fill - c->at);
    memcpy(nb->data, old->data + (c->at & c->w.mask), have);
    c->buf = nb;
    fastmsg_ring_init(&c->w, nb->ctl, nb->data, nb->capacity);
    c->at = 0;
    c->fill = have;
    __atomic_store_n(&old->closed, 1, __ATOMIC_RELEASE);
    fm_receiver_notify(c->rx, old);
    fm_rxbuf_decref(old);
    FM_STAT_ADD(c->rx, FM_RING_CHAINS, 1);
    return 0;
}

static void publish(fm_rxconn *c) {
    fm_progress++;
    fastmsg_ring_publish(&c->w);
    fm_receiver_notify(c->rx, c->buf);
}

int fm_rxconn_parse_read(fm_rxconn *c) {
    int stalled;
    int staged = parse(c, &stalled);
    if (staged < 0) return -1;
    if (staged) publish(c);
    return 0;
}

/* TLS holds bytes, or a failure, that the poller cannot report: a short read is not the end. */
static int tls_unread(fm_rxconn *c) { return c->tls && fm_tls_pending(c->tls); }

/* The connection's end after a read returned n <= 0; a record TLS refused is counted, with why. */
static void read_failed(fm_rxconn *c, ptrdiff_t n) {
    if (n == -EPROTO && c->tls) {
        fm_receiver_note_refusal(c->rx, FM_TLS_FAILURES, "dropped a sender", fm_tls_error(c->tls));
    }
    fm_rxconn_close(c);
}

/* A read into the ring returned n <= 0: what was whole goes to the consumer, and the connection
 * closes. */
static void ring_read_ended(fm_rxconn *c, ptrdiff_t n) {
    if (c->w.wpos != __atomic_load_n(&c->w.ctl->tail, __ATOMIC_RELAXED)) publish(c);
    /* closed mid-frame; a reset (n < 0) is the network's doing, not the peer's */
    if (n == 0 && c->fill != c->at) FM_STAT_ADD(c->rx, FM_PROTOCOL_ERRORS, 1);
    read_failed(c, n);
}

/* Where the next read goes in the ring (at *off), and how many bytes fit there: up to the ring's
 * end, and 0 while a frame in progress waits to move to the start. */
static uint64_t read_room(fm_rxconn *c, uint64_t *off) {
    fastmsg_ring *w = &c->w;
    uint64_t head = __atomic_load_n(&w->ctl->head, __ATOMIC_ACQUIRE);
    uint64_t room = head + w->capacity - c->fill, to_end = w->capacity - (c->fill & w->mask);
    *off = c->fill & w->mask;
    if (room > to_end) room = to_end;
    /* Bytes of a frame in progress must stay contiguous: one that ran into the ring's end is
     * moved to its start (parse, make_room) before anything more is read. */
    return *off == 0 && c->fill != c->at ? 0 : room;
}

int fm_rxconn_read_wait(fm_rxconn *c, int64_t *now) {
    uint64_t off, room = read_room(c, &off);
    if (room == 0 || c->big || c->big_done) { /* (the caller's checks leave none of these, but if one came) */
        fm_rxconn_pump_in(c);
        *now = fastmsg_monotonic_ns();
        return 1;
    }
    ptrdiff_t n = fastmsg_read_wait(c->fd, c->w.data + off, (size_t)room);
    *now = fastmsg_monotonic_ns(); /* (the caller's too: one clock read, 25-30 ns on a VM, a round trip) */
    FM_STAT_ADD(c->rx, FM_READ_CALLS, 1);
    if (n == -EAGAIN) return 0;
    if (n == -EINTR) return -EINTR;
    fm_hb_received(&c->hb, *now); /* heartbeat hook: anything from the sender is life */
    if (n <= 0) {
        ring_read_ended(c, n);
        return 1;
    }
    c->fill += (uint64_t)n;
    int stalled, staged = parse(c, &stalled);
    if (staged < 0) return 1; /* closed */
    if (staged) publish(c);
    if ((uint64_t)n == room || stalled) fm_rxconn_pump_in(c); /* more may wait, or the ring is full */
    return 1;
}

void fm_rxconn_pump_in(fm_rxconn *c) {
    fastmsg_ring *w = &c->w;
    for (int rounds = 0; rounds < READ_ROUNDS; rounds++) {
        int stalled = 0, staged = 0, drained = 0;
        if (fm_rxconn_rate_paused(c)) return; /* rate limit hook: receiver_rate.c resumes it */
        if (c->big_done) {
            if (place_big(c)) stalled = 1;
            else staged = 1;
        } else if (c->big) {
            size_t want = c->big_size - c->big_have;
            ptrdiff_t n = fm_io_read(c->fd, c->tls, c->big + c->big_have, want);
            FM_STAT_ADD(c->rx, FM_READ_CALLS, 1);
            if (n == -EAGAIN) return;
            if (n <= 0) {
                if (n == 0) FM_STAT_ADD(c->rx, FM_PROTOCOL_ERRORS, 1); /* closed mid-frame (a reset is no peer's fault) */
                read_failed(c, n);
                return;
            }
            c->big_have += (size_t)n;
            if ((size_t)n < want && !tls_unread(c)) return; /* drained: the poller tells when more comes */
            if (c->big_have < c->big_size) continue;
            if (fm_rxconn_handle_data(c, c->big, c->big_size) < 0) return;
            c->big_done = 1;
            continue;
        } else {
            uint64_t off, room = read_room(c, &off);
            if (room == 0) {
                stalled = 1;
            } else {
                ptrdiff_t n = fm_io_read(c->fd, c->tls, w->data + off, (size_t)room);
                FM_STAT_ADD(c->rx, FM_READ_CALLS, 1);
                if (n == -EAGAIN) return;
                if (n <= 0) {
                    ring_read_ended(c, n);
                    return;
                }
                c->fill += (uint64_t)n;
                drained = (uint64_t)n < room && !tls_unread(c); /* a short read emptied the socket */
            }
            staged = parse(c, &stalled);
            if (staged < 0) return;
        }
        if (staged) publish(c);
        if (c->rate_until_ns) return; /* rate limit hook */
        if (stalled && held_by_consumer(c) && chain_ring(c) == 0) continue;
        if (stalled) {
            /* Wait for the consumer: stop reading (TCP then holds the sender back) until it
             * releases space. Announce it first and look once more, so that a release made
             * before the announcement is not missed; releases after it set `resume`. */
            if (!__atomic_load_n(&c->buf->blocked, __ATOMIC_SEQ_CST)) {
                __atomic_store_n(&c->buf->blocked, 1, __ATOMIC_SEQ_CST);
                /* The look once more reads `head` with acquire loads, which C11 lets move before
                 * this store (ARMv8.3's LDAPR does): then this side could miss a release while the
                 * consumer misses `blocked`, and reading would stop for good. The fence keeps the
                 * two sides' "store mine, then read theirs" in one order, as the consumer's
                 * (fastmsg_ring_release, then fm_rxbuf_space_released) is. */
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                continue;
            }
            fm_rxconn_set_interest(c, c->interest & ~(uint32_t)FASTMSG_POLL_IN);
            return;
        }
        if (__atomic_load_n(&c->buf->blocked, __ATOMIC_RELAXED)) __atomic_store_n(&c->buf->blocked, 0, __ATOMIC_SEQ_CST);
        if (drained) return; /* saves the read that would say EAGAIN: the poller reports more */
    }
    /* Rounds used up: the poller reports what the socket holds, but not what TLS decrypted and
     * holds already; the next step reads on. */
    if (c->tls && fm_tls_pending(c->tls)) __atomic_store_n(&c->buf->resume, 1, __ATOMIC_SEQ_CST);
}

static void rxconn_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    fm_rxconn *c = FM_CONTAINER_OF(ep, fm_rxconn, ep);
    if (c->retired) return; /* closed at the next step */
    if (c->tls_wait) {
        if (fm_rxconn_tls_step(c) != 0) return;
        fm_rxconn_pump_in(c); /* the HELLO may be in TLS's hands already */
        return;
    }
    if (events & FASTMSG_POLL_OUT) {
        if (fm_rxconn_flush_out(c) < 0) return;
    }
    if (events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)) {
        fm_hb_received(&c->hb, now); /* heartbeat hook: anything from the sender is life */
        fm_rxconn_pump_in(c);
    }
}

const fm_endpoint_ops fm_rxconn_ops = {.event = rxconn_event};
