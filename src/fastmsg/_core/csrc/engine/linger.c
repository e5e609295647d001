/* See linger.h. */
#include "engine/linger.h"

#include <errno.h>
#include <stdlib.h>

#include "net/netio.h"

typedef struct {
    fm_endpoint ep; /* in the loop, and registered with the socket */
    fm_ctx *ctx;
    int fd;
    int64_t deadline_ns;
} fm_linger;

/* Closes and frees; `unlink`: take it out of the loop's list first. */
static void finish(fm_linger *l, int unlink) {
    if (unlink) {
        fm_endpoint **pp = &l->ctx->endpoints;
        while (*pp && *pp != &l->ep) pp = &(*pp)->next;
        if (*pp) *pp = l->ep.next;
    }
    fastmsg_poller_remove(l->ctx->poller, l->fd);
    fastmsg_drain(l->fd); /* what came meanwhile: fewer resets when cut short */
    fastmsg_close(l->fd);
    free(l);
}

static void linger_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    (void)events;
    (void)now;
    fm_linger *l = FM_CONTAINER_OF(ep, fm_linger, ep);
    uint8_t buf[4096];
    ptrdiff_t n;
    while ((n = fastmsg_read(l->fd, buf, sizeof buf)) > 0) {
    }
    if (n != -EAGAIN) finish(l, 1); /* the peer closed too (or the connection broke) */
}

static void linger_step(fm_endpoint *ep, int64_t now, int64_t *next) {
    fm_linger *l = FM_CONTAINER_OF(ep, fm_linger, ep);
    if (now >= l->deadline_ns) finish(l, 1);
    else if (l->deadline_ns < *next) *next = l->deadline_ns;
}

/* The loop is ending: whatever still lingers is closed (already out of the list). */
static void linger_detach(fm_endpoint *ep) { finish(FM_CONTAINER_OF(ep, fm_linger, ep), 0); }

static int linger_has_work(fm_endpoint *ep) {
    (void)ep;
    return 0;
}

static const fm_endpoint_ops linger_ops = {
    .detach = linger_detach,
    .step = linger_step,
    .event = linger_event,
    .has_work = linger_has_work,
};

void fm_linger_start(fm_ctx *ctx, int fd, int64_t linger_ns, int64_t now) {
    fm_linger *l = calloc(1, sizeof *l);
    if (!l || shutdown(fd, SHUT_WR) != 0 || fastmsg_poller_add(ctx->poller, fd, FASTMSG_POLL_IN, &l->ep) != 0) {
        free(l);
        fastmsg_drain(fd);
        fastmsg_close(fd);
        return;
    }
    l->ep.ops = &linger_ops;
    l->ctx = ctx;
    l->fd = fd;
    l->deadline_ns = now + linger_ns;
    l->ep.next = ctx->endpoints;
    ctx->endpoints = &l->ep;
}
