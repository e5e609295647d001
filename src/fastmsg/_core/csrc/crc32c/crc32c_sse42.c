/* x86-64: three streams of the SSE4.2 crc32 instruction. */
#include "crc32c/crc32c.h"
#include "base/common.h"

#if defined(FASTMSG_X86_64)
#include <nmmintrin.h>

#define CRC3_NAME fastmsg_crc32c_sse42
#define CRC3_TARGET FASTMSG_TARGET("sse4.2,crc32")
#define CRC3_U64(c, v) _mm_crc32_u64((c), (v))
#define CRC3_U8(c, b) _mm_crc32_u8((c), (b))
#include "crc32c_3way.inc"
#endif
