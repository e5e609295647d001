/* The sender as Python uses it: make one, find its ring, kick the I/O thread after publishing,
 * flush, read its state, close (the direct write is sender_direct.c). The connection itself is
 * the I/O thread's (sender_conn.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/sender_internal.h"

/* A handshake that has not finished this long after the connect began is given up, unless the
 * configuration says otherwise. */
#define HANDSHAKE_TIMEOUT_DEFAULT_MS 5000

fm_sender *fm_sender_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_sender_config *cfg,
                         fm_error *err) {
    if ((size_t)addrlen > sizeof(struct sockaddr_storage)) { /* (socklen_t is signed on Windows) */
        fm_tls_ctx_free(cfg->tls);
        fm_error_set(err, EINVAL, "address too long");
        return NULL;
    }
    fm_sender *s = calloc(1, sizeof *s);
    if (!s || !(s->mem = calloc(1, sizeof(fastmsg_ring_ctl) + cfg->ring_capacity))) {
        free(s);
        fm_tls_ctx_free(cfg->tls);
        fm_error_set(err, ENOMEM, "cannot allocate the sender");
        return NULL;
    }
    int rc = fm_mutex_init(&s->err_lock);
    if (!rc && fm_request_table_init(&s->requests)) {
        fm_mutex_destroy(&s->err_lock);
        rc = ENOMEM;
    }
    if (rc) {
        free(s->mem);
        free(s);
        fm_tls_ctx_free(cfg->tls);
        fm_error_set(err, rc, "cannot create a lock: %s", strerror(rc));
        return NULL;
    }
    s->ep.ops = &fm_sender_ops;
    s->ctx = ctx;
    memcpy(&s->addr, addr, addrlen);
    s->addrlen = addrlen;
    s->cfg = *cfg;
    fm_busy_poll_init(&s->busy, cfg->busy_poll_ns, cfg->busy_poll_auto);
    uint32_t timeout_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : HANDSHAKE_TIMEOUT_DEFAULT_MS;
    s->handshake_timeout_ns = (int64_t)timeout_ms * FM_MS;
    s->fd = -1;
    fm_notifier_init(&s->ready);
    fm_sender_hb_init(s); /* heartbeat hook */
    fastmsg_ring_ctl *ctl = s->mem;
    uint8_t *data = (uint8_t *)s->mem + sizeof(fastmsg_ring_ctl);
    fastmsg_ring_init(&s->producer, ctl, data, cfg->ring_capacity);
    fastmsg_ring_init(&s->io, ctl, data, cfg->ring_capacity);
    /* Room comes back only when a batch is written, and the I/O thread often shares the CPU
     * (a process pinned to one): a send() waiting for room sleeps at once. */
    s->producer.no_spin = 1;
    fm_ctx_command(ctx, FM_CMD_ATTACH, &s->ep); /* a sender's attach cannot fail */
    return s;
}

fastmsg_ring *fm_sender_ring(fm_sender *s) { return &s->producer; }

uint64_t fm_sender_queued(fm_sender *s) {
    return s->producer.wpos - __atomic_load_n(&s->producer.ctl->head, __ATOMIC_ACQUIRE);
}

uint64_t fm_sender_released(fm_sender *s) { return __atomic_load_n(&s->producer.ctl->head, __ATOMIC_ACQUIRE); }

int fm_sender_all_written(fm_sender *s) {
    return __atomic_load_n(&s->written_pos, __ATOMIC_ACQUIRE) == s->producer.wpos;
}

int64_t fm_sender_written_ns(fm_sender *s) { return __atomic_load_n(&s->written_ns, __ATOMIC_RELAXED); }

uint64_t fm_sender_unacked(fm_sender *s) {
    uint64_t done = __atomic_load_n(&s->stats[FM_ACKED], __ATOMIC_ACQUIRE) + __atomic_load_n(&s->stats[FM_REJECTED], __ATOMIC_ACQUIRE);
    uint64_t queued = __atomic_load_n(&s->producer.ctl->records, __ATOMIC_ACQUIRE);
    return queued > done ? queued - done : 0;
}

fm_notifier *fm_sender_notifier(fm_sender *s) { return &s->ready; }

void fm_sender_kick(fm_sender *s) { fm_ctx_kick(s->ctx); }

