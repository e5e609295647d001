/* What the sender's files share: the sender's state, and the functions one file offers another.
 *
 * sender.c        the API Python calls: make, queue, flush, close
 * sender_direct.c a Python thread's own write of what it queued, and a requester's own read
 * sender_conn.c   the connection: connect, reconnect, handshake, control frames; the loop's ops
 * sender_write.c  writing the frame in progress, then batch after batch
 * sender_batch.c  taking a DATA batch (or one external message) from the ring
 * sender_ack.c    acknowledgements: the ring space they give back, and the resend after a reconnect
 * sender_heartbeat.c  PING/PONG, the dead-peer timeout, reconnect jitter (heartbeat.h)
 * sender_reply.c  requests waiting for replies, REPLY frames, RACKs */
#ifndef FASTMSG_SENDER_INTERNAL_H
#define FASTMSG_SENDER_INTERNAL_H

#include "base/thread.h"
#include <stdio.h>

#include "engine/busy_poll.h"
#include "engine/engine.h"
#include "engine/heartbeat.h"
#include "engine/loop.h"
#include "engine/token.h"
#include "net/netio.h"
#include "net/stream.h"
#include "wire/protocol.h"

/* Batch ends remembered for ACKs (a power of two). With an ACK every few thousand messages, 256
 * covers the batches between two ACKs down to batches of about 16 messages. */
#define FM_ACK_MARKS 256

/* FM_S_TLS: connected, the TLS handshake under way (cfg.tls only); FM_S_HANDSHAKE: HELLO and WELCOME */
typedef enum { FM_S_IDLE, FM_S_CONNECTING, FM_S_TLS, FM_S_HANDSHAKE, FM_S_READY } fm_sender_state;

/* A request waiting for its reply (sender_reply.c): in the sender's table from before it is
 * queued until Python ends it. */
struct fm_request {
    fm_request *hnext; /* next in its hash bucket */
    uint64_t id;
    uint32_t ready;    /* futex word: 1 once the reply is here */
    uint32_t sleeping; /* its requester sleeps (or is about to) on `ready`: the reply wakes it */
    uint8_t *reply;    /* its payload (after the id), malloc'd; the taker frees it */
    size_t reply_len;
};

/* The requests in flight, by id; Python threads add and end them, the I/O thread answers them. */
typedef struct {
    fm_mutex lock;
    fm_request **buckets;
    fm_request *spare; /* an ended request's memory, for the next (taken and left by atomic exchange) */
    uint32_t nbuckets, n; /* nbuckets: a power of two (0 until the first request) */
} fm_request_table;

