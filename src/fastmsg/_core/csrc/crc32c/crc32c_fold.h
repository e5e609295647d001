/* Pieces shared by the carry-less-multiplication kernels (x86-64 only). */
#ifndef FASTMSG_CRC32C_FOLD_H
#define FASTMSG_CRC32C_FOLD_H

#include "crc32c/crc32c.h"
#include "base/common.h"
#include <immintrin.h>

#define FOLD128_TARGET FASTMSG_TARGET("sse4.2,crc32,pclmul")

FOLD128_TARGET static inline __m128i fold128_k(fastmsg_crc32c_fold_k k) {
    return _mm_set_epi64x((long long)k.hi, (long long)k.lo);
}

/* The lane moved forward by the distance k was made for. */
FOLD128_TARGET static inline __m128i fold128(__m128i x, __m128i k) {
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* Folds the remaining 16-byte blocks into x, reduces x to a raw CRC with two crc32 instructions
 * (x is congruent to all data so far, so its CRC is theirs), then finishes the tail. */
FOLD128_TARGET static inline uint32_t fold128_finish(__m128i x, const uint8_t *p, size_t len) {
    const __m128i k16 = fold128_k(fastmsg_crc32c_fold.by16);
    for (; len >= 16; p += 16, len -= 16)
        x = _mm_xor_si128(fold128(x, k16), _mm_loadu_si128((const __m128i *)p));
    uint64_t crc = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    crc = _mm_crc32_u64(crc, (uint64_t)_mm_extract_epi64(x, 1));
    return fastmsg_crc32c_sse42((uint32_t)crc, p, len);
}

/* The raw CRC of n xmm registers that cover consecutive 16-byte blocks. */
FOLD128_TARGET static inline uint32_t fold128_reduce(const __m128i *x, int n) {
    const __m128i k16 = fold128_k(fastmsg_crc32c_fold.by16);
    __m128i acc = x[0];
    for (int i = 1; i < n; i++) acc = _mm_xor_si128(fold128(acc, k16), x[i]);
    return fold128_finish(acc, NULL, 0);
}

#endif
