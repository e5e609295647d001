/* A token: who may touch a connection's state now. The I/O thread and a Python thread doing a
 * direct write or read each take it before they touch the sockets and give it back after; neither
 * ever waits for it, so taking it is one compare-and-swap. Both operations are sequentially
 * consistent, as each side then reads a flag the other side stored (`missed`, the lease). */
#ifndef FASTMSG_ENGINE_TOKEN_H
#define FASTMSG_ENGINE_TOKEN_H

#include <stdint.h>

/* 1 if the caller now holds the token, 0 if someone else does. */
static inline int fm_token_take(uint32_t *token) {
    uint32_t free_ = 0;
    return __atomic_compare_exchange_n(token, &free_, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static inline void fm_token_give(uint32_t *token) { __atomic_store_n(token, 0, __ATOMIC_SEQ_CST); }

#endif
