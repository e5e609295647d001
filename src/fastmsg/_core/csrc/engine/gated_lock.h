/* A lock that one thread at a time holds: a Sender's producer lock (one thread queues into its
 * ring), a Receiver's consumer lock (one thread takes its messages).
 *
 * Taken and given back without contention, the usual case, it costs one atomic operation each
 * way. A thread that finds it taken announces itself in `waiting` and sleeps on a gate of the
 * caller's (the Python side uses a PyThread lock, whose waits are timed and end on signals);
 * a release that sees anyone waiting opens the gate, unless it is open already (`gate_open`:
 * a gate is opened at most once before a waiter passes it, as unlocking a PyThread lock that is
 * not locked is a fatal error from Python 3.13). Waiters try again after every wake-up, so a
 * gate left open by a waiter that gave up only costs the next waiter one more look.
 * (CPython 3.11's own lock reads the clock on every acquire, even one that finds it free: a
 * tenth of a small send() on the virtual machines measured, and one of a round trip's some 17.)
 *
 * No wake-up is lost: a waiter counts itself before its last try, and a release frees the lock
 * before it looks at the count, both with full barriers, so either the try succeeds or the
 * release sees the waiter; a waiter that passed the gate marks it shut before it tries, so a
 * release that found the gate still open is followed by that waiter's try. */
#ifndef FASTMSG_GATED_LOCK_H
#define FASTMSG_GATED_LOCK_H

#include "base/atomics.h"

typedef struct {
    uint32_t busy;    /* 1 while held */
    uint32_t waiting; /* threads between fm_glock_announce and fm_glock_withdraw */
    uint32_t gate_open; /* 1 from a release's opening of the gate until a waiter passes it */
} fm_gated_lock;

static inline int fm_glock_try(fm_gated_lock *l) { return fastmsg_cas32(&l->busy, 0, 1); }

static inline void fm_glock_announce(fm_gated_lock *l) { (void)fastmsg_fetch_add32(&l->waiting, 1); }

static inline void fm_glock_withdraw(fm_gated_lock *l) { (void)fastmsg_fetch_add32(&l->waiting, (uint32_t)-1); }

/* Gives the lock back; 1 if a thread waits and the gate is shut: the caller must open it. */
static inline int fm_glock_release(fm_gated_lock *l) {
    fastmsg_store_seq_cst32(&l->busy, 0);
    return fastmsg_load_seq_cst32(&l->waiting) != 0 && fastmsg_cas32(&l->gate_open, 0, 1);
}

/* A waiter passed the gate (it holds the gate shut again), before its next try. */
static inline void fm_glock_passed(fm_gated_lock *l) { fastmsg_store_seq_cst32(&l->gate_open, 0); }

#endif
