/* See notifier.h. */
#include "engine/notifier.h"

#include "base/thread.h"

/* Making a notifier's fd is rare (once per endpoint that an event loop watches): one lock for
 * all of them keeps two threads calling fileno() at once from making two. */
static fm_mutex open_lock = FM_MUTEX_INIT;

void fm_notifier_init(fm_notifier *n) {
    n->fd.rd = n->fd.wr = -1;
    n->armed = 0;
    n->reader_drains = 0;
    n->signals = 0;
}

int fm_notifier_fd(fm_notifier *n) {
    int rc = 0;
    fm_mutex_lock(&open_lock);
    if (n->fd.rd < 0) {
        rc = fm_waker_open(&n->fd);
        /* Born readable: a caller whose non-blocking call ran before the fd existed (and so could
         * not arm it) is sent back to try again, and that call arms it. Not counted in signals,
         * which counts the engine's writes. */
        if (rc == 0) fm_waker_signal(&n->fd);
    }
    fm_mutex_unlock(&open_lock);
    return rc < 0 ? rc : n->fd.rd;
}

void fm_notifier_arm(fm_notifier *n) {
    if (n->fd.rd < 0) return;
    if (!__atomic_load_n(&n->reader_drains, __ATOMIC_RELAXED)) fm_waker_drain(&n->fd);
    __atomic_store_n(&n->armed, 1, __ATOMIC_SEQ_CST);
    /* The caller's next look at its condition must not move above the store (store-load order). */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void fm_notifier_reader_drains(fm_notifier *n) { __atomic_store_n(&n->reader_drains, 1, __ATOMIC_RELAXED); }

uint64_t fm_notifier_signals(fm_notifier *n) { return __atomic_load_n(&n->signals, __ATOMIC_RELAXED); }

void fm_notifier_signal(fm_notifier *n) {
    __atomic_fetch_add(&n->signals, 1, __ATOMIC_RELAXED);
    fm_waker_signal(&n->fd);
}

void fm_notifier_close(fm_notifier *n) { fm_waker_close(&n->fd); }
