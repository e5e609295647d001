/* Shared-key authentication in the handshake (docs/protocol.md, "Authentication").
 *
 *   HELLO extension 1 (AUTH)  0 type = 1 (4)   4 length = 40 (4)   8 key_id (8)   16 sender nonce (32)
 *   CHALLENGE body            0 crc32c (4)   4 reserved, 0 (4)   8 receiver nonce (32)   40 receiver proof (32)
 *   AUTH body                 0 crc32c (4)   4 reserved, 0 (4)   8 sender proof (32)
 *
 * A proof is HMAC-SHA-256(key, label || session_id || key_id || sender nonce || receiver nonce),
 * the integers little-endian, the label 16 bytes naming who proves: the two proofs can never be
 * swapped, and each covers both nonces, so neither side can replay a proof it saw. */
#ifndef FASTMSG_AUTH_H
#define FASTMSG_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define FASTMSG_AUTH_NONCE 32u
#define FASTMSG_AUTH_PROOF 32u
#define FASTMSG_AUTH_EXT_TYPE 1u
#define FASTMSG_AUTH_EXT_LEN 48u       /* the whole extension: type, length, key id, nonce */
#define FASTMSG_CHALLENGE_BODY 72u
#define FASTMSG_AUTH_BODY 40u
#define FASTMSG_AUTH_KEY_MAX 64u       /* longest key kept (HMAC hashes longer ones anyway) */
#define FASTMSG_AUTH_MAC_INPUT (16u + 8u + 8u + 2u * FASTMSG_AUTH_NONCE)

/* Who proves: the receiver in CHALLENGE, the sender in AUTH. */
enum { FASTMSG_PROOF_RECEIVER = 0, FASTMSG_PROOF_SENDER = 1 };

/* The AUTH extension of a HELLO. */
void fastmsg_auth_ext_put(uint8_t out[FASTMSG_AUTH_EXT_LEN], uint64_t key_id, const uint8_t nonce[FASTMSG_AUTH_NONCE]);
/* Looks for the AUTH extension in a decoded HELLO (`frame`, with `ext_len` extension bytes): 1 and
 * its fields, 0 if there is none, or a negative FASTMSG_PERR_MALFORMED if the extensions do not
 * walk to their end. */
int fastmsg_auth_ext_find(const uint8_t *frame, uint32_t ext_len, uint64_t *key_id, uint8_t nonce[FASTMSG_AUTH_NONCE]);

size_t fastmsg_encode_challenge(uint8_t out[8 + FASTMSG_CHALLENGE_BODY], const uint8_t nonce[FASTMSG_AUTH_NONCE],
                                const uint8_t proof[FASTMSG_AUTH_PROOF]);
size_t fastmsg_encode_auth(uint8_t out[8 + FASTMSG_AUTH_BODY], const uint8_t proof[FASTMSG_AUTH_PROOF]);
/* Decoders: the CRC and reserved word checked; pointers into the frame. */
int fastmsg_decode_challenge(const uint8_t *frame, size_t size, const uint8_t **nonce, const uint8_t **proof);
int fastmsg_decode_auth(const uint8_t *frame, size_t size, const uint8_t **proof);

/* The bytes a proof covers (written once here, so both sides and the tests agree). */
void fastmsg_auth_mac_input(uint8_t out[FASTMSG_AUTH_MAC_INPUT], int who, uint64_t session_id, uint64_t key_id,
                            const uint8_t nonce_s[FASTMSG_AUTH_NONCE], const uint8_t nonce_r[FASTMSG_AUTH_NONCE]);

/* ---- auth_mac.c: libcrypto ---- */

/* A nonce from the system's CSPRNG: 0, or -1 if it failed (then nobody is authenticated). */
int fastmsg_auth_nonce(uint8_t out[FASTMSG_AUTH_NONCE]);
/* The proof of `who`; 0, or -1 if the MAC could not be computed. */
int fastmsg_auth_proof(uint8_t out[FASTMSG_AUTH_PROOF], const uint8_t *key, size_t key_len, int who,
                       uint64_t session_id, uint64_t key_id, const uint8_t nonce_s[FASTMSG_AUTH_NONCE],
                       const uint8_t nonce_r[FASTMSG_AUTH_NONCE]);
/* 1 if `got` is the proof expected, compared in constant time. */
int fastmsg_auth_verify(const uint8_t got[FASTMSG_AUTH_PROOF], const uint8_t *key, size_t key_len, int who,
                        uint64_t session_id, uint64_t key_id, const uint8_t nonce_s[FASTMSG_AUTH_NONCE],
                        const uint8_t nonce_r[FASTMSG_AUTH_NONCE]);

#endif
