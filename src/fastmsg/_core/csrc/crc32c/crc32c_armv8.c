/* AArch64: three streams of the ARMv8 CRC32C instructions. */
#include "crc32c/crc32c.h"
#include "base/common.h"

#if defined(FASTMSG_AARCH64)
#include <arm_acle.h>

#if defined(_MSC_VER) && !defined(__clang__)
#define CRC3_TARGET
#elif defined(__clang__)
#define CRC3_TARGET __attribute__((target("crc")))
#else
#define CRC3_TARGET __attribute__((target("+crc")))
#endif
#define CRC3_NAME fastmsg_crc32c_armv8
#define CRC3_U64(c, v) __crc32cd((uint32_t)(c), (v))
#define CRC3_U8(c, b) __crc32cb((c), (b))
#include "crc32c_3way.inc"
#endif
