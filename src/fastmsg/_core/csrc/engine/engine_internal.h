/* What the engine's three files share: the context, sender and receiver structures. */
#ifndef FASTMSG_ENGINE_INTERNAL_H
#define FASTMSG_ENGINE_INTERNAL_H

#include <pthread.h>

#include "base/atomics.h"
#include "crc32c/crc32c.h"
#include "engine/engine.h"
#include "base/futex.h"
#include "net/netio.h"
#include "wire/protocol.h"

#define FM_STAT_ADD(obj, i, n) __atomic_fetch_add(&(obj)->stats[(i)], (uint64_t)(n), __ATOMIC_RELAXED)
#define FM_MS 1000000LL
/* The loop wakes at least this often even when idle: timers need no finer grain. */
#define FM_IDLE_WAIT_NS (100 * FM_MS)

#ifdef _MSC_VER
#define FM_THREAD_LOCAL __declspec(thread)
#else
#define FM_THREAD_LOCAL __thread
#endif
/* Batches the calling thread wrote or published. The I/O thread reads its own copy to stay
 * awake for a while after doing work (a direct writer or reader bumps only its own). */
extern FM_THREAD_LOCAL unsigned fm_progress;

/* Every fd in the poller carries a pointer to one of these, first member of its owner. */
typedef enum { FM_H_WAKER, FM_H_SENDER, FM_H_LISTENER, FM_H_RXCONN, FM_H_RXPOLL } fm_handle_kind;
typedef struct {
    fm_handle_kind kind;
} fm_handle;

/* A wake-up fd for a thread waiting in a poller: an eventfd (rd == wr), or a pipe. */
typedef struct {
    int rd, wr;
} fm_waker;
int fm_waker_open(fm_waker *w); /* 0 or -errno */
void fm_waker_signal(fm_waker *w);
void fm_waker_drain(fm_waker *w);
void fm_waker_close(fm_waker *w);

typedef enum { FM_CMD_ADD_SENDER, FM_CMD_CLOSE_SENDER, FM_CMD_ADD_RECEIVER, FM_CMD_CLOSE_RECEIVER } fm_cmd_kind;
typedef struct fm_cmd {
    fm_cmd_kind kind;
    void *obj;
    struct fm_cmd *next;
} fm_cmd;

struct fm_ctx {
    pthread_t thread;
    fastmsg_poller *poller;
    fm_waker wake;
    fm_handle waker;
    uint32_t parked; /* the I/O thread is waiting, or about to, in the poller */
    uint32_t kicked; /* a wake-up is pending in the waker fd */
    uint32_t stop;
    pthread_mutex_t lock; /* guards cmds */
    fm_cmd *cmds;
    fm_sender *senders; /* I/O thread only */
    fm_receiver *receivers;
};

/* Wakes the I/O thread if it is parked. */
void fm_ctx_kick(fm_ctx *ctx);
/* Queues a command for the I/O thread and waits (no GIL held) until it has run. */
void fm_ctx_command(fm_ctx *ctx, fm_cmd_kind kind, void *obj, uint32_t *done);

/* ---- sender ---- */
typedef enum { FM_S_IDLE, FM_S_CONNECTING, FM_S_HANDSHAKE, FM_S_READY } fm_sender_state;

