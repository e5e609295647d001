/* A sender's heartbeats: PINGs when it has sent nothing for an interval (or heard nothing for
 * half the dead-peer timeout), PONGs for the receiver's PINGs, the dead-peer timeout, and a
 * close that leaves nothing unread (fm_sender_hb_close). The
 * rules are heartbeat.h's; here they meet the sender's connection. Control frames wait in
 * `hb.out` and go between DATA batches (fm_sender_write_out), never inside one. */
#include <string.h>

#include "base/futex.h"
#include "engine/linger.h"
#include "engine/sender_internal.h"

/* How long a closed sender's socket lingers without heartbeats configured. */
#define LINGER_DEFAULT_NS (1000 * FM_MS)
/* fm_sender_settle looks at the connection at least this often. */
#define SETTLE_SLICE_NS (10 * FM_MS)

/* No PONG is owed any more (the connection is new, or gone): a settling close goes on. */
static void clear_due(fm_sender *s) {
    if (__atomic_exchange_n(&s->hb.pongs_due, 0, __ATOMIC_SEQ_CST)) fastmsg_futex_wake_all(&s->hb.pongs_due);
}

void fm_sender_hb_init(fm_sender *s) {
    fm_hb_config(&s->hb.t, s->cfg.heartbeat_ms, s->cfg.dead_peer_ms);
    fm_rng_seed(&s->hb.rng, s->cfg.session_id);
}

void fm_sender_hb_hello(fm_sender *s, fastmsg_hello *h) {
    s->hb.t.started = 0;
    s->hb.out_len = 0;
    s->hb.wrote = 0;
    clear_due(s);
    if (!s->cfg.heartbeat_ms) return;
    h->capabilities |= FASTMSG_CAP_HEARTBEAT;
    h->heartbeat_ms = s->cfg.heartbeat_ms;
    fastmsg_keepalive(s->fd, s->cfg.dead_peer_ms);
}

/* Queues a control frame; one that does not fit is dropped (the queue holds a PONG or PING for
 * each interval, and anything the receiver gets is a sign of life anyway). */
int fm_sender_queue_control(fm_sender *s, uint32_t kind, uint64_t value) {
    if (s->hb.out_len + FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY > sizeof s->hb.out) return 0;
    s->hb.out_len += fastmsg_encode_control(s->hb.out + s->hb.out_len, kind, value);
    return 1;
}

int fm_sender_hb_frame(fm_sender *s, uint32_t kind, uint64_t value) {
    if (kind != FASTMSG_PING && kind != FASTMSG_PONG && kind != FASTMSG_CLOSE) return FM_HB_FRAME_OTHER;
    if (kind == FASTMSG_CLOSE) return FM_HB_FRAME_CLOSE;
    if (kind == FASTMSG_PING) fm_sender_queue_control(s, FASTMSG_PONG, value);
    else {
        FM_STAT_ADD(s, FM_PONGS_RECEIVED, 1);
        uint32_t due = __atomic_load_n(&s->hb.pongs_due, __ATOMIC_SEQ_CST);
        if (due) {
            __atomic_store_n(&s->hb.pongs_due, due - 1, __ATOMIC_SEQ_CST);
            if (due == 1) fastmsg_futex_wake_all(&s->hb.pongs_due);
        }
    }
    return FM_HB_FRAME_DONE;
}

/* A PING now (unless closing), answered by a PONG. */
static void ping(fm_sender *s, int64_t now) {
    if (!__atomic_load_n(&s->hb.settling, __ATOMIC_SEQ_CST) && fm_sender_queue_control(s, FASTMSG_PING, (uint64_t)now)) {
        __atomic_fetch_add(&s->hb.pongs_due, 1, __ATOMIC_SEQ_CST);
        FM_STAT_ADD(s, FM_PINGS_SENT, 1);
    }
}

int fm_sender_hb_step(fm_sender *s, int64_t now, int64_t *next) {
    fm_heartbeat *hb = &s->hb.t;
    /* flush() waits: a PING asks the receiver for its acknowledgements at once (they would come
     * anyway, but after the receiver's ACK delay, or its next look for released messages). */
    if (__atomic_exchange_n(&s->ack_asked, 0, __ATOMIC_ACQ_REL)) ping(s, now);
    int due = fm_hb_check(hb, now, next);
    if (due == FM_HB_PING) {
        ping(s, now); /* (a closing sender asks nothing) */
        fm_hb_pinged(hb, now);
        due = fm_hb_check(hb, now, next);
    }
    if (due == FM_HB_DEAD) {
        clear_due(s);
        char detail[64];
        snprintf(detail, sizeof detail, "%.3g s (%u PINGs unanswered)", (double)hb->timeout_ns / 1e9,
                 (unsigned)hb->outstanding);
        fm_sender_set_error(s, "no sign of life from the receiver for %s: reconnecting", detail);
        FM_STAT_ADD(s, FM_DEAD_PEERS, 1);
    }
    return due;
}

size_t fm_sender_hb_take(fm_sender *s) {
    size_t n = s->hb.out_len;
    memcpy(s->hb.wire, s->hb.out, n);
    s->hb.out_len = 0;
    return n;
}

void fm_sender_hb_close(fm_sender *s) {
    int64_t linger = s->cfg.dead_peer_ms ? (int64_t)s->cfg.dead_peer_ms * FM_MS : LINGER_DEFAULT_NS;
    fm_linger_start(s->ctx, s->fd, linger, fastmsg_monotonic_ns());
}

void fm_sender_settle(fm_sender *s, int64_t deadline_ns) {
    __atomic_store_n(&s->hb.settling, 1, __ATOMIC_SEQ_CST);
    for (unsigned attempt = 0;; attempt++) {
        uint32_t due = __atomic_load_n(&s->hb.pongs_due, __ATOMIC_SEQ_CST);
        if (!due || !fm_sender_connected(s)) return;
        int64_t left = SETTLE_SLICE_NS, now = fastmsg_monotonic_ns();
        if (deadline_ns >= 0) {
            if (now >= deadline_ns) return;
            if (deadline_ns - now < left) left = deadline_ns - now;
        }
        fastmsg_futex_wait(&s->hb.pongs_due, due, left, attempt);
    }
}
