/* A readiness fd for an event loop that watches one Sender or Receiver (asyncio's add_reader,
 * trio's wait_readable, select.poll in fastmsg.poll): made on the first fileno(), closed with its
 * endpoint. It costs the engine nothing until a waiter arms it: the engine writes the fd only when
 * it finds `armed` set, and clears it as it writes, so there is one write per arming at most.
 *
 * A waiter arms, then looks at its condition once more (a non-blocking recv, room in the ring),
 * then waits for the fd: the engine changes the condition before it reads `armed` (both
 * sequentially consistent), so either the second look sees the change or the engine sees the
 * flag. docs/architecture.md, "Readiness notification". */
#ifndef FASTMSG_ENGINE_NOTIFIER_H
#define FASTMSG_ENGINE_NOTIFIER_H

#include <stdint.h>

#include "engine/waker.h"

typedef struct fm_notifier {
    fm_waker fd;      /* eventfd, or a pipe; rd == -1 until the first fm_notifier_fd */
    uint32_t armed;   /* a waiter wants the next change: exchanged to 0 by the one who writes */
    uint32_t reader_drains; /* an event loop's reader empties the fd: arming leaves a write to it */
    uint64_t signals; /* writes made, so tests can tell that an unarmed fd is never written */
} fm_notifier;

/* Before first use: no fd yet. */
void fm_notifier_init(fm_notifier *n);
/* The fd to watch (made on the first call, readable at first; thread-safe), or -errno. */
int fm_notifier_fd(fm_notifier *n);
/* Empties the fd and arms it: the next change of the endpoint's state makes it readable. Call,
 * then look at the condition again before waiting. No-op before the fd is made. */
void fm_notifier_arm(fm_notifier *n);
/* The fd's watcher empties it itself whenever it turns readable (an event loop's reader callback,
 * which then wakes every waiter): arming no longer empties it, so one waiter's arming cannot
 * swallow a write made for another whose condition differs (each request waits for its own
 * reply). */
void fm_notifier_reader_drains(fm_notifier *n);
uint64_t fm_notifier_signals(fm_notifier *n);
/* Closes the fd once nothing can fire it any more (the endpoint has left the loop). */
void fm_notifier_close(fm_notifier *n);

void fm_notifier_signal(fm_notifier *n);

/* After a change a waiter may want (messages queued, ring space released, close): wakes the
 * waiter if one armed. A load, nothing more, when none did. */
static inline void fm_notifier_fire(fm_notifier *n) {
    if (__atomic_load_n(&n->armed, __ATOMIC_SEQ_CST) && __atomic_exchange_n(&n->armed, 0, __ATOMIC_SEQ_CST))
        fm_notifier_signal(n);
}

#endif
