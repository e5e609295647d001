/* waker.h on Windows: WSAPoll waits on sockets only, so the wake-up is a byte over a connected
 * pair of loopback TCP sockets (Winsock has no socketpair; AF_UNIX is not everywhere). */
#ifdef _WIN32
#include "engine/waker.h"

#include <errno.h>
#include <string.h>

#include "net/netio.h"

/* How long the pair may take to connect over loopback. */
#define PAIR_TIMEOUT_NS 5000000000LL
#define DRAIN_CHUNK 64

static void drain_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    (void)events;
    (void)now;
    fm_waker_drain(FM_CONTAINER_OF(ep, fm_waker, ep));
}

static const fm_endpoint_ops drain_ops = {.event = drain_event};

/* 1 if `a` is connected to `b`: whoever else reached the listener first is not our peer. */
static int connected_to(int a, int b) {
    struct sockaddr_storage peer, mine;
    socklen_t plen = sizeof peer, mlen = sizeof mine;
    if (getpeername((SOCKET)a, (struct sockaddr *)&peer, &plen) != 0 ||
        getsockname((SOCKET)b, (struct sockaddr *)&mine, &mlen) != 0)
        return 0;
    return plen == mlen && memcmp(&peer, &mine, (size_t)plen) == 0;
}

int fm_waker_open(fm_waker *w) {
    struct sockaddr_storage addr;
    socklen_t len;
    int rd = -1, wr = -1, rc = fastmsg_make_sockaddr(AF_INET, "127.0.0.1", 0, 0, NULL, &addr, &len);
    w->ep.ops = &drain_ops;
    w->rd = w->wr = -1;
    int lfd = rc ? rc : fastmsg_listen((struct sockaddr *)&addr, len, 1, 0);
    if (lfd < 0) return lfd;
    if ((rc = fastmsg_local_addr(lfd, &addr, &len)) || (wr = rc = fastmsg_connect_start((struct sockaddr *)&addr, len)) < 0)
        goto out;
    for (;;) { /* the listener is non-blocking: wait for the connection, then take it */
        if ((rc = fastmsg_wait_readable(lfd, PAIR_TIMEOUT_NS)) <= 0) {
            rc = rc ? rc : -ETIMEDOUT;
            goto out;
        }
        if ((rd = fastmsg_accept(lfd)) == -EAGAIN) continue;
        if (rd < 0 || connected_to(rd, wr)) break;
        fastmsg_close(rd); /* someone else's connection */
    }
    rc = rd < 0 ? rd : 0;
out:
    fastmsg_close(lfd);
    if (rc) {
        fastmsg_close(wr);
        return rc;
    }
    w->rd = rd;
    w->wr = wr;
    return 0;
}

void fm_waker_signal(fm_waker *w) {
    char one = 1;
    (void)send((SOCKET)w->wr, &one, 1, 0); /* a full socket already holds a wake-up */
}

void fm_waker_drain(fm_waker *w) {
    uint8_t buf[DRAIN_CHUNK];
    while (fastmsg_read(w->rd, buf, sizeof buf) > 0) {
    }
}

void fm_waker_close(fm_waker *w) {
    if (w->rd < 0) return;
    fastmsg_close(w->rd);
    fastmsg_close(w->wr);
    w->rd = w->wr = -1;
}

#endif
