/* The WSAPoll backend of poller.h, for Windows: level-triggered like poll(), which it mirrors.
 * WSAPoll has no fd of its own (fastmsg_poller_fd is -1: nothing nests, as with poll()) and
 * cannot wait on anything but sockets, hence the engine's socket-pair waker there.
 *
 * Sockets are handles, neither small nor dense, so the registrations are found through a hash
 * table (open addressing, linear probing) from socket to its slot in the WSAPOLLFD array. The
 * sockets with interest come first in that array, and only they are handed to WSAPoll: its
 * documentation wants an event flag on every entry, and wine reports one it should skip. */
#ifdef _WIN32
#include "net/poller.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "net/sock.h"

struct fastmsg_poller {
    WSAPOLLFD *fds; /* registered sockets, those with interest first: fds[0 .. active) */
    void **data;    /* data[i] belongs to fds[i] */
    int n, cap, active;
    int *table; /* slot + 1 of each socket (0: empty); a power of two, at most half full */
    int tcap;
};

static unsigned hash(int fd, int tcap) {
    /* Handles are multiples of 4: drop those bits, then mix (Fibonacci hashing). */
    return (unsigned)((((uint32_t)fd >> 2) * 2654435769u) & (uint32_t)(tcap - 1));
}

/* The table index holding fd, or of the empty place where it would go. */
static unsigned probe(const fastmsg_poller *p, int fd) {
    unsigned i = hash(fd, p->tcap);
    while (p->table[i] && p->fds[p->table[i] - 1].fd != (SOCKET)fd) i = (i + 1) & (unsigned)(p->tcap - 1);
    return i;
}

static int slot_of(const fastmsg_poller *p, int fd) {
    if (fd < 0) return -1;
    int t = p->table[probe(p, fd)];
    return t ? t - 1 : -1;
}

/* Removes table entry i, moving later entries of its run back so that every probe still finds
 * them (deletion without tombstones). */
static void table_delete(fastmsg_poller *p, unsigned i) {
    unsigned mask = (unsigned)p->tcap - 1, j = i;
    p->table[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!p->table[j]) return;
        unsigned home = hash((int)p->fds[p->table[j] - 1].fd, p->tcap);
        /* Entry j may move to i unless its home lies cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            p->table[i] = p->table[j];
            p->table[j] = 0;
            i = j;
        }
    }
}

static int grow(fastmsg_poller *p) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 16;
        WSAPOLLFD *fds = realloc(p->fds, sizeof *fds * (size_t)cap);
        if (!fds) return -ENOMEM;
        p->fds = fds;
        void **data = realloc(p->data, sizeof *data * (size_t)cap);
        if (!data) return -ENOMEM;
        p->data = data;
        p->cap = cap;
    }
    if ((p->n + 1) * 2 > p->tcap) {
        int tcap = p->tcap ? p->tcap * 2 : 32;
        int *old = p->table, otcap = p->tcap;
        if (!(p->table = calloc((size_t)tcap, sizeof *p->table))) {
            p->table = old;
            return -ENOMEM;
        }
        p->tcap = tcap;
        for (int i = 0; i < otcap; i++)
            if (old[i]) p->table[probe(p, (int)p->fds[old[i] - 1].fd)] = old[i];
        free(old);
    }
    return 0;
}

static short to_poll(uint32_t ev) {
    /* POLLRDNORM/POLLWRNORM only: WSAPoll refuses some other bits (POLLPRI) outright. */
    return (short)(((ev & FASTMSG_POLL_IN) ? POLLRDNORM : 0) | ((ev & FASTMSG_POLL_OUT) ? POLLWRNORM : 0));
}

/* Exchanges slots i and j, table entries included. */
static void swap_slots(fastmsg_poller *p, int i, int j) {
    if (i == j) return;
    unsigned ti = probe(p, (int)p->fds[i].fd), tj = probe(p, (int)p->fds[j].fd);
    WSAPOLLFD f = p->fds[i];
    void *d = p->data[i];
    p->fds[i] = p->fds[j], p->data[i] = p->data[j];
    p->fds[j] = f, p->data[j] = d;
    p->table[ti] = j + 1;
    p->table[tj] = i + 1;
}

