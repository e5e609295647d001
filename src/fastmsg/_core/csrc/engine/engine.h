/* The I/O engine: one background thread per context moves records between rings and sockets.
 *
 * Python threads produce into a sender's ring and consume from a receiver's connection rings
 * (ring.h); the I/O thread is the other side of each ring. It never takes the GIL. The records
 * both sides exchange are laid out in wire/layout.h. Layout and flow: docs/architecture.md,
 * "I/O engine". */
#ifndef FASTMSG_ENGINE_H
#define FASTMSG_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/notifier.h"
#include "net/poller.h"
#include "net/sock.h"
#include "net/tls.h"
#include "ring/ring.h"
#include "wire/layout.h"
#include "wire/auth.h"
#include "wire/protocol.h"

typedef struct fm_ctx fm_ctx;
typedef struct fm_sender fm_sender;
typedef struct fm_receiver fm_receiver;
typedef struct fm_rxbuf fm_rxbuf;
typedef struct fm_request fm_request;

/* The largest max_message_size a Sender or Receiver accepts: a round number below what a record
 * can describe (FASTMSG_MESSAGE_LIMIT). */
#define FASTMSG_MAX_MESSAGE_SIZE 0xFFFF0000u

/* Why fm_ctx_new, fm_sender_new or fm_receiver_new failed: a positive errno value (ENOMEM,
 * EINVAL for a bad argument, the socket call's own for a bind failure...) and a sentence. */
#define FM_ERROR_TEXT_MAX 256
typedef struct {
    int errnum;
    char text[FM_ERROR_TEXT_MAX];
} fm_error;

/* Room for fm_sender_last_error's text: the peer's ERROR text and a sentence around it. */
#define FM_LAST_ERROR_MAX (FASTMSG_ERROR_MAX_TEXT + 64)

/* ---- counters (exact; the I/O thread adds, Python reads) ---- */
enum {
    FM_SENT_MESSAGES, FM_SENT_BYTES, FM_SENT_BATCHES, FM_WRITE_CALLS, FM_CONNECTS, FM_DISCONNECTS,
    FM_RECV_MESSAGES, FM_RECV_BYTES, FM_RECV_BATCHES, FM_READ_CALLS, FM_ACCEPTS, FM_CONNECTIONS,
    FM_CRC_ERRORS, FM_PROTOCOL_ERRORS, FM_DUPLICATES, FM_LOST, FM_REJECTED, FM_RING_CHAINS,
    /* the receiver's sessions and connections */
    FM_REPLACED_CONNECTIONS, /* a HELLO took its session over from a connection still open */
    FM_SESSIONS,             /* sessions remembered now (a gauge) */
    FM_EVICTED_SESSIONS,     /* idle sessions forgotten beyond max_sessions */
    FM_ACCEPT_ERRORS,        /* accept() failed other than EAGAIN (EMFILE...): retried next round; or a parked connection could not be watched again (closed) */
    /* acknowledgements */
    FM_ACKED,                /* sender: messages acknowledged */
    FM_RESENT,               /* sender: messages written again after a reconnect */
    FM_ACKS,                 /* receiver: ACK frames written */
    FM_EARLY_ACKS,           /* receiver: frames acknowledged on arrival, not on release, for want
                              * of memory to remember them (ack="released" only) */
    /* heartbeats (heartbeat.h) */
    FM_PINGS_SENT, FM_PONGS_RECEIVED, FM_DEAD_PEERS,
    /* requests and replies */
    FM_REQUESTS,             /* sender: requests made */
    FM_REPLIES_RECEIVED,     /* sender: replies handed to their waiting request */
    FM_LATE_REPLIES,         /* sender: replies whose request had timed out (or is unknown) */
    FM_REPLIES_SENT,         /* receiver: replies written (resent ones included) */
    FM_RESENT_REPLIES,       /* receiver: replies written again after a reconnect */
    FM_UNDELIVERABLE_REPLIES,/* receiver: replies dropped as their sender left or was forgotten */
    FM_AUTH_FAILURES,        /* both: handshakes refused for authentication (either side's) */
    FM_REFUSED_PEERS,        /* receiver: peers refused by its allow list (address or key id) */
    FM_REFUSED_PER_SOURCE,   /* receiver: connections over max_connections_per_source */
    FM_RATE_LIMITED,         /* receiver: pauses in reading a connection over its rate limit */
    FM_REFUSED_CONNECTIONS,  /* receiver: connections refused at accept over max_connections */
    FM_TLS_FAILURES,         /* both: TLS handshakes that failed (certificate, plaintext peer...),
                              * and records refused (a bit flipped on the way: bad record MAC) */
    FM_STAT_COUNT
};
extern const char *const fm_stat_names[FM_STAT_COUNT];

