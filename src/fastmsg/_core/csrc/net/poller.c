/* The poller backends: epoll and poll() here, kqueue's kernel calls in poller_kqueue.c. See poller.h. */
#include "net/poller.h"
#include "net/poller_kqueue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <poll.h>
#include <unistd.h>
#endif
#ifdef __linux__
#include <sys/epoll.h>
#endif

#ifndef _WIN32

/* What is registered for one fd; indexed by fd, which the kernel keeps small and dense. */
typedef struct {
    void *data;
    int used;
    int pos; /* poll backend: index into fds[] */
} registration;

struct fastmsg_poller {
    fastmsg_poller_kind kind;
    int epfd;
    registration *regs;
    int nregs;
    struct pollfd *fds; /* poll backend: the set passed to poll(), compacted on removal */
    int n, cap;
};

static registration *lookup(const fastmsg_poller *p, int fd) {
    return (fd >= 0 && fd < p->nregs && p->regs[fd].used) ? &p->regs[fd] : NULL;
}

static int grow_regs(fastmsg_poller *p, int fd) {
    if (fd < p->nregs) return 0;
    int n = p->nregs ? p->nregs : 64;
    while (n <= fd) n *= 2;
    registration *r = realloc(p->regs, sizeof *r * (size_t)n);
    if (!r) return -ENOMEM;
    memset(r + p->nregs, 0, sizeof *r * (size_t)(n - p->nregs));
    p->regs = r;
    p->nregs = n;
    return 0;
}

static short to_poll(uint32_t ev) {
    return (short)(((ev & FASTMSG_POLL_IN) ? POLLIN : 0) | ((ev & FASTMSG_POLL_OUT) ? POLLOUT : 0));
}

static uint32_t from_poll(short rev) {
    return ((rev & POLLIN) ? FASTMSG_POLL_IN : 0) | ((rev & POLLOUT) ? FASTMSG_POLL_OUT : 0) |
           ((rev & (POLLERR | POLLHUP | POLLNVAL)) ? FASTMSG_POLL_ERR : 0);
}

