/* wire/auth.h's proofs for a self-test that uses no keys, linked where no libcrypto for the target
 * is at hand (Windows under wine): every call fails, as it would with a broken libcrypto. */
#include "wire/auth.h"

int fastmsg_auth_nonce(uint8_t out[FASTMSG_AUTH_NONCE]) {
    (void)out;
    return -1;
}

int fastmsg_auth_proof(uint8_t out[FASTMSG_AUTH_PROOF], const uint8_t *key, size_t key_len, int who,
                       uint64_t session_id, uint64_t key_id, const uint8_t nonce_s[FASTMSG_AUTH_NONCE],
                       const uint8_t nonce_r[FASTMSG_AUTH_NONCE]) {
    (void)out, (void)key, (void)key_len, (void)who, (void)session_id, (void)key_id, (void)nonce_s, (void)nonce_r;
    return -1;
}

int fastmsg_auth_verify(const uint8_t got[FASTMSG_AUTH_PROOF], const uint8_t *key, size_t key_len, int who,
                        uint64_t session_id, uint64_t key_id, const uint8_t nonce_s[FASTMSG_AUTH_NONCE],
                        const uint8_t nonce_r[FASTMSG_AUTH_NONCE]) {
    (void)got, (void)key, (void)key_len, (void)who, (void)session_id, (void)key_id, (void)nonce_s, (void)nonce_r;
    return 0;
}
