/* A sender's side of shared-key authentication (docs/protocol.md, "Authentication"): its HELLO
 * names the key and brings a fresh nonce; the receiver's CHALLENGE must prove the same key over
 * both nonces before the sender proves it back (AUTH). A sender with a secret never sends DATA
 * to a receiver that did not prove the key. */
#include <string.h>

#include "engine/sender_internal.h"

int fm_sender_auth_ext(fm_sender *s, uint8_t ext[FASTMSG_AUTH_EXT_LEN]) {
    s->auth_proved = 0;
    if (!s->cfg.key.len) return 0;
    if (fastmsg_auth_nonce(s->auth_nonce)) return -1;
    fastmsg_auth_ext_put(ext, s->cfg.key.id, s->auth_nonce);
    return FASTMSG_AUTH_EXT_LEN;
}

const char *fm_sender_auth_challenge(fm_sender *s, const uint8_t *f, size_t size, int *code) {
    const fm_auth_key *k = &s->cfg.key;
    const uint8_t *nonce_r, *proof;
    int rc = fastmsg_decode_challenge(f, size, &nonce_r, &proof);
    if (rc) {
        *code = rc;
        return fastmsg_proto_strerror(rc);
    }
    *code = FASTMSG_PERR_AUTH;
    if (!k->len) return "the receiver requires a secret, this sender has none";
    if (s->auth_proved) return "a second CHALLENGE";
    if (!fastmsg_auth_verify(proof, k->bytes, k->len, FASTMSG_PROOF_RECEIVER, s->cfg.session_id, k->id,
                             s->auth_nonce, nonce_r))
        return "wrong key (the receiver's proof does not match)";
    uint8_t mine[FASTMSG_AUTH_PROOF];
    if (fastmsg_auth_proof(mine, k->bytes, k->len, FASTMSG_PROOF_SENDER, s->cfg.session_id, k->id, s->auth_nonce,
                           nonce_r))
        return "no MAC on the sender";
    s->iov[0] = (struct iovec){s->hello, fastmsg_encode_auth(s->hello, mine)};
    s->iovcnt = 1;
    fm_sender_start_frame(s, 0);
    s->auth_proved = 1;
    return NULL;
}
