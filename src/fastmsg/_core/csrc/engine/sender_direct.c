/* The direct write: after a pause, the Python thread that published a message writes it itself
 * (without the GIL), sparing the hand-off to the I/O thread, which is most of a small message's
 * latency. It holds the connection's token meanwhile, touches no poller state, and leaves a full
 * socket or an error as a flag for the I/O thread to act on. */
#include "engine/sender_internal.h"

int fm_sender_write_direct(fm_sender *s) {
    if (!__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE) || !fm_token_take(&s->token)) return 0;
    int rc = FM_OUT_FULL;
    if (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT) && !s->direct_err && !s->direct_full) {
        rc = fm_sender_write_out(s);
        if (rc == FM_OUT_FULL) s->direct_full = 1;
        else if (rc < 0) s->direct_err = -rc;
    }
    fm_token_give(&s->token);
    if (__atomic_exchange_n(&s->missed, 0, __ATOMIC_SEQ_CST)) fm_ctx_kick(s->ctx);
    return rc == FM_OUT_IDLE;
}
