/* Exercises one poller backend (argv[1]: "epoll", "kqueue" or "poll") over socketpairs: readiness
 * in and out (one event per fd), data pointers, modify (to nothing too), park and unpark, remove
 * with the slot reused, a poller nested in another (rearmed, and with its fds parked), a second
 * descriptor of a socket, hang-up, timeout, and many fds; the sockets' probes (a listener alive or
 * gone, AF_UNIX there or not); and reads that wait (fastmsg_set_read_wait). Built and run by
 * tests/test_poller_native.py, and for Windows (WSAPoll, over loopback TCP pairs) by
 * tests/test_windows_native.py; exit status 0 means every check held. */
#define _GNU_SOURCE
#include "check.h"
#include "net/poller.h"
#include "net/poller_kqueue.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/netio.h"

#ifdef _WIN32

/* Winsock has no socketpair: a connected pair of loopback TCP sockets stands in. */
static int socketpair_(int sv[2]) {
    struct sockaddr_storage addr;
    socklen_t len;
    int lfd, rc = fastmsg_make_sockaddr(AF_INET, "127.0.0.1", 0, 0, NULL, &addr, &len);
    if (rc || (lfd = fastmsg_listen((struct sockaddr *)&addr, len, 4, 0)) < 0) return -1;
    rc = fastmsg_local_addr(lfd, &addr, &len) ? -1 : 0;
    sv[1] = rc ? -1 : fastmsg_connect_start((struct sockaddr *)&addr, len);
    sv[0] = sv[1] >= 0 && fastmsg_wait_readable(lfd, 5000000000LL) == 1 ? fastmsg_accept(lfd) : -1;
    fastmsg_close(lfd);
    return sv[0] >= 0 && sv[1] >= 0 ? 0 : -1;
}
static int write_(int fd, const char *buf, int n) { return send((SOCKET)fd, buf, n, 0); }
static int read_(int fd, char *buf, int n) { return recv((SOCKET)fd, buf, n, 0); }
static void close_(int fd) { fastmsg_close(fd); }
/* Loopback TCP delivers a moment after send returns: waits until fd has what was sent to it. */
static int arrived(int fd) { return fastmsg_wait_readable(fd, 5000000000LL) == 1; }
#else
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
static int socketpair_(int sv[2]) { return socketpair(AF_UNIX, SOCK_STREAM, 0, sv); }
static int write_(int fd, const char *buf, int n) { return (int)write(fd, buf, (size_t)n); }
static int read_(int fd, char *buf, int n) { return (int)read(fd, buf, (size_t)n); }
static void close_(int fd) { close(fd); }
static int arrived(int fd) { return fd >= 0; } /* (a socketpair's write is there on return) */
#endif


