/* Heartbeat timers both sides share, and the sender's reconnect backoff with jitter.
 *
 * A side with heartbeats on keeps, per connection, when it last received anything from the peer
 * and when it last sent anything, and PINGs by two rules, each side with its own thresholds:
 * when it has sent nothing for `tx_idle_ns` (the sender: an interval; a busy sender sends no
 * PING), and, at most once an interval, when it has received nothing for `rx_quiet_ns` (the
 * sender: half the dead-peer timeout; the receiver: an interval and a quarter, which an idle
 * sender's PINGs never let pass). So the receiver speaks unasked only when the sender has gone
 * quiet (or while it reads nothing: receiver_heartbeat.c): a frame it sends unasked could arrive
 * after the sender closed its socket, and the sender's kernel would then reset the connection
 * and drop what the sender had queued. Nothing at
 * all received for the dead-peer timeout: the peer is gone. Rules in full: docs/protocol.md,
 * "Heartbeats". The side's own files (sender_heartbeat.c, receiver_heartbeat.c) say when a frame
 * arrived or left, and act on what fm_hb_check decides. Everything here runs under the
 * connection's token. */
#ifndef FASTMSG_ENGINE_HEARTBEAT_H
#define FASTMSG_ENGINE_HEARTBEAT_H

#include <stddef.h>
#include <stdint.h>

#include "base/futex.h"
#include "engine/loop.h"
#include "wire/protocol.h"

typedef struct fm_heartbeat {
    int64_t interval_ns; /* 0: heartbeats off on this connection */
    int64_t timeout_ns;  /* dead-peer timeout */
    int64_t last_rx_ns;  /* anything received from the peer */
    int64_t last_tx_ns;  /* anything sent to it */
    int64_t last_ping_ns;
    int64_t tx_idle_ns;  /* PING after sending nothing this long (0: never) */
    int64_t rx_quiet_ns; /* PING after receiving nothing this long (at most once an interval) */
    uint32_t outstanding; /* PINGs sent since the peer last sent anything */
    int started;          /* the timers run (the connection is ready) */
} fm_heartbeat;

/* What fm_hb_check found. */
enum { FM_HB_IDLE = 0, FM_HB_PING = 1, FM_HB_DEAD = 2 };

/* The receiver PINGs after an interval and this fraction of one without hearing the sender. */
#define FM_HB_QUIET_SLACK_DIV 4

/* The sender's thresholds; the receiver's are set by fm_hb_config_answerer. */
static inline void fm_hb_config(fm_heartbeat *hb, uint32_t interval_ms, uint32_t timeout_ms) {
    hb->interval_ns = (int64_t)interval_ms * FM_MS;
    hb->timeout_ns = (int64_t)timeout_ms * FM_MS;
    hb->tx_idle_ns = hb->interval_ns;
    hb->rx_quiet_ns = hb->timeout_ns / 2;
    hb->started = 0;
}

/* The side that answers (the receiver): it PINGs only when the peer has gone quiet. */
static inline void fm_hb_config_answerer(fm_heartbeat *hb, uint32_t interval_ms, uint32_t timeout_ms) {
    fm_hb_config(hb, interval_ms, timeout_ms);
    hb->tx_idle_ns = 0;
    hb->rx_quiet_ns = hb->interval_ns + hb->interval_ns / FM_HB_QUIET_SLACK_DIV;
}

/* The connection is ready: every timer counts from now. */
static inline void fm_hb_start(fm_heartbeat *hb, int64_t now) {
    hb->last_rx_ns = hb->last_tx_ns = hb->last_ping_ns = now;
    hb->outstanding = 0;
    hb->started = 1;
}

/* Something arrived from the peer (any frame, or bytes of one). */
static inline void fm_hb_received(fm_heartbeat *hb, int64_t now) {
    hb->last_rx_ns = now;
    hb->outstanding = 0;
}

/* Something left for the peer. */
static inline void fm_hb_sent(fm_heartbeat *hb, int64_t now) {
    if (now > hb->last_tx_ns) hb->last_tx_ns = now;
}

/* A PING left now. */
static inline void fm_hb_pinged(fm_heartbeat *hb, int64_t now) {
    hb->last_tx_ns = hb->last_ping_ns = now;
    hb->outstanding++;
}

static inline void fm_hb_lower(int64_t *next, int64_t t) {
    if (t < *next) *next = t;
}

/* FM_HB_DEAD, FM_HB_PING (the caller sends one, then calls fm_hb_pinged and checks again), or
 * FM_HB_IDLE with *next lowered to the next deadline. Starts the timers on first use. */
static inline int fm_hb_check(fm_heartbeat *hb, int64_t now, int64_t *next) {
    if (!hb->interval_ns) return FM_HB_IDLE;
    if (!hb->started) fm_hb_start(hb, now);
    int64_t dead_at = hb->last_rx_ns + hb->timeout_ns;
    if (now >= dead_at) return FM_HB_DEAD;
    int64_t ping_at = hb->last_rx_ns + hb->rx_quiet_ns;
    if (ping_at < hb->last_ping_ns + hb->interval_ns) ping_at = hb->last_ping_ns + hb->interval_ns;
    if (hb->tx_idle_ns) fm_hb_lower(&ping_at, hb->last_tx_ns + hb->tx_idle_ns);
    if (now >= ping_at) return FM_HB_PING;
    fm_hb_lower(next, dead_at);
    fm_hb_lower(next, ping_at);
    return FM_HB_IDLE;
}

