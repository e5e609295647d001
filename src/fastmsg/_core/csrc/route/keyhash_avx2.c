/* keyhash.h, AVX2: four SipHash-1-3 states side by side, one key per 64-bit lane. A rotation by
 * 16 or 32 bits is one byte or dword shuffle; the others are two shifts and an or. */
#include "route/keyhash.h"

#include "base/common.h"

#if defined(FASTMSG_X86_64)
#include <immintrin.h>

#define ROTL(x, b) _mm256_or_si256(_mm256_slli_epi64(x, b), _mm256_srli_epi64(x, 64 - (b)))

FASTMSG_TARGET("avx2") static inline void sipround4(__m256i v[4], __m256i rot16) {
    v[0] = _mm256_add_epi64(v[0], v[1]);
    v[1] = _mm256_xor_si256(ROTL(v[1], 13), v[0]);
    v[0] = _mm256_shuffle_epi32(v[0], _MM_SHUFFLE(2, 3, 0, 1));
    v[2] = _mm256_add_epi64(v[2], v[3]);
    v[3] = _mm256_xor_si256(_mm256_shuffle_epi8(v[3], rot16), v[2]);
    v[0] = _mm256_add_epi64(v[0], v[3]);
    v[3] = _mm256_xor_si256(ROTL(v[3], 21), v[0]);
    v[2] = _mm256_add_epi64(v[2], v[1]);
    v[1] = _mm256_xor_si256(ROTL(v[1], 17), v[2]);
    v[2] = _mm256_shuffle_epi32(v[2], _MM_SHUFFLE(2, 3, 0, 1));
}

FASTMSG_TARGET("avx2") void fm_keyhash_avx2(fm_sipkey key, const uint64_t *keys, size_t count, uint64_t *out) {
    /* Rotating a 64-bit lane left by 16 bits moves each byte up two places. */
    const __m256i rot16 = _mm256_setr_epi8(6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13,
                                           6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13);
    const fm_sipstate s = fm_sip_init(key);
    const __m256i init[4] = {_mm256_set1_epi64x((long long)s.v0), _mm256_set1_epi64x((long long)s.v1),
                             _mm256_set1_epi64x((long long)s.v2), _mm256_set1_epi64x((long long)s.v3)};
    const __m256i length = _mm256_set1_epi64x((long long)((uint64_t)8 << 56)), ff = _mm256_set1_epi64x(0xff);
    size_t i = 0;
#ifdef FASTMSG_BIG_ENDIAN
#error "the AVX2 kernel loads keys as little-endian lanes"
#endif
    for (; i + 4 <= count; i += 4) {
        __m256i m = _mm256_loadu_si256((const __m256i *)(keys + i));
        __m256i v[4] = {init[0], init[1], init[2], _mm256_xor_si256(init[3], m)};
        sipround4(v, rot16); /* the key's word */
        v[0] = _mm256_xor_si256(v[0], m);
        v[3] = _mm256_xor_si256(v[3], length);
        sipround4(v, rot16); /* the length word */
        v[0] = _mm256_xor_si256(v[0], length);
        v[2] = _mm256_xor_si256(v[2], ff);
        sipround4(v, rot16); /* finalisation */
        sipround4(v, rot16);
        sipround4(v, rot16);
        __m256i h = _mm256_xor_si256(_mm256_xor_si256(v[0], v[1]), _mm256_xor_si256(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(out + i), h);
    }
    fm_keyhash_portable(key, keys + i, count - i, out + i);
}
#endif