/* ---- context ---- */

/* Starts the I/O thread. NULL and the reason in *err on failure. */
fm_ctx *fm_ctx_new(fastmsg_poller_kind poller, fm_error *err);
/* Stops the I/O thread and frees the context. It closes no endpoint: every sender and receiver
 * made on it must be closed before (Python's Context.close does it). */
void fm_ctx_free(fm_ctx *ctx);
const char *fm_ctx_poller_name(const fm_ctx *ctx);

/* ---- sender ---- */

/* A shared key (docs/security.md): its id, as the HELLO names it, and its bytes. */
typedef struct {
    uint64_t id;
    uint32_t len;                      /* 0: no key */
    uint8_t bytes[FASTMSG_AUTH_KEY_MAX];
} fm_auth_key;

#define FM_MAX_KEYS 8     /* keys a receiver holds at once (rotation needs two) */
#define FM_MAX_ALLOW 32   /* networks, and key ids, in a receiver's allow list */

/* A network of an allow list: the peer's address, masked to `prefix` bits, equals `addr`. */
typedef struct {
    uint8_t family;   /* 4 or 6 */
    uint8_t prefix;
    uint8_t addr[16]; /* network byte order; IPv4 in the first 4 bytes */
} fm_allow_net;

/* A certificate name of an allow list: the peer's verified certificate has it (net/tls.h). */
typedef struct {
    uint32_t kind; /* FM_TLS_NAME_ANY, _CN or _SAN */
    char name[FM_TLS_NAME_MAX];
} fm_allow_name;

typedef struct {
    uint64_t ring_capacity; /* power of two */
    uint64_t hwm_bytes;     /* queued bytes at which send waits */
    uint32_t max_message;   /* largest payload accepted by send */
    uint32_t max_batch;     /* largest DATA record bytes per frame */
    uint64_t session_id;    /* non-zero */
    uint32_t handshake_timeout_ms; /* from the connect to WELCOME; 0: the default, 5 s */
    uint32_t heartbeat_ms;  /* PING interval (heartbeat.h); 0: no heartbeats */
    uint32_t dead_peer_ms;  /* nothing received this long: the receiver is gone (> heartbeat_ms) */
    uint32_t busy_poll_ns;  /* a requester polls its socket this long before it sleeps; 0: never */
    uint32_t busy_poll_auto; /* ...only after a short wait (busy_poll.h) */
    fm_auth_key key;        /* len 0: no secret */
    fm_tls_ctx *tls;        /* NULL: plaintext; else the sender's, freed with it */
} fm_sender_config;

/* Registers a sender that connects to addr (and reconnects) from the I/O thread. NULL and the
 * reason in *err on failure (ENOMEM; EINVAL for an address longer than sockaddr_storage). */
fm_sender *fm_sender_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_sender_config *cfg,
                         fm_error *err);
/* Producer handle of the sender's ring: Python writes records with ring.h and then calls kick. */
fastmsg_ring *fm_sender_ring(fm_sender *s);
/* Bytes queued and not yet written (what hwm_bytes limits). */
uint64_t fm_sender_queued(fm_sender *s);
/* Ring position before which every record has been acknowledged or dropped: the engine no longer
 * reads the external payloads of those records. */
uint64_t fm_sender_released(fm_sender *s);
/* 1 if every record published has been written (it may await its acknowledgement): the
 * connection is idle, and the next message may be written directly. */
int fm_sender_all_written(fm_sender *s);
/* When the I/O thread last wrote messages (monotonic ns, its loop's time): about the latest that
 * a message it wrote can have been sent, so a send that finds the connection idle needs no clock
 * read by the sends before it to tell whether it follows a pause. */
int64_t fm_sender_written_ns(fm_sender *s);
/* Messages queued and not yet acknowledged by the receiver (nor dropped as too large for it). */
uint64_t fm_sender_unacked(fm_sender *s);
/* After publishing: wakes the I/O thread if it is parked (no syscall otherwise). */
void fm_sender_kick(fm_sender *s);
/* After publishing, when the connection was idle: writes what is queued from the calling thread
 * (call without the GIL), sparing the hand-off to the I/O thread. 1 if everything was written;
 * 0 if the I/O thread must do it (busy, not connected, socket full, error): then kick. */
int fm_sender_write_direct(fm_sender *s);
/* Python is about to wait for acknowledgements (flush): the I/O thread PINGs, which asks the
 * receiver for them at once. */
