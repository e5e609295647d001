/* The routing state of one Balancer: the member list (index i = member i), each member's health,
 * load and latency estimate, and what each strategy remembers between picks. Not thread-safe:
 * the binding serialises calls on one router. */
#ifndef FASTMSG_ROUTE_ROUTER_H
#define FASTMSG_ROUTE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "route/mix.h"
#include "route/rendezvous.h"
#include "route/siphash.h"

typedef enum {
    FM_ROUTE_ROUND_ROBIN,
    FM_ROUTE_WEIGHTED,
    FM_ROUTE_HASH,
    FM_ROUTE_LEAST_LOADED,
    FM_ROUTE_LATENCY,
    FM_ROUTE_NEAREST,
    FM_ROUTE_BROADCAST,
} fm_route_strategy;

typedef struct {
    uint64_t id;          /* the caller's stable id; state follows it across set_members */
    double weight;        /* > 0 */
    uint32_t tier;        /* 0 = nearest */
    uint8_t up;           /* health: a down member is never picked */
    uint8_t saturated;    /* its sender's window is full */
    uint8_t has_rtt;      /* ewma_ns holds at least one sample */
    uint64_t unacked;     /* bytes sent and not yet acknowledged */
    double ewma_ns;       /* peak-EWMA of the round trip as of ewma_at */
    int64_t ewma_at;      /* monotonic ns of the last update */
    int64_t wrr_weight;   /* integer weight of smooth weighted round-robin */
    int64_t wrr_current;  /* its running credit */
} fm_route_member;

typedef struct {
    fm_route_strategy strategy;
    fm_sipkey key;          /* from the seed: every hash and the PRNG are keyed by it */
    size_t n;
    fm_route_member *m;
    fm_rdv_member *member;  /* rendezvous: scoring constants per member */
    double *inv_weight;     /* rendezvous: 1 / weight, NULL when all weights are equal */
    uint8_t *up;            /* a copy of m[i].up, contiguous for the rendezvous loops */
    int32_t *up_list;       /* indices of the up members, for uniform random choices */
    size_t n_up;
    uint64_t unacked_up;    /* sum of unacked over the up members */
    int32_t *by_tier;       /* member indices sorted by (tier, index) */
    size_t *tier_start;     /* n_tiers + 1 bounds into by_tier, one group per distinct tier */
    size_t *tier_next;      /* per tier group: where its round-robin resumes */
    size_t n_tiers;
    size_t rr_next;         /* round_robin: where the next scan starts */
    fm_rng rng;
    int64_t clock_ns;       /* -1: the monotonic clock; else a fixed time, for tests */
} fm_router;

void fm_router_init(fm_router *r, fm_route_strategy strategy, const uint8_t key[16]);
void fm_router_free(fm_router *r);

/* Replaces the members. A member whose id was present keeps its health, load and latency; new
 * ones start up, unloaded and unmeasured. Returns 0; -1 out of memory (nothing changed); -2 if an
 * id repeats (*dup is the later index; nothing changed). */
int fm_router_set_members(fm_router *r, const uint64_t *ids, const double *weights,
                          const uint32_t *tiers, size_t n, size_t *dup);

void fm_router_set_up(fm_router *r, size_t i, int up);
void fm_router_set_load(fm_router *r, size_t i, uint64_t unacked, int saturated);

/* The rendezvous view of the members (pointers into the router). */
fm_rdv_table fm_router_table(const fm_router *r);

int64_t fm_router_now(const fm_router *r);

#endif