struct fm_sender {
    fm_endpoint ep; /* in the loop, and registered with the socket */
    fm_ctx *ctx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    fm_sender_config cfg;
    fm_busy_poll busy;      /* a requester's looking at its socket before it sleeps (busy_poll.h) */
    int64_t handshake_timeout_ns;
    void *mem;              /* ring control block + records */
    fastmsg_ring producer;  /* Python's handle */
    fastmsg_ring io;        /* the I/O thread's (consumer) handle */
    /* connection (whoever holds the token) */
    fm_sender_state state;
    int fd;
    fm_tls *tls;             /* TLS over fd (cfg.tls), or NULL */
    int tls_unread;          /* reading stopped with bytes inside TLS (which no poller reports) */
    uint32_t interest;
    int64_t next_attempt_ns, backoff_ns, handshake_deadline_ns;
    uint32_t peer_max_message, peer_max_batch;
    uint64_t next_seq;       /* sequence number of the next message written */
    /* Acknowledgements (sender_ack.c). The ring keeps every message until the receiver has
     * acknowledged it: the ring's head is the acknowledged position, the I/O handle's cursor the
     * written one, and after a reconnect the cursor goes back to the head. */
    uint64_t acked_seq;      /* every message below it is acknowledged */
    uint64_t acked_pos;      /* ring position just past those messages (the head) */
    uint64_t sent_seq;       /* every message below it was written at least once */
    uint64_t sent_pos;       /* ring position the cursor has ever reached (written or dropped) */
    uint64_t written_pos;    /* the same, for Python to read (fm_sender_all_written) */
    int64_t written_ns;      /* when the I/O thread last wrote messages (fm_sender_written_ns) */
    /* Where recent batches ended, oldest first: an ACK finds its ring position from the last mark
     * at or below it, walking only the records after that mark (sender_ack.c). Cleared on rewind. */
    struct { uint64_t seq, pos; } marks[FM_ACK_MARKS];
    uint32_t mark_first, mark_count;
    uint64_t last_dropped_size; /* of the latest record dropped unsent (fm_sender_refused) */
    /* Acknowledgement round trips (sender_ack.c): one batch is timed at a time, from its write to
     * the ACK that covers it, so a sample costs one clock read per ACK cycle. Python reads the
     * last three (fm_sender_rtt). */
    uint64_t rtt_seq;        /* the timed batch ends before this sequence number; 0: none timed */
    int64_t rtt_start_ns;    /* when the timed batch was written; 0: none */
    uint64_t rtt_last_ns;    /* the latest sample */
    uint64_t rtt_samples;    /* samples taken so far */
    /* the frame being written: a control frame (HELLO) or a DATA batch */
    uint8_t hdr[FASTMSG_DATA_FRAME_HDR], ext_hdr[FASTMSG_REC_HDR];
    struct iovec iov[5]; /* control frames owed, then a DATA batch (up to 4 pieces) */
    int iovcnt;
    size_t frame_left;
    int frame_is_data;
    uint64_t batch_end, batch_first_seq;
    uint32_t batch_count;
    uint64_t batch_bytes;
    uint8_t hello[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY + FASTMSG_AUTH_EXT_LEN]; /* or the AUTH frame */
    /* authentication (sender_auth.c): this connection's nonce, and how far the proofs went */
    uint8_t auth_nonce[FASTMSG_AUTH_NONCE];
    int auth_proved;         /* the receiver proved the key and our AUTH is written: WELCOME may come */
    uint8_t in[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY + FASTMSG_HELLO_MAX_EXT + 16];
    size_t in_len;
    /* shared with Python */
    uint32_t token;          /* held by whoever touches the connection: the I/O thread, or a
                              * Python thread writing directly (fm_sender_write_direct) */
    uint32_t missed;         /* the I/O thread found the token taken: kick it after */
    int muted;               /* I/O thread only: the socket is out of the poller meanwhile */
    uint32_t lent;           /* a requester read the socket itself (fm_request_wait_direct): it
                              * stays out of the I/O thread's poller until lease_end_ns (the token
                              * holder's; others may read it) */
    uint32_t lease_revoked;  /* another request waits: the lease ends at once (sender_direct.c) */
    int fd_waits;            /* during a lease: 1 while the socket's reads block for the requester
                              * (fastmsg_set_read_wait), -1 where they cannot; 0: not tried */
    int reply_quick;         /* the last reply read directly came within QUICK_REPLY_NS (sender_direct.c) */
    uint64_t conn_number;    /* counts connections: which one a socket lent to an event loop is */
    int lent_dup;            /* this connection's socket has a descriptor in an event loop */
    int loop_reading;        /* an event loop reads the socket now: it wakes its waiters itself */
    int64_t lease_end_ns;
    int direct_err;          /* a direct write failed with this errno: the I/O thread fails it */
    int direct_err_poller;   /* ... or putting the socket back in the poller did (fm_sender_unpark) */
    uint32_t direct_full;    /* a direct write found the socket full: the I/O thread waits for OUT */
    uint32_t connected;
    uint32_t ack_asked;      /* Python waits for acknowledgements: PING, which asks for them */
    int stopped;             /* Python's: detached from the loop (fm_sender_stop), not yet freed */
    fm_mutex err_lock;
    char last_error[FM_LAST_ERROR_MAX];
    char peer_name[FM_TLS_NAME_MAX]; /* the receiver's verified certificate name (TLS; "": none) */
    uint64_t stats[FM_STAT_COUNT];
    fm_sender_hb hb; /* heartbeats and jitter (whoever holds the token; sender_heartbeat.c) */
    fm_notifier ready; /* an event loop waiting for room or a reply (sender_ack.c, sender_reply.c) */
    /* replies (sender_reply.c); the table is shared with Python, the rest is the token holder's */
    fm_request_table requests;
    uint64_t reply_seq;      /* the next reply sequence number expected: all below it arrived */
    int rack_due;            /* replies arrived since the last RACK (or HELLO) said reply_seq */
    uint8_t *rbig;           /* a REPLY frame too large for `in`, read into its own buffer */
    size_t rbig_size, rbig_have;
};

/* The loop's operations on a sender (sender_conn.c). */
extern const fm_endpoint_ops fm_sender_ops;

/* What fm_sender_write_out returns, besides -errno. */
enum { FM_OUT_IDLE = 0, FM_OUT_FULL = 1 };

/* Writes the current frame and, once READY, further batches: FM_OUT_IDLE when nothing is left,
 * FM_OUT_FULL when the socket is full, or -errno. It touches no poller state, so the Python
 * thread that holds the token may run it too (sender_write.c). `now`: the caller's clock reading
 * of a moment ago, which times what it writes (a batch's RTT sample, the heartbeat's last
 * traffic), or -1 to read the clock if something is written. */
