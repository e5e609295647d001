/* See poller_kqueue.h. kqueue watches readability and writability as two filters of one fd, each
 * added or deleted on its own; without EV_CLEAR both are level-triggered, as epoll is here. */
#include "net/poller_kqueue.h"

#include <stddef.h>

int fm_poll_merge(fastmsg_poll_event *out, int k, int fd, uint32_t events) {
    int j = 0;
    while (j < k && out[j].fd != fd) j++; /* (at most a wait's worth of entries) */
    if (j == k) out[k++] = (fastmsg_poll_event){fd, 0, NULL};
    out[j].events |= events;
    return k;
}

#ifdef FASTMSG_HAVE_KQUEUE
#include <errno.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#define EVENTS_PER_CALL 64

int fm_kqueue_open(void) {
    int kq = kqueue(); /* (takes no flags on macOS: close-on-exec is set apart) */
    if (kq < 0) return -errno;
    if (fcntl(kq, F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        close(kq);
        return -e;
    }
    return kq;
}

/* Deleting a filter that was never added (or is gone) is what was wanted. */
static int change_failed(int err, int was_delete) { return err && !(err == ENOENT && was_delete); }

int fm_kqueue_set(int kq, int fd, uint32_t events) {
    static const struct timespec zero = {0, 0};
    struct kevent ch[2];
    int del_r = !(events & FASTMSG_POLL_IN), del_w = !(events & FASTMSG_POLL_OUT);
    EV_SET(&ch[0], (uintptr_t)fd, EVFILT_READ, del_r ? EV_DELETE : EV_ADD, 0, 0, NULL);
    EV_SET(&ch[1], (uintptr_t)fd, EVFILT_WRITE, del_w ? EV_DELETE : EV_ADD, 0, 0, NULL);
#ifdef EV_RECEIPT
    /* Both changes in one call: with EV_RECEIPT each gives back a result (EV_ERROR, data = its
     * errno or 0) instead of the call stopping at the first failure, and a result list that the
     * receipts fill takes no pending event away from a thread waiting on this kqueue. */
    struct kevent res[2];
    ch[0].flags |= EV_RECEIPT;
    ch[1].flags |= EV_RECEIPT;
    int n = kevent(kq, ch, 2, res, 2, &zero);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        int err = (res[i].flags & EV_ERROR) ? (int)res[i].data : 0;
        if (change_failed(err, res[i].filter == EVFILT_READ ? del_r : del_w)) return -err;
    }
#else
    for (int i = 0; i < 2; i++) /* (no result list: nothing pending is taken) */
        if (kevent(kq, &ch[i], 1, NULL, 0, &zero) < 0 && change_failed(errno, i ? del_w : del_r)) return -errno;
#endif
    return 0;
}

int fm_kqueue_wait(int kq, fastmsg_poll_event *out, int max, int timeout_ms) {
    struct kevent evs[EVENTS_PER_CALL];
    struct timespec ts, *tsp = NULL;
    if (max < 1) return -EINVAL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    int n = kevent(kq, NULL, 0, evs, max < EVENTS_PER_CALL ? max : EVENTS_PER_CALL, tsp);
    if (n < 0) return -errno;
    int k = 0;
    for (int i = 0; i < n; i++) {
        int fd = (int)evs[i].ident;
        uint32_t ev = evs[i].filter == EVFILT_READ ? FASTMSG_POLL_IN : evs[i].filter == EVFILT_WRITE ? FASTMSG_POLL_OUT : 0;
        /* EV_EOF: the peer hung up (in that direction; data may remain): what epoll's EPOLLHUP
         * says, and the owner reads to learn more, as after an error. */
        if (evs[i].flags & (EV_EOF | EV_ERROR)) ev |= FASTMSG_POLL_ERR;
        k = fm_poll_merge(out, k, fd, ev);
    }
    return k;
}

#endif
