/* pick.h. Every pick is O(1) in the usual case; scans are bounded by the member count. */
#include "route/pick.h"

#include "route/ewma.h"

int32_t fm_pick_round_robin(fm_router *r) {
    for (size_t k = 0; k < r->n; k++) {
        size_t i = (r->rr_next + k) % r->n;
        if (r->m[i].up) {
            r->rr_next = i + 1;
            return (int32_t)i;
        }
    }
    return -1;
}

int32_t fm_pick_weighted(fm_router *r) {
    int32_t best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < r->n; i++) {
        fm_route_member *m = &r->m[i];
        if (!m->up) continue;
        m->wrr_current += m->wrr_weight;
        total += m->wrr_weight;
        if (best < 0 || m->wrr_current > r->m[best].wrr_current) best = (int32_t)i;
    }
    if (best >= 0) r->m[best].wrr_current -= total;
    return best;
}

/* Two distinct up members, uniformly; sets *b = -1 when only one is up. */
static int32_t two_choices(fm_router *r, int32_t *b) {
    uint32_t n = (uint32_t)r->n_up;
    *b = -1;
    if (n == 0) return -1;
    if (n == 1) return r->up_list[0];
    uint32_t i = fm_rng_below(&r->rng, n), j = fm_rng_below(&r->rng, n - 1);
    if (j >= i) j++;
    *b = r->up_list[j];
    return r->up_list[i];
}

int32_t fm_pick_least_loaded(fm_router *r) {
    int32_t b, a = two_choices(r, &b);
    if (b < 0) return a;
    const fm_route_member *ma = &r->m[a], *mb = &r->m[b];
    if (ma->saturated != mb->saturated) return ma->saturated ? b : a;
    return mb->unacked < ma->unacked ? b : a;
}

/* The mean estimate over the up members that have a sample; 1 when none has (the cost then
 * compares load alone). */
static double neutral_rtt(const fm_router *r, int64_t now) {
    double sum = 0;
    size_t count = 0;
    for (size_t k = 0; k < r->n_up; k++) {
        const fm_route_member *m = &r->m[r->up_list[k]];
        if (m->has_rtt) {
            sum += fm_ewma_at(m, now);
            count++;
        }
    }
    return count ? sum / (double)count : 1.0;
}

static double latency_cost(const fm_router *r, const fm_route_member *m, int64_t now) {
    double rtt = m->has_rtt ? fm_ewma_at(m, now) : neutral_rtt(r, now);
    if (rtt < 1.0) rtt = 1.0; /* a zero estimate would make load irrelevant */
    double mean = (double)r->unacked_up / (double)r->n_up;
    return mean > 0 ? rtt * (1.0 + (double)m->unacked / mean) : rtt;
}

int32_t fm_pick_latency(fm_router *r, int64_t now) {
    int32_t b, a = two_choices(r, &b);
    if (b < 0) return a;
    const fm_route_member *ma = &r->m[a], *mb = &r->m[b];
    if (ma->saturated != mb->saturated) return ma->saturated ? b : a;
    return latency_cost(r, mb, now) < latency_cost(r, ma, now) ? b : a;
}

int32_t fm_pick_nearest(fm_router *r) {
    for (size_t g = 0; g < r->n_tiers; g++) {
        size_t start = r->tier_start[g], size = r->tier_start[g + 1] - start;
        for (size_t k = 0; k < size; k++) {
            size_t slot = (r->tier_next[g] + k) % size;
            const fm_route_member *m = &r->m[r->by_tier[start + slot]];
            if (m->up && !m->saturated) {
                r->tier_next[g] = slot + 1;
                return r->by_tier[start + slot];
            }
        }
    }
    /* Everything up is saturated: the least loaded up member, nearest first on a tie. */
    int32_t best = -1;
    for (size_t k = 0; k < r->n; k++) {
        int32_t i = r->by_tier[k];
        if (r->m[i].up && (best < 0 || r->m[i].unacked < r->m[best].unacked)) best = i;
    }
    return best;
}

int32_t fm_pick(fm_router *r) {
    switch (r->strategy) {
    case FM_ROUTE_ROUND_ROBIN: return fm_pick_round_robin(r);
    case FM_ROUTE_WEIGHTED: return fm_pick_weighted(r);
    case FM_ROUTE_LEAST_LOADED: return fm_pick_least_loaded(r);
    case FM_ROUTE_LATENCY: return fm_pick_latency(r, fm_router_now(r));
    case FM_ROUTE_NEAREST: return fm_pick_nearest(r);
    default: return -1;
    }
}
