/* Weighted rendezvous (highest-random-weight) hashing: a key's ranking of the members, the first
 * up member of it, and the same over an array of 64-bit keys.
 *
 * Per (key, member) a 64-bit score hash s = fold((H(key) ^ A) * B), where H(key) is SipHash-1-3
 * of the key's bytes, A and B SipHash-1-3 of the member's id (8 bytes little-endian and the tag
 * "member\0\0" or "member\0\1"; B made odd), all under the router's key, and fold() xors the two
 * halves of the 128-bit product (mix.h). Each member scores with its own multiplier, in one
 * multiply per member; a key's hashes for two members tie with probability 2^-64 (the lower index
 * then ranks first). Weighted: u = s as a variate in (0, 1) and
 * score = -w / ln(u), the best being the largest; it is computed as the smallest cost
 * -ln(u) / w (unitlog.h, deterministic) and ties go to the larger s. With all weights equal the
 * order is that of s alone, so the table skips the logarithm (inv_weight NULL); a member set uses
 * one rule or the other for every key, decided by its weights only (never by health). */
#ifndef FASTMSG_ROUTE_RENDEZVOUS_H
#define FASTMSG_ROUTE_RENDEZVOUS_H

#include <stddef.h>
#include <stdint.h>

#include "route/siphash.h"

typedef struct {
    uint64_t a, b; /* a member's score hash is fold((H(key) ^ a) * b) */
} fm_rdv_member;

typedef struct {
    fm_sipkey key;              /* the router's SipHash key */
    const fm_rdv_member *member; /* per member */
    const double *inv_weight;   /* 1 / w per member; NULL when all weights are equal */
    const uint8_t *up;          /* health per member */
    size_t n;
    int all_up;                 /* every member is up: the common case skips the health test */
} fm_rdv_table;

typedef struct {
    double cost; /* -ln(u) / w; 0 on the unweighted path */
    uint64_t s;  /* the score hash */
    int32_t index;
} fm_rdv_score;

/* The scoring constants of a member id. */
fm_rdv_member fm_rdv_member_of(fm_sipkey key, uint64_t id);

static inline uint64_t fm_rdv_key_hash(const fm_rdv_table *t, const void *key, size_t len) {
    return fm_siphash13(t->key, key, len);
}

/* The first up member in the ranking of the key whose hash is `kh`; -1 if none is up. */
int32_t fm_rdv_route(const fm_rdv_table *t, uint64_t kh);

/* The full ranking, best first, into out[0..n); `scratch` holds n scores. */
void fm_rdv_rank(const fm_rdv_table *t, uint64_t kh, fm_rdv_score *scratch, int32_t *out);

/* fm_rdv_route for each key of keys[0..count), each taken as its 8 little-endian bytes. */
void fm_rdv_route_u64(const fm_rdv_table *t, const uint64_t *keys, size_t count, int32_t *out);

#endif
