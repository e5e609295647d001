/* CRC32C (Castagnoli): the checksum on every byte fastmsg moves.
 *
 * Public entry points take and return the standard CRC value (pre- and post-inverted), so that
 * fastmsg_crc32c(fastmsg_crc32c(0, a), b) == fastmsg_crc32c(0, a || b). Kernels work on the raw
 * register instead (no inversion) and share one signature; the dispatcher picks one at init. */
#ifndef FASTMSG_CRC32C_H
#define FASTMSG_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Reflected Castagnoli polynomial 0x1EDC6F41. */
#define FASTMSG_CRC32C_POLY 0x82F63B78u

typedef uint32_t (*fastmsg_crc32c_kernel)(uint32_t raw, const uint8_t *data, size_t len);

/* Builds tables, probes the CPU and selects the fastest kernel. Idempotent; call before use. */
void fastmsg_crc32c_init(void);

/* Forces a kernel by name. Returns 0, -1 for an unknown name, -2 if this CPU cannot run it. */
int fastmsg_crc32c_select(const char *name);

/* The selected kernel's name. */
const char *fastmsg_crc32c_name(void);

/* Kernels compiled into this build, in order of preference; NULL-terminated. */
const char *const *fastmsg_crc32c_kernel_names(void);

/* A compiled kernel that this CPU can run, or NULL. */
fastmsg_crc32c_kernel fastmsg_crc32c_kernel_by_name(const char *name);

/* Stream lengths of the three-way kernels. */
#define FASTMSG_CRC32C_LONG 4096
#define FASTMSG_CRC32C_SHORT 256

/* The selected kernel, and its loop for inputs shorter than FASTMSG_CRC32C_SHORT_INPUT (where
 * the kernel itself would only fall through to that loop); set by init/select. A round trip of
 * small messages makes some nine short CRCs on each side, and the kernels' entry checks cost
 * more than the bytes. */
extern fastmsg_crc32c_kernel fastmsg_crc32c_active, fastmsg_crc32c_active_short;
#define FASTMSG_CRC32C_SHORT_INPUT (3 * FASTMSG_CRC32C_SHORT)

static inline uint32_t fastmsg_crc32c(uint32_t crc, const void *data, size_t len) {
    fastmsg_crc32c_kernel k = len < FASTMSG_CRC32C_SHORT_INPUT ? fastmsg_crc32c_active_short : fastmsg_crc32c_active;
    return ~k(~crc, (const uint8_t *)data, len);
}

/* CRC of A || B from crc(A), crc(B) and len(B), in O(log len_b). */
uint32_t fastmsg_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* --- Shared by the kernels (crc32c_portable.c) --- */

/* x^n mod P in the reflected representation (bit 31 is x^0). */
uint32_t fastmsg_crc32c_xpow(uint64_t n);

/* Tables that advance a raw CRC over `len` zero bytes with four lookups. */
typedef struct {
    uint32_t t[4][256];
} fastmsg_crc32c_shift_table;

void fastmsg_crc32c_shift_table_init(fastmsg_crc32c_shift_table *tab, size_t len);

static inline uint32_t fastmsg_crc32c_shift(const fastmsg_crc32c_shift_table *tab, uint32_t crc) {
    return tab->t[0][crc & 0xff] ^ tab->t[1][(crc >> 8) & 0xff] ^ tab->t[2][(crc >> 16) & 0xff] ^
           tab->t[3][crc >> 24];
}

/* The tables that merge the three-way kernels' streams (lengths above). */
extern fastmsg_crc32c_shift_table fastmsg_crc32c_shift_long, fastmsg_crc32c_shift_short;

/* Carry-less multiplication folding moves a 128-bit lane forward over `distance` bits of data:
 * the lane's low 64 bits are multiplied by `lo`, its high 64 bits by `hi`, and the two products
 * xored. Set by init for the distances the folding kernels use. */
typedef struct {
    uint64_t lo, hi;
} fastmsg_crc32c_fold_k;

extern struct fastmsg_crc32c_fold_constants {
    fastmsg_crc32c_fold_k by16, by32, by64, by128, by192, by256; /* distances in bytes */
    /* Multipliers that advance a raw CRC over one stream of a small or a big fused chunk. */
    uint64_t fused_small_stream, fused_big_stream;
} fastmsg_crc32c_fold;

/* Chunks of the fused kernels (crc32c_fused.inc): each step feeds STREAM_STEP bytes to each of
 * three crc32-instruction streams while vector registers fold the rest. */
#define FASTMSG_CRC32C_FUSED_STREAM_STEP 64
#define FASTMSG_CRC32C_FUSED_SMALL_STEPS 8
#define FASTMSG_CRC32C_FUSED_BIG_STEPS 64

/* Kernels: raw register in, raw register out. */
uint32_t fastmsg_crc32c_portable(uint32_t raw, const uint8_t *data, size_t len);
void fastmsg_crc32c_portable_init(void);
#if defined(__x86_64__) || defined(_M_X64)
uint32_t fastmsg_crc32c_sse42(uint32_t raw, const uint8_t *data, size_t len);
uint32_t fastmsg_crc32c_sse42_short(uint32_t raw, const uint8_t *data, size_t len); /* one stream */
uint32_t fastmsg_crc32c_pclmul(uint32_t raw, const uint8_t *data, size_t len);
uint32_t fastmsg_crc32c_vpclmul(uint32_t raw, const uint8_t *data, size_t len);
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
uint32_t fastmsg_crc32c_armv8(uint32_t raw, const uint8_t *data, size_t len);
uint32_t fastmsg_crc32c_armv8_short(uint32_t raw, const uint8_t *data, size_t len); /* one stream */
#endif

#endif
