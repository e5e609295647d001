/* x86-64: PCLMULQDQ folding over four 16-byte lanes for large buffers; the crc32 instruction for
 * short ones and for the final reduction. */
#include "crc32c.h"

#if defined(__x86_64__) || defined(_M_X64)
#include "crc32c_fold.h"

/* Below this the three-way crc32 kernel is as fast and has no set-up cost. */
#define PCLMUL_MIN_LEN 512

FOLD128_TARGET uint32_t fastmsg_crc32c_pclmul(uint32_t crc, const uint8_t *p, size_t len) {
    if (len < PCLMUL_MIN_LEN) return fastmsg_crc32c_sse42(crc, p, len);
    const __m128i k64 = fold128_k(fastmsg_crc32c_fold.by64), k16 = fold128_k(fastmsg_crc32c_fold.by16);
    const __m128i *v = (const __m128i *)p;
    __m128i x0 = _mm_xor_si128(_mm_loadu_si128(v), _mm_cvtsi32_si128((int)crc));
    __m128i x1 = _mm_loadu_si128(v + 1), x2 = _mm_loadu_si128(v + 2), x3 = _mm_loadu_si128(v + 3);
    for (p += 64, len -= 64; len >= 64; p += 64, len -= 64) {
        v = (const __m128i *)p;
        x0 = _mm_xor_si128(fold128(x0, k64), _mm_loadu_si128(v));
        x1 = _mm_xor_si128(fold128(x1, k64), _mm_loadu_si128(v + 1));
        x2 = _mm_xor_si128(fold128(x2, k64), _mm_loadu_si128(v + 2));
        x3 = _mm_xor_si128(fold128(x3, k64), _mm_loadu_si128(v + 3));
    }
    __m128i x = _mm_xor_si128(fold128(x0, k16), x1);
    x = _mm_xor_si128(fold128(x, k16), x2);
    x = _mm_xor_si128(fold128(x, k16), x3);
    return fold128_finish(x, p, len);
}
#endif