/* Sets slot i's interest, moving it into or out of the part WSAPoll sees. */
static void set_events(fastmsg_poller *p, int i, uint32_t events) {
    p->fds[i].events = to_poll(events);
    if (p->fds[i].events && i >= p->active)
        swap_slots(p, i, p->active++);
    else if (!p->fds[i].events && i < p->active)
        swap_slots(p, i, --p->active);
}

static uint32_t from_poll(short rev) {
    return ((rev & POLLRDNORM) ? FASTMSG_POLL_IN : 0) | ((rev & POLLWRNORM) ? FASTMSG_POLL_OUT : 0) |
           ((rev & (POLLERR | POLLHUP | POLLNVAL)) ? FASTMSG_POLL_ERR : 0);
}

fastmsg_poller *fastmsg_poller_new(fastmsg_poller_kind kind) {
    if (kind == FASTMSG_POLLER_EPOLL) { /* (FASTMSG_POLLER_POLL is WSAPoll here: poll() of Winsock) */
        errno = ENOSYS;
        return NULL;
    }
    fastmsg_poller *p = calloc(1, sizeof *p);
    if (!p || grow(p)) {
        if (p) fastmsg_poller_free(p);
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

void fastmsg_poller_free(fastmsg_poller *p) {
    if (!p) return;
    free(p->fds);
    free(p->data);
    free(p->table);
    free(p);
}

const char *fastmsg_poller_name(const fastmsg_poller *p) {
    (void)p;
    return "wsapoll";
}

int fastmsg_poller_add(fastmsg_poller *p, int fd, uint32_t events, void *data) {
    if (fd < 0) return -EBADF;
    if (slot_of(p, fd) >= 0) return -EEXIST;
    int rc = grow(p);
    if (rc) return rc;
    p->fds[p->n] = (WSAPOLLFD){.fd = (SOCKET)fd, .events = 0, .revents = 0};
    p->data[p->n] = data;
    p->table[probe(p, fd)] = ++p->n;
    set_events(p, p->n - 1, events);
    return 0;
}

int fastmsg_poller_modify(fastmsg_poller *p, int fd, uint32_t events, void *data) {
    int i = slot_of(p, fd);
    if (i < 0) return -ENOENT;
    p->data[i] = data;
    set_events(p, i, events);
    return 0;
}

int fastmsg_poller_remove(fastmsg_poller *p, int fd) {
    int i = slot_of(p, fd);
    if (i < 0) return -ENOENT;
    set_events(p, i, 0); /* out of the part WSAPoll sees, then last */
    swap_slots(p, slot_of(p, fd), p->n - 1);
    table_delete(p, probe(p, fd));
    p->n--;
    return 0;
}

int fastmsg_poller_fd(const fastmsg_poller *p) {
    (void)p;
    return -1;
}

int fastmsg_poller_rearm(fastmsg_poller *p, int fd, uint32_t events) {
    (void)p, (void)fd, (void)events;
    return -ENOTSUP;
}

int fastmsg_poller_park(fastmsg_poller *p, int fd) { return fastmsg_poller_unpark(p, fd, 0); }

int fastmsg_poller_unpark(fastmsg_poller *p, int fd, uint32_t events) {
    int i = slot_of(p, fd);
    if (i < 0) return -ENOENT;
    set_events(p, i, events);
    return 0;
}

int fastmsg_poller_wait(fastmsg_poller *p, fastmsg_poll_event *out, int max, int timeout_ms) {
    int k = 0;
    if (p->active == 0) { /* WSAPoll fails on an empty set where poll() would just wait */
        Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
        return 0;
    }
    int rc = WSAPoll(p->fds, (ULONG)p->active, timeout_ms);
    if (rc < 0) return -fastmsg_wsa_errno(WSAGetLastError());
    for (int i = 0; i < p->active && k < max; i++) {
        if (!p->fds[i].revents) continue;
        out[k++] = (fastmsg_poll_event){(int)p->fds[i].fd, from_poll(p->fds[i].revents), p->data[i]};
    }
    return k;
}

#endif
