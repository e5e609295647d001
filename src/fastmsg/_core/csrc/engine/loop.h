/* The context and what its I/O loop offers the endpoints it drives: kicks, commands, the progress
 * count, time units and counters. Endpoint files call down into these; the loop calls endpoints
 * only through their fm_endpoint_ops. */
#ifndef FASTMSG_ENGINE_LOOP_H
#define FASTMSG_ENGINE_LOOP_H

#include "base/thread.h"

#include "engine/command.h"
#include "engine/endpoint.h"
#include "engine/engine.h"
#include "engine/waker.h"
#include "net/poller.h"

#define FM_MS 1000000LL
#define FM_STAT_ADD(obj, i, n) __atomic_fetch_add(&(obj)->stats[(i)], (uint64_t)(n), __ATOMIC_RELAXED)

#ifdef _MSC_VER
#define FM_THREAD_LOCAL __declspec(thread)
#else
#define FM_THREAD_LOCAL __thread
#endif
/* Batches the calling thread wrote or published. The I/O thread reads its own copy to stay
 * awake for a while after doing work (a direct writer or reader bumps only its own). */
extern FM_THREAD_LOCAL unsigned fm_progress;

struct fm_ctx {
    fm_thread thread;
    fastmsg_poller *poller;
    fm_waker wake;        /* in the poller: kicks and commands wake the loop through it */
    uint32_t parked;      /* the I/O thread is waiting, or about to, in the poller */
    uint32_t kicked;      /* a wake-up is pending in the waker fd */
    uint32_t stop;
    fm_cmd_queue cmds;
    fm_endpoint *endpoints; /* attached senders and receivers (I/O thread only) */
};

/* Sets up the loop's part of ctx (the waker in the poller): 0 or -errno. */
int fm_loop_init(fm_ctx *ctx);
/* The I/O thread's body: runs until ctx->stop, then runs the commands still queued. */
void *fm_loop_main(void *ctx);
/* Wakes the I/O thread if it is parked (no system call otherwise). */
void fm_ctx_kick(fm_ctx *ctx);
/* Queues a command for the I/O thread and waits (call without the GIL) until it has run;
 * returns its result (for an attach: 0 or -errno). */
int fm_ctx_command(fm_ctx *ctx, fm_cmd_kind kind, fm_endpoint *ep);

#endif
