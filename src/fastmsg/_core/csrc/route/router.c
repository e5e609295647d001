/* router.h: member lists and the per-member state that survives their replacement. */
#include "route/router.h"

#include <stdlib.h>
#include <string.h>

#include "base/futex.h" /* fastmsg_monotonic_ns */

void fm_router_init(fm_router *r, fm_route_strategy strategy, const uint8_t key[16]) {
    memset(r, 0, sizeof *r);
    r->strategy = strategy;
    r->key = fm_sipkey_from_bytes(key);
    fm_rng_seed(&r->rng, fm_siphash13(r->key, "rng", 3));
    r->clock_ns = -1;
}

static void free_arrays(fm_router *r) {
    free(r->m);
    free(r->member);
    free(r->inv_weight);
    free(r->up);
    free(r->up_list);
    free(r->by_tier);
    free(r->tier_start);
    free(r->tier_next);
}

void fm_router_free(fm_router *r) {
    free_arrays(r);
    memset(r, 0, sizeof *r);
}

typedef struct {
    uint64_t key;
    size_t index;
} pair;

static int by_key(const void *pa, const void *pb) {
    const pair *a = (const pair *)pa, *b = (const pair *)pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static const pair *find(const pair *sorted, size_t n, uint64_t key) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid].key < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && sorted[lo].key == key ? &sorted[lo] : NULL;
}

/* Smooth weighted round-robin runs on integers, so that a window of sum(weights) picks splits
 * exactly. The weights are scaled by the smallest power of two 2^k (k <= 24) that makes every one
 * an integer no larger than 2^31: integers stay as they are, and 0.5 : 1.5 becomes 1 : 3. Other
 * weights are scaled to round(w / max * 2^24), at least 1 (the picks depend only on the ratios). */
static void set_wrr_weights(fm_route_member *m, size_t n) {
    double max = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i].weight > max) max = m[i].weight;
    double scale = 0;
    for (double f = 1.0; f <= 16777216.0 && max * f <= 2147483648.0 && scale == 0; f *= 2) {
        size_t i = 0;
        while (i < n && m[i].weight * f == (double)(int64_t)(m[i].weight * f)) i++;
        if (i == n) scale = f;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t w = scale ? (int64_t)(m[i].weight * scale) : (int64_t)(m[i].weight / max * 16777216.0 + 0.5);
        m[i].wrr_weight = w > 0 ? w : 1;
        m[i].wrr_current = 0; /* credits are a pick sequence's state, restarted with the list */
    }
}

/* Groups the members by tier for "nearest": by_tier sorted by (tier, index), one bound each. */
static void group_tiers(fm_router *r, pair *scratch) {
    for (size_t i = 0; i < r->n; i++) {
        scratch[i].key = r->m[i].tier;
        scratch[i].index = i;
    }
    qsort(scratch, r->n, sizeof *scratch, by_key);
    r->n_tiers = 0;
    for (size_t i = 0; i < r->n; i++) {
        r->by_tier[i] = (int32_t)scratch[i].index;
        if (i == 0 || scratch[i].key != scratch[i - 1].key) r->tier_start[r->n_tiers++] = i;
    }
    r->tier_start[r->n_tiers] = r->n;
    memset(r->tier_next, 0, (r->n + 1) * sizeof *r->tier_next);
}

static void refresh_up(fm_router *r) {
    r->n_up = 0;
    r->unacked_up = 0;
    for (size_t i = 0; i < r->n; i++) {
        r->up[i] = r->m[i].up;
        if (r->m[i].up) {
            r->up_list[r->n_up++] = (int32_t)i;
            r->unacked_up += r->m[i].unacked;
        }
    }
}

int fm_router_set_members(fm_router *r, const uint64_t *ids, const double *weights,
                          const uint32_t *tiers, size_t n, size_t *dup) {
    size_t cap = n ? n : 1;
    fm_router next = *r;
    next.n = n;
    next.m = calloc(cap, sizeof *next.m);
    next.member = malloc(cap * sizeof *next.member);
    next.inv_weight = malloc(cap * sizeof *next.inv_weight);
    next.up = malloc(cap);
    next.up_list = malloc(cap * sizeof *next.up_list);
    next.by_tier = malloc(cap * sizeof *next.by_tier);
    next.tier_start = malloc((cap + 1) * sizeof *next.tier_start);
    next.tier_next = malloc((cap + 1) * sizeof *next.tier_next);
    pair *fresh = malloc(cap * sizeof *fresh), *old = malloc((r->n ? r->n : 1) * sizeof *old);
    int rc = -1;
    if (!next.m || !next.member || !next.inv_weight || !next.up || !next.up_list || !next.by_tier ||
        !next.tier_start || !next.tier_next || !fresh || !old)
        goto out;
    for (size_t i = 0; i < n; i++) {
        fresh[i].key = ids[i];
        fresh[i].index = i;
    }
    qsort(fresh, n, sizeof *fresh, by_key);
    for (size_t i = 1; i < n; i++) {
        if (fresh[i].key == fresh[i - 1].key) {
            *dup = fresh[i].index;
            rc = -2;
            goto out;
        }
    }
    for (size_t i = 0; i < r->n; i++) {
        old[i].key = r->m[i].id;
        old[i].index = i;
    }
    qsort(old, r->n, sizeof *old, by_key);
    int equal = 1;
    for (size_t i = 0; i < n; i++) {
        const pair *was = find(old, r->n, ids[i]);
        if (was) {
            next.m[i] = r->m[was->index];
        } else {
            next.m[i].up = 1;
        }
        next.m[i].id = ids[i];
        next.m[i].weight = weights[i];
        next.m[i].tier = tiers[i];
        next.member[i] = fm_rdv_member_of(r->key, ids[i]);
        next.inv_weight[i] = 1.0 / weights[i];
        if (weights[i] != weights[0]) equal = 0;
    }
    if (equal) {
        free(next.inv_weight);
        next.inv_weight = NULL;
    }
    set_wrr_weights(next.m, n);
    refresh_up(&next);
    group_tiers(&next, fresh);
    next.rr_next = r->n ? r->rr_next % (n ? n : 1) : 0;
    free_arrays(r);
    *r = next;
    rc = 0;
out:
    if (rc != 0) free_arrays(&next);
    free(fresh);
    free(old);
    return rc;
}

void fm_router_set_up(fm_router *r, size_t i, int up) {
    if (r->m[i].up == (up != 0)) return;
    r->m[i].up = up != 0;
    refresh_up(r);
}

void fm_router_set_load(fm_router *r, size_t i, uint64_t unacked, int saturated) {
    if (r->m[i].up) r->unacked_up = r->unacked_up - r->m[i].unacked + unacked;
    r->m[i].unacked = unacked;
    r->m[i].saturated = saturated != 0;
}

fm_rdv_table fm_router_table(const fm_router *r) {
    fm_rdv_table t = {r->key, r->member, r->inv_weight, r->up, r->n, r->n_up == r->n};
    return t;
}

int64_t fm_router_now(const fm_router *r) { return r->clock_ns >= 0 ? r->clock_ns : fastmsg_monotonic_ns(); }
