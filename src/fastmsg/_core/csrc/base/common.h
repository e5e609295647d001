/* Portable helpers shared by the native core: target attributes, unaligned little-endian loads
 * and stores. */
#ifndef FASTMSG_COMMON_H
#define FASTMSG_COMMON_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#define FASTMSG_X86_64 1
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define FASTMSG_AARCH64 1
#endif

/* Enable an instruction set for one function only, so a wheel built for a baseline CPU can still
 * carry the faster kernels and choose among them at run time. MSVC needs no flag for intrinsics. */
#if defined(__GNUC__) || defined(__clang__)
#define FASTMSG_TARGET(isa) __attribute__((target(isa)))
#else
#define FASTMSG_TARGET(isa)
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FASTMSG_BIG_ENDIAN 1
#endif

static inline uint64_t fastmsg_load_le64(const void *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
#ifdef FASTMSG_BIG_ENDIAN
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t fastmsg_load_le32(const void *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
#ifdef FASTMSG_BIG_ENDIAN
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline void fastmsg_store_le32(void *p, uint32_t v) {
#ifdef FASTMSG_BIG_ENDIAN
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, sizeof v);
}

static inline void fastmsg_store_le64(void *p, uint64_t v) {
#ifdef FASTMSG_BIG_ENDIAN
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

#endif
