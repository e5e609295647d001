/* See waker.h. Windows: waker_win.c. */
#define _GNU_SOURCE
#include "engine/waker.h"

#ifndef _WIN32

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#define DRAIN_CHUNK 64 /* bytes read per call when draining a pipe */

static void drain_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    (void)events;
    (void)now;
    fm_waker_drain(FM_CONTAINER_OF(ep, fm_waker, ep));
}

static const fm_endpoint_ops drain_ops = {.event = drain_event};

int fm_waker_open(fm_waker *w) {
    w->ep.ops = &drain_ops;
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
    ssize_t rc = write(w->wr, &one, w->rd == w->wr ? sizeof one : 1);
    (void)rc; /* a full pipe already holds a wake-up */
}

void fm_waker_drain(fm_waker *w) {
    uint8_t buf[DRAIN_CHUNK];
    while (read(w->rd, buf, sizeof buf) > 0) {
    }
}

void fm_waker_close(fm_waker *w) {
    if (w->rd < 0) return;
    close(w->rd);
    if (w->wr != w->rd) close(w->wr);
    w->rd = w->wr = -1;
}

#endif /* !_WIN32 */
