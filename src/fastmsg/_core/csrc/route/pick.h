/* The stateful strategies: which member takes the next message. Each returns a member index, or
 * -1 when no member is up. "hash" routes by key (rendezvous.h) and "broadcast" sends to all, so
 * neither goes through here. */
#ifndef FASTMSG_ROUTE_PICK_H
#define FASTMSG_ROUTE_PICK_H

#include <stdint.h>

#include "route/router.h"

/* round_robin: the next up member after the last one picked. */
int32_t fm_pick_round_robin(fm_router *r);

/* weighted: smooth weighted round-robin over the up members, as nginx does it: every member gains
 * its weight in credit, the richest is picked and pays the sum of the weights. Any window of
 * sum(weights) picks holds each member exactly weight times, spread out rather than in bursts. */
int32_t fm_pick_weighted(fm_router *r);

/* least_loaded: power of two choices: two distinct up members at random, the one with fewer
 * unacknowledged bytes (a saturated one loses to one that is not). */
int32_t fm_pick_least_loaded(fm_router *r);

/* latency: power of two choices on peak-EWMA cost = rtt * (1 + unacked / mean unacked of the up
 * members). A member without a sample costs the mean estimate of the measured ones, so it is
 * tried against slow members and loses to fast ones until it has one. */
int32_t fm_pick_latency(fm_router *r, int64_t now);

/* nearest: round-robin among the up, unsaturated members of the lowest tier that has one; when
 * every up member is saturated, the up member with the fewest unacknowledged bytes. */
int32_t fm_pick_nearest(fm_router *r);

/* The strategy's pick (not for hash or broadcast). */
int32_t fm_pick(fm_router *r);

#endif
