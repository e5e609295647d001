/* rendezvous.h: scoring, ranking and batch routing. */
#include "route/rendezvous.h"

#include <stdlib.h>

#include "route/keyhash.h"
#include "route/mix.h"
#include "route/unitlog.h"

fm_rdv_member fm_rdv_member_of(fm_sipkey key, uint64_t id) {
    /* The tag keeps these apart from H of an 8-byte key equal to the id. */
    uint8_t msg[16] = {0, 0, 0, 0, 0, 0, 0, 0, 'm', 'e', 'm', 'b', 'e', 'r', 0, 0};
    fastmsg_store_le64(msg, id);
    fm_rdv_member m;
    m.a = fm_siphash13(key, msg, sizeof msg);
    msg[15] = 1;
    m.b = fm_siphash13(key, msg, sizeof msg) | 1;
    return m;
}

static inline uint64_t score_hash(const fm_rdv_table *t, uint64_t kh, size_t i) {
    return fm_mul_fold(kh ^ t->member[i].a, t->member[i].b);
}

/* Unweighted: the largest score hash among up members. Branch-free: which member leads changes
 * at random, and mispredicted branches cost more than the hashing. */
static int32_t route_equal(const fm_rdv_table *t, uint64_t kh) {
    int64_t best = -1;
    uint64_t best_s = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint64_t s = score_hash(t, kh, i);
        int take = t->up[i] & ((best < 0) | (s > best_s));
        uint64_t mask = (uint64_t)0 - (uint64_t)take;
        best_s = (s & mask) | (best_s & ~mask);
        best = take ? (int64_t)i : best;
    }
    return (int32_t)best;
}

/* The same with every member up, the common case: two conditional moves per member. */
static int32_t route_equal_all_up(const fm_rdv_table *t, uint64_t kh) {
    if (t->n == 0) return -1;
    size_t best = 0;
    uint64_t best_s = score_hash(t, kh, 0);
    for (size_t i = 1; i < t->n; i++) {
        uint64_t s = score_hash(t, kh, i);
        int take = s > best_s;
        best_s = take ? s : best_s;
        best = take ? i : best;
    }
    return (int32_t)best;
}

/* Bounds of the cost that need no logarithm, from v = 1 - u and u (both exact here):
 * v + v^2/2 <= -ln(u) <= v / u. Widened by 1e-9 so that rounding can never put the computed cost
 * outside them. */
static inline double cost_floor(uint64_t s, double inv_weight) {
    double v = (double)(((uint64_t)1 << 53) - ((s >> 11) | 1)) * (1.0 / 9007199254740992.0);
    return (v + v * v * 0.5) * inv_weight * (1.0 - 1e-9);
}

static inline double cost_ceiling(uint64_t s, double inv_weight) {
    uint64_t x = (s >> 11) | 1;
    return (double)(((uint64_t)1 << 53) - x) / (double)x * inv_weight * (1.0 + 1e-9);
}

/* Weighted: the smallest -ln(u)/w among up members, a tie to the larger score hash. Only a
 * member whose floor is at most every member's ceiling can win, and only those (one or two per
 * key, found without a logarithm) get the exact cost: the choice is the one computing every cost
 * would make, at a fraction of the price. */
static int32_t route_weighted(const fm_rdv_table *t, uint64_t kh) {
    double ceiling = 0;
    int any = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!t->up[i]) continue;
        double c = cost_ceiling(score_hash(t, kh, i), t->inv_weight[i]);
        ceiling = !any || c < ceiling ? c : ceiling;
        any = 1;
    }
    int32_t best = -1;
    uint64_t best_s = 0;
    double best_cost = 0;
    for (size_t i = 0; any && i < t->n; i++) {
        uint64_t s = score_hash(t, kh, i);
        if (!t->up[i] || cost_floor(s, t->inv_weight[i]) > ceiling) continue;
        double cost = fm_neg_log_unit(s) * t->inv_weight[i];
        if (best < 0 || cost < best_cost || (cost == best_cost && s > best_s)) {
            best = (int32_t)i;
            best_s = s;
            best_cost = cost;
        }
    }
    return best;
}

int32_t fm_rdv_route(const fm_rdv_table *t, uint64_t kh) {
    if (t->inv_weight) return route_weighted(t, kh);
    return t->all_up ? route_equal_all_up(t, kh) : route_equal(t, kh);
}

static int better_first(const void *pa, const void *pb) {
    const fm_rdv_score *a = (const fm_rdv_score *)pa, *b = (const fm_rdv_score *)pb;
    if (a->cost != b->cost) return a->cost < b->cost ? -1 : 1;
    if (a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

void fm_rdv_rank(const fm_rdv_table *t, uint64_t kh, fm_rdv_score *scratch, int32_t *out) {
    for (size_t i = 0; i < t->n; i++) {
        uint64_t s = score_hash(t, kh, i);
        scratch[i].s = s;
        scratch[i].cost = t->inv_weight ? fm_neg_log_unit(s) * t->inv_weight[i] : 0.0;
        scratch[i].index = (int32_t)i;
    }
    qsort(scratch, t->n, sizeof *scratch, better_first);
    for (size_t i = 0; i < t->n; i++) out[i] = scratch[i].index;
}

void fm_rdv_route_u64(const fm_rdv_table *t, const uint64_t *keys, size_t count, int32_t *out) {
    /* Hash a block of keys with the selected kernel (several at once where the CPU can), then
     * score them; one loop per path, so the path is chosen once per block, not per key. */
    enum { BLOCK = 256 };
    uint64_t kh[BLOCK];
    for (size_t base = 0; base < count; base += BLOCK) {
        size_t len = count - base < BLOCK ? count - base : BLOCK;
        int32_t *dst = out + base;
        fm_keyhash_active(t->key, keys + base, len, kh);
        if (t->inv_weight) {
            for (size_t k = 0; k < len; k++) dst[k] = route_weighted(t, kh[k]);
        } else if (t->all_up) {
            for (size_t k = 0; k < len; k++) dst[k] = route_equal_all_up(t, kh[k]);
        } else {
            for (size_t k = 0; k < len; k++) dst[k] = route_equal(t, kh[k]);
        }
    }
}