void fm_sender_ask_ack(fm_sender *s) {
    __atomic_store_n(&s->ack_asked, 1, __ATOMIC_RELEASE);
    /* The answer would wait unread in a socket lent to a requester until the lease ends (10 ms) */
    fm_sender_revoke_lease(s);
    fm_ctx_kick(s->ctx);
}

int fm_sender_flush(fm_sender *s, int64_t deadline_ns) {
    uint64_t target = __atomic_load_n(&s->producer.ctl->tail, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&s->producer.ctl->head, __ATOMIC_ACQUIRE) >= target) return FASTMSG_WAIT_READY;
    return fastmsg_ring_wait_space(&s->producer, target, deadline_ns);
}

int fm_sender_connected(fm_sender *s) { return (int)__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE); }

uint32_t fm_sender_peer_max_message(fm_sender *s) { return __atomic_load_n(&s->peer_max_message, __ATOMIC_ACQUIRE); }

uint64_t fm_sender_refused(fm_sender *s, uint64_t *last_size) {
    uint64_t n = __atomic_load_n(&s->stats[FM_REJECTED], __ATOMIC_ACQUIRE);
    *last_size = __atomic_load_n(&s->last_dropped_size, __ATOMIC_RELAXED);
    return n;
}

void fm_sender_stats(fm_sender *s, uint64_t out[FM_STAT_COUNT]) {
    for (int i = 0; i < FM_STAT_COUNT; i++) out[i] = __atomic_load_n(&s->stats[i], __ATOMIC_RELAXED);
}

void fm_sender_peer(fm_sender *s, char *buf, size_t len) {
    fm_mutex_lock(&s->err_lock);
    snprintf(buf, len, "%s", s->peer_name);
    fm_mutex_unlock(&s->err_lock);
}

void fm_sender_last_error(fm_sender *s, char *buf, size_t len) {
    fm_mutex_lock(&s->err_lock);
    snprintf(buf, len, "%s", s->last_error);
    fm_mutex_unlock(&s->err_lock);
}

uint64_t fm_sender_done(fm_sender *s) {
    return __atomic_load_n(&s->stats[FM_ACKED], __ATOMIC_ACQUIRE) + __atomic_load_n(&s->stats[FM_REJECTED], __ATOMIC_ACQUIRE);
}

uint64_t fm_sender_rtt(fm_sender *s, uint64_t *last_ns, int64_t *timing_since_ns) {
    uint64_t n = __atomic_load_n(&s->rtt_samples, __ATOMIC_ACQUIRE);
    *last_ns = __atomic_load_n(&s->rtt_last_ns, __ATOMIC_RELAXED);
    *timing_since_ns = __atomic_load_n(&s->rtt_start_ns, __ATOMIC_RELAXED);
    return n;
}

void fm_sender_stop(fm_sender *s) {
    if (s->stopped) return;
    fm_ctx_command(s->ctx, FM_CMD_DETACH, &s->ep);
    s->stopped = 1;
}

int fm_sender_next_unacked(fm_sender *s, uint64_t *pos, const uint8_t **payload, uint64_t *len, uint32_t *flags) {
    fastmsg_ring *r = &s->producer;
    uint64_t tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE);
    while (*pos < tail) {
        uint64_t at = fastmsg_ring_skip_pad(r, *pos);
        if (at >= tail) break;
        const uint8_t *h = r->data + (at & r->mask);
        uint32_t n = fastmsg_rec_len(h), f = fastmsg_rec_flags(h);
        *pos = at + fastmsg_ring_slot(n);
        if (f & FM_REC_DROPPED) continue; /* refused by the receiver, and reported as such */
        *flags = f;
        if (f & FM_REC_EXTERNAL) {
            *payload = fm_pointer_rec_ptr(h + FASTMSG_REC_HDR);
            *len = fm_pointer_rec_size(h + FASTMSG_REC_HDR);
        } else {
            *payload = h + FASTMSG_REC_HDR;
            *len = n;
        }
        return 1;
    }
    *pos = tail;
    return 0;
}

void fm_sender_close(fm_sender *s) {
    /* Unsent records go with the ring; their external payloads are the producer's. */
    fm_sender_stop(s);
    fm_notifier_close(&s->ready); /* the I/O thread, which fires it, has let go */
    fm_mutex_destroy(&s->err_lock);
    fm_request_table_free(&s->requests);
    free(s->rbig);
    free(s->mem);
    fm_tls_ctx_free(s->cfg.tls);
    free(s);
}
