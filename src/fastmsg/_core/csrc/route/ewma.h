/* Peak-EWMA round-trip estimate per member, as Finagle and linkerd balance on: a sample above the
 * estimate replaces it at once (a member that turns slow is avoided from its first slow reply),
 * a lower one is blended in with weight 1 - exp(-dt / tau), and between samples the estimate
 * decays towards zero with the same time constant, so a member once slow is tried again. */
#ifndef FASTMSG_ROUTE_EWMA_H
#define FASTMSG_ROUTE_EWMA_H

#include <stdint.h>

#include "route/router.h"

#define FM_EWMA_TAU_NS 10e9 /* 10 s */

void fm_ewma_observe(fm_route_member *m, uint64_t rtt_ns, int64_t now);

/* The estimate at `now`, decayed since the last sample; 0 before the first sample. */
double fm_ewma_at(const fm_route_member *m, int64_t now);

#endif
