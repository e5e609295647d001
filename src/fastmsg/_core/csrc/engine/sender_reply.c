/* Requests and replies, on the sender's side (docs/protocol.md, "Requests and replies"). A request
 * is registered in a table by its id before its message is queued; the I/O thread checks each
 * REPLY frame as it checks DATA (one CRC, the record walk), hands every new reply to its request
 * (a copy, and a futex wake of its waiter) or counts it as late when the request has ended, and
 * acknowledges what arrived with a RACK, in front of the next DATA batch. Replies are acknowledged
 * on arrival: once copied, none can be lost on this side. (A requester reading its socket itself,
 * sender_direct.c, runs the same code.) */
#include <stdlib.h>
#include <string.h>

#include "base/futex.h"
#include "engine/sender_internal.h"

#define BUCKETS_MIN 64u

int fm_request_table_init(fm_request_table *t) {
    t->buckets = NULL;
    t->spare = NULL;
    t->nbuckets = t->n = 0;
    return fm_mutex_init(&t->lock) ? -1 : 0;
}

void fm_request_table_free(fm_request_table *t) {
    /* (Python ends every request before it closes the sender: the buckets are empty) */
    free(t->buckets);
    free(t->spare);
    fm_mutex_destroy(&t->lock);
}

/* Ids are a counter, so their low bits spread them already; the multiply mixes in the rest. */
static fm_request **bucket(fm_request_table *t, uint64_t id) {
    return &t->buckets[(id * 0x9e3779b97f4a7c15ULL >> 32) & (t->nbuckets - 1)];
}

/* Doubles the buckets (under the lock); without memory, chains just grow. */
static void grow(fm_request_table *t) {
    uint32_t nb = t->nbuckets ? t->nbuckets * 2 : BUCKETS_MIN;
    fm_request **b = calloc(nb, sizeof *b), **old = t->buckets;
    if (!b) return;
    uint32_t n_old = t->nbuckets;
    t->buckets = b;
    t->nbuckets = nb;
    for (uint32_t i = 0; i < n_old; i++) {
        for (fm_request *r = old[i], *next; r; r = next) {
            next = r->hnext;
            fm_request **pp = bucket(t, r->id);
            r->hnext = *pp;
            *pp = r;
        }
    }
    free(old);
}

fm_request *fm_request_new(fm_sender *s, uint64_t id, int more) {
    fm_request_table *t = &s->requests;
    /* (the one a request that ended left, if any: a request at a time makes no malloc) */
    fm_request *r = __atomic_exchange_n(&t->spare, NULL, __ATOMIC_ACQUIRE);
    if (!r && !(r = malloc(sizeof *r))) return NULL;
    *r = (fm_request){.id = id};
    fm_mutex_lock(&t->lock);
    if (t->n >= t->nbuckets) grow(t);
    if (!t->nbuckets) {
        fm_mutex_unlock(&t->lock);
        free(r);
        return NULL;
    }
    fm_request **pp = bucket(t, id);
    r->hnext = *pp;
    *pp = r;
    uint32_t n = ++t->n;
    fm_mutex_unlock(&t->lock);
    FM_STAT_ADD(s, FM_REQUESTS, 1);
    /* A requester reading the socket itself may keep it from the I/O thread a while after its
     * reply; this request's reply must not wait for that (sender_direct.c). */
    if (n > 1 && !more) fm_sender_revoke_lease(s);
    return r;
}

int fm_request_ready(fm_request *r) { return (int)__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE); }

int fm_request_wait(fm_request *r, int64_t deadline_ns) {
    for (unsigned attempt = 0;; attempt++) {
        if (fm_request_ready(r)) return FASTMSG_WAIT_READY;
        int64_t left = -1;
        if (deadline_ns >= 0) {
            left = deadline_ns - fastmsg_monotonic_ns();
            if (left <= 0) return FASTMSG_WAIT_TIMEOUT;
        }
        /* Stored before `ready` is looked at again (in the futex call), as deliver() stores
         * `ready` before it looks at this: one of the two sees the other. */
        __atomic_store_n(&r->sleeping, 1, __ATOMIC_SEQ_CST);
        if (fastmsg_futex_wait(&r->ready, 0, left, attempt)) return FASTMSG_WAIT_INTERRUPTED;
    }
}