static const fastmsg_poll_event *find_fd(const fastmsg_poll_event *ev, int n, int fd) {
    for (int i = 0; i < n; i++)
        if (ev[i].fd == fd) return &ev[i];
    return NULL;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "epoll";
    fastmsg_poller_kind kind = strcmp(name, "poll") == 0     ? FASTMSG_POLLER_POLL
                               : strcmp(name, "kqueue") == 0 ? FASTMSG_POLLER_KQUEUE
                                                             : FASTMSG_POLLER_EPOLL;
    fastmsg_poller *p = fastmsg_poller_new(kind);
    if (!p) {
        printf("cannot create poller: %s\n", strerror(errno));
        return 1;
    }
    printf("backend: %s\n", fastmsg_poller_name(p));

    /* kqueue's merge of an fd's two filters into one event, which is portable C. */
    fastmsg_poll_event m[4];
    int k = fm_poll_merge(m, 0, 7, FASTMSG_POLL_IN);
    k = fm_poll_merge(m, k, 9, FASTMSG_POLL_OUT);
    k = fm_poll_merge(m, k, 7, FASTMSG_POLL_OUT | FASTMSG_POLL_ERR);
    CHECK(k == 2 && m[0].fd == 7 && m[0].data == NULL &&
          m[0].events == (FASTMSG_POLL_IN | FASTMSG_POLL_OUT | FASTMSG_POLL_ERR));
    CHECK(m[1].fd == 9 && m[1].events == FASTMSG_POLL_OUT);
    fastmsg_poll_event ev[64];
    int a[2], b[2];
    CHECK(socketpair_(a) == 0);
    CHECK(socketpair_(b) == 0);
    int tag_a = 1, tag_b = 2;

    /* Nothing readable yet: a timeout gives 0 events. */
    CHECK(fastmsg_poller_add(p, a[0], FASTMSG_POLL_IN, &tag_a) == 0);
    CHECK(fastmsg_poller_add(p, a[0], FASTMSG_POLL_IN, &tag_a) == -EEXIST);
    CHECK(fastmsg_poller_add(p, b[0], FASTMSG_POLL_IN, &tag_b) == 0);
    CHECK(fastmsg_poller_wait(p, ev, 64, 10) == 0);

    /* Readable after a write on the peer, with the right data pointer; level-triggered. */
    CHECK(write_(b[1], "x", 1) == 1);
    int n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == b[0] && ev[0].data == &tag_b && (ev[0].events & FASTMSG_POLL_IN));
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 1);
    char c;
    CHECK(read_(b[0], &c, 1) == 1);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);

    /* No interest (a paused socket): readable, but not reported until interest comes back. */
    CHECK(write_(b[1], "z", 1) == 1);
    CHECK(arrived(b[0]));
    CHECK(fastmsg_poller_modify(p, b[0], 0, &tag_b) == 0);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
    CHECK(fastmsg_poller_modify(p, b[0], FASTMSG_POLL_IN, &tag_b) == 0);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 1 && ev[0].fd == b[0]);
    CHECK(read_(b[0], &c, 1) == 1);

    /* Modify to writable interest, with new data. */
    CHECK(fastmsg_poller_modify(p, a[0], FASTMSG_POLL_OUT, &tag_b) == 0);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    const fastmsg_poll_event *e = find_fd(ev, n, a[0]);
    CHECK(e && (e->events & FASTMSG_POLL_OUT) && e->data == &tag_b);

    /* Remove: no more events; removing twice is ENOENT; modify of unknown fd is ENOENT. */
    CHECK(fastmsg_poller_remove(p, a[0]) == 0);
    CHECK(fastmsg_poller_remove(p, a[0]) == -ENOENT);
    CHECK(fastmsg_poller_modify(p, a[0], FASTMSG_POLL_IN, NULL) == -ENOENT);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);

    /* Readable and writable at once: one event with both (kqueue has a filter for each). */
    int d[2], tag_d = 4;
    CHECK(socketpair_(d) == 0);
    CHECK(write_(d[1], "z", 1) == 1 && arrived(d[0]));
    CHECK(fastmsg_poller_add(p, d[0], FASTMSG_POLL_IN | FASTMSG_POLL_OUT, &tag_d) == 0);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == d[0] && ev[0].data == &tag_d &&
          ev[0].events == (FASTMSG_POLL_IN | FASTMSG_POLL_OUT));
    /* Modified to nothing: no events, though it is still both. */
    CHECK(fastmsg_poller_modify(p, d[0], 0, &tag_d) == 0);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
    CHECK(fastmsg_poller_modify(p, d[0], FASTMSG_POLL_IN, &tag_d) == 0);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == d[0] && ev[0].events == FASTMSG_POLL_IN);
    /* Parked (a socket that another thread reads meanwhile): nothing reported, though it is still
     * readable; parked twice, unparked, unparked when not parked (a change of events), and a
     * modify and a remove of a parked fd all hold. */
    CHECK(fastmsg_poller_park(p, d[0]) == 0);
    CHECK(fastmsg_poller_park(p, d[0]) == 0);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
    CHECK(fastmsg_poller_unpark(p, d[0], FASTMSG_POLL_IN) == 0);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == d[0] && ev[0].data == &tag_d && ev[0].events == FASTMSG_POLL_IN);
    CHECK(fastmsg_poller_unpark(p, d[0], FASTMSG_POLL_IN | FASTMSG_POLL_OUT) == 0);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == d[0] && ev[0].events == (FASTMSG_POLL_IN | FASTMSG_POLL_OUT));
    CHECK(fastmsg_poller_park(p, d[0]) == 0);
    CHECK(fastmsg_poller_modify(p, d[0], FASTMSG_POLL_IN, &tag_a) == 0);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == d[0] && ev[0].data == &tag_a && ev[0].events == FASTMSG_POLL_IN);
    CHECK(fastmsg_poller_park(p, d[0]) == 0);
    CHECK(fastmsg_poller_remove(p, d[0]) == 0);
    CHECK(fastmsg_poller_remove(p, d[0]) == -ENOENT);
    CHECK(fastmsg_poller_park(p, d[0]) == (kind == FASTMSG_POLLER_POLL ? -ENOENT : 0)); /* (the kernel's set: not in it) */

    /* A poller nested in this one: its fd is readable while one of its fds is ready, and rearm
     * (from any thread, in the engine) switches that off and on without the table. */
    fastmsg_poller *inner = fastmsg_poller_new(kind);
    CHECK(inner != NULL);
    int nest = inner ? fastmsg_poller_fd(inner) : -1;
    if (kind == FASTMSG_POLLER_POLL) {
        CHECK(nest == -1 && fastmsg_poller_rearm(p, d[0], FASTMSG_POLL_IN) == -ENOTSUP);
    } else if (inner) {
        int tag_nest = 5;
        CHECK(nest >= 0);
        CHECK(fastmsg_poller_add(inner, d[0], FASTMSG_POLL_IN, &tag_d) == 0);
        CHECK(fastmsg_poller_add(p, nest, FASTMSG_POLL_IN, &tag_nest) == 0);
        n = fastmsg_poller_wait(p, ev, 64, 1000);
        CHECK(n == 1 && ev[0].fd == nest && ev[0].data == &tag_nest && (ev[0].events & FASTMSG_POLL_IN));
        CHECK(fastmsg_poller_rearm(p, nest, 0) == 0);
        CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
        CHECK(fastmsg_poller_rearm(p, nest, FASTMSG_POLL_IN) == 0);
        n = fastmsg_poller_wait(p, ev, 64, 1000);
        CHECK(n == 1 && ev[0].fd == nest && ev[0].data == &tag_nest);
        /* Its fd parked in the inner poller: the nest is quiet too, and ready again once back. */
        CHECK(fastmsg_poller_park(inner, d[0]) == 0);
        CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
        CHECK(fastmsg_poller_unpark(inner, d[0], FASTMSG_POLL_IN) == 0);
        n = fastmsg_poller_wait(p, ev, 64, 1000);
        CHECK(n == 1 && ev[0].fd == nest);
        /* A hang-up while parked is not reported (poll() would), until it is back. */
        int h[2], tag_h = 6;
        CHECK(socketpair_(h) == 0);
        CHECK(fastmsg_poller_add(inner, h[0], FASTMSG_POLL_IN, &tag_h) == 0);
        CHECK(fastmsg_poller_park(inner, h[0]) == 0);
        close_(h[1]);
        n = fastmsg_poller_wait(inner, ev, 64, 0);
        CHECK(n == 1 && ev[0].fd == d[0]);
        CHECK(fastmsg_poller_unpark(inner, h[0], FASTMSG_POLL_IN) == 0);
        n = fastmsg_poller_wait(inner, ev, 64, 1000);
        e = find_fd(ev, n, h[0]);
        CHECK(n == 2 && e && e->data == &tag_h && (e->events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)));
        CHECK(fastmsg_poller_remove(inner, h[0]) == 0);
        close_(h[0]);
        n = fastmsg_poller_wait(inner, ev, 64, 0);
        CHECK(n == 1 && ev[0].fd == d[0] && ev[0].data == &tag_d);
        CHECK(read_(d[0], &c, 1) == 1); /* drained: the nest is quiet */
        CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
        CHECK(fastmsg_poller_remove(p, nest) == 0);
    }
    fastmsg_poller_free(inner);
    close_(d[0]);
    close_(d[1]);

    /* A second descriptor of a socket (a Sender lends one to an event loop) reads its bytes, and
     * closing it leaves the first one open. */
    int second = fastmsg_dup(a[0]);
    CHECK(second >= 0 && second != a[0]);
    CHECK(write_(a[1], "d", 1) == 1 && arrived(second) && read_(second, &c, 1) == 1 && c == 'd');
    close_(second);
    CHECK(write_(a[1], "e", 1) == 1 && arrived(a[0]) && read_(a[0], &c, 1) == 1 && c == 'e');

    /* Hang-up of the peer shows as readable (EOF) or error. */
    close_(b[1]);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    e = find_fd(ev, n, b[0]);
    CHECK(e && (e->events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)));
    CHECK(fastmsg_poller_remove(p, b[0]) == 0);

    /* Many fds, all readable; pauses and removals in the middle keep the rest right. */
    enum { N = 200 };
    int pairs[N][2], tags[N];
    for (int i = 0; i < N; i++) {
        CHECK(socketpair_(pairs[i]) == 0);
        tags[i] = i;
        CHECK(fastmsg_poller_add(p, pairs[i][0], FASTMSG_POLL_IN, &tags[i]) == 0);
        CHECK(write_(pairs[i][1], "y", 1) == 1);
        CHECK(arrived(pairs[i][0]));
    }
    /* Every third paused, the even ones removed (paused or not), the odd paused ones resumed. */
    for (int i = 0; i < N; i += 3) CHECK(fastmsg_poller_modify(p, pairs[i][0], 0, &tags[i]) == 0);
    for (int i = 0; i < N; i += 2) CHECK(fastmsg_poller_remove(p, pairs[i][0]) == 0);
    for (int i = 3; i < N; i += 6) CHECK(fastmsg_poller_modify(p, pairs[i][0], FASTMSG_POLL_IN, &tags[i]) == 0);
    int seen = 0, total = 0;
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    for (int i = 0; i < n; i++) {
        int t = *(int *)ev[i].data;
        CHECK(t % 2 == 1 && pairs[t][0] == ev[i].fd);
        seen++;
    }
    CHECK(seen == (N / 2 < 64 ? N / 2 : 64));
    /* drain all, round by round, until every odd pair has been reported and read */
    for (int round = 0; round < 10 && total < N / 2; round++) {
        n = fastmsg_poller_wait(p, ev, 64, 1000);
        for (int i = 0; i < n; i++) {
            CHECK(read_(ev[i].fd, &c, 1) == 1);
            total++;
        }
    }
    CHECK(total == N / 2);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);

    for (int i = 0; i < N; i++) {
        if (i % 2) fastmsg_poller_remove(p, pairs[i][0]);
        close_(pairs[i][0]);
        close_(pairs[i][1]);
    }
    close_(a[0]);
    close_(a[1]);
    close_(b[0]);

    /* A connect to a port nobody listens on (one just closed) fails: the poller reports the
     * socket (writable or in error: WSAPoll says POLLERR) and connect_result says why. */
    struct sockaddr_storage addr;
    socklen_t len;
    int lfd = -1, cfd = -1;
    CHECK(fastmsg_make_sockaddr(AF_INET, "127.0.0.1", 0, 0, NULL, &addr, &len) == 0);
    CHECK((lfd = fastmsg_listen((struct sockaddr *)&addr, len, 1, 0)) >= 0);
    CHECK(fastmsg_local_addr(lfd, &addr, &len) == 0);
    fastmsg_close(lfd);
    CHECK((cfd = fastmsg_connect_start((struct sockaddr *)&addr, len)) >= 0 || cfd == -ECONNREFUSED);
    if (cfd >= 0) {
        CHECK(fastmsg_poller_add(p, cfd, FASTMSG_POLL_OUT, &tag_a) == 0);
        n = fastmsg_poller_wait(p, ev, 64, 5000);
        CHECK(n == 1 && ev[0].fd == cfd && (ev[0].events & (FASTMSG_POLL_OUT | FASTMSG_POLL_ERR)));
        CHECK(fastmsg_connect_result(cfd) == -ECONNREFUSED);
        CHECK(fastmsg_poller_remove(p, cfd) == 0);
        fastmsg_close(cfd);
    }
    /* A listener again on the port of one just closed whose connection is still open (a Receiver
     * made again while its old connections linger): the port is free to take. */
    int afd = -1;
    CHECK(fastmsg_make_sockaddr(AF_INET, "127.0.0.1", 0, 0, NULL, &addr, &len) == 0);
    CHECK((lfd = fastmsg_listen((struct sockaddr *)&addr, len, 1, 0)) >= 0);
    CHECK(fastmsg_local_addr(lfd, &addr, &len) == 0);
    CHECK((cfd = fastmsg_connect_start((struct sockaddr *)&addr, len)) >= 0);
    CHECK(fastmsg_wait_readable(lfd, 5000000000LL) == 1 && (afd = fastmsg_accept(lfd)) >= 0);
    fastmsg_close(lfd);
    CHECK((lfd = fastmsg_listen((struct sockaddr *)&addr, len, 1, 0)) >= 0);
    fastmsg_close(lfd);
    fastmsg_close(afd);
    fastmsg_close(cfd);

    /* The stale-socket probe (net/probe.c) over TCP: a listener answers 0, a port nobody listens
     * on -ECONNREFUSED (on Winsock after a connect in progress: the wait's branch). */
    CHECK(fastmsg_make_sockaddr(AF_INET, "127.0.0.1", 0, 0, NULL, &addr, &len) == 0);
    CHECK((lfd = fastmsg_listen((struct sockaddr *)&addr, len, 4, 0)) >= 0);
    CHECK(fastmsg_local_addr(lfd, &addr, &len) == 0);
    CHECK(fastmsg_probe_listener((struct sockaddr *)&addr, len, 2000000000LL) == 0);
    fastmsg_close(lfd);
    CHECK(fastmsg_probe_listener((struct sockaddr *)&addr, len, 2000000000LL) == -ECONNREFUSED);

    /* ipc:// is AF_UNIX, which Windows has from 10 (1803) on: a listener works, or the error says
     * the family is not supported (not some other failure), as fastmsg_family_supported says. */
    char path[256];
