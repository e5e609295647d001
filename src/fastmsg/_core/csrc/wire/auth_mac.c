/* The proofs of wire/auth.h with OpenSSL's libcrypto: HMAC-SHA-256, a constant-time comparison,
 * nonces from its CSPRNG (seeded by the kernel). No cryptography is written here. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "wire/auth.h"

int fastmsg_auth_nonce(uint8_t out[FASTMSG_AUTH_NONCE]) {
    return RAND_bytes(out, FASTMSG_AUTH_NONCE) == 1 ? 0 : -1;
}

int fastmsg_auth_proof(uint8_t out[FASTMSG_AUTH_PROOF], const uint8_t *key, size_t key_len, int who,
                       uint64_t session_id, uint64_t key_id, const uint8_t nonce_s[FASTMSG_AUTH_NONCE],
                       const uint8_t nonce_r[FASTMSG_AUTH_NONCE]) {
    uint8_t msg[FASTMSG_AUTH_MAC_INPUT];
    unsigned int n = 0;
    fastmsg_auth_mac_input(msg, who, session_id, key_id, nonce_s, nonce_r);
    if (!HMAC(EVP_sha256(), key, (int)key_len, msg, sizeof msg, out, &n) || n != FASTMSG_AUTH_PROOF) return -1;
    return 0;
}

int fastmsg_auth_verify(const uint8_t got[FASTMSG_AUTH_PROOF], const uint8_t *key, size_t key_len, int who,
                        uint64_t session_id, uint64_t key_id, const uint8_t nonce_s[FASTMSG_AUTH_NONCE],
                        const uint8_t nonce_r[FASTMSG_AUTH_NONCE]) {
    uint8_t want[FASTMSG_AUTH_PROOF];
    if (fastmsg_auth_proof(want, key, key_len, who, session_id, key_id, nonce_s, nonce_r)) return 0;
    int ok = CRYPTO_memcmp(want, got, FASTMSG_AUTH_PROOF) == 0;
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}