#ifdef __linux__
static int epoll_set(fastmsg_poller *p, int op, int fd, uint32_t events) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = ((events & FASTMSG_POLL_IN) ? EPOLLIN : 0) | ((events & FASTMSG_POLL_OUT) ? EPOLLOUT : 0);
    ev.data.fd = fd;
    return epoll_ctl(p->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

static uint32_t from_epoll(uint32_t ev) {
    return ((ev & EPOLLIN) ? FASTMSG_POLL_IN : 0) | ((ev & EPOLLOUT) ? FASTMSG_POLL_OUT : 0) |
           ((ev & (EPOLLERR | EPOLLHUP)) ? FASTMSG_POLL_ERR : 0);
}
#endif

fastmsg_poller *fastmsg_poller_new(fastmsg_poller_kind kind) {
#if defined(__linux__)
    if (kind == FASTMSG_POLLER_AUTO) kind = FASTMSG_POLLER_EPOLL;
#elif defined(FASTMSG_HAVE_KQUEUE)
    if (kind == FASTMSG_POLLER_AUTO) kind = FASTMSG_POLLER_KQUEUE;
#else
    if (kind == FASTMSG_POLLER_AUTO) kind = FASTMSG_POLLER_POLL;
#endif
#ifndef __linux__
    if (kind == FASTMSG_POLLER_EPOLL) {
        errno = ENOSYS;
        return NULL;
    }
#endif
#ifndef FASTMSG_HAVE_KQUEUE
    if (kind == FASTMSG_POLLER_KQUEUE) {
        errno = ENOSYS;
        return NULL;
    }
#endif
    fastmsg_poller *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->kind = kind;
    p->epfd = -1;
#ifdef __linux__
    if (kind == FASTMSG_POLLER_EPOLL && (p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        free(p);
        return NULL;
    }
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    if (kind == FASTMSG_POLLER_KQUEUE && (p->epfd = fm_kqueue_open()) < 0) {
        errno = -p->epfd;
        free(p);
        return NULL;
    }
#endif
    return p;
}

void fastmsg_poller_free(fastmsg_poller *p) {
    if (!p) return;
    if (p->epfd >= 0) close(p->epfd);
    free(p->regs);
    free(p->fds);
    free(p);
}

const char *fastmsg_poller_name(const fastmsg_poller *p) {
    return p->kind == FASTMSG_POLLER_EPOLL ? "epoll" : p->kind == FASTMSG_POLLER_KQUEUE ? "kqueue" : "poll";
}

int fastmsg_poller_add(fastmsg_poller *p, int fd, uint32_t events, void *data) {
    if (fd < 0) return -EBADF;
    if (lookup(p, fd)) return -EEXIST;
    int rc = grow_regs(p, fd);
    if (rc) return rc;
#ifdef __linux__
    if (p->kind == FASTMSG_POLLER_EPOLL) {
        if ((rc = epoll_set(p, EPOLL_CTL_ADD, fd, events))) return rc;
        p->regs[fd] = (registration){data, 1, -1};
        return 0;
    }
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    if (p->kind == FASTMSG_POLLER_KQUEUE) {
        if ((rc = fm_kqueue_set(p->epfd, fd, events))) {
            fm_kqueue_set(p->epfd, fd, 0); /* a filter that went in alone would fire unregistered */
            return rc;
        }
        p->regs[fd] = (registration){data, 1, -1};
        return 0;
    }
#endif
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        struct pollfd *fds = realloc(p->fds, sizeof *fds * (size_t)cap);
        if (!fds) return -ENOMEM;
        p->fds = fds;
        p->cap = cap;
    }
    p->fds[p->n] = (struct pollfd){.fd = fd, .events = to_poll(events), .revents = 0};
    p->regs[fd] = (registration){data, 1, p->n};
    p->n++;
    return 0;
}

int fastmsg_poller_modify(fastmsg_poller *p, int fd, uint32_t events, void *data) {
    registration *r = lookup(p, fd);
    if (!r) return -ENOENT;
#ifdef __linux__
    if (p->kind == FASTMSG_POLLER_EPOLL) {
        int rc = epoll_set(p, EPOLL_CTL_MOD, fd, events);
        if (rc == -ENOENT) rc = epoll_set(p, EPOLL_CTL_ADD, fd, events); /* parked */
        if (rc) return rc;
        r->data = data;
        return 0;
    }
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    if (p->kind == FASTMSG_POLLER_KQUEUE) {
        int rc = fm_kqueue_set(p->epfd, fd, events);
        if (rc) return rc;
        r->data = data;
        return 0;
    }
#endif
    p->fds[r->pos].events = to_poll(events);
    r->data = data;
    return 0;
}

int fastmsg_poller_remove(fastmsg_poller *p, int fd) {
    registration *r = lookup(p, fd);
    if (!r) return -ENOENT;
#ifdef __linux__
    /* EBADF: the fd was closed first, which already took it out of the epoll set; ENOENT: parked */
    if (p->kind == FASTMSG_POLLER_EPOLL && epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != EBADF &&
        errno != ENOENT)
        return -errno;
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    /* EBADF likewise: closing the fd deleted its filters */
    if (p->kind == FASTMSG_POLLER_KQUEUE) {
        int rc = fm_kqueue_set(p->epfd, fd, 0);
        if (rc && rc != -EBADF) return rc;
    }
#endif
    if (p->kind == FASTMSG_POLLER_POLL) {
        int last = --p->n;
        if (r->pos != last) {
            p->fds[r->pos] = p->fds[last];
            p->regs[p->fds[r->pos].fd].pos = r->pos;
        }
    }
    r->used = 0;
    return 0;
}

int fastmsg_poller_fd(const fastmsg_poller *p) { return p->epfd; }

int fastmsg_poller_rearm(fastmsg_poller *p, int fd, uint32_t events) {
#ifdef __linux__
    if (p->kind == FASTMSG_POLLER_EPOLL) return epoll_set(p, EPOLL_CTL_MOD, fd, events);
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    if (p->kind == FASTMSG_POLLER_KQUEUE) return fm_kqueue_set(p->epfd, fd, events);
#endif
    (void)p;
    (void)fd;
    (void)events;
    return -ENOTSUP;
}

int fastmsg_poller_park(fastmsg_poller *p, int fd) {
#ifdef __linux__
    if (p->kind == FASTMSG_POLLER_EPOLL) /* (ENOENT: parked already) */
        return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != ENOENT ? -errno : 0;
#endif
    return fastmsg_poller_unpark(p, fd, 0); /* (kqueue: no filter is no knote on the socket) */
}

int fastmsg_poller_unpark(fastmsg_poller *p, int fd, uint32_t events) {
#ifdef __linux__
    if (p->kind == FASTMSG_POLLER_EPOLL) {
        int rc = epoll_set(p, EPOLL_CTL_ADD, fd, events);
        return rc == -EEXIST ? epoll_set(p, EPOLL_CTL_MOD, fd, events) : rc; /* (not parked) */
    }
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    if (p->kind == FASTMSG_POLLER_KQUEUE) return fm_kqueue_set(p->epfd, fd, events);
#endif
    registration *r = lookup(p, fd);
    if (!r) return -ENOENT;
    p->fds[r->pos].events = to_poll(events);
    return 0;
}

int fastmsg_poller_wait(fastmsg_poller *p, fastmsg_poll_event *out, int max, int timeout_ms) {
    int k = 0;
#ifdef __linux__
    if (p->kind == FASTMSG_POLLER_EPOLL) {
        struct epoll_event evs[64];
        int rc = epoll_wait(p->epfd, evs, max < 64 ? max : 64, timeout_ms);
        if (rc < 0) return -errno;
        for (int i = 0; i < rc; i++) {
            registration *r = lookup(p, evs[i].data.fd);
            if (!r) continue; /* removed by an earlier event's handler in the same round */
            out[k++] = (fastmsg_poll_event){evs[i].data.fd, from_epoll(evs[i].events), r->data};
        }
        return k;
    }
#endif
#ifdef FASTMSG_HAVE_KQUEUE
    if (p->kind == FASTMSG_POLLER_KQUEUE) {
        int n = fm_kqueue_wait(p->epfd, out, max, timeout_ms);
        if (n < 0) return n;
        for (int i = 0; i < n; i++) {
            registration *r = lookup(p, out[i].fd);
            if (!r) continue; /* as for epoll */
            out[k] = out[i];
            out[k++].data = r->data;
        }
        return k;
    }
#endif
    int rc = poll(p->fds, (nfds_t)p->n, timeout_ms);
    if (rc < 0) return -errno;
    for (int i = 0; i < p->n && k < max; i++) {
        if (!p->fds[i].revents) continue;
        out[k++] = (fastmsg_poll_event){p->fds[i].fd, from_poll(p->fds[i].revents), p->regs[p->fds[i].fd].data};
    }
    return k;
}

#endif /* _WIN32: poller_wsapoll.c */
