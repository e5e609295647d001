/* A receiver's heartbeats, per connection whose sender has them (CAP_HEARTBEAT in its HELLO):
 * answers to the sender's PINGs (receiver_conn.c), PINGs of its own only when the sender has gone
 * quiet, the sender's PONGs, and the dead-peer timeout, which closes the connection. The rules are heartbeat.h's. Runs under the receiver's token: in the I/O thread,
 * or in a reader holding the sockets (step_held), which the I/O thread wakes when a deadline
 * comes (fm_receiver_hb_nudge) so that the reader's own wait arms no timer for them. */
#include <string.h>

#include "engine/receiver_internal.h"

void fm_rxconn_hb_hello(fm_rxconn *c, const fastmsg_hello *h, fastmsg_hello *w) {
    const fm_receiver_config *cfg = &c->rx->cfg;
    if (cfg->dead_peer_ms) fastmsg_keepalive(c->fd, cfg->dead_peer_ms);
    fm_hb_config(&c->hb, 0, 0);
    if (!cfg->heartbeat_ms || !(h->capabilities & FASTMSG_CAP_HEARTBEAT)) return;
    fm_hb_config_answerer(&c->hb, cfg->heartbeat_ms, cfg->dead_peer_ms);
    w->capabilities |= FASTMSG_CAP_HEARTBEAT;
    w->heartbeat_ms = cfg->heartbeat_ms;
}

/* Sends a PING (after whatever `out` holds). 0, or -1 if the connection was closed. */
static int send_ping(fm_rxconn *c, int64_t now) {
    uint8_t ping[FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY];
    size_t n = fastmsg_encode_control(ping, FASTMSG_PING, (uint64_t)now);
    fm_hb_pinged(&c->hb, now);
    FM_STAT_ADD(c->rx, FM_PINGS_SENT, 1);
    if (c->out_len + n > sizeof c->out) return 0; /* `out` is stuck full: the timeout decides */
    memcpy(c->out + c->out_len, ping, n);
    c->out_len += n;
    return fm_rxconn_flush_out(c);
}

int fm_rxconn_hb_step(fm_rxconn *c, int64_t now, int64_t *next) {
    fm_heartbeat *hb = &c->hb;
    if (!hb->interval_ns) return 0;
    /* Not reading for want of ring space: the sender's frames wait unseen in the socket, so its
     * silence says nothing (TCP's window, and keepalive, still do). Ours would: the sender hears
     * nothing from a consumer that releases nothing, and would take it for dead, reconnect and
     * write everything again. So a paused receiver PINGs once an interval (the sender's answer
     * waits behind its unread frames; its PONG is not needed). */
    if (!(c->interest & FASTMSG_POLL_IN)) {
        fm_hb_received(hb, now);
        if (now >= hb->last_ping_ns + hb->interval_ns && send_ping(c, now) < 0) return -1;
        fm_hb_lower(next, hb->last_ping_ns + hb->interval_ns);
    }
    int due = fm_hb_check(hb, now, next);
    if (due == FM_HB_PING) {
        if (send_ping(c, now) < 0) return -1;
        due = fm_hb_check(hb, now, next);
    }
    if (due == FM_HB_DEAD) {
        FM_STAT_ADD(c->rx, FM_DEAD_PEERS, 1);
        fm_rxconn_close(c);
        return -1;
    }
    return 0;
}

void fm_rxconn_hb_pong(fm_rxconn *c) { FM_STAT_ADD(c->rx, FM_PONGS_RECEIVED, 1); }

void fm_receiver_hb_nudge(fm_receiver *rx, int64_t now) {
    int64_t due = __atomic_load_n(&rx->hb_next_ns, __ATOMIC_RELAXED);
    if (due && now >= due && rx->wake.wr >= 0) fm_waker_signal(&rx->wake);
}
