/* Exercises one poller backend (argv[1]: "epoll", "kqueue" or "poll") over socketpairs: readiness
 * in and out (one event per fd), data pointers, modify (to nothing too), remove with the slot
 * reused, a poller nested in another and rearmed, hang-up, timeout, and many fds.
 * Built and run by tests/test_poller_native.py; exit status 0 means every check held. */
#define _GNU_SOURCE
#include "net/poller.h"
#include "net/poller_kqueue.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            printf("line %d: check failed: %s\n", __LINE__, #cond);         \
            failures++;                                                     \
        }                                                                   \
    } while (0)

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
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, a) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, b) == 0);
    int tag_a = 1, tag_b = 2;

    /* Nothing readable yet: a timeout gives 0 events. */
    CHECK(fastmsg_poller_add(p, a[0], FASTMSG_POLL_IN, &tag_a) == 0);
    CHECK(fastmsg_poller_add(p, a[0], FASTMSG_POLL_IN, &tag_a) == -EEXIST);
    CHECK(fastmsg_poller_add(p, b[0], FASTMSG_POLL_IN, &tag_b) == 0);
    CHECK(fastmsg_poller_wait(p, ev, 64, 10) == 0);

    /* Readable after a write on the peer, with the right data pointer; level-triggered. */
    CHECK(write(b[1], "x", 1) == 1);
    int n = fastmsg_poller_wait(p, ev, 64, 1000);
    CHECK(n == 1 && ev[0].fd == b[0] && ev[0].data == &tag_b && (ev[0].events & FASTMSG_POLL_IN));
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 1);
    char c;
    CHECK(read(b[0], &c, 1) == 1);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);

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
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, d) == 0);
    CHECK(write(d[1], "z", 1) == 1);
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
    CHECK(fastmsg_poller_remove(p, d[0]) == 0);

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
        n = fastmsg_poller_wait(inner, ev, 64, 0);
        CHECK(n == 1 && ev[0].fd == d[0] && ev[0].data == &tag_d);
        CHECK(read(d[0], &c, 1) == 1); /* drained: the nest is quiet */
        CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);
        CHECK(fastmsg_poller_remove(p, nest) == 0);
    }
    fastmsg_poller_free(inner);
    close(d[0]);
    close(d[1]);

    /* Hang-up of the peer shows as readable (EOF) or error. */
    close(b[1]);
    n = fastmsg_poller_wait(p, ev, 64, 1000);
    e = find_fd(ev, n, b[0]);
    CHECK(e && (e->events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)));
    CHECK(fastmsg_poller_remove(p, b[0]) == 0);

    /* Many fds, all readable; removal in the middle keeps the rest right. */
    enum { N = 200 };
    int pairs[N][2], tags[N];
    for (int i = 0; i < N; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) == 0);
        tags[i] = i;
        CHECK(fastmsg_poller_add(p, pairs[i][0], FASTMSG_POLL_IN, &tags[i]) == 0);
        CHECK(write(pairs[i][1], "y", 1) == 1);
    }
    for (int i = 0; i < N; i += 2) CHECK(fastmsg_poller_remove(p, pairs[i][0]) == 0);
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
            CHECK(read(ev[i].fd, &c, 1) == 1);
            total++;
        }
    }
    CHECK(total == N / 2);
    CHECK(fastmsg_poller_wait(p, ev, 64, 0) == 0);

    for (int i = 0; i < N; i++) {
        if (i % 2) fastmsg_poller_remove(p, pairs[i][0]);
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
    close(a[0]);
    close(a[1]);
    close(b[0]);
    fastmsg_poller_free(p);
    printf("%d failures\n", failures);
    return failures != 0;
}
