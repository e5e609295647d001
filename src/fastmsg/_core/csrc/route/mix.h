/* Cheap 64-bit mixing for routing: the splitmix64 finaliser (a bijection with full avalanche), the
 * folded 64x64->128-bit multiply that scores a (key, member) pair in a few instructions, and
 * the xoshiro256** generator behind the random choices of power-of-two-choices. Neither is keyed
 * on its own; what they mix comes from SipHash under the router's seed. */
#ifndef FASTMSG_ROUTE_MIX_H
#define FASTMSG_ROUTE_MIX_H

#include <stdint.h>

#include "route/siphash.h"

static inline uint64_t fm_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif

/* The high and low halves of a * b, xored: every bit of the result depends on every bit of both
 * operands. The exact product on every platform, so the value is the same everywhere. */
static inline uint64_t fm_mul_fold(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
    __uint128_t p = (__uint128_t)a * b;
    return (uint64_t)(p >> 64) ^ (uint64_t)p;
#elif defined(_MSC_VER) && defined(_M_X64)
    uint64_t hi, lo = _umul128(a, b, &hi);
    return hi ^ lo;
#elif defined(_MSC_VER) && defined(_M_ARM64)
    return __umulh(a, b) ^ (a * b);
#else
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32, b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return hi ^ (a * b);
#endif
}

typedef struct {
    uint64_t s[4];
} fm_rng;

/* Fills the state from a splitmix64 sequence started at `seed`: never all zero. */
static inline void fm_rng_seed(fm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ull;
        r->s[i] = fm_mix64(seed);
    }
}

static inline uint64_t fm_rng_next(fm_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = fm_rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = fm_rotl64(s[3], 45);
    return out;
}

/* A number in [0, n) for n < 2^32, by multiplying the top 32 random bits (bias below 2^-32 n). */
static inline uint32_t fm_rng_below(fm_rng *r, uint32_t n) {
    return (uint32_t)(((fm_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

#endif
