/* Writing a sender's frames: the frame in progress with one sendmsg per try, then, once the
 * handshake is done, batch after batch until the ring is empty or the socket full. */
#include <errno.h>

#include "engine/sender_internal.h"

/* Sets up the next write once READY: the control frames owed (a RACK, PONGs and PINGs), then the
 * next DATA batch, in one writev, so that a RACK owed costs neither a system call of its own nor
 * the receiver a wake-up. 0 if there is nothing to write. */
static int next_frames(fm_sender *s) {
    if (s->state != FM_S_READY) return 0;
    if (s->rack_due) fm_sender_queue_rack(s);
    size_t ctl = s->hb.out_len ? fm_sender_hb_take(s) : 0; /* heartbeat hook */
    int data = fm_sender_take_batch(s);
    if (!ctl) return data;
    if (data) memmove(s->iov + 1, s->iov, (size_t)s->iovcnt * sizeof *s->iov);
    s->iov[0] = (struct iovec){s->hb.wire, ctl};
    s->iovcnt = data ? s->iovcnt + 1 : 1;
    fm_sender_start_frame(s, data);
    return 1;
}

/* The time, read once at most per fm_sender_write_out: the caller's reading, if it had one. */
static int64_t time_of(int64_t *now) {
    if (*now < 0) *now = fastmsg_monotonic_ns();
    return *now;
}

static int write_frames(fm_sender *s, int64_t *now) {
    for (;;) {
        if (!s->frame_left && !next_frames(s)) { /* (TLS may hold bytes it took but has not written) */
            int rc = fm_io_flush(s->tls);
            return rc == -EAGAIN ? FM_OUT_FULL : rc ? rc : FM_OUT_IDLE;
        }
        struct iovec *iov = s->iov;
        int n = s->iovcnt;
        while (n && iov->iov_len == 0) iov++, n--;
        ptrdiff_t w = fm_io_writev(s->fd, s->tls, iov, n);
        FM_STAT_ADD(s, FM_WRITE_CALLS, 1);
        if (w == -EAGAIN) return FM_OUT_FULL;
        if (w < 0) return (int)w;
        s->hb.wrote = 1; /* heartbeat hook */
        s->frame_left -= (size_t)w;
        for (size_t left = (size_t)w; left;) { /* advance the iovecs past what was written */
            size_t take = left < iov->iov_len ? left : iov->iov_len;
            iov->iov_base = (uint8_t *)iov->iov_base + take;
            iov->iov_len -= take;
            left -= take;
            if (!iov->iov_len) iov++;
        }
        if (!s->frame_left && s->frame_is_data) fm_sender_batch_done(s, time_of(now));
    }
}

int fm_sender_write_out(fm_sender *s, int64_t now) {
    int rc = write_frames(s, &now);
    /* heartbeat hook: what was written is traffic, so the next PING waits an interval from now */
    if (s->hb.wrote) {
        s->hb.wrote = 0;
        fm_hb_sent(&s->hb.t, time_of(&now));
    }
    return rc;
}
