/* The ring's slow paths: waiting for records or space, and waking the side that waits.
 *
 * Handshake (no syscall unless someone sleeps): a waiter increments its waiter count, fences, reads
 * the futex word, re-checks the position, and only then sleeps on the word. The other side stores
 * its position and reads the waiter count (fastmsg_ring_publish / _release). Both fences
 * are sequentially consistent (the other side's is an atomic exchange storing its position), so
 * either the waiter sees the new position or the other side sees the waiter and bumps the word,
 * which makes the sleep return at once. */
#include "base/futex.h"
#include "ring/ring.h"

/* Spins this many times before sleeping: about a microsecond, shorter than a futex round trip. */
#define FASTMSG_RING_SPIN 200

void fastmsg_ring_wake_consumer(fastmsg_ring *r) {
    fastmsg_fetch_add32(&r->ctl->data_seq, 1);
    fastmsg_futex_wake_all(&r->ctl->data_seq);
}

void fastmsg_ring_wake_producer(fastmsg_ring *r) {
    fastmsg_fetch_add32(&r->ctl->space_seq, 1);
    fastmsg_futex_wake_all(&r->ctl->space_seq);
}

/* Waits until *pos >= target. */
static int wait_pos(const uint64_t *pos, uint64_t target, uint32_t *seq, uint32_t *waiters, int64_t deadline, int spin) {
    int rc = FASTMSG_WAIT_TIMEOUT;
    unsigned attempt = 0;
    for (int i = 0; i < spin; i++) {
        if (fastmsg_load_acquire64(pos) >= target)
            return FASTMSG_WAIT_READY;
        fastmsg_cpu_relax();
    }
    fastmsg_fetch_add32(waiters, 1);
    fastmsg_fence_seq_cst();
    for (;;) {
        uint32_t s = fastmsg_load_acquire32(seq);
        int64_t left = -1;
        if (fastmsg_load_acquire64(pos) >= target) {
            rc = FASTMSG_WAIT_READY;
            break;
        }
        if (deadline >= 0) {
            left = deadline - fastmsg_monotonic_ns();
            if (left <= 0) {
                rc = FASTMSG_WAIT_TIMEOUT;
                break;
            }
        }
        if (fastmsg_futex_wait(seq, s, left, attempt++) != 0) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
    }
    fastmsg_fetch_add32(waiters, (uint32_t)-1);
    return rc;
}

int fastmsg_ring_wait_data(fastmsg_ring *r, int64_t deadline_ns) {
    if (r->rpos < r->rlimit)
        return FASTMSG_WAIT_READY;
    return wait_pos(&r->ctl->tail, r->rpos + 1, &r->ctl->data_seq, &r->ctl->data_waiters, deadline_ns, FASTMSG_RING_SPIN);
}

int fastmsg_ring_wait_space(fastmsg_ring *r, uint64_t target, int64_t deadline_ns) {
    return wait_pos(&r->ctl->head, target, &r->ctl->space_seq, &r->ctl->space_waiters, deadline_ns,
                    r->no_spin ? 0 : FASTMSG_RING_SPIN);
}
