/* The context as Python sees it: start and stop the I/O thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/loop.h"

const char *const fm_stat_names[FM_STAT_COUNT] = {
    "sent_messages", "sent_bytes", "sent_batches", "write_calls", "connects", "disconnects",
    "received_messages", "received_bytes", "received_batches", "read_calls", "accepted", "connections",
    "crc_errors", "protocol_errors", "duplicates", "lost", "rejected", "ring_chains",
    "replaced_connections", "sessions", "evicted_sessions", "accept_errors",
    "acknowledged", "resent", "acks", "early_acks",
    "pings_sent", "pongs_received", "dead_peers",
    "requests", "replies_received", "late_replies", "replies_sent", "resent_replies", "undeliverable_replies",
    "auth_failures", "refused_peers", "refused_per_source", "rate_limited", "refused_connections", "tls_failures",
};

fm_ctx *fm_ctx_new(fastmsg_poller_kind poller, fm_error *err) {
    fm_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        fm_error_set(err, ENOMEM, "out of memory");
        return NULL;
    }
    ctx->poller = fastmsg_poller_new(poller);
    if (!ctx->poller) {
        int e = errno;
        fm_error_set(err, e, "cannot create the poller: %s", strerror(e));
        goto fail_ctx;
    }
    int rc = fm_loop_init(ctx);
    if (rc) {
        fm_error_set(err, -rc, "cannot create the wake-up fd: %s", strerror(-rc));
        goto fail_poller;
    }
    rc = fm_cmd_queue_init(&ctx->cmds);
    if (rc) {
        fm_error_set(err, rc, "cannot create the command queue: %s", strerror(rc));
        goto fail_waker;
    }
    rc = fm_thread_start(&ctx->thread, fm_loop_main, ctx);
    if (rc) {
        fm_error_set(err, rc, "cannot start the I/O thread: %s", strerror(rc));
        goto fail_queue;
    }
    return ctx;
fail_queue:
    fm_cmd_queue_destroy(&ctx->cmds);
fail_waker:
    fm_waker_close(&ctx->wake);
fail_poller:
    fastmsg_poller_free(ctx->poller);
fail_ctx:
    free(ctx);
    return NULL;
}

const char *fm_ctx_poller_name(const fm_ctx *ctx) { return fastmsg_poller_name(ctx->poller); }

void fm_ctx_free(fm_ctx *ctx) {
    if (!ctx) return;
    __atomic_store_n(&ctx->stop, 1, __ATOMIC_RELEASE);
    fm_waker_signal(&ctx->wake);
    fm_thread_join(ctx->thread);
    fastmsg_poller_free(ctx->poller);
    fm_waker_close(&ctx->wake);
    fm_cmd_queue_destroy(&ctx->cmds);
    free(ctx);
}
