/* A sender's heartbeats: PINGs when it has sent nothing for an interval (or heard nothing for
 * half the dead-peer timeout), PONGs for the receiver's PINGs, the dead-peer timeout, and a
 * close that leaves nothing unread (fm_sender_hb_drain). The
 * rules are heartbeat.h's; here they meet the sender's connection. Control frames wait in
 * `hb.out` and go between DATA batches (fm_sender_write_out), never inside one. */
#include <string.h>

#include "engine/sender_internal.h"

void fm_sender_hb_init(fm_sender *s) {
    fm_hb_config(&s->hb.t, s->cfg.heartbeat_ms, s->cfg.dead_peer_ms);
    fm_rng_seed(&s->hb.rng, s->cfg.session_id);
}

void fm_sender_hb_hello(fm_sender *s, fastmsg_hello *h) {
    s->hb.t.started = 0;
    s->hb.out_len = 0;
    s->hb.wrote = 0;
    if (!s->cfg.heartbeat_ms) return;
    h->capabilities |= FASTMSG_CAP_HEARTBEAT;
    h->heartbeat_ms = s->cfg.heartbeat_ms;
    fastmsg_keepalive(s->fd, s->cfg.dead_peer_ms);
}

/* Queues a control frame; one that does not fit is dropped (the queue holds a PONG or PING for
 * each interval, and anything the receiver gets is a sign of life anyway). */
static void queue_control(fm_sender *s, uint32_t kind, uint64_t value) {
    if (s->hb.out_len + FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY > sizeof s->hb.out) return;
    s->hb.out_len += fastmsg_encode_control(s->hb.out + s->hb.out_len, kind, value);
}

int fm_sender_hb_frame(fm_sender *s, const uint8_t *f, size_t size, uint32_t kind) {
    if (kind != FASTMSG_PING && kind != FASTMSG_PONG && kind != FASTMSG_CLOSE) return FM_HB_FRAME_OTHER;
    uint64_t value;
    if (fastmsg_decode_control(f, size, &value)) return FM_HB_FRAME_BAD;
    if (kind == FASTMSG_CLOSE) return FM_HB_FRAME_CLOSE;
    if (kind == FASTMSG_PING) queue_control(s, FASTMSG_PONG, value);
    else FM_STAT_ADD(s, FM_PONGS_RECEIVED, 1);
    return FM_HB_FRAME_DONE;
}

int fm_sender_hb_step(fm_sender *s, int64_t now, int64_t *next) {
    fm_heartbeat *hb = &s->hb.t;
    int due = fm_hb_check(hb, now, next);
    if (due == FM_HB_PING) {
        queue_control(s, FASTMSG_PING, (uint64_t)now);
        fm_hb_pinged(hb, now);
        FM_STAT_ADD(s, FM_PINGS_SENT, 1);
        due = fm_hb_check(hb, now, next);
    }
    if (due == FM_HB_DEAD) {
        char detail[64];
        snprintf(detail, sizeof detail, "%.3g s (%u PINGs unanswered)", (double)hb->timeout_ns / 1e9,
                 (unsigned)hb->outstanding);
        fm_sender_set_error(s, "no sign of life from the receiver for %s: reconnecting", detail);
        FM_STAT_ADD(s, FM_DEAD_PEERS, 1);
    }
    return due;
}

void fm_sender_hb_start_frame(fm_sender *s) {
    memcpy(s->hb.wire, s->hb.out, s->hb.out_len);
    s->iov[0] = (struct iovec){s->hb.wire, s->hb.out_len};
    s->iovcnt = 1;
    s->hb.out_len = 0;
    fm_sender_start_frame(s, 0);
}
