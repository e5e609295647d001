/* siphash.h: the out-of-line entry points (tests, seeds); the hot paths are inline there. */
#include "route/siphash.h"

uint64_t fm_siphash(const uint8_t key[16], const void *data, size_t len, int c_rounds, int d_rounds) {
    return fm_siphash_cd(fm_sipkey_from_bytes(key), data, len, c_rounds, d_rounds);
}

void fm_sipkey_from_seed(const uint8_t *seed, size_t len, uint8_t key_out[16]) {
    if (len == 16) {
        memcpy(key_out, seed, 16);
        return;
    }
    fm_sipkey zero = {0, 0}, one = {1, 0};
    fastmsg_store_le64(key_out, fm_siphash13(zero, seed, len));
    fastmsg_store_le64(key_out + 8, fm_siphash13(one, seed, len));
}
