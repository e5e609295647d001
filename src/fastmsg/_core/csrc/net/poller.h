/* Readiness polling behind one small interface: epoll on Linux, kqueue on macOS and the BSDs,
 * poll() everywhere (and where forced, so the portable path stays tested). Level-triggered in every
 * backend. WSAPoll would be a further backend behind the same functions. */
#ifndef FASTMSG_POLLER_H
#define FASTMSG_POLLER_H

#include <stdint.h>

enum {
    FASTMSG_POLL_IN = 1,   /* readable, or a listening socket has a connection */
    FASTMSG_POLL_OUT = 2,  /* writable */
    FASTMSG_POLL_ERR = 4,  /* error or hang-up: the owner should read to find out which */
};

typedef enum {
    FASTMSG_POLLER_AUTO = 0,
    FASTMSG_POLLER_EPOLL = 1,
    FASTMSG_POLLER_POLL = 2,
    FASTMSG_POLLER_KQUEUE = 3,
} fastmsg_poller_kind;

/* One per ready fd and wait: kqueue's separate read and write readiness come merged. */
typedef struct {
    int fd;
    uint32_t events; /* FASTMSG_POLL_* that are ready */
    void *data;      /* what the fd was registered with */
} fastmsg_poll_event;

typedef struct fastmsg_poller fastmsg_poller;

/* NULL with errno set on failure (ENOSYS for a backend this platform lacks). */
fastmsg_poller *fastmsg_poller_new(fastmsg_poller_kind kind);
void fastmsg_poller_free(fastmsg_poller *p);
const char *fastmsg_poller_name(const fastmsg_poller *p);

/* Register, change or drop interest in fd. Return 0, or -errno. With no events asked for, epoll
 * and poll() still report an error or hang-up, kqueue nothing: a caller that stops watching an fd
 * finds its errors in its own I/O. */
int fastmsg_poller_add(fastmsg_poller *p, int fd, uint32_t events, void *data);
int fastmsg_poller_modify(fastmsg_poller *p, int fd, uint32_t events, void *data);
int fastmsg_poller_remove(fastmsg_poller *p, int fd);

/* A poller that can sit inside another one has an fd of its own, readable while one of its fds
 * is ready (epoll, kqueue); -1 for poll(). A second thread can then wait on a part of the fds (a
 * receiver's) while the I/O thread waits on the rest. */
int fastmsg_poller_fd(const fastmsg_poller *p);
/* Changes the events of an fd already registered, from any thread: unlike modify it touches only
 * the kernel's set, never the registration table. epoll and kqueue (-ENOTSUP for poll()). */
int fastmsg_poller_rearm(fastmsg_poller *p, int fd, uint32_t events);

/* Takes a registered fd out of the kernel's set, or puts it back watching `events`, from any
 * thread with epoll and kqueue (like rearm, they touch only the kernel's set; poll() and WSAPoll
 * change their entry's events, as modify does). Parked, an fd has nothing reported, not even an
 * error, and (epoll) its socket's wake-ups no longer call into the poller, which keeping it in the
 * set with no events still does: a few hundred ns of every wake-up of a socket that another thread
 * reads meanwhile. modify and remove work on a parked fd as on any other. */
int fastmsg_poller_park(fastmsg_poller *p, int fd);
int fastmsg_poller_unpark(fastmsg_poller *p, int fd, uint32_t events);

/* Waits up to timeout_ms (-1: no limit) for readiness; fills at most max events. Returns how
 * many (0 on timeout), or -errno (-EINTR when a signal arrived: the caller decides to retry). */
int fastmsg_poller_wait(fastmsg_poller *p, fastmsg_poll_event *out, int max, int timeout_ms);

#endif