/* ---- reconnect backoff: decorrelated jitter ---- */

/* xorshift64*: cheap, and enough to spread reconnects; seeded per sender (never 0). */
static inline uint64_t fm_rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline void fm_rng_seed(uint64_t *state, uint64_t seed) {
    seed ^= 0x9E3779B97F4A7C15ULL; /* a session id of 0x...0 still gives a live state */
    *state = seed ? seed : 1;
}

/* How much a decorrelated-jitter wait may grow from one attempt to the next. */
#define FM_BACKOFF_GROWTH 3

/* The wait before the next attempt, after waiting `prev`: uniform in [min, FM_BACKOFF_GROWTH *
 * prev], capped at max ("decorrelated jitter"), so senders cut off together do not come back
 * together. */
static inline int64_t fm_backoff_next(uint64_t *rng, int64_t prev, int64_t min, int64_t max) {
    int64_t hi = prev * FM_BACKOFF_GROWTH;
    if (hi > max) hi = max;
    if (hi <= min) return min;
    return min + (int64_t)(fm_rng_next(rng) % (uint64_t)(hi - min + 1));
}

/* ---- the sender's side (sender_heartbeat.c); hooks called from sender*.c ---- */

/* Room for the control frames a sender has to write between batches (PONGs, a PING). */
#define FM_SENDER_CTL_MAX (4 * (FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY))

typedef struct fm_sender_hb {
    fm_heartbeat t;
    uint8_t out[FM_SENDER_CTL_MAX];  /* control frames waiting for the frame in progress */
    size_t out_len;
    uint8_t wire[FM_SENDER_CTL_MAX]; /* those being written now (the frame in progress) */
    int wrote;                       /* fm_sender_write_out wrote something */
    uint32_t pongs_due;              /* PINGs sent on this connection and not yet answered
                                      * (futex word: fm_sender_settle waits for 0) */
    uint32_t settling;               /* close() has begun: no more PINGs */
    uint64_t rng;                    /* reconnect jitter */
} fm_sender_hb;

/* fm_sender_new: the timers' configuration and the jitter's seed. */
void fm_sender_hb_init(fm_sender *s);
/* A handshake starts on a new socket: forget the last connection's timers and frames, advertise
 * the interval in HELLO, turn TCP keepalive on. */
void fm_sender_hb_hello(fm_sender *s, fastmsg_hello *h);
/* What fm_sender_hb_frame made of a frame. */
enum { FM_HB_FRAME_OTHER = 0, FM_HB_FRAME_DONE = 1, FM_HB_FRAME_CLOSE = 2 };
/* A small frame from the receiver, already checked (fastmsg_decode_control), and its value: a
 * PING (answered) or PONG (counted): DONE; a CLOSE: CLOSE (the caller disconnects, no error);
 * an ACK: OTHER. */
int fm_sender_hb_frame(fm_sender *s, uint32_t kind, uint64_t value);
/* The connection is ready: queues a PING when one is due; FM_HB_DEAD when the receiver has
 * been silent for the dead-peer timeout (counted, and said in last_error: the caller
 * disconnects); lowers *next to the next deadline otherwise. */
int fm_sender_hb_step(fm_sender *s, int64_t now, int64_t *next);
/* The sender is closed (I/O thread, its fd out of the poller): the socket lingers, half-closed
 * and drained, until the receiver closes too (at most the dead-peer timeout), so that a PONG
 * arriving late cannot make the kernel reset the connection and drop unsent data (linger.h). */
void fm_sender_hb_close(fm_sender *s);
/* Moves the queued control frames to `wire`, to be written next (before the next DATA batch, in
 * the same writev); returns their length. */
size_t fm_sender_hb_take(fm_sender *s);

/* ---- the receiver's side (receiver_heartbeat.c); hooks called from receiver*.c ---- */

typedef struct fm_rxconn fm_rxconn;

/* HELLO arrived: heartbeats on for this connection if the sender has them (CAP_HEARTBEAT; an
 * older sender would take a PING for an error), granted and advertised in WELCOME `w`; TCP
 * keepalive on in any case. */
void fm_rxconn_hb_hello(fm_rxconn *c, const fastmsg_hello *h, fastmsg_hello *w);
/* A ready connection's timers: a PING when due, the dead-peer timeout (the connection is then
 * closed and counted: -1), else 0 with *next lowered to the next deadline. */
int fm_rxconn_hb_step(fm_rxconn *c, int64_t now, int64_t *next);
/* A PONG from the sender (checked by the caller). */
void fm_rxconn_hb_pong(fm_rxconn *c);
/* The I/O thread found a reader holding the receiver's sockets: if a heartbeat deadline has
 * come, wake the reader so that it runs the timers (it arms no timer of its own for them). */
void fm_receiver_hb_nudge(fm_receiver *rx, int64_t now);

#endif
