/* x86-64 with PCLMULQDQ: xmm folding fused with crc32-instruction streams from 2.5 KiB, the
 * three-stream crc32 kernel below that. Plain xmm folding ran at half the speed of three crc32
 * streams on the Zen 4 this was measured on, and at best equals them elsewhere, so it is not used
 * on its own. */
#include "crc32c/crc32c.h"

#if defined(__x86_64__) || defined(_M_X64)
#include "crc32c/crc32c_fold.h"

#define FUSED_NAME fastmsg_crc32c_pclmul
#define FUSED_TARGET FOLD128_TARGET
#define FUSED_VEC __m128i
#define FUSED_VEC_BYTES 16
#define FUSED_REGS 8
#define FUSED_STEP_K fastmsg_crc32c_fold.by128
#define FUSED_LOAD(p) _mm_loadu_si128((const __m128i *)(p))
#define FUSED_XOR(a, b) _mm_xor_si128((a), (b))
#define FUSED_FOLD(v, k) fold128((v), (k))
#define FUSED_K(fk) fold128_k(fk)
#define FUSED_SEED(crc) _mm_cvtsi32_si128((int)(crc))
#define FUSED_REDUCE(regs, n) fold128_reduce((regs), (n))
#define FUSED_TAIL(crc, p, len) fastmsg_crc32c_sse42((crc), (p), (len))
#include "crc32c_fused.inc"
#endif
