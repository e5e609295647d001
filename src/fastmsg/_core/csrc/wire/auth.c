/* The authentication frames and HELLO extension (layouts: wire/auth.h). No cryptography here:
 * the proofs are auth_mac.c's. */
#include "wire/auth.h"

#include <string.h>

#include "base/common.h"
#include "wire/protocol.h"

/* 16 bytes each are used; the 17th holds the literal's NUL (a 16-byte array without it is a
 * warning in newer compilers). */
static const char label[2][17] = {"fastmsg receiver", "fastmsg sender\0\0"};

void fastmsg_auth_ext_put(uint8_t out[FASTMSG_AUTH_EXT_LEN], uint64_t key_id, const uint8_t nonce[FASTMSG_AUTH_NONCE]) {
    fastmsg_store_le32(out, FASTMSG_AUTH_EXT_TYPE);
    fastmsg_store_le32(out + 4, FASTMSG_AUTH_EXT_LEN - 8);
    fastmsg_store_le64(out + 8, key_id);
    memcpy(out + 16, nonce, FASTMSG_AUTH_NONCE);
}

int fastmsg_auth_ext_find(const uint8_t *frame, uint32_t ext_len, uint64_t *key_id, uint8_t nonce[FASTMSG_AUTH_NONCE]) {
    const uint8_t *p = frame + FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY;
    int found = 0;
    for (uint32_t at = 0; at < ext_len;) {
        if (ext_len - at < 8) return -FASTMSG_PERR_MALFORMED;
        uint32_t type = fastmsg_load_le32(p + at), len = fastmsg_load_le32(p + at + 4);
        if (len % 8 || len > ext_len - at - 8) return -FASTMSG_PERR_MALFORMED;
        if (type == FASTMSG_AUTH_EXT_TYPE) {
            if (len != FASTMSG_AUTH_EXT_LEN - 8 || found) return -FASTMSG_PERR_MALFORMED;
            *key_id = fastmsg_load_le64(p + at + 8);
            memcpy(nonce, p + at + 16, FASTMSG_AUTH_NONCE);
            found = 1;
        }
        at += 8 + len; /* other types: skipped, as the extensions of a later version */
    }
    return found;
}

size_t fastmsg_encode_challenge(uint8_t out[8 + FASTMSG_CHALLENGE_BODY], const uint8_t nonce[FASTMSG_AUTH_NONCE],
                                const uint8_t proof[FASTMSG_AUTH_PROOF]) {
    fastmsg_rec_put_hdr(out, FASTMSG_CHALLENGE_BODY, FASTMSG_CHALLENGE);
    fastmsg_store_le64(out + 8, 0); /* the CRC, then the reserved word */
    memcpy(out + 16, nonce, FASTMSG_AUTH_NONCE);
    memcpy(out + 16 + FASTMSG_AUTH_NONCE, proof, FASTMSG_AUTH_PROOF);
    fastmsg_seal_fixed(out);
    return FASTMSG_FRAME_HDR + FASTMSG_CHALLENGE_BODY;
}

size_t fastmsg_encode_auth(uint8_t out[8 + FASTMSG_AUTH_BODY], const uint8_t proof[FASTMSG_AUTH_PROOF]) {
    fastmsg_rec_put_hdr(out, FASTMSG_AUTH_BODY, FASTMSG_AUTH);
    fastmsg_store_le64(out + 8, 0);
    memcpy(out + 16, proof, FASTMSG_AUTH_PROOF);
    fastmsg_seal_fixed(out);
    return FASTMSG_FRAME_HDR + FASTMSG_AUTH_BODY;
}

int fastmsg_decode_challenge(const uint8_t *frame, size_t size, const uint8_t **nonce, const uint8_t **proof) {
    int rc = fastmsg_decode_fixed(frame, size, FASTMSG_CHALLENGE, FASTMSG_CHALLENGE_BODY);
    if (rc) return rc;
    *nonce = frame + 16;
    *proof = frame + 16 + FASTMSG_AUTH_NONCE;
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_auth(const uint8_t *frame, size_t size, const uint8_t **proof) {
    int rc = fastmsg_decode_fixed(frame, size, FASTMSG_AUTH, FASTMSG_AUTH_BODY);
    if (rc) return rc;
    *proof = frame + 16;
    return FASTMSG_PERR_OK;
}

void fastmsg_auth_mac_input(uint8_t out[FASTMSG_AUTH_MAC_INPUT], int who, uint64_t session_id, uint64_t key_id,
                            const uint8_t nonce_s[FASTMSG_AUTH_NONCE], const uint8_t nonce_r[FASTMSG_AUTH_NONCE]) {
    memcpy(out, label[who == FASTMSG_PROOF_SENDER], 16);
    fastmsg_store_le64(out + 16, session_id);
    fastmsg_store_le64(out + 24, key_id);
    memcpy(out + 32, nonce_s, FASTMSG_AUTH_NONCE);
    memcpy(out + 32 + FASTMSG_AUTH_NONCE, nonce_r, FASTMSG_AUTH_NONCE);
}
