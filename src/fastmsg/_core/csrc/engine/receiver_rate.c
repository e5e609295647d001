/* A connection's rate limit (Receiver rate_limit=(messages_per_s, burst)): a token bucket of
 * messages, charged as DATA frames are checked. Over the rate, reading the connection stops until
 * the bucket has refilled: TCP's window then holds the sender back (backpressure; nothing is
 * dropped, nothing is acknowledged early). Each pause is counted as rate_limited. */
#include "engine/receiver_internal.h"

void fm_rxconn_rate_charge(fm_rxconn *c, uint64_t n) {
    const fm_receiver_config *cfg = &c->rx->cfg;
    if (!cfg->rate_msgs || !n) return;
    int64_t now = fastmsg_monotonic_ns();
    if (!c->tokens_at_ns) {
        c->tokens = cfg->rate_burst;
    } else {
        c->tokens += (double)(now - c->tokens_at_ns) * cfg->rate_msgs / 1e9;
        if (c->tokens > cfg->rate_burst) c->tokens = cfg->rate_burst;
    }
    c->tokens_at_ns = now;
    c->tokens -= (double)n;
    if (c->tokens < 0) { /* in debt: pause until it is paid back */
        c->rate_until_ns = now + (int64_t)(-c->tokens * 1e9 / cfg->rate_msgs) + 1;
        fm_rxconn_set_interest(c, c->interest & ~(uint32_t)FASTMSG_POLL_IN);
        FM_STAT_ADD(c->rx, FM_RATE_LIMITED, 1);
    }
}

int fm_rxconn_rate_paused(fm_rxconn *c) {
    if (!c->rate_until_ns) return 0;
    fm_rxconn_set_interest(c, c->interest & ~(uint32_t)FASTMSG_POLL_IN);
    return 1;
}

int fm_rxconn_rate_step(fm_rxconn *c, int64_t now, int64_t *next) {
    if (!c->rate_until_ns) return 0;
    if (now < c->rate_until_ns) {
        if (c->rate_until_ns < *next) *next = c->rate_until_ns;
        return 0;
    }
    c->rate_until_ns = 0;
    return 1; /* the caller reads again: frames read before the pause are parsed then */
}