struct fm_sender {
    fm_handle h;
    fm_ctx *ctx;
    fm_sender *next;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    fm_sender_config cfg;
    void *mem;              /* ring control block + records */
    fastmsg_ring producer;  /* Python's handle */
    fastmsg_ring io;        /* the I/O thread's (consumer) handle */
    /* connection (I/O thread only) */
    fm_sender_state state;
    int fd;
    uint32_t interest;
    int64_t next_attempt_ns, backoff_ns, handshake_deadline_ns;
    uint32_t peer_max_message, peer_max_batch;
    uint64_t next_seq;
    /* the frame being written: a control frame (HELLO) or a DATA batch */
    uint8_t hdr[24], ext_hdr[8];
    struct iovec iov[4];
    int iovcnt;
    size_t frame_left;
    int frame_is_data;
    uint64_t batch_end, batch_first_seq;
    uint32_t batch_count;
    uint64_t batch_bytes;
    uint8_t hello[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY];
    uint8_t in[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY + FASTMSG_HELLO_MAX_EXT + 16];
    size_t in_len;
    /* shared with Python */
    uint32_t token;          /* held by whoever touches the connection: the I/O thread, or a
                              * Python thread writing directly (fm_sender_write_direct) */
    uint32_t missed;         /* the I/O thread found the token taken: kick it after */
    int muted;               /* I/O thread only: the socket is out of the poller meanwhile */
    int direct_err;          /* a direct write failed with this errno: the I/O thread fails it */
    uint32_t direct_full;    /* a direct write found the socket full: the I/O thread waits for OUT */
    uint32_t closed_done;
    uint32_t connected;
    pthread_mutex_t err_lock;
    char last_error[FASTMSG_ERROR_MAX_TEXT + 64];
    uint64_t stats[FM_STAT_COUNT];
};

void fm_sender_attach(fm_sender *s);     /* ADD command, I/O thread */
void fm_sender_detach(fm_sender *s);     /* CLOSE command, I/O thread */
void fm_sender_step(fm_sender *s, int64_t now, int64_t *next_deadline);
void fm_sender_event(fm_sender *s, uint32_t events, int64_t now);
int fm_sender_has_work(fm_sender *s);

/* ---- receiver ---- */
typedef struct fm_rxconn fm_rxconn;

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

struct fm_receiver {
    fm_handle h; /* the listener */
    fm_ctx *ctx;
    fm_receiver *next;
    fm_receiver_config cfg;
    int lfd;
    /* The listener and the connections live in a poller of their own when it can nest in the
     * context's (epoll): then a thread blocked in recv can wait on it and read the sockets
     * itself (fm_receiver_wait_direct) while the I/O thread stops watching. With poll() they
     * live in the context's poller and only the I/O thread reads. */
    fastmsg_poller *poller;
    struct fm_rxpoll {
        fm_handle h;
        fm_receiver *rx;
    } nest;
    uint32_t token; /* held by whoever touches the connections: the I/O thread or a reader */
    fm_waker wake;          /* in the receiver's poller: close() interrupts a reader's wait */
    fm_handle waker;
    uint32_t interrupted;   /* close() has begun: waits return FASTMSG_WAIT_INTERRUPTED */
    /* A reader leaves the nest out of the I/O thread's poller for a while after its wait (the
     * lease), so that the next message waits in the socket for the reader's next recv instead
     * of waking the I/O thread; the I/O thread takes the sockets back once the lease runs out.
     * Both under the token. */
    int lent;
    int64_t lease_end_ns;
    fm_rxconn *conns;
    uint32_t nconns;
    /* sessions seen: where each resumes */
    struct fm_session {
        uint64_t id, next_seq;
    } *sessions;
    uint32_t nsessions, session_cap;
    /* ready queue, shared with Python */
    pthread_mutex_t qlock;
    fm_rxbuf **queue;
    uint32_t qhead, qlen, qcap;
    uint32_t ready_seq, waiters;
    uint32_t closed_done;
    uint64_t stats[FM_STAT_COUNT];
};

void fm_receiver_attach(fm_receiver *rx);
void fm_receiver_detach(fm_receiver *rx);
void fm_receiver_step(fm_receiver *rx, int64_t now, int64_t *next_deadline);
void fm_receiver_accept(fm_receiver *rx, int64_t now);
void fm_rxconn_event(fm_rxconn *c, uint32_t events, int64_t now);
void fm_receiver_poll(fm_receiver *rx, int64_t now); /* the nested poller is ready */
int fm_receiver_has_work(fm_receiver *rx);

#endif
