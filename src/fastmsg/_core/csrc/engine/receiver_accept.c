/* The listener: accepts connections, each with a ring of its own, and refuses those over the
 * limit with an ERROR the peer can show. When accept() fails for want of a descriptor or memory,
 * the connection waits in the backlog: the listener stops being watched (it would be reported
 * ready again at once, and the loop would spin) until a connection closes or a short pause ends. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/receiver_internal.h"

/* Accepts per event, so that a flood of connections does not starve the open ones. */
#define ACCEPTS_PER_EVENT 64

/* Refuses a new connection with the reason (ERROR `code`) and counts it in `stat`. */
static void refuse_fd(fm_receiver *rx, int fd, int code, const char *text, int stat) {
    uint8_t frame[FM_RXCONN_OUT_MAX]; /* any ERROR frame fits */
    size_t n = fastmsg_encode_error(frame, (uint32_t)code, text, strlen(text));
    struct iovec iov = {frame, n};
    if (!rx->cfg.tls) /* (a TLS peer could not read it: it is told by the connection's end) */
        fastmsg_writev(fd, &iov, 1); /* best effort: the socket is new, its buffer empty */
    fastmsg_close(fd);
    fm_receiver_note_refusal(rx, stat, "refused a connection", text);
}

/* After accept() failed for want of descriptors or memory, the listener is watched again after
 * this long, or sooner when a connection closes. */
#define ACCEPT_RETRY_NS (50 * FM_MS)

static void pause_accepting(fm_receiver *rx, int64_t now) {
    fastmsg_poller_modify(rx->poller, rx->lfd, 0, &rx->listener);
    rx->accept_retry_ns = now + ACCEPT_RETRY_NS;
}

void fm_receiver_resume_accepting(fm_receiver *rx, int64_t now, int64_t *next) {
    if (!rx->accept_retry_ns || rx->lfd < 0) return;
    if (now < rx->accept_retry_ns) {
        if (rx->accept_retry_ns < *next) *next = rx->accept_retry_ns;
        return;
    }
    rx->accept_retry_ns = 0;
    fastmsg_poller_modify(rx->poller, rx->lfd, FASTMSG_POLL_IN, &rx->listener);
}

static void accept_all(fm_receiver *rx, int64_t now) {
    if (rx->accept_retry_ns) return; /* paused: an event reported before the pause */
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = fastmsg_accept(rx->lfd);
        if (fd == -EAGAIN) return;
        if (fd < 0) {
            FM_STAT_ADD(rx, FM_ACCEPT_ERRORS, 1);
            __atomic_store_n(&rx->accept_errno, -fd, __ATOMIC_RELAXED);
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                pause_accepting(rx, now); /* the connection stays in the backlog */
                return;
            }
            continue; /* that one connection failed (ECONNABORTED...): the next may not */
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        memset(&peer, 0, sizeof peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0) peer.ss_family = AF_UNSPEC;
        int code = 0;
        const char *why = fm_receiver_check_peer(rx, &peer, &code);
        if (why) { /* before any allocation: a refused flood costs no ring */
            refuse_fd(rx, fd, code, why, code == FASTMSG_PERR_LIMIT ? FM_REFUSED_PER_SOURCE : FM_REFUSED_PEERS);
            continue;
        }
        fm_rxconn *c = calloc(1, sizeof *c);
        fm_rxbuf *b = c ? fm_rxbuf_new(rx->ctx, rx->cfg.conn_ring_capacity) : NULL;
        if (!b || rx->nconns >= rx->cfg.max_connections) {
            refuse_fd(rx, fd, FASTMSG_PERR_LIMIT, b ? "too many connections" : "out of memory", FM_REFUSED_CONNECTIONS);
            free(c);
            if (b) fm_rxbuf_decref(b);
            continue;
        }
        c->peer = peer;
        c->ep.ops = &fm_rxconn_ops;
        c->rx = rx;
        c->fd = fd;
        c->buf = b;
        fastmsg_ring_init(&c->w, b->ctl, b->data, b->capacity);
        c->at = c->fill = 0;
        c->deadline_ns = now + (int64_t)rx->cfg.handshake_timeout_ms * FM_MS;
        c->interest = FASTMSG_POLL_IN;
        if (rx->cfg.tls) {
            char why[FM_TLS_ERROR_MAX];
            if (!(c->tls = fm_tls_new(rx->cfg.tls, fd, why, sizeof why))) {
                refuse_fd(rx, fd, FASTMSG_PERR_LIMIT, why, FM_TLS_FAILURES);
                fm_rxbuf_decref(b);
                free(c);
                continue;
            }
            c->tls_wait = FM_TLS_WAIT_FIRST;
        }
        if (fastmsg_poller_add(rx->poller, fd, c->interest, &c->ep) != 0) {
            fm_tls_free(c->tls);
            fastmsg_close(fd);
            fm_rxbuf_decref(b);
            free(c);
            continue;
        }
        fm_mutex_lock(&rx->conns_lock);
        c->next = rx->conns;
        rx->conns = c;
        fm_mutex_unlock(&rx->conns_lock);
        rx->nconns++;
        FM_STAT_ADD(rx, FM_ACCEPTS, 1);
        FM_STAT_ADD(rx, FM_CONNECTIONS, 1);
    }
}

static void listener_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    (void)events;
    accept_all(FM_CONTAINER_OF(ep, fm_receiver, listener), now);
}

const fm_endpoint_ops fm_listener_ops = {.event = listener_event};
