/* x86-64: VPCLMULQDQ folding on ymm registers, run side by side with three crc32-instruction
 * streams. The two use different execution units, so together they move about twice the bytes
 * per cycle that either does alone. */
#include "crc32c.h"

#if defined(__x86_64__) || defined(_M_X64)
#include "crc32c_fold.h"

#define YMM_TARGET FASTMSG_TARGET("sse4.2,pclmul,avx2,vpclmulqdq")

/* A fused chunk is laid out as [folded part][stream 1][stream 2][stream 3]; each step folds
 * FOLD_REGS ymm registers and feeds STREAM_STEP bytes to each stream. */
#define FOLD_REGS FASTMSG_CRC32C_FUSED_FOLD_REGS
#define STREAMS 3
#define STREAM_STEP FASTMSG_CRC32C_FUSED_STREAM_STEP
#define FOLD_STEP (FOLD_REGS * 32)
#define CHUNK_STEP (FOLD_STEP + STREAMS * STREAM_STEP)
#define BIG_STEPS FASTMSG_CRC32C_FUSED_BIG_STEPS
#define SMALL_STEPS FASTMSG_CRC32C_FUSED_SMALL_STEPS
/* Below this a plain eight-register fold beats the xmm kernel. */
#define YMM_FOLD_MIN_LEN 1024

YMM_TARGET static inline __m256i fold256_k(fastmsg_crc32c_fold_k k) {
    return _mm256_set_epi64x((long long)k.hi, (long long)k.lo, (long long)k.hi, (long long)k.lo);
}

YMM_TARGET static inline __m256i fold256(__m256i y, __m256i k) {
    return _mm256_xor_si256(_mm256_clmulepi64_epi128(y, k, 0x00), _mm256_clmulepi64_epi128(y, k, 0x11));
}

YMM_TARGET static inline __m256i load256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Reduces n ymm registers, covering consecutive 32-byte blocks, to the raw CRC of their data. */
YMM_TARGET static inline uint32_t ymm_to_crc(const __m256i *y, int n) {
    const __m256i k32 = fold256_k(fastmsg_crc32c_fold.by32);
    __m256i acc = y[0];
    for (int i = 1; i < n; i++) acc = _mm256_xor_si256(fold256(acc, k32), y[i]);
    /* The low lane precedes the high one by 16 bytes. */
    const __m128i k16 = fold128_k(fastmsg_crc32c_fold.by16);
    __m128i x = _mm_xor_si128(fold128(_mm256_castsi256_si128(acc), k16), _mm256_extracti128_si256(acc, 1));
    return fold128_finish(x, NULL, 0);
}

/* Advances a raw CRC over the zero bytes that `k` was made for. */
YMM_TARGET static inline uint32_t shift_crc(uint32_t crc, uint64_t k) {
    __m128i product = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)crc), _mm_cvtsi64_si128((long long)k), 0x00);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(product));
}

YMM_TARGET static uint32_t fused_chunk(uint32_t crc, const uint8_t *p, size_t steps, uint64_t stream_shift) {
    const __m256i k = fold256_k(fastmsg_crc32c_fold.fused_step);
    const size_t stream_len = steps * STREAM_STEP;
    const uint8_t *s = p + steps * FOLD_STEP;
    uint64_t c0 = 0, c1 = 0, c2 = 0;
    __m256i y[FOLD_REGS];
    for (int i = 0; i < FOLD_REGS; i++) y[i] = load256(p + 32 * i);
    y[0] = _mm256_xor_si256(y[0], _mm256_set_epi64x(0, 0, 0, (long long)crc));
    for (size_t step = 0;;) {
        for (int j = 0; j < STREAM_STEP; j += 8) {
            c0 = _mm_crc32_u64(c0, fastmsg_load_le64(s + j));
            c1 = _mm_crc32_u64(c1, fastmsg_load_le64(s + stream_len + j));
            c2 = _mm_crc32_u64(c2, fastmsg_load_le64(s + 2 * stream_len + j));
        }
        s += STREAM_STEP;
        if (++step == steps) break;
        p += FOLD_STEP;
        for (int i = 0; i < FOLD_REGS; i++) y[i] = _mm256_xor_si256(fold256(y[i], k), load256(p + 32 * i));
    }
    crc = ymm_to_crc(y, FOLD_REGS);
    crc = shift_crc(crc, stream_shift) ^ (uint32_t)c0;
    crc = shift_crc(crc, stream_shift) ^ (uint32_t)c1;
    return shift_crc(crc, stream_shift) ^ (uint32_t)c2;
}

/* Eight registers of plain folding, for what is left after the fused chunks. */
YMM_TARGET static uint32_t ymm_fold(uint32_t crc, const uint8_t *p, size_t len) {
    const __m256i k256 = fold256_k(fastmsg_crc32c_fold.by256), k32 = fold256_k(fastmsg_crc32c_fold.by32);
    __m256i y[8];
    for (int i = 0; i < 8; i++) y[i] = load256(p + 32 * i);
    y[0] = _mm256_xor_si256(y[0], _mm256_set_epi64x(0, 0, 0, (long long)crc));
    for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
        for (int i = 0; i < 8; i++) y[i] = _mm256_xor_si256(fold256(y[i], k256), load256(p + 32 * i));
    }
    __m256i acc = y[0];
    for (int i = 1; i < 8; i++) acc = _mm256_xor_si256(fold256(acc, k32), y[i]);
    for (; len >= 32; p += 32, len -= 32) acc = _mm256_xor_si256(fold256(acc, k32), load256(p));
    const __m128i k16 = fold128_k(fastmsg_crc32c_fold.by16);
    __m128i x = _mm_xor_si128(fold128(_mm256_castsi256_si128(acc), k16), _mm256_extracti128_si256(acc, 1));
    return fold128_finish(x, p, len);
}

YMM_TARGET uint32_t fastmsg_crc32c_vpclmul(uint32_t crc, const uint8_t *p, size_t len) {
    for (; len >= BIG_STEPS * CHUNK_STEP; p += BIG_STEPS * CHUNK_STEP, len -= BIG_STEPS * CHUNK_STEP)
        crc = fused_chunk(crc, p, BIG_STEPS, fastmsg_crc32c_fold.fused_big_stream);
    for (; len >= SMALL_STEPS * CHUNK_STEP; p += SMALL_STEPS * CHUNK_STEP, len -= SMALL_STEPS * CHUNK_STEP)
        crc = fused_chunk(crc, p, SMALL_STEPS, fastmsg_crc32c_fold.fused_small_stream);
    if (len >= YMM_FOLD_MIN_LEN) return ymm_fold(crc, p, len);
    return fastmsg_crc32c_pclmul(crc, p, len);
}
#endif
