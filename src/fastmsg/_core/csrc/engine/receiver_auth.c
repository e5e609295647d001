/* A receiver's side of shared-key authentication (docs/protocol.md, "Authentication"): the
 * HELLO names a key and brings the sender's nonce; the receiver answers CHALLENGE (its nonce and
 * its proof), and admits the connection only once the sender's AUTH proves the key over both
 * nonces. Until then nothing of the session is touched: an unproven HELLO cannot take over a
 * sender's session. A peer with a key this side lacks, or without one this side needs, is
 * refused with the reason, never served in clear. */
#include <string.h>

#include "engine/receiver_internal.h"

static const fm_auth_key *find_key(const fm_receiver_config *cfg, uint64_t id) {
    for (uint32_t i = 0; i < cfg->nkeys; i++)
        if (cfg->keys[i].id == id) return &cfg->keys[i];
    return NULL;
}

static int key_allowed(const fm_receiver_config *cfg, uint64_t id) {
    if (!cfg->nallowed_keys) return 1;
    for (uint32_t i = 0; i < cfg->nallowed_keys; i++)
        if (cfg->allowed_keys[i] == id) return 1;
    return 0;
}

int fm_rxconn_auth_hello(fm_rxconn *c, const uint8_t *f, const fastmsg_hello *h) {
    const fm_receiver_config *cfg = &c->rx->cfg;
    uint64_t key_id;
    int found = fastmsg_auth_ext_find(f, h->ext_len, &key_id, c->nonce_s);
    if (found < 0) return fm_rxconn_refuse(c, -found);
    if (!cfg->nkeys) {
        if (found || h->capabilities & FASTMSG_CAP_AUTH)
            return fm_rxconn_refuse_why(c, FASTMSG_PERR_AUTH, "the sender has a secret, this receiver has none");
        return fm_rxconn_admit(c, h);
    }
    if (!found || !(h->capabilities & FASTMSG_CAP_AUTH))
        return fm_rxconn_refuse_why(c, FASTMSG_PERR_AUTH, "this receiver requires a secret, the sender has none");
    const fm_auth_key *key = find_key(cfg, key_id);
    if (!key) return fm_rxconn_refuse_why(c, FASTMSG_PERR_AUTH, "unknown key id");
    if (!key_allowed(cfg, key_id)) return fm_rxconn_refuse_why(c, FASTMSG_PERR_NOT_ALLOWED, "key id not allowed");
    uint8_t proof[FASTMSG_AUTH_PROOF];
    if (fastmsg_auth_nonce(c->nonce_r) ||
        fastmsg_auth_proof(proof, key->bytes, key->len, FASTMSG_PROOF_RECEIVER, h->session_id, key_id, c->nonce_s,
                           c->nonce_r))
        return fm_rxconn_refuse_why(c, FASTMSG_PERR_AUTH, "no random nonce or MAC on the receiver");
    c->auth_hello = *h;
    c->auth_key = key;
    c->auth_wait = 1;
    uint8_t frame[FASTMSG_FRAME_HDR + FASTMSG_CHALLENGE_BODY];
    fm_rxconn_queue_out(c, frame, fastmsg_encode_challenge(frame, c->nonce_r, proof));
    return fm_rxconn_flush_out(c);
}

int fm_rxconn_auth_proof(fm_rxconn *c, const uint8_t *f, size_t size) {
    const uint8_t *proof;
    int rc = fastmsg_decode_auth(f, size, &proof);
    if (rc) return fm_rxconn_refuse(c, rc);
    const fm_auth_key *key = c->auth_key;
    if (!fastmsg_auth_verify(proof, key->bytes, key->len, FASTMSG_PROOF_SENDER, c->auth_hello.session_id, key->id,
                             c->nonce_s, c->nonce_r))
        return fm_rxconn_refuse_why(c, FASTMSG_PERR_AUTH, "wrong key (the sender's proof does not match)");
    c->auth_wait = 0;
    return fm_rxconn_admit(c, &c->auth_hello);
}
