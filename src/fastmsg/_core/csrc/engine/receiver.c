/* The receiver as Python makes it: bound and listening, in the loop, and closed. Its records are
 * taken through the ready queue (receiver_queue.c); its sockets are read by the I/O thread or a
 * waiting reader (receiver_direct.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/receiver_internal.h"

/* Connections the kernel queues before they are accepted. A burst of senders (thousands starting
 * at once) must not overflow it: the kernel caps it at net.core.somaxconn (4096 by default on
 * recent Linux), so ask for more than any cap. */
#define LISTEN_BACKLOG 65535

/* Frees what receiver_new made (the receiver is not, or no longer, in the loop). */
static void receiver_free(fm_receiver *rx) {
    fm_rxbuf *b;
    while ((b = fm_receiver_next_ready(rx))) fm_rxbuf_decref(b);
    fm_replies_free(rx);
    fm_mutex_destroy(&rx->rlock);
    fm_mutex_destroy(&rx->conns_lock);
    if (rx->poller != rx->ctx->poller) fastmsg_poller_free(rx->poller);
    fm_waker_close(&rx->wake);
    fm_notifier_close(&rx->ready);
    fastmsg_close(rx->lfd);
    free(rx->queue);
    fm_session_table_free(&rx->sessions);
    fm_mutex_destroy(&rx->qlock);
    fm_tls_ctx_free(rx->cfg.tls);
    free(rx);
}

/* A poller of its own, which a reader can wait on, when the context's can nest one; filled
 * before anyone else can see it. If it cannot be made, the receiver works through the I/O
 * thread alone. */
static void nest_poller(fm_receiver *rx) {
    if (fastmsg_poller_fd(rx->ctx->poller) < 0) return;
    fastmsg_poller *own = fastmsg_poller_new(FASTMSG_POLLER_AUTO);
    if (own && fastmsg_poller_add(own, rx->lfd, FASTMSG_POLL_IN, &rx->listener) == 0 && fm_waker_open(&rx->wake) == 0 &&
        fastmsg_poller_add(own, rx->wake.rd, FASTMSG_POLL_IN, &rx->wake.ep) == 0) {
        rx->poller = own;
    } else {
        fm_waker_close(&rx->wake);
        fastmsg_poller_free(own);
    }
}

fm_receiver *fm_receiver_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_receiver_config *cfg,
                             fm_error *err) {
    if ((size_t)addrlen > sizeof(struct sockaddr_storage)) { /* (socklen_t is signed on Windows) */
        fm_error_set(err, EINVAL, "address too long");
        fm_tls_ctx_free(cfg->tls);
        return NULL;
    }
    int fd = fastmsg_listen(addr, addrlen, LISTEN_BACKLOG, !cfg->dual_stack);
    if (fd < 0) {
        fm_error_set(err, -fd, "cannot listen: %s", strerror(-fd));
        fm_tls_ctx_free(cfg->tls);
        return NULL;
    }
    fm_receiver *rx = calloc(1, sizeof *rx);
    if (!rx) {
        fastmsg_close(fd);
        fm_error_set(err, ENOMEM, "out of memory");
        fm_tls_ctx_free(cfg->tls);
        return NULL;
    }
    int rc = fm_mutex_init(&rx->qlock);
    if (!rc && (rc = fm_mutex_init(&rx->rlock))) fm_mutex_destroy(&rx->qlock);
    if (!rc && (rc = fm_mutex_init(&rx->conns_lock))) {
        fm_mutex_destroy(&rx->rlock);
        fm_mutex_destroy(&rx->qlock);
    }
    if (rc) {
        fastmsg_close(fd);
        free(rx);
        fm_error_set(err, rc, "cannot create a lock: %s", strerror(rc));
        fm_tls_ctx_free(cfg->tls);
        return NULL;
    }
    if (fm_session_table_init(&rx->sessions, cfg->max_sessions, rx->stats)) {
        fm_mutex_destroy(&rx->conns_lock);
        fm_mutex_destroy(&rx->rlock);
        fm_mutex_destroy(&rx->qlock);
        fastmsg_close(fd);
        free(rx);
        fm_error_set(err, ENOMEM, "out of memory");
        fm_tls_ctx_free(cfg->tls);
        return NULL;
    }
    rx->sessions.reply_bytes = &rx->reply_bytes;
    rx->ep.ops = &fm_receiver_ops;
    rx->listener.ops = &fm_listener_ops;
    rx->nest.ops = &fm_nest_ops;
    rx->ack_due_ns = INT64_MAX;
    rx->ctx = ctx;
    rx->cfg = *cfg;
    fm_busy_poll_init(&rx->busy, cfg->busy_poll_ns, cfg->busy_poll_auto);
    rx->lfd = fd;
    rx->poller = ctx->poller;
    rx->wake.rd = rx->wake.wr = -1;
    fm_notifier_init(&rx->ready);
    nest_poller(rx);
    rc = fm_ctx_command(ctx, FM_CMD_ATTACH, &rx->ep);
    if (rc) {
        fm_error_set(err, -rc, "cannot poll the listening socket: %s", strerror(-rc));
        receiver_free(rx);
        return NULL;
    }
    return rx;
}

int fm_receiver_local_addr(fm_receiver *rx, struct sockaddr_storage *out, socklen_t *len) {
    return fastmsg_local_addr(rx->lfd, out, len);
}

uint64_t fm_receiver_reply_bytes(fm_receiver *rx) { return __atomic_load_n(&rx->reply_bytes, __ATOMIC_RELAXED); }

void fm_receiver_stats(fm_receiver *rx, uint64_t out[FM_STAT_COUNT]) {
    for (int i = 0; i < FM_STAT_COUNT; i++) out[i] = __atomic_load_n(&rx->stats[i], __ATOMIC_RELAXED);
}

fm_notifier *fm_receiver_notifier(fm_receiver *rx) { return &rx->ready; }

void fm_receiver_note_refusal(fm_receiver *rx, int stat, const char *who, const char *text) {
    fm_mutex_lock(&rx->qlock);
    snprintf(rx->last_refusal, sizeof rx->last_refusal, "%s: %s", who, text);
    fm_mutex_unlock(&rx->qlock);
    FM_STAT_ADD(rx, stat, 1); /* (after the reason: whoever sees the count go up reads why) */
}

void fm_receiver_last_refusal(fm_receiver *rx, char *buf, size_t len) {
    fm_mutex_lock(&rx->qlock);
    snprintf(buf, len, "%s", rx->last_refusal);
    fm_mutex_unlock(&rx->qlock);
}

int fm_receiver_accept_error(fm_receiver *rx) { return (int)__atomic_load_n(&rx->accept_errno, __ATOMIC_RELAXED); }

size_t fm_receiver_connections(fm_receiver *rx, fm_conn_info *out, size_t max) {
    size_t n = 0;
    fm_mutex_lock(&rx->conns_lock);
    for (fm_rxconn *c = rx->conns; c; c = c->next, n++) {
        if (n >= max) continue;
        out[n].addr = c->peer;
        snprintf(out[n].peer, sizeof out[n].peer, "%s", c->peer_name ? c->peer_name : "");
    }
    fm_mutex_unlock(&rx->conns_lock);
    return n;
}

void fm_receiver_close(fm_receiver *rx) {
    fm_ctx_command(rx->ctx, FM_CMD_DETACH, &rx->ep);
    receiver_free(rx);
}
