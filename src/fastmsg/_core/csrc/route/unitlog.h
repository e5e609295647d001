/* -ln(u) for the uniform variate u in (0, 1) drawn from a 64-bit hash, computed the same way on
 * every IEEE-754 machine: only +, -, * and / on doubles (each correctly rounded by the standard),
 * in a fixed order, no libm and no fused multiply-add. Weighted rendezvous hashing compares these
 * values, so a libm that rounds differently on another platform would move keys between members. */
#ifndef FASTMSG_ROUTE_UNITLOG_H
#define FASTMSG_ROUTE_UNITLOG_H

#include <stdint.h>

/* u = x * 2^-53 with x = (h >> 11) | 1, so u is never 0 or 1; the result is -ln(u) to within a
 * few units in the last place (relative error < 1e-15). Monotone in u to that precision. */
double fm_neg_log_unit(uint64_t h);

#endif
