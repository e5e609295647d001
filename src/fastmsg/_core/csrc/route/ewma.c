/* ewma.h. libm's exp is fine here: latency picks are local and never need to agree across hosts. */
#include "route/ewma.h"

#include <math.h>

static double decay(const fm_route_member *m, int64_t now) {
    double dt = now > m->ewma_at ? (double)(now - m->ewma_at) : 0.0;
    return exp(-dt / FM_EWMA_TAU_NS);
}

void fm_ewma_observe(fm_route_member *m, uint64_t rtt_ns, int64_t now) {
    double rtt = (double)rtt_ns, keep = decay(m, now), estimate = m->ewma_ns * keep;
    /* Decaying to zero and blending in the sample are one EWMA with zero input in between. */
    m->ewma_ns = !m->has_rtt || rtt > estimate ? rtt : estimate + rtt * (1.0 - keep);
    m->has_rtt = 1;
    if (now > m->ewma_at) m->ewma_at = now;
}

double fm_ewma_at(const fm_route_member *m, int64_t now) {
    return m->has_rtt ? m->ewma_ns * decay(m, now) : 0.0;
}
