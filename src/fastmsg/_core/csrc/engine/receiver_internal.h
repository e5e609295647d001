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
 * receiver_reply.c   replies: queued by Message.reply(), kept per session until the sender's RACK
 * receiver.c         making and closing a receiver */
#ifndef FASTMSG_RECEIVER_INTERNAL_H
#define FASTMSG_RECEIVER_INTERNAL_H

#include "base/thread.h"

#include "base/futex.h"
#include "engine/busy_poll.h"
#include "engine/engine.h"
#include "engine/heartbeat.h"
#include "engine/loop.h"
#include "engine/token.h"
#include "engine/waker.h"
#include "net/netio.h"
#include "net/stream.h"
#include "wire/protocol.h"

typedef struct fm_rxconn fm_rxconn;

/* ---- sessions (session.c) ---- */

typedef struct fm_session fm_session;

/* A reply on its way: queued by Python (receiver_reply.c), then in its session's outbox until the
 * sender acknowledges it. `rec` is its REPLY record as it goes on the wire. */
typedef struct fm_reply fm_reply;
struct fm_reply {
    fm_reply *next;
    uint64_t session_id; /* while queued */
    uint64_t seq;        /* in its session's reply stream, once in the outbox */
    uint64_t size;       /* bytes of rec: record header, request id, payload, padding */
    uint8_t rec[];
};

/* A DATA frame whose messages wait for the consumer to release them before they are
 * acknowledged: its ring (with a reference), where it ends there, the sequence number after it. */
typedef struct {
    fm_rxbuf *buf;
    uint64_t end_pos, end_seq, bytes;
} fm_ack_wait;

/* Each session is allocated on its own and never moves while it lives: a connection keeps a
 * pointer to its session, and the table frees a session only while no connection holds it. */
struct fm_session {
    uint64_t id, next_seq; /* next_seq: the first sequence number not yet delivered */
    /* ---- the session table's (session.c): who holds it, where it is found, how old it is ---- */
    fm_rxconn *conn;                    /* the live connection that holds it, or NULL: idle */
    fm_session *hnext;                  /* next in its hash bucket */
    fm_session *idle_prev, *idle_next;  /* the idle list, least recently released first */
    /* ---- end of the session table's fields ---- */
    /* ---- acknowledgements (receiver_ack.c) ---- */
    uint64_t acked_seq;       /* every message below it is acknowledged */
    uint64_t ack_sent;        /* the acknowledgement last written to the sender */
    uint64_t ack_bytes;       /* payload bytes acknowledged and not yet said so */
    uint64_t ack_every;       /* ... and how many make an ACK due at once: below the sender's
                               * window (HELLO), so that it never waits for the delayed ACK */
    int64_t ack_due_ns;       /* when the acknowledgement not yet said is due; 0: none */
    int64_t ack_poll_ns;      /* how often to look for releases while frames wait for them */
    fm_ack_wait *waits;       /* frames in arrival order, a ring of wcap entries */
    uint32_t whead, wlen, wcap;
    /* where the walk for the next release point stopped (receiver_ack.c arm_ack_at) */
    uint32_t walk_head, walk_len;
    uint64_t walk_sent, walk_bytes;
    int ack_asked;            /* the sender PINGed: acknowledge at once until nothing waits */
    /* ---- replies (receiver_reply.c) ---- */
    fm_reply *rhead, *rtail;  /* the outbox: replies not yet acknowledged, in sequence order */
    fm_reply *rsend;          /* the first not yet written on the live connection */
    uint64_t reply_next;      /* sequence number of the next reply put in the outbox */
    uint64_t reply_sent;      /* every reply below it was written at least once */
    uint32_t reply_max;       /* the sender's max_message: the largest reply record it accepts */
    uint32_t reply_batch;     /* REPLY record bytes per frame (the sender's max_batch at most) */
    int ended;                /* the sender closed for good (its CLOSE): replies are undeliverable */
};

/* Sessions by id in a hash table (keyed with a random seed, so that chosen ids cannot pile up in
 * one bucket). Idle sessions beyond `max` are forgotten, the longest idle first; a session held
 * by a connection never is. */
