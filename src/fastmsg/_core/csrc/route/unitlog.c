/* unitlog.h. ln(u) = k ln 2 + ln(m) with m in [sqrt(1/2), sqrt(2)], and ln(m) = 2 atanh(s) with
 * s = (m - 1) / (m + 1), |s| <= 0.1716, summed as an odd series to s^21 (the next term is below
 * 1e-17 of the sum). m - 1 is exact in that range, so u near 1 (the scores that win) keeps its
 * full relative precision. */
#include "route/unitlog.h"

#include <float.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* GCC does not contract under -std=c11; setup.py also passes -ffp-contract=off */
#endif
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != -1
#error "routing scores need double arithmetic evaluated in double (SSE2 on x86, any 64-bit target)"
#endif

/* ln 2 split so that k * LN2_HI is exact for k <= 2^20 (LN2_HI has 21 trailing zero bits). */
static const double LN2_HI = 6.93147180369123816490e-01;
static const double LN2_LO = 1.90821492927058770002e-10;
static const double SQRT2 = 1.41421356237309504880;

static int top_bit(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return 63 - __builtin_clzll(x);
#else
    int b = 0;
    while (x >>= 1) b++;
    return b;
#endif
}

/* 2^-e for 0 <= e <= 1022, built from its bits (exact, no libm). */
static double pow2_neg(int e) {
    uint64_t bits = (uint64_t)(1023 - e) << 52;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

double fm_neg_log_unit(uint64_t h) {
    uint64_t x = (h >> 11) | 1;
    int e = top_bit(x);
    double m = (double)x * pow2_neg(e); /* x < 2^53: both steps exact; m in [1, 2) */
    if (m > SQRT2) {
        m *= 0.5;
        e += 1;
    }
    int k = 53 - e; /* u = m * 2^-k */
    double f = m - 1.0, s = f / (2.0 + f), z = s * s;
    double p = 1.0 / 21;
    p = p * z + 1.0 / 19;
    p = p * z + 1.0 / 17;
    p = p * z + 1.0 / 15;
    p = p * z + 1.0 / 13;
    p = p * z + 1.0 / 11;
    p = p * z + 1.0 / 9;
    p = p * z + 1.0 / 7;
    p = p * z + 1.0 / 5;
    p = p * z + 1.0 / 3;
    double ln_m = 2.0 * s + 2.0 * s * (z * p);
    return (double)k * LN2_HI + ((double)k * LN2_LO - ln_m);
}
