/* The receiver as Python uses it: make one (bound and listening), take rings with records from
 * the ready queue and hand them back, wait, interrupt, close. The sockets are read by the I/O
 * thread or by a waiting reader (receiver_direct.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/receiver_internal.h"

#define LISTEN_BACKLOG 128
#define QUEUE_MIN 64 /* first allocation of the ready queue */

/* Frees what receiver_new made (the receiver is not, or no longer, in the loop). */
static void receiver_free(fm_receiver *rx) {
    fm_rxbuf *b;
    while ((b = fm_receiver_next_ready(rx))) fm_rxbuf_decref(b);
    if (rx->poller != rx->ctx->poller) fastmsg_poller_free(rx->poller);
    fm_waker_close(&rx->wake);
    fastmsg_close(rx->lfd);
    free(rx->queue);
    fm_session_table_free(&rx->sessions);
    pthread_mutex_destroy(&rx->qlock);
    free(rx);
}

/* A poller of its own, which a reader can wait on, when the context's can nest one; filled
 * before anyone else can see it. If it cannot be made, the receiver works through the I/O
 * thread alone. */
static void nest_poller(fm_receiver *rx) {
    if (fastmsg_poller_fd(rx->ctx->poller) < 0) return;
    fastmsg_poller *own = fastmsg_poller_new(FASTMSG_POLLER_AUTO);
    if (own && fastmsg_poller_add(own, rx->lfd, FASTMSG_POLL_IN, &rx->listener) == 0 && fm_waker_open(&rx->wake) == 0 &&
        fastmsg_poller_add(own, rx->wake.rd, FASTMSG_POLL_IN, &rx->wake.ep) == 0) {
        rx->poller = own;
    } else {
        fm_waker_close(&rx->wake);
        fastmsg_poller_free(own);
    }
}

static fm_receiver *receiver_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen,
                                 const fm_receiver_config *cfg, fm_error *err) {
    if (addrlen > sizeof(struct sockaddr_storage)) {
        fm_error_set(err, EINVAL, "address too long");
        return NULL;
    }
    int fd = fastmsg_listen(addr, addrlen, LISTEN_BACKLOG);
    if (fd < 0) {
        fm_error_set(err, -fd, "cannot listen: %s", strerror(-fd));
        return NULL;
    }
    fm_receiver *rx = calloc(1, sizeof *rx);
    if (!rx) {
        fastmsg_close(fd);
        fm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    int rc = pthread_mutex_init(&rx->qlock, NULL);
    if (rc) {
        fastmsg_close(fd);
        free(rx);
        fm_error_set(err, rc, "cannot create a lock: %s", strerror(rc));
        return NULL;
    }
    rx->ep.ops = &fm_receiver_ops;
    rx->listener.ops = &fm_listener_ops;
    rx->nest.ops = &fm_nest_ops;
    rx->ctx = ctx;
    rx->cfg = *cfg;
    rx->lfd = fd;
    rx->poller = ctx->poller;
    rx->wake.rd = rx->wake.wr = -1;
    nest_poller(rx);
    rc = fm_ctx_command(ctx, FM_CMD_ATTACH, &rx->ep);
    if (rc) {
        fm_error_set(err, -rc, "cannot poll the listening socket: %s", strerror(-rc));
        receiver_free(rx);
        return NULL;
    }
    return rx;
}

fm_receiver *fm_receiver_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_receiver_config *cfg,
                             char *err, size_t errlen) {
    fm_error e;
    fm_receiver *rx = receiver_new(ctx, addr, addrlen, cfg, &e);
    if (!rx) snprintf(err, errlen, "%s", e.text);
    return rx;
}

int fm_receiver_local_addr(fm_receiver *rx, struct sockaddr_storage *out, socklen_t *len) {
    return fastmsg_local_addr(rx->lfd, out, len);
}

void fm_receiver_stats(fm_receiver *rx, uint64_t out[FM_STAT_COUNT]) {
    for (int i = 0; i < FM_STAT_COUNT; i++) out[i] = __atomic_load_n(&rx->stats[i], __ATOMIC_RELAXED);
}

void fm_receiver_close(fm_receiver *rx) {
    fm_ctx_command(rx->ctx, FM_CMD_DETACH, &rx->ep);
    receiver_free(rx);
}

/* ---- the ready queue: rings with records for the consumer ---- */

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

int fm_receiver_has_ready(fm_receiver *rx) {
    pthread_mutex_lock(&rx->qlock);
    uint32_t n = rx->qlen;
    pthread_mutex_unlock(&rx->qlock);
    return n != 0;
}

/* Appends b (whose reference the queue takes over) and wakes a waiting consumer. */
static void enqueue(fm_receiver *rx, fm_rxbuf *b) {
    pthread_mutex_lock(&rx->qlock);
    if (rx->qlen == rx->qcap) {
        uint32_t cap = rx->qcap ? rx->qcap * 2 : QUEUE_MIN;
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

void fm_receiver_notify(fm_receiver *rx, fm_rxbuf *b) {
    if (__atomic_exchange_n(&b->queued, 1, __ATOMIC_SEQ_CST)) return;
    fm_rxbuf_incref(b);
    enqueue(rx, b);
}

void fm_receiver_done(fm_receiver *rx, fm_rxbuf *b, uint64_t consumed) {
    /* A reader stopped for want of room may find that the consumer holds every record it was
     * given: then it goes on in a new ring (receiver_read.c) rather than wait for releases. */
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
        if (fm_receiver_has_ready(rx)) {
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