typedef struct {
    fm_session **buckets;
    uint32_t nbuckets; /* a power of two */
    uint32_t max;      /* sessions kept once idle */
    uint64_t seed;
    fm_session *idle_head, *idle_tail;
    uint64_t *stats;   /* the receiver's counters: FM_SESSIONS, FM_EVICTED_SESSIONS */
    uint64_t *reply_bytes; /* the receiver's unacknowledged reply bytes, given back as outboxes go */
    uint32_t n;        /* sessions held */
} fm_session_table;

/* 0, or -ENOMEM. `stats` is the receiver's counter array. */
int fm_session_table_init(fm_session_table *t, uint32_t max, uint64_t *stats);
/* The session `id`, made if new (then *made is 1, and its next_seq 0); NULL without memory.
 * A new session belongs to no connection yet: attach it at once. */
fm_session *fm_session_for(fm_session_table *t, uint64_t id, int *made);
/* The session `id`, or NULL if none is remembered. */
fm_session *fm_session_find(fm_session_table *t, uint64_t id);
/* Connection c now holds s (it may take it over from another: the caller closes that one). */
void fm_session_attach(fm_session_table *t, fm_session *s, fm_rxconn *c);
/* s's connection is gone: s goes idle, and the longest idle sessions beyond the bound are
 * forgotten (perhaps s itself: do not use it afterwards). */
void fm_session_release(fm_session_table *t, fm_session *s);
void fm_session_table_free(fm_session_table *t);

/* ---- acknowledgements (receiver_ack.c) ---- */

/* A checked DATA frame ending at ring position end_pos of c's ring (or its big-frame marker) was
 * staged: its messages are acknowledged once received, or once the consumer released them. */
void fm_ack_frame_staged(fm_rxconn *c, uint64_t end_pos, uint64_t end_seq, uint64_t bytes);
/* A HELLO stated the sender's window (0: unknown): ACKs become due at a quarter of it. */
void fm_ack_window(fm_session *s, uint32_t window);
/* Advances the session's acknowledgement past every frame the consumer released; returns it. */
uint64_t fm_ack_update(fm_session *s);
/* Writes the ACKs that are due on the receiver's connections; sets *next to when to look again. */
void fm_acks_step(fm_receiver *rx, int64_t now, int64_t *next);
/* A REPLY frame is about to be written on c: queues, to go with it, an ACK of whatever the
 * consumer released and no ACK said yet (c writes it: fm_rxconn_flush_out). */
void fm_ack_with_reply(fm_rxconn *c, int64_t now, int64_t *next);
/* Writes, on every connection, whatever is acknowledged and not yet said (the receiver closes). */
void fm_acks_flush(fm_receiver *rx);
/* Lets go of the frames a session still waits on (the receiver closes, or forgets the session). */
void fm_session_acks_free(fm_session *s);

/* ---- replies (receiver_reply.c) ---- */

/* Moves the replies Python queued into their sessions' outboxes and writes them, each
 * connection's first REPLY frame with an ACK (fm_ack_with_reply; *next as fm_acks_step's). Token
 * held. */
void fm_replies_step(fm_receiver *rx, int64_t now, int64_t *next);
/* 1 if replies are queued and free to go at `now`: not held for the end of a batch, asked for,
 * or held too long; else 0, and *next lowered to when held ones go regardless. */
int fm_replies_due(fm_receiver *rx, int64_t now, int64_t *next);
/* A HELLO (made: of a new session): the sender has every reply below h->reply_seq; the rest is
 * written again on the new connection. */
void fm_session_replies_hello(fm_session_table *t, fm_session *s, const fastmsg_hello *h, uint32_t max_batch, int made);
/* Drops a session's outbox, counting its replies as undeliverable (forgotten, or its sender left). */
void fm_session_replies_drop(fm_session_table *t, fm_session *s);
/* The replies queued and not yet taken by the I/O thread are dropped (the receiver closes). */
void fm_replies_free(fm_receiver *rx);
/* A RACK: every reply below `value` arrived. 0, or -1 once the connection is closed. */
int fm_rxconn_handle_rack(fm_rxconn *c, uint64_t value);
/* The RACK timer: replies written and not acknowledged within the dead-peer timeout mean the
 * reply stream is broken (a corrupted length leaves the sender reading a frame that never ends),
 * so c is closed and its sender resumes on a new connection. 0, or -1 once closed. */
