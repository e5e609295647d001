/* The engine's context: the I/O thread, its loop, the wake-up fd and the command queue. */
#define _GNU_SOURCE
#include "engine/engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif
#include <fcntl.h>
#include <sched.h>

FM_THREAD_LOCAL unsigned fm_progress;

/* After doing work the I/O thread polls this many more rounds, yielding the CPU before each,
 * before it parks. Producers do not kick a thread that is not parked, and on one CPU (a process
 * pinned to it) each yield lets the producer queue more, so a stream of send() calls costs a
 * wake-up per batch rather than one per message; on a free CPU the rounds last some 30 us. */
#define FM_SPIN_ROUNDS 64

const char *const fm_stat_names[FM_STAT_COUNT] = {
    "sent_messages", "sent_bytes", "sent_batches", "write_calls", "connects", "disconnects",
    "received_messages", "received_bytes", "received_batches", "read_calls", "accepted", "connections",
    "crc_errors", "protocol_errors", "duplicates", "lost", "rejected", "ring_chains",
};

int fm_waker_open(fm_waker *w) {
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -errno;
    w->rd = w->wr = fd;
    return 0;
#else
    int p[2];
    if (pipe(p) < 0) return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
    }
    w->rd = p[0];
    w->wr = p[1];
    return 0;
#endif
}

void fm_waker_signal(fm_waker *w) {
    uint64_t one = 1;
    ssize_t rc = write(w->wr, &one, w->rd == w->wr ? 8 : 1);
    (void)rc; /* a full pipe already holds a wake-up */
}

void fm_waker_drain(fm_waker *w) {
    uint8_t buf[64];
    while (read(w->rd, buf, sizeof buf) > 0) {
    }
}

void fm_waker_close(fm_waker *w) {
    if (w->rd < 0) return;
    close(w->rd);
    if (w->wr != w->rd) close(w->wr);
    w->rd = w->wr = -1;
}

static void drain_waker(fm_ctx *ctx) {
    fm_waker_drain(&ctx->wake);
    __atomic_store_n(&ctx->kicked, 0, __ATOMIC_SEQ_CST);
}

void fm_ctx_kick(fm_ctx *ctx) {
    /* Both sides store their own flag and then load the other's, sequentially consistent, so
     * either the parked thread sees the new work or this side sees it parked and writes. */
    if (!__atomic_load_n(&ctx->parked, __ATOMIC_SEQ_CST)) return;
    if (__atomic_exchange_n(&ctx->kicked, 1, __ATOMIC_SEQ_CST)) return;
    fm_waker_signal(&ctx->wake);
}

void fm_ctx_command(fm_ctx *ctx, fm_cmd_kind kind, void *obj, uint32_t *done) {
    fm_cmd *cmd = malloc(sizeof *cmd);
    /* Out of memory for 24 bytes: spin on the allocation rather than lose a close. */
    while (!cmd) cmd = malloc(sizeof *cmd);
    cmd->kind = kind;
    cmd->obj = obj;
    pthread_mutex_lock(&ctx->lock);
    cmd->next = ctx->cmds;
    ctx->cmds = cmd;
    pthread_mutex_unlock(&ctx->lock);
    __atomic_store_n(&ctx->kicked, 1, __ATOMIC_SEQ_CST);
    fm_waker_signal(&ctx->wake);
    if (!done) return;
    while (!__atomic_load_n(done, __ATOMIC_ACQUIRE)) fastmsg_futex_wait(done, 0, 10 * FM_MS, 0);
}

static void signal_done(uint32_t *done) {
    __atomic_store_n(done, 1, __ATOMIC_RELEASE);
    fastmsg_futex_wake_all(done);
}

static void run_commands(fm_ctx *ctx) {
    pthread_mutex_lock(&ctx->lock);
    fm_cmd *list = ctx->cmds;
    ctx->cmds = NULL;
    pthread_mutex_unlock(&ctx->lock);
    /* the list is newest first; run in arrival order */
    fm_cmd *rev = NULL;
    while (list) {
        fm_cmd *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        fm_cmd *n = rev->next;
        switch (rev->kind) {
        case FM_CMD_ADD_SENDER: {
            fm_sender *s = rev->obj;
            s->next = ctx->senders;
            ctx->senders = s;
            fm_sender_attach(s);
            break;
        }
        case FM_CMD_CLOSE_SENDER: {
            fm_sender *s = rev->obj, **pp = &ctx->senders;
            while (*pp && *pp != s) pp = &(*pp)->next;
            if (*pp) *pp = s->next;
            fm_sender_detach(s);
            signal_done(&s->closed_done);
            break;
        }
        case FM_CMD_ADD_RECEIVER: {
            fm_receiver *rx = rev->obj;
            rx->next = ctx->receivers;
            ctx->receivers = rx;
            fm_receiver_attach(rx);
            break;
        }
        case FM_CMD_CLOSE_RECEIVER: {
            fm_receiver *rx = rev->obj, **pp = &ctx->receivers;
            while (*pp && *pp != rx) pp = &(*pp)->next;
            if (*pp) *pp = rx->next;
            fm_receiver_detach(rx);
            signal_done(&rx->closed_done);
            break;
        }
        }
        free(rev);
        rev = n;
    }
}

