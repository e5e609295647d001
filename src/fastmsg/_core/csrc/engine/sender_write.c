/* Writing a sender's frames: the frame in progress with one sendmsg per try, then, once the
 * handshake is done, batch after batch until the ring is empty or the socket full. */
#include <errno.h>

#include "engine/sender_internal.h"

int fm_sender_write_out(fm_sender *s) {
    for (;;) {
        if (!s->frame_left && (s->state != FM_S_READY || !fm_sender_take_batch(s))) return FM_OUT_IDLE;
        struct iovec *iov = s->iov;
        int n = s->iovcnt;
        while (n && iov->iov_len == 0) iov++, n--;
        ptrdiff_t w = fastmsg_writev(s->fd, iov, n);
        FM_STAT_ADD(s, FM_WRITE_CALLS, 1);
        if (w == -EAGAIN) return FM_OUT_FULL;
        if (w < 0) return (int)w;
        s->frame_left -= (size_t)w;
        for (size_t left = (size_t)w; left;) { /* advance the iovecs past what was written */
            size_t take = left < iov->iov_len ? left : iov->iov_len;
            iov->iov_base = (uint8_t *)iov->iov_base + take;
            iov->iov_len -= take;
            left -= take;
            if (!iov->iov_len) iov++;
        }
        if (!s->frame_left && s->frame_is_data) fm_sender_batch_done(s);
    }
}