int fm_rxconn_reply_step(fm_rxconn *c, int64_t now, int64_t *next);
/* Sets up the next REPLY frame from c's session in c->rout: 1, or 0 if there is none to write. */
int fm_rxconn_reply_frame(fm_rxconn *c);

/* ---- TLS (receiver_tls.c) ---- */

enum { FM_TLS_WAIT_FIRST = 1, FM_TLS_WAIT_HANDSHAKE = 2 }; /* nothing read yet; under way */

/* Advances c's TLS handshake: 0 once it is established and c may be read (the HELLO may already
 * wait inside TLS), 1 while it goes on, -1 if c was refused or closed. */
int fm_rxconn_tls_step(fm_rxconn *c);
/* 1 if the receiver's allow list admits c's certificate (or names none). */
int fm_receiver_names_allowed(const fm_receiver *rx, const fm_tls *t);

/* ---- a connection's ring (rxbuf.c) ---- */

struct fm_rxbuf {
    uint32_t refs;
    uint32_t closed;  /* the connection is gone */
    uint32_t queued;  /* in the receiver's ready queue (or being drained) */
    uint32_t blocked; /* the I/O thread stopped reading for want of space */
    uint32_t resume;  /* the consumer released space since */
    uint64_t consumed; /* ring position the consumer has read up to (set when it hands b back) */
    uint64_t session_id; /* the session of its connection (set at the handshake): where a
                          * request's reply goes, even once that connection is replaced */
    char *peer;        /* the sender's verified certificate name (TLS), or NULL; set before the
                        * first record is published, and never changed after */
    uint64_t ack_at;   /* a release up to here makes an ACK due: the consumer writes it (or
                        * kicks the I/O thread), once, rather than leave it to the next look;
                        * FM_NO_ACK_AT: none */
    fm_ctx *ctx;
    uint64_t capacity;
    fastmsg_ring_ctl *ctl;
    uint8_t *data;
    void *mem;
};

#define FM_NO_ACK_AT UINT64_MAX

/* A new ring with one reference, or NULL without memory. */
fm_rxbuf *fm_rxbuf_new(fm_ctx *ctx, uint64_t capacity);

/* ---- the receiver ---- */

