/* The busy_poll decisions (engine/busy_poll.h), with chosen durations rather than real waits: a
 * fixed window always looks; the adaptive one looks only in an exchange after a short wait, stops
 * at a crowded yield, then sleeps 1, 2, 4... up to 64 waits at once until a yield is quick again.
 * Built and run by tests/test_busy_poll.py; exit status 0 means every check held. */
#define _GNU_SOURCE
#include "check.h"
#include "engine/busy_poll.h"

#define W 50000 /* the window, ns */
#define NOW 1000000000LL

/* How many of the next waits (exchanges) sleep at once before one looks. */
static int sleeps_before_a_look(fm_busy_poll *b) {
    for (int n = 0; n < 1000; n++)
        if (fm_busy_poll_end(b, NOW, -1, 1) > NOW) return n;
    return -1;
}

int main(void) {
    fm_busy_poll fixed, off, b;
    fm_busy_poll_init(&fixed, W, 0);
    fm_busy_poll_init(&off, 0, 1);
    fm_busy_poll_init(&b, W, 1);

    /* Fixed: every wait looks its window, cut at the deadline; yields never stop it. */
    CHECK(fm_busy_poll_end(&fixed, NOW, -1, 0) == NOW + W);
    CHECK(fm_busy_poll_end(&fixed, NOW, NOW + 10, 0) == NOW + 10);
    CHECK(fm_busy_poll_note_yield(&fixed, 1000000) == 1);
    fm_busy_poll_learn(&fixed, INT64_MAX);
    CHECK(fm_busy_poll_end(&fixed, NOW, -1, 1) == NOW + W);
    /* Off (busy_poll=0): never. */
    CHECK(fm_busy_poll_end(&off, NOW, -1, 1) == NOW);

    /* Adaptive: not before a short wait, and only in an exchange. */
    CHECK(fm_busy_poll_end(&b, NOW, -1, 1) == NOW);
    fm_busy_poll_learn(&b, 2 * W - 1);
    CHECK(fm_busy_poll_end(&b, NOW, -1, 0) == NOW);
    CHECK(fm_busy_poll_end(&b, NOW, -1, 1) == NOW + W);
    CHECK(fm_busy_poll_end(&b, NOW, NOW + 5, 1) == NOW + 5);
    fm_busy_poll_learn(&b, 2 * W); /* long: the next sleeps at once */
    CHECK(fm_busy_poll_end(&b, NOW, -1, 1) == NOW);
    fm_busy_poll_learn(&b, INT64_MAX); /* timed out */
    CHECK(fm_busy_poll_end(&b, NOW, -1, 1) == NOW);
    fm_busy_poll_learn(&b, 1000);

    /* Crowded yields: 1, 2, 4 ... 64 waits sleep at once, and no more. */
    CHECK(fm_busy_poll_note_yield(&b, FM_BUSY_POLL_CROWDED_NS - 1) == 1);
    int expect = 1;
    for (int round = 0; round < 9; round++) {
        CHECK(fm_busy_poll_end(&b, NOW, -1, 1) == NOW + W);
        CHECK(fm_busy_poll_note_yield(&b, FM_BUSY_POLL_CROWDED_NS) == 0);
        fm_busy_poll_learn(&b, 1000);
        int n = sleeps_before_a_look(&b);
        CHECK(n == expect);
        if (n != expect) printf("round %d: %d waits slept, expected %d\n", round, n, expect);
        expect = expect * 2 < FM_BUSY_POLL_CROWDED_WAITS ? expect * 2 : FM_BUSY_POLL_CROWDED_WAITS;
    }
    /* (sleeps_before_a_look's last call looked.) A quick yield there: back to one sleep. */
    CHECK(fm_busy_poll_note_yield(&b, 100) == 1);
    fm_busy_poll_learn(&b, 1000);
    CHECK(fm_busy_poll_end(&b, NOW, -1, 1) == NOW + W);
    CHECK(fm_busy_poll_note_yield(&b, FM_BUSY_POLL_CROWDED_NS) == 0);
    fm_busy_poll_learn(&b, 1000);
    CHECK(sleeps_before_a_look(&b) == 1);

    /* The switch count the crowding test reads on Linux: it only grows, and a yield with nothing
     * else to run leaves it alone at least sometimes (this process has one thread). */
    long s0 = fm_thread_switches();
#ifdef __linux__
    CHECK(s0 >= 0);
    int unswitched = 0;
    for (int i = 0; i < 100; i++) {
        long a = fm_thread_switches();
        fm_yield();
        long c = fm_thread_switches();
        CHECK(c >= a);
        unswitched += c == a;
    }
    CHECK(unswitched > 0);
#else
    CHECK(s0 == -1);
#endif

    printf("%lu failures\n", failures);
    return failures != 0;
}