void fm_sender_ask_ack(fm_sender *s);
/* Waits until everything published before the call is written, or the deadline (-1: none).
 * FASTMSG_WAIT_READY / TIMEOUT / INTERRUPTED. */
int fm_sender_flush(fm_sender *s, int64_t deadline_ns);
int fm_sender_connected(fm_sender *s);
/* Before closing (call without the GIL): sends no more PINGs and waits until the PONGs still owed
 * have come, the connection is gone, or the deadline (-1: none). A PONG arriving after the close
 * would make the kernel reset the connection and drop what it still had to send. */
void fm_sender_settle(fm_sender *s, int64_t deadline_ns);
/* The receiver's max_message from its WELCOME, or 0 before the first handshake. */
uint32_t fm_sender_peer_max_message(fm_sender *s);
/* Messages dropped unsent as larger than the receiver's max_message (queued before the handshake
 * told the limit), and in *last_size the size of the latest of them. */
uint64_t fm_sender_refused(fm_sender *s, uint64_t *last_size);
void fm_sender_stats(fm_sender *s, uint64_t out[FM_STAT_COUNT]);
/* Last error the peer reported or the connection met ("" if none), copied into buf (at most len
 * bytes; FM_LAST_ERROR_MAX holds any). */
void fm_sender_last_error(fm_sender *s, char *buf, size_t len);
/* The verified certificate name of the receiver of the latest TLS connection ("" before one, or
 * without TLS). */
void fm_sender_peer(fm_sender *s, char *buf, size_t len);
/* Messages acknowledged by the receiver or dropped as too large for it: a count that only grows,
 * so that a relay can release what came before (with the ring's `records`, what was queued). */
uint64_t fm_sender_done(fm_sender *s);
/* Acknowledgement round trips: the number of samples so far (one per ACK cycle: a batch's write
 * to the ACK covering it), the latest in *last_ns, and in *timing_since_ns when the batch being
 * timed now was written (0: none is; a receiver that stopped acknowledging shows as a growing
 * age of it). */
uint64_t fm_sender_rtt(fm_sender *s, uint64_t *last_ns, int64_t *timing_since_ns);
/* Unregisters and closes the socket, keeping the ring: after it, the I/O thread no longer
 * touches the sender, and the unacknowledged records can be taken back. Then fm_sender_close. */
void fm_sender_stop(fm_sender *s);
/* After fm_sender_stop: the next record from ring position *pos (start at fm_sender_released)
 * that was neither acknowledged nor dropped, *pos moved past it. 1 and its payload (the external
 * one for FM_REC_EXTERNAL, which the producer holds), length and flags; 0 at the end. */
int fm_sender_next_unacked(fm_sender *s, uint64_t *pos, const uint8_t **payload, uint64_t *len, uint32_t *flags);
/* Unregisters, closes the socket and frees; the ring's unsent records are dropped. The external
 * payloads of FM_REC_EXTERNAL records (wire/layout.h) are the producer's: the engine no longer
 * reads those the ring was released past (fm_sender_released), nor any once this returns. */
void fm_sender_close(fm_sender *s);
/* The sender's readiness fd (notifier.h): fired when acknowledgements give ring space back, and
 * when a reply arrives. */
fm_notifier *fm_sender_notifier(fm_sender *s);

/* ---- requests (sender_reply.c) ----
 * A request is registered before its message is queued (so no reply can come before it), waited
 * for, or polled (an event loop: the sender's notifier fires when a reply arrives), and ended by
 * its maker, reply or not. Every call may come from any thread; none blocks but the wait. */

/* Registers request `id` (unique among those in flight); NULL without memory. `more`: not the
 * first of a group that one caller waits for (Sender.request_many). */
fm_request *fm_request_new(fm_sender *s, uint64_t id, int more);
/* 1 once its reply is here (then fm_request_take_reply), else 0. Never blocks. */
int fm_request_ready(fm_request *r);
/* Waits for the reply until the deadline (-1: none): FASTMSG_WAIT_READY / TIMEOUT / INTERRUPTED. */
int fm_request_wait(fm_request *r, int64_t deadline_ns);
/* The same, but while the caller's `own` requests (r among them) are all of s's in flight, the
 * calling thread (without the GIL) reads the socket itself for a while, sparing the I/O thread's
 * wake-up and hand-off. `unwritten`: r's message was published but nobody was asked to write it
 * yet; this call writes it, or kicks the I/O thread to. */