struct fm_receiver {
    fm_endpoint ep;       /* in the loop */
    fm_endpoint listener; /* registered with the listening socket */
    fm_ctx *ctx;
    fm_receiver_config cfg;
    fm_busy_poll busy;    /* a direct reader's looking before it sleeps (busy_poll.h) */
    uint64_t busy_replies; /* replies_queued at its last wait (the reader's) */
    const void *last_replier; /* the thread that queued the latest reply (&fm_progress, one per thread) */
    int64_t nest_look_ns;     /* a reader's last look at `poller` (the listener, the waker, the sockets) */
    fm_rxconn *parked;        /* the connection a reader sleeps in the reads of, out of `poller` meanwhile
                               * (receiver_direct.c; the token holder's) */
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
    int64_t ack_due_ns;     /* a reader waits: when the acknowledgements it left are due */
    uint32_t nest_off;      /* the I/O thread disarmed the nest finding the token taken, and
                             * could not restore it (nest_event): fm_receiver_write_acks does */
    fm_rxconn *conns;
    uint32_t nconns;
    fm_session_table sessions;
    /* accept() failed for want of descriptors or memory: the listener is unwatched until then
     * (0: it is watched). Under the token. */
    int64_t accept_retry_ns;
    uint32_t accept_errno; /* the last accept() error (positive), for Python's last_error */
    char last_refusal[FM_LAST_ERROR_MAX]; /* the last peer refused and why (under qlock) */
    /* ready queue, shared with Python */
    fm_mutex qlock;
    fm_rxbuf **queue;
    uint32_t qhead, qlen, qcap;
    uint32_t ready_seq, waiters;
    fm_notifier ready;      /* an event loop waiting for a message (fired by enqueue, interrupt) */
    uint64_t stats[FM_STAT_COUNT];
    /* replies queued by Python threads (fm_receiver_reply) for the I/O thread, under rlock */
    fm_mutex rlock;
    fm_mutex conns_lock; /* held by the I/O thread (or a reader) to link or unlink a connection
                                 * or name its peer, and by fm_receiver_connections to list them */
    fm_reply *rq_head, *rq_tail;
    uint32_t rq_len;        /* how many (written under rlock, read without it) */
    uint64_t replies_queued; /* ever (busy_poll: a reader that answers looks before it sleeps) */
    int64_t rq_held_ns;     /* when they began to wait for the end of a recv_many batch (a reply
                             * queued with write_now 0; 0: not held): the I/O thread and readers
                             * leave them alone for up to REPLY_HOLD_NS... */
    uint32_t rq_go;         /* ...unless a write was asked for since the queue was last taken */
    uint64_t reply_bytes;   /* reply bytes queued or unacknowledged: bounded by reply_hwm_bytes */
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
/* Watches the listener again once a pause in accepting (accept() failed for want of descriptors)
 * is over; lowers *next to the pause's end otherwise. A closing connection ends the pause early
 * by setting accept_retry_ns to 1. */
void fm_receiver_resume_accepting(fm_receiver *rx, int64_t now, int64_t *next);

/* ---- a connection (receiver_conn.c, receiver_read.c) ---- */

/* Room for what a connection writes back: WELCOME, ACK, PONG and PING frames, or an ERROR
 * (REPLY frames have a buffer of their own). */
#define FM_RXCONN_OUT_MAX (FASTMSG_ERROR_FRAME_MAX + 64)

struct fm_rxconn {
    fm_endpoint ep;      /* registered with the socket */
    fm_receiver *rx;
    fm_rxconn *next;
    int fd;
    fm_tls *tls;         /* TLS over fd (cfg.tls), or NULL */
    char *peer_name;     /* its verified certificate name (TLS), or NULL (under conns_lock) */
    int tls_wait;        /* its TLS handshake is under way (receiver_tls.c): FM_TLS_WAIT_* */
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
    uint8_t *rout;       /* the REPLY frame on its way out (written before `out`, once begun) */
    size_t rout_cap, rout_len, rout_off;
    int replies;         /* REPLIES granted: its DATA may hold requests */
    int64_t rack_due_ns; /* replies written and unacknowledged: their RACK is due by then (0: none;
                          * INT64_MAX: timed from the next step, receiver_reply.c) */
    int closing;         /* close once `out` is written */
    /* the DATA frame being staged: its sequence end and payload bytes (receiver_ack.c) */
    int data_pending;
    uint64_t data_end_seq, data_bytes;
    int retired;         /* its session went to a newer connection: closed at the next step */
    fm_heartbeat hb;     /* heartbeat hook: its timers (receiver_heartbeat.c) */
    /* ---- authentication (receiver_auth.c): a CHALLENGE was sent, its AUTH is awaited ---- */
    int auth_wait;
    fastmsg_hello auth_hello;     /* the HELLO admitted once the sender's proof holds */
    const fm_auth_key *auth_key;  /* the key its HELLO named */
    uint8_t nonce_s[FASTMSG_AUTH_NONCE], nonce_r[FASTMSG_AUTH_NONCE];
    struct sockaddr_storage peer; /* its address (family AF_UNIX: no address to check) */
    /* ---- rate limit (receiver_rate.c): a token bucket of messages ---- */
    double tokens;                /* messages it may deliver now (negative: in debt) */
    int64_t tokens_at_ns;         /* when `tokens` was last brought up to date; 0: full bucket */
    int64_t rate_until_ns;        /* reading is paused until then (0: not paused) */
    int read_waits;               /* its socket blocks for reads (fm_rxconn_read_wait): 1, -1 it cannot, 0 untried */
};

/* The loop's (and a reader's) operations on a connection: read, write back (receiver_read.c). */
extern const fm_endpoint_ops fm_rxconn_ops;

/* receiver_conn.c. Those that return int return 0, or -1 once the connection is closed (freed). */
void fm_rxconn_set_interest(fm_rxconn *c, uint32_t ev);
void fm_rxconn_close(fm_rxconn *c);
/* The same, `lingering`: the receiver closes, and the socket is half-closed after the last ACKs
 * and drained until the sender closes too (linger.h), so that a frame the sender still sends (a
 * PING) cannot make the kernel reset the connection and drop those ACKs on their way. */
void fm_rxconn_close_as(fm_rxconn *c, int lingering);
/* Appends a frame to `out` (sent by fm_rxconn_flush_out); -1 if it does not fit now. */
int fm_rxconn_queue_out(fm_rxconn *c, const uint8_t *frame, size_t n);
/* Writes what is pending in `out`; closes the connection afterwards if it is closing. */
int fm_rxconn_flush_out(fm_rxconn *c);
/* Refuses the peer: ERROR with the reason (best effort), then close. Returns -1. */
int fm_rxconn_refuse(fm_rxconn *c, int code);
/* The same with a sentence of its own after the code's (counted by code: auth_failures for
 * AUTH, refused_peers for NOT_ALLOWED, crc_errors, protocol_errors). */
int fm_rxconn_refuse_why(fm_rxconn *c, int code, const char *why);
/* A checked HELLO (or one whose sender proved its key): the connection takes its session and
 * WELCOME is written. 0, or -1 once closed. */
int fm_rxconn_admit(fm_rxconn *c, const fastmsg_hello *h);

/* receiver_auth.c. A checked HELLO at f: admitted at once where no key is involved, or
 * challenged (CHALLENGE written, AUTH awaited), or refused. 0, or -1 once closed. */
int fm_rxconn_auth_hello(fm_rxconn *c, const uint8_t *f, const fastmsg_hello *h);
/* The sender's AUTH: admitted if its proof holds, refused otherwise. 0, or -1 once closed. */
int fm_rxconn_auth_proof(fm_rxconn *c, const uint8_t *f, size_t size);

/* receiver_rate.c. `n` new messages arrived on c: they take tokens, and once the bucket is in
 * debt reading pauses (rate_until_ns) until it refills. No-op without a rate limit. */
void fm_rxconn_rate_charge(fm_rxconn *c, uint64_t n);
/* 1 if reading c is paused for its rate (its POLL_IN is then off). */
int fm_rxconn_rate_paused(fm_rxconn *c);
/* The receiver's step: 1 once c's pause is over (the caller reads it again); else lowers *next
 * to the pause's end. */
int fm_rxconn_rate_step(fm_rxconn *c, int64_t now, int64_t *next);

/* receiver.c: remembers why a peer was refused (this side's refusal, or the peer's ERROR), for
 * Python's last_error, then counts it in `stat` (reason first: whoever sees the count reads why). */
void fm_receiver_note_refusal(fm_receiver *rx, int stat, const char *who, const char *text);

/* receiver_allow.c: NULL if the peer of a new connection may stay, else why it is refused and,
 * in *code, FASTMSG_PERR_NOT_ALLOWED or FASTMSG_PERR_LIMIT (max_connections_per_source). */
const char *fm_receiver_check_peer(fm_receiver *rx, const struct sockaddr_storage *peer, int *code);
/* A whole frame at f: acts on it (it stays in the ring as a record the consumer reads or skips). */
int fm_rxconn_handle_frame(fm_rxconn *c, uint8_t *f, size_t size, uint32_t kind);
/* Checks a whole DATA frame (in the ring or big) and drops what arrived before. */
int fm_rxconn_handle_data(fm_rxconn *c, uint8_t *f, size_t size);

/* receiver_read.c: reads and parses until the socket is drained, the ring is full, or enough
 * rounds passed. */
void fm_rxconn_pump_in(fm_rxconn *c);
/* Parses and publishes the frames already read (a rate limit's pause left them in the ring, and
 * the socket may hold nothing more to wake a read). 0, or -1 once closed. */
int fm_rxconn_parse_read(fm_rxconn *c);
/* One read that may sleep until bytes come or the socket's read timeout passes (its socket blocks
 * for reads, fastmsg_set_read_wait; the caller holds the token), then on as fm_rxconn_pump_in. 1
 * if it read (or the connection ended), 0 if the timeout passed, -EINTR if a signal came; *now:
 * the time the read returned. */
int fm_rxconn_read_wait(fm_rxconn *c, int64_t *now);

#endif
