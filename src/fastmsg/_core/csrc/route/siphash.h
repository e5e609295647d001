/* SipHash (Aumasson and Bernstein), the keyed hash behind routing: a key's position among the
 * members cannot be predicted, so an untrusted key cannot be aimed at one member, without the
 * 128-bit key. Routing uses SipHash-1-3 (one compression round, three finalisation rounds): it
 * is the variant CPython hashes with, and about twice as fast as -2-4 on short keys. */
#ifndef FASTMSG_ROUTE_SIPHASH_H
#define FASTMSG_ROUTE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

typedef struct {
    uint64_t k0, k1; /* the 16 key bytes, read little-endian */
} fm_sipkey;

static inline fm_sipkey fm_sipkey_from_bytes(const uint8_t key[16]) {
    fm_sipkey k = {fastmsg_load_le64(key), fastmsg_load_le64(key + 8)};
    return k;
}

typedef struct {
    uint64_t v0, v1, v2, v3;
} fm_sipstate;

static inline uint64_t fm_rotl64(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline void fm_sipround(fm_sipstate *s) {
    s->v0 += s->v1; s->v1 = fm_rotl64(s->v1, 13); s->v1 ^= s->v0; s->v0 = fm_rotl64(s->v0, 32);
    s->v2 += s->v3; s->v3 = fm_rotl64(s->v3, 16); s->v3 ^= s->v2;
    s->v0 += s->v3; s->v3 = fm_rotl64(s->v3, 21); s->v3 ^= s->v0;
    s->v2 += s->v1; s->v1 = fm_rotl64(s->v1, 17); s->v1 ^= s->v2; s->v2 = fm_rotl64(s->v2, 32);
}

static inline fm_sipstate fm_sip_init(fm_sipkey k) {
    /* "somepseudorandomlygeneratedbytes", the constants of the SipHash specification */
    fm_sipstate s = {k.k0 ^ 0x736f6d6570736575ull, k.k1 ^ 0x646f72616e646f6dull,
                     k.k0 ^ 0x6c7967656e657261ull, k.k1 ^ 0x7465646279746573ull};
    return s;
}

static inline void fm_sip_absorb(fm_sipstate *s, uint64_t m, int c_rounds) {
    s->v3 ^= m;
    for (int i = 0; i < c_rounds; i++) fm_sipround(s);
    s->v0 ^= m;
}

static inline uint64_t fm_sip_finish(fm_sipstate *s, int d_rounds) {
    s->v2 ^= 0xff;
    for (int i = 0; i < d_rounds; i++) fm_sipround(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* SipHash-c-d of `len` bytes; inlined with constant rounds where it is hot. */
static inline uint64_t fm_siphash_cd(fm_sipkey k, const void *data, size_t len, int c, int d) {
    const uint8_t *p = (const uint8_t *)data;
    fm_sipstate s = fm_sip_init(k);
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) fm_sip_absorb(&s, fastmsg_load_le64(p + i), c);
    /* The last word: the remaining bytes, little-endian, with len mod 256 in the top byte. */
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < (len & 7); i++) last |= (uint64_t)p[whole + i] << (8 * i);
    fm_sip_absorb(&s, last, c);
    return fm_sip_finish(&s, d);
}

static inline uint64_t fm_siphash13(fm_sipkey k, const void *data, size_t len) {
    return fm_siphash_cd(k, data, len, 1, 3);
}

/* SipHash-1-3 of the 8 little-endian bytes of v: the same value as fm_siphash13 over them. */
static inline uint64_t fm_siphash13_u64(fm_sipkey k, uint64_t v) {
    fm_sipstate s = fm_sip_init(k);
    fm_sip_absorb(&s, v, 1);
    fm_sip_absorb(&s, (uint64_t)8 << 56, 1);
    return fm_sip_finish(&s, 3);
}

/* Any number of rounds, for the test vectors (which are for SipHash-2-4). */
uint64_t fm_siphash(const uint8_t key[16], const void *data, size_t len, int c_rounds, int d_rounds);

/* The 16-byte key of a seed: the seed itself if it is 16 bytes long, else two SipHash-1-3 values
 * of it under the fixed keys 0 and 1, so that a seed of any length keys the same way everywhere. */
void fm_sipkey_from_seed(const uint8_t *seed, size_t len, uint8_t key_out[16]);

#endif