int fm_sender_write_out(fm_sender *s, int64_t now);

/* Sets up the next frame from the ring: a run of whole records within the peer's max_batch, or
 * one external record alone. 0 if there is nothing to send (sender_batch.c). */
int fm_sender_take_batch(fm_sender *s);
/* The batch is written (at `now`): count it and give its ring space back. */
void fm_sender_batch_done(fm_sender *s, int64_t now);

/* An ACK (or a WELCOME) says every message below ack_seq arrived: gives their ring space back.
 * 0, or -1 if it acknowledges more than was written (sender_ack.c). */
int fm_sender_apply_ack(fm_sender *s, uint64_t ack_seq);
/* The connection is gone: what was written and not acknowledged is written again, from the first
 * unacknowledged message, after the next handshake. */
void fm_sender_rewind(fm_sender *s);
/* A DATA batch ending before sequence number `seq`, at ring position `pos`, was written: remembered
 * so that the ACK covering it need not walk the records before it. */
void fm_sender_mark_batch(fm_sender *s, uint64_t seq, uint64_t pos);
/* A DATA batch ending before sequence number `end_seq` was written at `now`: it is timed if none is. */
void fm_sender_time_batch(fm_sender *s, uint64_t end_seq, int64_t now);
/* The cursor passed records up to `pos` (written, or dropped): keeps sent_pos, and gives dropped
 * records back at once when nothing before them waits for an acknowledgement. */
void fm_sender_passed(fm_sender *s, uint64_t pos);

/* Reads what the receiver sent, until the socket is empty (bounded), and acts on each frame; a
 * failure disconnects (sender_conn.c). Token held; the I/O thread's, or a requester's reading
 * directly (fm_request_wait_direct). */
void fm_sender_read_frames(fm_sender *s, int64_t now);
/* The same, its first read waiting for bytes as the socket was set to (fd_waits, no TLS, no large
 * REPLY in part): 0, or -EINTR when a signal came first. *now: the time, then the time that read
 * returned. */
int fm_sender_read_frames_wait(fm_sender *s, int64_t *now);

/* Ends a requester's lease on the socket (token held): the I/O thread's poller watches it again. */
void fm_sender_end_lease(fm_sender *s);
/* Puts the socket back in the I/O thread's poller with its interest (token held). That can fail
 * where leaving it could not (no memory, or the user's epoll watches all taken): unwatched, the
 * connection would stall, so it fails instead, through direct_err (the I/O thread is kicked). */
void fm_sender_unpark(fm_sender *s);

/* A checked-size REPLY frame (whole, header included): hands each new reply to its request. 0,
 * or the protocol error to refuse the connection with (sender_reply.c). */
int fm_sender_handle_reply(fm_sender *s, const uint8_t *f, size_t size);
/* Queues the RACK owed, if any (write_frames, between frames). */
void fm_sender_queue_rack(fm_sender *s);
/* 0, or -1 without memory; and its end (sender.c's make and close). */
int fm_request_table_init(fm_request_table *t);
void fm_request_table_free(fm_request_table *t);

/* Queues a control frame to go between DATA batches: 1, or 0 if the queue is full
 * (sender_heartbeat.c). */
int fm_sender_queue_control(fm_sender *s, uint32_t kind, uint64_t value);

/* The frame in s->iov is the next to write. */
static inline void fm_sender_start_frame(fm_sender *s, int is_data) {
    s->frame_left = 0;
    for (int i = 0; i < s->iovcnt; i++) s->frame_left += s->iov[i].iov_len;
    s->frame_is_data = is_data;
}

/* Sets last_error (read by Python through fm_sender_last_error). */
static inline void fm_sender_set_error(fm_sender *s, const char *fmt, const char *detail) {
    fm_mutex_lock(&s->err_lock);
    snprintf(s->last_error, sizeof s->last_error, fmt, detail);
    fm_mutex_unlock(&s->err_lock);
}

/* ---- authentication (sender_auth.c) ---- */

/* The AUTH extension for the next HELLO (a new nonce) in `ext`: its length, 0 without a secret,
 * or -1 if no nonce could be drawn. */
int fm_sender_auth_ext(fm_sender *s, uint8_t ext[FASTMSG_AUTH_EXT_LEN]);
/* A CHALLENGE in the handshake: the receiver's proof checked, and the AUTH frame set up as the
 * frame to write. NULL, or why the handshake fails (an ERROR code in *code). */
const char *fm_sender_auth_challenge(fm_sender *s, const uint8_t *f, size_t size, int *code);

#endif
