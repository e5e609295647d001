/* The I/O thread's loop: commands, each endpoint's step, then one wait in the poller and the
 * events it reports, each handed to the endpoint registered with the fd. */
#define _GNU_SOURCE
#include "engine/loop.h"


#include "base/futex.h"

FM_THREAD_LOCAL unsigned fm_progress;

/* After doing work the I/O thread polls this many more rounds, yielding the CPU before each,
 * before it parks. Producers do not kick a thread that is not parked, and on one CPU (a process
 * pinned to it) each yield lets the producer queue more, so a stream of send() calls costs a
 * wake-up per batch rather than one per message; on a free CPU the rounds last some 30 us. */
#define SPIN_ROUNDS 64
/* The loop wakes at least this often even when idle: timers need no finer grain. */
#define IDLE_WAIT_NS (100 * FM_MS)
/* Events taken from the poller per wait. */
#define EVENTS_PER_WAIT 64

static void waker_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    (void)events;
    (void)now;
    fm_ctx *ctx = FM_CONTAINER_OF(ep, fm_ctx, wake.ep);
    fm_waker_drain(&ctx->wake);
    __atomic_store_n(&ctx->kicked, 0, __ATOMIC_SEQ_CST);
}

static const fm_endpoint_ops waker_ops = {.event = waker_event};

int fm_loop_init(fm_ctx *ctx) {
    int rc = fm_waker_open(&ctx->wake);
    if (rc) return rc;
    ctx->wake.ep.ops = &waker_ops;
    rc = fastmsg_poller_add(ctx->poller, ctx->wake.rd, FASTMSG_POLL_IN, &ctx->wake.ep);
    if (rc) fm_waker_close(&ctx->wake);
    return rc;
}

void fm_ctx_kick(fm_ctx *ctx) {
    /* Both sides store their own flag and then load the other's, sequentially consistent, so
     * either the parked thread sees the new work or this side sees it parked and writes. */
    if (!__atomic_load_n(&ctx->parked, __ATOMIC_SEQ_CST)) return;
    if (__atomic_exchange_n(&ctx->kicked, 1, __ATOMIC_SEQ_CST)) return;
    fm_waker_signal(&ctx->wake);
}

int fm_ctx_command(fm_ctx *ctx, fm_cmd_kind kind, fm_endpoint *ep) {
    fm_cmd cmd = {.kind = kind, .ep = ep};
    fm_cmd_queue_push(&ctx->cmds, &cmd);
    __atomic_store_n(&ctx->kicked, 1, __ATOMIC_SEQ_CST);
    fm_waker_signal(&ctx->wake);
    return fm_cmd_wait(&cmd);
}

static void run_commands(fm_ctx *ctx) {
    for (fm_cmd *cmd = fm_cmd_queue_take(&ctx->cmds), *next; cmd; cmd = next) {
        next = cmd->next;
        fm_endpoint *ep = cmd->ep;
        int result = 0;
        if (cmd->kind == FM_CMD_ATTACH) {
            if (ep->ops->attach) result = ep->ops->attach(ep);
            if (result == 0) {
                ep->next = ctx->endpoints;
                ctx->endpoints = ep;
            }
        } else {
            fm_endpoint **pp = &ctx->endpoints;
            while (*pp && *pp != ep) pp = &(*pp)->next;
            if (*pp) *pp = ep->next;
            ep->ops->detach(ep);
        }
        fm_cmd_finish(cmd, result);
    }
}

static int has_work(fm_ctx *ctx) {
    for (fm_endpoint *ep = ctx->endpoints; ep; ep = ep->next)
        if (ep->ops->has_work(ep)) return 1;
    return fm_cmd_queue_pending(&ctx->cmds);
}

void *fm_loop_main(void *arg) {
    fm_ctx *ctx = arg;
    fastmsg_poll_event ev[EVENTS_PER_WAIT];
    unsigned seen = fm_progress;
    int spins = 0;
    while (!__atomic_load_n(&ctx->stop, __ATOMIC_ACQUIRE)) {
        run_commands(ctx);
        int64_t now = fastmsg_monotonic_ns(), next = now + IDLE_WAIT_NS;
        for (fm_endpoint *ep = ctx->endpoints, *n; ep; ep = n) { /* a step may end its endpoint (linger.c) */
            n = ep->next;
            ep->ops->step(ep, now, &next);
        }
        if (fm_progress != seen) {
            seen = fm_progress;
            spins = SPIN_ROUNDS;
        }
        int n;
        if (spins > 0) {
            spins--;
            fm_yield();
            n = fastmsg_poller_wait(ctx->poller, ev, EVENTS_PER_WAIT, 0);
        } else {
            __atomic_store_n(&ctx->parked, 1, __ATOMIC_SEQ_CST);
            int timeout_ms = 0;
            if (!has_work(ctx)) {
                now = fastmsg_monotonic_ns();
                timeout_ms = next > now ? (int)((next - now + FM_MS - 1) / FM_MS) : 0;
            }
            n = fastmsg_poller_wait(ctx->poller, ev, EVENTS_PER_WAIT, timeout_ms);
            __atomic_store_n(&ctx->parked, 0, __ATOMIC_SEQ_CST);
        }
        now = fastmsg_monotonic_ns();
        for (int i = 0; i < n; i++) {
            fm_endpoint *ep = ev[i].data;
            ep->ops->event(ep, ev[i].events, now);
        }
    }
    run_commands(ctx);
    /* Python closed every sender and receiver; what is left are sockets lingering (linger.c). */
    while (ctx->endpoints) {
        fm_endpoint *ep = ctx->endpoints;
        ctx->endpoints = ep->next;
        ep->ops->detach(ep);
    }
    return NULL;
}
