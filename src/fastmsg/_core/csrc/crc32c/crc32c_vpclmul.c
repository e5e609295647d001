/* x86-64 with VPCLMULQDQ: ymm folding fused with crc32-instruction streams for large buffers,
 * plain eight-register ymm folding for mid-sized ones, the xmm kernel below that. */
#include "crc32c/crc32c.h"

#if defined(__x86_64__) || defined(_M_X64)
#include "crc32c/crc32c_fold.h"

#define YMM_TARGET FASTMSG_TARGET("sse4.2,crc32,pclmul,avx2,vpclmulqdq")
/* Below this the xmm kernel wins: the eight-register set-up and reduction do not pay off. */
#define YMM_FOLD_MIN_LEN 1024

YMM_TARGET static inline __m256i fold256_k(fastmsg_crc32c_fold_k k) {
    return _mm256_set_epi64x((long long)k.hi, (long long)k.lo, (long long)k.hi, (long long)k.lo);
}

YMM_TARGET static inline __m256i fold256(__m256i y, __m256i k) {
    return _mm256_xor_si256(_mm256_clmulepi64_epi128(y, k, 0x00), _mm256_clmulepi64_epi128(y, k, 0x11));
}

YMM_TARGET static inline __m256i load256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

YMM_TARGET static inline __m256i seed256(uint32_t crc) { return _mm256_set_epi64x(0, 0, 0, (long long)crc); }

/* Folds n registers covering consecutive 32-byte blocks into one, then that one's two lanes (the
 * low lane precedes the high one by 16 bytes), then finishes with the remaining bytes. */
YMM_TARGET static inline uint32_t ymm_finish(const __m256i *y, int n, const uint8_t *p, size_t len) {
    const __m256i k32 = fold256_k(fastmsg_crc32c_fold.by32);
    __m256i acc = y[0];
    for (int i = 1; i < n; i++) acc = _mm256_xor_si256(fold256(acc, k32), y[i]);
    for (; len >= 32; p += 32, len -= 32) acc = _mm256_xor_si256(fold256(acc, k32), load256(p));
    const __m128i k16 = fold128_k(fastmsg_crc32c_fold.by16);
    __m128i x = _mm_xor_si128(fold128(_mm256_castsi256_si128(acc), k16), _mm256_extracti128_si256(acc, 1));
    return fold128_finish(x, p, len);
}

YMM_TARGET static uint32_t ymm_fold(uint32_t crc, const uint8_t *p, size_t len) {
    if (len < YMM_FOLD_MIN_LEN) return fastmsg_crc32c_pclmul(crc, p, len);
    const __m256i k256 = fold256_k(fastmsg_crc32c_fold.by256);
    __m256i y[8];
    for (int i = 0; i < 8; i++) y[i] = load256(p + 32 * i);
    y[0] = _mm256_xor_si256(y[0], seed256(crc));
    for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
        for (int i = 0; i < 8; i++) y[i] = _mm256_xor_si256(fold256(y[i], k256), load256(p + 32 * i));
    }
    return ymm_finish(y, 8, p, len);
}

#define FUSED_NAME fastmsg_crc32c_vpclmul
#define FUSED_TARGET YMM_TARGET
#define FUSED_VEC __m256i
#define FUSED_VEC_BYTES 32
#define FUSED_REGS 6
#define FUSED_STEP_K fastmsg_crc32c_fold.by192
#define FUSED_LOAD(p) load256(p)
#define FUSED_XOR(a, b) _mm256_xor_si256((a), (b))
#define FUSED_FOLD(v, k) fold256((v), (k))
#define FUSED_K(fk) fold256_k(fk)
#define FUSED_SEED(crc) seed256(crc)
#define FUSED_REDUCE(regs, n) ymm_finish((regs), (n), NULL, 0)
#define FUSED_TAIL(crc, p, len) ymm_fold((crc), (p), (len))
#include "crc32c_fused.inc"
#endif
