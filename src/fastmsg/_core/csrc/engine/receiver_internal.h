/* What the receiver's files share: the receiver, its connections and their rings, and the
 * functions one file offers another. From the bottom up:
 *
 * session.c          where each sender's session resumes
 * rxbuf.c            a connection's ring, shared with Python and reference-counted
 * receiver_queue.c   the ready queue of rings with records: Python takes, hands back, waits
 * receiver_conn.c    a connection's handshake, its frames, what it writes back, its end
 * receiver_read.c    reading into the ring: frames in place, big frames aside, new rings
 * receiver_accept.c  the listener: accepting connections
 * receiver_direct.c  who reads (the token, the lease), a reader's own wait; the loop's ops
 * receiver_heartbeat.c  PINGs, PONGs and the dead-peer timeout of each connection (heartbeat.h)
 * receiver.c         making and closing a receiver */
#ifndef FASTMSG_RECEIVER_INTERNAL_H
#define FASTMSG_RECEIVER_INTERNAL_H

#include <pthread.h>

#include "base/futex.h"
#include "engine/engine.h"
#include "engine/heartbeat.h"
#include "engine/loop.h"
#include "engine/token.h"
#include "engine/waker.h"
#include "net/netio.h"
#include "wire/protocol.h"

/* ---- sessions (session.c) ---- */

typedef struct fm_session {
    uint64_t id, next_seq; /* next_seq: the first sequence number not yet delivered */
} fm_session;

typedef struct {
    fm_session *items;
    uint32_t n, cap;
} fm_session_table;

/* The session `id`, made if new (forgetting the oldest past a limit); NULL without memory. */
fm_session *fm_session_for(fm_session_table *t, uint64_t id);
void fm_session_table_free(fm_session_table *t);

/* ---- a connection's ring (rxbuf.c) ---- */

struct fm_rxbuf {
    uint32_t refs;
    uint32_t closed;  /* the connection is gone */
    uint32_t queued;  /* in the receiver's ready queue (or being drained) */
    uint32_t blocked; /* the I/O thread stopped reading for want of space */
    uint32_t resume;  /* the consumer released space since */
    uint64_t consumed; /* ring position the consumer has read up to (set when it hands b back) */
    fm_ctx *ctx;
    uint64_t capacity;
    fastmsg_ring_ctl *ctl;
    uint8_t *data;
    void *mem;
};

/* A new ring with one reference, or NULL without memory. */
fm_rxbuf *fm_rxbuf_new(fm_ctx *ctx, uint64_t capacity);

/* ---- the receiver ---- */

typedef struct fm_rxconn fm_rxconn;

struct fm_receiver {
    fm_endpoint ep;       /* in the loop */
    fm_endpoint listener; /* registered with the listening socket */
    fm_ctx *ctx;
    fm_receiver_config cfg;
    int lfd;
    /* The listener and the connections live in a poller of their own when it can nest in the
     * context's (epoll): then a thread blocked in recv can wait on it and read the sockets
     * itself (fm_receiver_wait_direct) while the I/O thread stops watching. With poll() they
     * live in the context's poller and only the I/O thread reads. */
    fastmsg_poller *poller;
    fm_endpoint nest;       /* registered, in the context's poller, with `poller`'s fd */
    uint32_t token;         /* held by whoever touches the connections: the I/O thread or a reader */
    fm_waker wake;          /* in the receiver's poller: close() interrupts a reader's wait */
    uint32_t interrupted;   /* close() has begun: waits return FASTMSG_WAIT_INTERRUPTED */
    /* A reader leaves the nest out of the I/O thread's poller for a while after its wait (the
     * lease), so that the next message waits in the socket for the reader's next recv instead
     * of waking the I/O thread; the I/O thread takes the sockets back once the lease runs out.
     * Both under the token. */
    int lent;
    int64_t lease_end_ns;
    fm_rxconn *conns;
    uint32_t nconns;
    fm_session_table sessions;
    /* ready queue, shared with Python */
    pthread_mutex_t qlock;
    fm_rxbuf **queue;
    uint32_t qhead, qlen, qcap;
    uint32_t ready_seq, waiters;
    uint64_t stats[FM_STAT_COUNT];
    int64_t hb_next_ns; /* heartbeat hook: the connections' next heartbeat deadline, 0: none */
};

/* Makes b visible to the consumer unless it already is (queued or being drained)
 * (receiver_queue.c). */
void fm_receiver_notify(fm_receiver *rx, fm_rxbuf *b);
/* 1 if a ring waits in the ready queue. */
int fm_receiver_has_ready(fm_receiver *rx);

/* The loop's operations on a receiver, and the nest's: its poller is ready (receiver_direct.c). */
extern const fm_endpoint_ops fm_receiver_ops;
extern const fm_endpoint_ops fm_nest_ops;
/* The listener's: accept (receiver_accept.c). */
extern const fm_endpoint_ops fm_listener_ops;

/* ---- a connection (receiver_conn.c, receiver_read.c) ---- */

/* Room for what a connection writes back: WELCOME, PONG or ERROR frames. */
#define FM_RXCONN_OUT_MAX (2 * FASTMSG_FRAME_HDR + FASTMSG_ERROR_MAX_TEXT + 64)

struct fm_rxconn {
    fm_endpoint ep;      /* registered with the socket */
    fm_receiver *rx;
    fm_rxconn *next;
    int fd;
    int ready;           /* handshake done */
    int64_t deadline_ns; /* handshake deadline, or when a refused peer is dropped */
    uint32_t interest;
    fm_session *session;
    fm_rxbuf *buf;
    fastmsg_ring w;      /* producer handle: w.wpos is the end of the last whole frame */
    uint64_t at;         /* where the next frame starts: w.wpos, or past a PAD not yet published */
    uint64_t fill;       /* bytes read so far (>= at) */
    uint8_t *big;        /* a frame too large for the ring, read into its own buffer */
    size_t big_size, big_have;
    int big_done;        /* read and checked, waiting for room for its marker */
    uint8_t out[FM_RXCONN_OUT_MAX]; /* on its way out */
    size_t out_len, out_off;
    int closing;         /* close once `out` is written */
    fm_heartbeat hb;     /* heartbeat hook: its timers (receiver_heartbeat.c) */
};

/* The loop's (and a reader's) operations on a connection: read, write back (receiver_read.c). */
extern const fm_endpoint_ops fm_rxconn_ops;

/* receiver_conn.c. Those that return int return 0, or -1 once the connection is closed (freed). */
void fm_rxconn_set_interest(fm_rxconn *c, uint32_t ev);
void fm_rxconn_close(fm_rxconn *c);
/* Writes what is pending in `out`; closes the connection afterwards if it is closing. */
int fm_rxconn_flush_out(fm_rxconn *c);
/* Refuses the peer: ERROR with the reason (best effort), then close. Returns -1. */
int fm_rxconn_refuse(fm_rxconn *c, int code);
/* A whole frame at f: acts on it (it stays in the ring as a record the consumer reads or skips). */
int fm_rxconn_handle_frame(fm_rxconn *c, uint8_t *f, size_t size, uint32_t kind);
/* Checks a whole DATA frame (in the ring or big) and drops what arrived before. */
int fm_rxconn_handle_data(fm_rxconn *c, uint8_t *f, size_t size);

/* receiver_read.c: reads and parses until the socket is drained, the ring is full, or enough
 * rounds passed. */
void fm_rxconn_pump_in(fm_rxconn *c);

#endif