uint8_t *fm_request_take_reply(fm_request *r, size_t *len) {
    uint8_t *p = r->reply;
    *len = r->reply_len;
    r->reply = NULL;
    return p;
}

void fm_request_end(fm_sender *s, fm_request *r) {
    fm_request_table *t = &s->requests;
    fm_mutex_lock(&t->lock);
    fm_request **pp = bucket(t, r->id);
    while (*pp != r) pp = &(*pp)->hnext;
    *pp = r->hnext;
    t->n--;
    fm_mutex_unlock(&t->lock);
    /* A reply that came after the caller gave up (between its timeout and this call): late. */
    if (r->reply) {
        FM_STAT_ADD(s, FM_LATE_REPLIES, 1);
        free(r->reply);
    }
    free(__atomic_exchange_n(&t->spare, r, __ATOMIC_ACQ_REL)); /* (another thread's, or NULL) */
}

/* Hands one reply to its request, or counts it late (I/O thread). */
static void deliver(fm_sender *s, uint64_t id, const uint8_t *payload, size_t len) {
    fm_request_table *t = &s->requests;
    int late = 1;
    fm_mutex_lock(&t->lock);
    fm_request *r = t->nbuckets ? *bucket(t, id) : NULL;
    while (r && r->id != id) r = r->hnext;
    if (r && !r->ready && (r->reply = malloc(len ? len : 1))) {
        memcpy(r->reply, payload, len);
        r->reply_len = len;
        FM_STAT_ADD(s, FM_REPLIES_RECEIVED, 1); /* before the wake: the requester may read stats next */
        __atomic_store_n(&r->ready, 1, __ATOMIC_SEQ_CST);
        /* (under the lock: r cannot be ended meanwhile; no system call for a requester that
         * reads its own reply, sender_direct.c) */
        if (__atomic_load_n(&r->sleeping, __ATOMIC_SEQ_CST)) fastmsg_futex_wake_all(&r->ready);
        late = 0;
    }
    fm_mutex_unlock(&t->lock);
    if (late) FM_STAT_ADD(s, FM_LATE_REPLIES, 1);
    else if (!s->loop_reading) fm_notifier_fire(&s->ready); /* an event loop polling its requests */
}

int fm_sender_handle_reply(fm_sender *s, const uint8_t *f, size_t size) {
    fastmsg_limits lim = {s->cfg.max_message, s->cfg.max_batch, 0};
    fastmsg_data_info info;
    int rc = fastmsg_check_data(f, size, &lim, &info); /* the CRC and every record, as for DATA */
    if (rc) return rc;
    if (info.first_seq > s->reply_seq) return FASTMSG_PERR_SEQUENCE;
    const uint8_t *p = fastmsg_data_records(fastmsg_frame_body((uint8_t *)f));
    for (uint64_t seq = info.first_seq; seq < info.first_seq + info.count; seq++) {
        uint32_t len = fastmsg_rec_len(p);
        /* Below reply_seq: resent after a reconnect, and already handed over. */
        if (seq >= s->reply_seq)
            deliver(s, fastmsg_load_le64(p + FASTMSG_REC_HDR), p + FASTMSG_REC_HDR + FASTMSG_REQUEST_ID_LEN,
                    len - FASTMSG_REQUEST_ID_LEN);
        p += fastmsg_ring_slot(len);
    }
    if (info.first_seq + info.count > s->reply_seq) {
        s->reply_seq = info.first_seq + info.count;
        s->rack_due = 1;
    }
    return 0;
}

void fm_sender_queue_rack(fm_sender *s) {
    if (fm_sender_queue_control(s, FASTMSG_RACK, s->reply_seq)) s->rack_due = 0;
}