static int has_work(fm_ctx *ctx) {
    for (fm_sender *s = ctx->senders; s; s = s->next)
        if (fm_sender_has_work(s)) return 1;
    for (fm_receiver *rx = ctx->receivers; rx; rx = rx->next)
        if (fm_receiver_has_work(rx)) return 1;
    return __atomic_load_n(&ctx->cmds, __ATOMIC_SEQ_CST) != NULL;
}

static void *io_main(void *arg) {
    fm_ctx *ctx = arg;
    fastmsg_poll_event ev[64];
    unsigned seen = fm_progress;
    int spins = 0;
    while (!__atomic_load_n(&ctx->stop, __ATOMIC_ACQUIRE)) {
        run_commands(ctx);
        int64_t now = fastmsg_monotonic_ns(), next = now + FM_IDLE_WAIT_NS;
        for (fm_sender *s = ctx->senders; s; s = s->next) fm_sender_step(s, now, &next);
        for (fm_receiver *rx = ctx->receivers; rx; rx = rx->next) fm_receiver_step(rx, now, &next);
        if (fm_progress != seen) {
            seen = fm_progress;
            spins = FM_SPIN_ROUNDS;
        }
        int n;
        if (spins > 0) {
            spins--;
            sched_yield();
            n = fastmsg_poller_wait(ctx->poller, ev, 64, 0);
        } else {
            __atomic_store_n(&ctx->parked, 1, __ATOMIC_SEQ_CST);
            int timeout_ms = 0;
            if (!has_work(ctx)) {
                now = fastmsg_monotonic_ns();
                timeout_ms = next > now ? (int)((next - now + FM_MS - 1) / FM_MS) : 0;
            }
            n = fastmsg_poller_wait(ctx->poller, ev, 64, timeout_ms);
            __atomic_store_n(&ctx->parked, 0, __ATOMIC_SEQ_CST);
        }
        now = fastmsg_monotonic_ns();
        for (int i = 0; i < n; i++) {
            fm_handle *h = ev[i].data;
            switch (h->kind) {
            case FM_H_WAKER: drain_waker(ctx); break;
            case FM_H_SENDER: fm_sender_event((fm_sender *)h, ev[i].events, now); break;
            case FM_H_LISTENER: fm_receiver_accept((fm_receiver *)h, now); break;
            case FM_H_RXCONN: fm_rxconn_event((fm_rxconn *)h, ev[i].events, now); break;
            case FM_H_RXPOLL: fm_receiver_poll(((struct fm_rxpoll *)h)->rx, now); break;
            }
        }
    }
    run_commands(ctx);
    return NULL;
}

fm_ctx *fm_ctx_new(fastmsg_poller_kind poller, char *err, size_t errlen) {
    fm_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctx->waker.kind = FM_H_WAKER;
    ctx->poller = fastmsg_poller_new(poller);
    if (!ctx->poller) {
        snprintf(err, errlen, "cannot create the poller: %s", strerror(errno));
        free(ctx);
        return NULL;
    }
    int rc = fm_waker_open(&ctx->wake);
    if (rc == 0) rc = fastmsg_poller_add(ctx->poller, ctx->wake.rd, FASTMSG_POLL_IN, &ctx->waker);
    if (rc == 0) rc = -pthread_mutex_init(&ctx->lock, NULL);
    if (rc == 0) rc = -pthread_create(&ctx->thread, NULL, io_main, ctx);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the I/O thread: %s", strerror(-rc));
        fastmsg_poller_free(ctx->poller);
        free(ctx);
        return NULL;
    }
    return ctx;
}

const char *fm_ctx_poller_name(const fm_ctx *ctx) { return fastmsg_poller_name(ctx->poller); }

void fm_ctx_free(fm_ctx *ctx) {
    if (!ctx) return;
    __atomic_store_n(&ctx->stop, 1, __ATOMIC_RELEASE);
    fm_waker_signal(&ctx->wake);
    pthread_join(ctx->thread, NULL);
    /* Endpoints still registered belong to Python objects, which close them themselves. */
    fastmsg_poller_free(ctx->poller);
    fm_waker_close(&ctx->wake);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}
