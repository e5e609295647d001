/* The ready queue: connection rings with records for the consumer. The readers append a ring when
 * they publish in it (once: its `queued` flag); Python takes rings, drains them and hands them back,
 * and waits on a futex word when none is ready. */
#include <stdlib.h>

#include "engine/receiver_internal.h"

#define QUEUE_MIN 64 /* first allocation */


/* `qlen` changes under the lock, but is stored atomically so that an empty queue, the common
 * answer (twice a round trip each), costs no lock: one that fills meanwhile also bumps
 * ready_seq and wakes waiters, after its unlock, so a look that missed it is followed by another. */
static uint32_t queued(fm_receiver *rx) { return __atomic_load_n(&rx->qlen, __ATOMIC_ACQUIRE); }

fm_rxbuf *fm_receiver_next_ready(fm_receiver *rx) {
    fm_rxbuf *b = NULL;
    if (!queued(rx)) return NULL;
    fm_mutex_lock(&rx->qlock);
    if (rx->qlen) {
        b = rx->queue[rx->qhead];
        rx->qhead = (rx->qhead + 1) % rx->qcap;
        __atomic_store_n(&rx->qlen, rx->qlen - 1, __ATOMIC_RELEASE);
    }
    fm_mutex_unlock(&rx->qlock);
    return b;
}

int fm_receiver_has_ready(fm_receiver *rx) { return queued(rx) != 0; }

/* Appends b (whose reference the queue takes over) and wakes a waiting consumer. */
static void enqueue(fm_receiver *rx, fm_rxbuf *b) {
    fm_mutex_lock(&rx->qlock);
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
    __atomic_store_n(&rx->qlen, rx->qlen + 1, __ATOMIC_RELEASE);
    fm_mutex_unlock(&rx->qlock);
    __atomic_fetch_add(&rx->ready_seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&rx->waiters, __ATOMIC_SEQ_CST)) fastmsg_futex_wake_all(&rx->ready_seq);
    fm_notifier_fire(&rx->ready); /* after the queue's unlock: a waiter re-checks under the lock */
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
    if (fm_rxbuf_space_released(b) && fm_receiver_write_acks(rx) != 0) fm_rxbuf_ack_kick(b);
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
    fm_notifier_fire(&rx->ready);
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