int fm_request_wait_direct(fm_sender *s, fm_request *r, uint32_t own, int64_t deadline_ns, int unwritten);
/* Someone waits for a reply other than by fm_request_wait_direct (an event loop): a requester's
 * hold on the socket, if any, ends now, so that the I/O thread reads it. */
void fm_sender_revoke_lease(fm_sender *s);
/* Lends the connected socket to an event loop in the calling thread: a copy of its descriptor
 * (close-on-exec; the caller closes it) that is readable when the receiver sent something, for
 * fm_sender_read_lent, on a lease like a direct read's. *conn identifies the connection. -EAGAIN
 * if it cannot be lent now (not connected, or busy), or -errno. */
int fm_sender_lend_fd(fm_sender *s, uint64_t *conn);
/* Reads what the lent socket of connection `conn` has and acts on it, as the I/O thread would,
 * renewing the lease; an event loop's notifier is not fired for replies this reads (the loop
 * wakes its waiters itself). 1 done, 0 busy (the I/O thread reads), -1 that connection is gone
 * (stop watching the copy and close it). */
int fm_sender_read_lent(fm_sender *s, uint64_t conn);
/* The reply's payload (malloc'd: the caller frees it) and its length; once, after ready. */
uint8_t *fm_request_take_reply(fm_request *r, size_t *len);
/* Unregisters and frees r; a reply that comes later is dropped and counted as late. */
void fm_request_end(fm_sender *s, fm_request *r);

/* ---- receiver ---- */

typedef struct {
    uint64_t conn_ring_capacity; /* per connection, power of two */
    uint32_t max_message;
    uint32_t max_batch;
    uint32_t max_connections;
    uint32_t handshake_timeout_ms;
    uint32_t max_sessions;       /* idle sessions remembered (for resume) beyond the live ones */
    uint32_t ack_on_receipt;     /* acknowledge messages once received, not once the consumer released them */
    uint32_t heartbeat_ms;  /* PING interval (heartbeat.h); 0: no heartbeats */
    uint32_t dead_peer_ms;  /* nothing received this long: the sender is gone (> heartbeat_ms) */
    uint32_t busy_poll_ns;  /* a recv() polls the sockets this long before it sleeps; 0: never */
    uint32_t busy_poll_auto; /* ...only after a short wait (busy_poll.h) */
    uint64_t reply_hwm_bytes; /* reply bytes queued or unacknowledged at which reply() refuses */
    uint32_t dual_stack;      /* an IPv6 address takes IPv4 connections too (IPV6_V6ONLY off), as for the address "*" */
    /* ---- who may connect (receiver_allow.c, receiver_auth.c) ---- */
    fm_auth_key keys[FM_MAX_KEYS];   /* nkeys 0: no secret, and a sender with one is refused */
    uint32_t nkeys;
    fm_allow_net nets[FM_MAX_ALLOW]; /* nnets 0: any address */
    uint32_t nnets;
    uint64_t allowed_keys[FM_MAX_ALLOW]; /* nallowed_keys 0: any key this side holds */
    uint32_t nallowed_keys;
    uint32_t max_per_source;         /* connections from one IP address at once; 0: no limit */
    uint32_t rate_msgs;              /* messages per second one connection may deliver; 0: no limit */
    uint32_t rate_burst;             /* ... and how many above the rate at once (the bucket's size) */
    /* ---- TLS (net/tls.h) ---- */
    fm_tls_ctx *tls;                 /* NULL: plaintext; else the receiver's, freed with it */
    fm_allow_name names[FM_MAX_ALLOW]; /* nnames 0: any certificate (or none) */
    uint32_t nnames;
} fm_receiver_config;

/* Binds and listens on addr, and joins the I/O loop; NULL and the reason in *err on failure (the
 * bind or listen errno, ENOMEM, or the poller's errno for a listener it cannot watch). */
fm_receiver *fm_receiver_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_receiver_config *cfg,
                             fm_error *err);
/* The bound address (the real port when 0 was asked). */
int fm_receiver_local_addr(fm_receiver *rx, struct sockaddr_storage *out, socklen_t *len);
/* A connection ring with published records, with a reference for the caller (fm_rxbuf_decref),
 * or NULL if none is ready. The caller drains it, then calls fm_receiver_done. */
fm_rxbuf *fm_receiver_next_ready(fm_receiver *rx);
/* The caller has consumed b's records up to ring position `consumed` and hands back its
 * reference; b is queued again if more records were published meanwhile. */
