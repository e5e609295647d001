/* Portable CRC32C: slicing-by-8 tables, plus the GF(2) arithmetic the other kernels share. */
#include "crc32c/crc32c.h"
#include "base/common.h"

static uint32_t table[8][256];
fastmsg_crc32c_shift_table fastmsg_crc32c_shift_long, fastmsg_crc32c_shift_short;
struct fastmsg_crc32c_fold_constants fastmsg_crc32c_fold;

/* a * b mod P, both reflected. */
static uint32_t mulmod(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int i = 0; i < 32; i++) {
        if (a & 0x80000000u) product ^= b;
        a <<= 1;
        b = (b >> 1) ^ ((b & 1) ? FASTMSG_CRC32C_POLY : 0);
    }
    return product;
}

uint32_t fastmsg_crc32c_xpow(uint64_t n) {
    /* Square-and-multiply over the bits of n; x^1 is 0x40000000 reflected. */
    uint32_t result = 0x80000000u, power = 0x40000000u;
    while (n) {
        if (n & 1) result = mulmod(result, power);
        power = mulmod(power, power);
        n >>= 1;
    }
    return result;
}

uint32_t fastmsg_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b) {
    /* The standard CRC of A || B is crc(A) advanced over len(B) zero bytes, xor crc(B); the
     * inversions cancel. Advancing is multiplication by x^(8 len). */
    if (len_b == 0) return crc_a;
    return mulmod(crc_a, fastmsg_crc32c_xpow(len_b * 8)) ^ crc_b;
}

void fastmsg_crc32c_shift_table_init(fastmsg_crc32c_shift_table *tab, size_t len) {
    uint32_t x = fastmsg_crc32c_xpow((uint64_t)len * 8);
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) tab->t[k][b] = mulmod(b << (8 * k), x);
}

/* A reflected 64-bit operand with x^m mod P in its low 32 bits stands for x^(m+32). A lane's low
 * half L stands for L * x^64 and pclmulqdq's product carries one extra factor x, so moving the
 * lane over d bits needs L * x^(31+d) and H * x^(d-33). */
static fastmsg_crc32c_fold_k fold_constant(uint64_t distance_bytes) {
    uint64_t d = distance_bytes * 8;
    fastmsg_crc32c_fold_k k = {fastmsg_crc32c_xpow(31 + d), fastmsg_crc32c_xpow(d - 33)};
    return k;
}

void fastmsg_crc32c_portable_init(void) {
    fastmsg_crc32c_fold.by16 = fold_constant(16);
    fastmsg_crc32c_fold.by32 = fold_constant(32);
    fastmsg_crc32c_fold.by64 = fold_constant(64);
    fastmsg_crc32c_fold.by128 = fold_constant(128);
    fastmsg_crc32c_fold.by192 = fold_constant(192);
    fastmsg_crc32c_fold.by256 = fold_constant(256);
    /* A raw CRC c times x^(8n-33), reduced by the crc32 instruction (which multiplies by x^32
     * and pclmulqdq's extra x), is c advanced over n zero bytes. */
    fastmsg_crc32c_fold.fused_small_stream =
        fastmsg_crc32c_xpow(8 * FASTMSG_CRC32C_FUSED_SMALL_STEPS * FASTMSG_CRC32C_FUSED_STREAM_STEP - 33);
    fastmsg_crc32c_fold.fused_big_stream =
        fastmsg_crc32c_xpow(8 * FASTMSG_CRC32C_FUSED_BIG_STEPS * FASTMSG_CRC32C_FUSED_STREAM_STEP - 33);
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int i = 0; i < 8; i++) c = (c >> 1) ^ ((c & 1) ? FASTMSG_CRC32C_POLY : 0);
        table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int k = 1; k < 8; k++) table[k][b] = (table[k - 1][b] >> 8) ^ table[0][table[k - 1][b] & 0xff];
    fastmsg_crc32c_shift_table_init(&fastmsg_crc32c_shift_long, FASTMSG_CRC32C_LONG);
    fastmsg_crc32c_shift_table_init(&fastmsg_crc32c_shift_short, FASTMSG_CRC32C_SHORT);
}

uint32_t fastmsg_crc32c_portable(uint32_t crc, const uint8_t *p, size_t len) {
    while (len >= 8) {
        uint32_t lo = fastmsg_load_le32(p) ^ crc, hi = fastmsg_load_le32(p + 4);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
              table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
              table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return crc;
}
