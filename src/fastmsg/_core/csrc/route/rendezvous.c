/* rendezvous.h: scoring, ranking and batch routing. */
#include "route/rendezvous.h"

#include <stdlib.h>

#include "route/mix.h"
#include "route/unitlog.h"

uint64_t fm_rdv_member_hash(fm_sipkey key, uint64_t id) {
    /* The tag keeps M(id) apart from H of an 8-byte key equal to the id. */
    uint8_t msg[16] = {0, 0, 0, 0, 0, 0, 0, 0, 'm', 'e', 'm', 'b', 'e', 'r', 0, 0};
    fastmsg_store_le64(msg, id);
    return fm_siphash13(key, msg, sizeof msg);
}

static inline uint64_t score_hash(const fm_rdv_table *t, uint64_t kh, size_t i) {
    return fm_mix64(kh ^ t->member_h[i]);
}

/* Unweighted: the largest score hash among up members. */
static int32_t route_equal(const fm_rdv_table *t, uint64_t kh) {
    int32_t best = -1;
    uint64_t best_s = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint64_t s = score_hash(t, kh, i);
        if (t->up[i] && (best < 0 || s > best_s)) {
            best = (int32_t)i;
            best_s = s;
        }
    }
    return best;
}

/* Weighted: the smallest -ln(u)/w among up members, a tie to the larger score hash. */
static int32_t route_weighted(const fm_rdv_table *t, uint64_t kh) {
    int32_t best = -1;
    uint64_t best_s = 0;
    double best_cost = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (!t->up[i]) continue;
        uint64_t s = score_hash(t, kh, i);
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
    return t->inv_weight ? route_weighted(t, kh) : route_equal(t, kh);
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
    if (t->inv_weight) {
        for (size_t k = 0; k < count; k++) out[k] = route_weighted(t, fm_siphash13_u64(t->key, keys[k]));
    } else {
        for (size_t k = 0; k < count; k++) out[k] = route_equal(t, fm_siphash13_u64(t->key, keys[k]));
    }
}