void fm_receiver_done(fm_receiver *rx, fm_rxbuf *b, uint64_t consumed);
/* Waits until some connection has records, or the deadline (-1: none). */
int fm_receiver_wait(fm_receiver *rx, int64_t deadline_ns);
/* The same wait, but the calling thread (without the GIL) reads the sockets itself while the I/O
 * thread stands aside, sparing two thread hand-offs per message; falls back to fm_receiver_wait
 * when the I/O thread is busy with them or the poller cannot nest. */
int fm_receiver_wait_direct(fm_receiver *rx, int64_t deadline_ns);
/* Writes the acknowledgements due on rx from the calling thread, if the sockets are free (their
 * token; epoll only). Returns 0 if done, -1 if the I/O thread has to (fm_rxbuf_ack_kick). The
 * caller keeps rx open meanwhile (the consumer lock). */
int fm_receiver_write_acks(fm_receiver *rx);
/* The same for the replies queued (Message.reply), and the acknowledgements due with them. */
int fm_receiver_write_replies(fm_receiver *rx);
/* Sends the replies queued: this thread writes them if it can take the sockets, otherwise the I/O
 * thread (kicked) or the reader holding the sockets (woken) does. */
void fm_receiver_send_replies(fm_receiver *rx);
/* Makes every wait on rx, now and later, return FASTMSG_WAIT_INTERRUPTED (close() has begun). */
void fm_receiver_interrupt(fm_receiver *rx);
void fm_receiver_stats(fm_receiver *rx, uint64_t out[FM_STAT_COUNT]);
/* Reply bytes queued or not yet acknowledged by their senders. */
uint64_t fm_receiver_reply_bytes(fm_receiver *rx);
/* Queues the reply to request `request_id` of session `session_id` (the ring's, fm_rxbuf_session):
 * 0; -EAGAIN when reply_hwm_bytes are queued or unacknowledged already; -EMSGSIZE for a reply too
 * large for any record; -ENOMEM. `write_now`: the queue goes out now (fm_receiver_send_replies);
 * otherwise it waits for the caller's fm_receiver_send_replies (the end of a batch of replies)
 * or the next wait on rx. Any thread; never blocks. */
int fm_receiver_reply(fm_receiver *rx, uint64_t session_id, uint64_t request_id, const uint8_t *data, size_t len,
                      int write_now);
/* The errno of the last failed accept() (EMFILE...), or 0 if none failed. */
int fm_receiver_accept_error(fm_receiver *rx);
/* The last peer refused (by this side or by the peer's ERROR) and why; "" if none. */
void fm_receiver_last_refusal(fm_receiver *rx, char *buf, size_t len);
void fm_receiver_close(fm_receiver *rx);
/* The receiver's readiness fd (notifier.h): fired when a ring with records joins the ready queue,
 * and when close() begins. */
fm_notifier *fm_receiver_notifier(fm_receiver *rx);

/* ---- a connection's receive ring, shared by the I/O thread (producer) and Python ---- */
fastmsg_ring_ctl *fm_rxbuf_ctl(fm_rxbuf *b);
uint8_t *fm_rxbuf_data(fm_rxbuf *b);
uint64_t fm_rxbuf_capacity(fm_rxbuf *b);
/* 1 once the connection is gone: after its last records, nothing more will come. */
int fm_rxbuf_closed(fm_rxbuf *b);
/* The session of the connection whose ring this is (known once its records are published). */
uint64_t fm_rxbuf_session(fm_rxbuf *b);
/* An open connection, as fm_receiver_connections lists it. */
typedef struct {
    struct sockaddr_storage addr; /* the sender's address (AF_UNIX, or AF_UNSPEC, over ipc) */
    char peer[FM_TLS_NAME_MAX];   /* its verified certificate name (TLS), or "" */
} fm_conn_info;
/* Copies up to `max` of the open connections into out; returns how many are open. */
size_t fm_receiver_connections(fm_receiver *rx, fm_conn_info *out, size_t max);

/* The verified certificate name of the ring's sender (TLS), or NULL. */
const char *fm_rxbuf_peer(fm_rxbuf *b);
/* After the consumer released ring space: lets the I/O thread read again if it had stopped.
 * Returns 1 if the release made an acknowledgement due (it passed the ring's ack_at): the
 * caller then writes it with fm_receiver_write_acks or, where it cannot, fm_rxbuf_ack_kick has
 * the I/O thread write it. */
int fm_rxbuf_space_released(fm_rxbuf *b);
void fm_rxbuf_ack_kick(fm_rxbuf *b);
void fm_rxbuf_incref(fm_rxbuf *b);
void fm_rxbuf_decref(fm_rxbuf *b);

#endif
