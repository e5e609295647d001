/* busy_poll: a thread about to sleep for a message or a reply first looks at its sockets without
 * sleeping for a while (yielding between looks), as a sleeping thread's wake-up is most of a
 * round trip between two CPUs. Decided once a wait (fm_busy_poll_end). Fixed (busy_poll=seconds:
 * every wait looks that long) or adaptive, the default, which looks only where it is likely to pay:
 * - in an exchange: a wait for a reply, or a recv() that answered a request since its last wait
 *   (a stream of one-way messages needs throughput: one send() per message lost 10-20% on one
 *   CPU when it looked);
 * - after a short wait (under two windows, start to end): while requests follow each other
 *   closely; a slow peer costs no look;
 * - while the CPU is the thread's own: a yield in which another thread ran (Linux counts the
 *   thread's switches; elsewhere, a yield over 5 us) ends the looking, and if no yield has been
 *   quick since, the next 1, 2, 4 ... up to 64 waits sleep at once. With the peer on the same CPU
 *   a message only comes while the thread yields it, as a sleep does, and the looks cost system
 *   calls the peer waits for (asyncio round trips on one CPU lost 15% when looks went on).
 * Its cost is bounded: at most a window of looking per message, only while messages come within
 * two windows. */
#ifndef FASTMSG_BUSY_POLL_H
#define FASTMSG_BUSY_POLL_H

#include <stdint.h>

#include "base/futex.h"
#include "base/thread.h"

/* The window of the adaptive default (Python's busy_poll=None). A sleeping thread's wake-up was
 * 25-30 us on the virtual machine measured, so a two-CPU round trip with both sides asleep took
 * about 60 us: under two windows, so that adaptive looking starts there. */
#define FM_BUSY_POLL_AUTO_NS 50000u
/* A yield that took longer ran another thread on this CPU (where switches are not counted). */
#define FM_BUSY_POLL_CROWDED_NS 5000
/* The most waits that sleep at once after a crowded yield, before the adaptive mode looks again. */
#define FM_BUSY_POLL_CROWDED_WAITS 64

typedef struct {
    uint32_t window_ns; /* how long a wait looks before it sleeps; 0: never */
    uint32_t adaptive;  /* only after a short wait, on an uncrowded CPU */
    /* adaptive, the waiting thread's (the token held): */
    uint32_t on;        /* the last wait was short */
    uint32_t crowded;   /* waits left to sleep at once */
    uint32_t streak;    /* how many the last crowded yield set: doubles while looks stay crowded */
    uint8_t calm;       /* a yield of this wait was quick: the CPU is this thread's again */
} fm_busy_poll;

static inline void fm_busy_poll_init(fm_busy_poll *b, uint32_t window_ns, uint32_t adaptive) {
    *b = (fm_busy_poll){.window_ns = window_ns, .adaptive = adaptive};
}

/* When the looking of a wait starting at `now` ends (now itself: it does not look), cut at the
 * wait's deadline (-1: none). `exchange`: the wait is part of a request and its reply. */
static inline int64_t fm_busy_poll_end(fm_busy_poll *b, int64_t now, int64_t deadline_ns, int exchange) {
    if (!b->window_ns) return now;
    if (b->adaptive) {
        b->calm = 0;
        if (b->crowded) {
            b->crowded--;
            return now;
        }
        if (!b->on || !exchange) return now;
    }
    int64_t end = now + (int64_t)b->window_ns;
    return deadline_ns >= 0 && deadline_ns < end ? deadline_ns : end;
}

/* How often the calling thread was switched out so far (Linux), or -1 where that is not known
 * (busy_poll.c): a yield that switched ran another thread, however briefly. */
long fm_thread_switches(void);

/* A yield between looks took `took_ns`: 0 if the looking is to stop (adaptive, and another
 * thread ran meanwhile), which sends the next waits to sleep at once. */
static inline int fm_busy_poll_note_yield(fm_busy_poll *b, int64_t took_ns) {
    if (!b->adaptive) return 1;
    if (took_ns < FM_BUSY_POLL_CROWDED_NS) {
        b->calm = 1;
        return 1;
    }
    b->streak = b->streak ? (b->streak * 2 < FM_BUSY_POLL_CROWDED_WAITS ? b->streak * 2 : FM_BUSY_POLL_CROWDED_WAITS) : 1;
    b->crowded = b->streak;
    return 0;
}

/* Yields the CPU between looks (a peer sharing it runs meanwhile: spinning would starve it);
 * fm_busy_poll_note_yield's answer. */
static inline int fm_busy_poll_yield(fm_busy_poll *b) {
    long switches = b->adaptive ? fm_thread_switches() : -1;
    int64_t before = fastmsg_monotonic_ns();
    fm_yield();
    int64_t took = fastmsg_monotonic_ns() - before;
    if (switches >= 0 && fm_thread_switches() != switches) took = FM_BUSY_POLL_CROWDED_NS; /* another ran */
    return fm_busy_poll_note_yield(b, took);
}

/* A wait ended after `waited_ns` (INT64_MAX: it timed out). */
static inline void fm_busy_poll_learn(fm_busy_poll *b, int64_t waited_ns) {
    if (!b->adaptive) return;
    b->on = waited_ns < 2 * (int64_t)b->window_ns;
    if (b->calm) b->streak = 0;
}

#endif