#ifdef _WIN32
    snprintf(path, sizeof path, "fastmsg-selftest-%lu.sock", (unsigned long)GetCurrentProcessId());
#else
    snprintf(path, sizeof path, "/tmp/fastmsg-selftest-%ld.sock", (long)getpid());
#endif
    CHECK(fastmsg_make_sockaddr(AF_UNIX, NULL, 0, 0, path, &addr, &len) == 0);
    lfd = fastmsg_listen((struct sockaddr *)&addr, len, 1, 0);
    CHECK(lfd >= 0 || lfd == -EAFNOSUPPORT);
    CHECK(fastmsg_family_supported(AF_UNIX) == (lfd >= 0 ? 0 : -EAFNOSUPPORT));
    printf("af_unix: %s\n", lfd >= 0 ? "supported" : "unsupported");
    if (lfd >= 0) {
        CHECK((cfd = fastmsg_connect_start((struct sockaddr *)&addr, len)) >= 0);
        CHECK(fastmsg_wait_readable(lfd, 5000000000LL) == 1 && (a[0] = fastmsg_accept(lfd)) >= 0);
        fastmsg_close(a[0]);
        fastmsg_close(cfd);
        CHECK(fastmsg_probe_listener((struct sockaddr *)&addr, len, 2000000000LL) == 0); /* alive */
        fastmsg_close(lfd); /* its file stays: stale */
        CHECK(fastmsg_probe_listener((struct sockaddr *)&addr, len, 2000000000LL) == -ECONNREFUSED);
#ifdef _WIN32
        DeleteFileA(path);
#else
        unlink(path);
#endif
    }
    /* Reads that wait (netio.h): a requester's read sleeps until bytes come or its timeout
     * passes, while the engine's own reads and writes of the same socket never block. */
    CHECK(socketpair_(a) == 0);
#ifdef _WIN32
    CHECK(fastmsg_set_read_wait(a[0], 20000000) == -EOPNOTSUPP); /* (Winsock: WSAPoll waits) */
#else
    CHECK(fcntl(a[0], F_SETFL, fcntl(a[0], F_GETFL) | O_NONBLOCK) == 0);
    CHECK(fastmsg_set_read_wait(a[0], 20000000) == 0);
    CHECK(!(fcntl(a[0], F_GETFL) & O_NONBLOCK));
    char got[8];
    int64_t t0 = now_ns();
    CHECK(fastmsg_read_wait(a[0], got, sizeof got) == -EAGAIN);
    CHECK(now_ns() - t0 >= 10000000); /* it waited (about the timeout: the kernel counts it in ticks) */
    CHECK(fastmsg_set_read_wait(a[0], 10000000000LL) == 0); /* (a read that blocked would take 10 s) */
    t0 = now_ns();
    CHECK(fastmsg_read(a[0], got, sizeof got) == -EAGAIN);
    static char chunk[65536];
    struct iovec iov = {chunk, sizeof chunk};
    ptrdiff_t w = 0;
    for (int i = 0; i < 1000 && (w = fastmsg_writev(a[0], &iov, 1)) > 0; i++) {
    }
    CHECK(w == -EAGAIN); /* a full socket refuses */
    CHECK(now_ns() - t0 < 5000000000LL); /* neither waited */
    CHECK(write_(a[1], "x", 1) == 1);
    CHECK(fastmsg_read_wait(a[0], got, sizeof got) == 1 && got[0] == 'x');
    CHECK(fastmsg_set_read_wait(a[0], 0) == 0);
    CHECK(fcntl(a[0], F_GETFL) & O_NONBLOCK);
#endif
    close_(a[0]);
    close_(a[1]);

    fastmsg_poller_free(p);
    printf("%lu failures\n", failures);
    return failures != 0;
}
