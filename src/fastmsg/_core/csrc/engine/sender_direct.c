/* The direct write: after a pause, the Python thread that published a message writes it itself
 * (without the GIL), sparing the hand-off to the I/O thread, which is most of a small message's
 * latency. It holds the connection's token meanwhile, touches no poller state, and leaves a full
 * socket or an error as a flag for the I/O thread to act on.
 *
 * The direct read: a thread waiting for the replies to the only requests in flight (its own) reads
 * the socket itself for a while, sparing the I/O thread's wake-up and the futex hand-off after it;
 * an event loop does the same through a copy of the socket's descriptor it watches (lend_fd). */
#define _GNU_SOURCE
#include <errno.h>

#include "base/futex.h"
#include "engine/sender_internal.h"

/* How long a requester reads for itself before it leaves the socket to the I/O thread (which it
 * keeps from writing for others meanwhile: short against a heartbeat, long against a round trip). */
#define DIRECT_READ_NS (2 * FM_MS)
/* How long after a direct read the socket stays out of the I/O thread's poller (unread): as a
 * receiver's lease (receiver_direct.c), and for the same reason. */
#define LEASE_NS (50 * FM_MS)
/* Tries at the token before a requester leaves the reply to the I/O thread. */
#define TAKE_TRIES 4
/* A requester's read that waits (may_wait_in_read) sleeps for the socket's timeout, which the
 * kernel counts in its ticks: a 2 ms one slept 4-12 ms on a 250 Hz kernel. So a wait sleeps in
 * the read only while the replies come quickly (the last one within QUICK_REPLY_NS), for a slow
 * one to hold the token that long once at most, and only for a request whose own deadline is
 * WAIT_SLACK_NS away or more; it polls otherwise. */
#define QUICK_REPLY_NS (1 * FM_MS)
#define WAIT_SLACK_NS (40 * FM_MS)

/* The write, once the token is held (`now`: as fm_sender_write_out's). */
static int write_held(fm_sender *s, int64_t now) {
    int rc = FM_OUT_FULL;
    if (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT) && !s->direct_err && !s->direct_full) {
        rc = fm_sender_write_out(s, now);
        if (rc == FM_OUT_FULL) s->direct_full = 1;
        else if (rc < 0) s->direct_err = -rc;
    }
    return rc;
}

int fm_sender_write_direct(fm_sender *s) {
    if (!__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE) || !fm_token_take(&s->token)) return 0;
    int rc = write_held(s, -1);
    fm_token_give(&s->token);
    if (__atomic_exchange_n(&s->missed, 0, __ATOMIC_SEQ_CST)) fm_ctx_kick(s->ctx);
    return rc == FM_OUT_IDLE;
}

/* The token, if the I/O thread gives it back within a few yields: it holds it for one round of
 * its loop, and a requester that left the reply to it would make it spin a while after (loop.c),
 * taking the token at every round. */
static int take_soon(fm_sender *s) {
    for (int i = 0; i < TAKE_TRIES; i++) {
        if (fm_token_take(&s->token)) return 1;
        fm_yield();
    }
    return 0;
}

/* 1 if this wait may sleep in the read itself (token held, leased; `waits`: the rules above
 * allow it): the socket's reads then block, until the lease ends (fm_sender_end_lease). Why: a
 * poll() with a 2 ms timeout programs the CPU's timer each time it sleeps (due before the next
 * tick), which on the virtual machines measured cost a tenth of one-CPU round trips half their
 * time again; a read's timeout rides the kernel's tick. */
static int may_wait_in_read(fm_sender *s, int waits) {
    if (!waits || s->tls || s->rbig || s->fd_waits < 0) return 0;
    if (!s->fd_waits) s->fd_waits = fastmsg_set_read_wait(s->fd, DIRECT_READ_NS) == 0 ? 1 : -1;
    return s->fd_waits > 0;
}

/* Waits for the socket to be readable until `until`: 1, 0, -errno, or 2 when the wait is to be
 * the read's (may_wait_in_read). First, until *look_end, it looks without sleeping
 * (busy_poll.h), and a crowded CPU ends the looking for the rest of the wait. */
static int wait_readable(fm_sender *s, int64_t now, int64_t until, int64_t *look_end, int waits) {
    if (now < *look_end) {
        for (;;) {
            int rc = fastmsg_wait_readable(s->fd, 0);
            if (rc != 0) return rc;
            if (fastmsg_monotonic_ns() >= *look_end) break;
            if (!fm_busy_poll_yield(&s->busy)) {
                *look_end = 0;
                break;
            }
        }
        now = fastmsg_monotonic_ns();
        if (now >= until) return 0;
    }
    if (may_wait_in_read(s, waits)) return 2;
    return fastmsg_wait_readable(s->fd, until - now);
}

/* Reads until r's reply is here, `until` passes, or the connection fails (token held, the socket
 * muted in the I/O thread's poller). What waits to be written goes first: the request itself,
 * when the I/O thread was to write it, messages queued meanwhile, a PONG owed (with the RACK owed,
 * if any; alone, a RACK waits for the next write, with the next request or the I/O thread's).
 * *now: the time, from the caller's reading on, read again wherever the wait may have slept (and
 * no more: a clock read costs 25-30 ns on a virtual machine, and a round trip made some 17). */
static int read_until(fm_sender *s, fm_request *r, int64_t *now, int64_t until, int64_t *look_end, int waits) {
    for (;;) {
        if (s->hb.out_len || __atomic_load_n(&s->io.ctl->tail, __ATOMIC_ACQUIRE) != s->io.rpos) write_held(s, *now);
        if (fm_request_ready(r)) return FASTMSG_WAIT_READY;
        if (*now >= until) return FASTMSG_WAIT_TIMEOUT;
        int rc = s->tls_unread ? 1 : wait_readable(s, *now, until, look_end, waits);
        if (rc == 2) { /* the wait is the read's */
            rc = fm_sender_read_frames_wait(s, now);
        } else { /* (wait_readable's poll may have slept) */
            *now = fastmsg_monotonic_ns();
            if (rc == 1) {
                fm_sender_read_frames(s, *now);
                rc = 0;
            }
        }
        if (rc == -EINTR) return FASTMSG_WAIT_INTERRUPTED;
        if (rc < 0) return FASTMSG_WAIT_TIMEOUT; /* (the I/O thread meets the same failure) */
        if (s->fd < 0) return FASTMSG_WAIT_TIMEOUT; /* failed: the I/O thread reconnects */
    }
}

/* read_until from `start` (now), looking first or not as busy_poll decides once for the wait (a
 * reply awaited is an exchange), and how long the reply took for its adaptive mode; *end: the
 * time it ended. */
static int read_held(fm_sender *s, fm_request *r, int64_t start, int64_t until, int waits, int64_t *end) {
    int64_t looking = fm_busy_poll_end(&s->busy, start, until, 1);
    *end = start;
    int rc = read_until(s, r, end, until, &looking, waits);
    if (rc != FASTMSG_WAIT_INTERRUPTED && until > start) { /* (a slice already over teaches nothing) */
        int64_t took = rc == FASTMSG_WAIT_READY ? *end - start : INT64_MAX;
        fm_busy_poll_learn(&s->busy, took);
        s->reply_quick = took < QUICK_REPLY_NS;
    }
    return rc;
}

void fm_sender_end_lease(fm_sender *s) {
    if (s->fd_waits > 0 && s->fd >= 0) fastmsg_set_read_wait(s->fd, 0); /* (the I/O thread's poller reads it) */
    s->fd_waits = 0;
    __atomic_store_n(&s->lent, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->lease_revoked, 0, __ATOMIC_SEQ_CST);
    if (s->fd >= 0 && !s->muted) fm_sender_unpark(s);
}

void fm_sender_unpark(fm_sender *s) {
    int rc = fastmsg_poller_unpark(s->ctx->poller, s->fd, s->interest);
    if (rc && !s->direct_err) {
        s->direct_err = -rc;
        s->direct_err_poller = 1;
        fm_ctx_kick(s->ctx);
    }
}

void fm_sender_revoke_lease(fm_sender *s) {
    if (!__atomic_load_n(&s->lent, __ATOMIC_SEQ_CST)) return;
    __atomic_store_n(&s->lease_revoked, 1, __ATOMIC_SEQ_CST);
    fm_ctx_kick(s->ctx);
}

/* Starts (or renews) a lease on the socket for this thread (token held, READY) from `now`: the socket
 * leaves the I/O thread's poller until the lease ends (parked: its wake-ups, one a reply, then
 * call into no poller). 1 if the lease is new (kick the I/O thread, so that it wakes for its end). */
static int lease(fm_sender *s, int64_t now) {
    int fresh = !s->lent;
    if (fresh && !s->muted) fastmsg_poller_park(s->ctx->poller, s->fd);
    __atomic_store_n(&s->lent, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&s->lease_end_ns, now + LEASE_NS, __ATOMIC_RELAXED);
    return fresh;
}

/* 1 if this connection may be read by another thread than the I/O thread now (token held). */
static int lendable(const fm_sender *s) {
    return s->state == FM_S_READY && s->fd >= 0 && !s->direct_err && !s->direct_full && !(s->interest & FASTMSG_POLL_OUT);
}

/* Gives the token back, kicking the I/O thread if it asked, or must act. */
static void give(fm_sender *s, int kick) {
    kick |= s->fd < 0 || s->direct_err || s->direct_full;
    fm_token_give(&s->token);
    if (__atomic_exchange_n(&s->missed, 0, __ATOMIC_SEQ_CST) || kick) fm_ctx_kick(s->ctx);
}

int fm_sender_lend_fd(fm_sender *s, uint64_t *conn) {
    if (!__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE) || !take_soon(s)) return -EAGAIN;
    int fd = -EAGAIN, fresh = 0;
    if (lendable(s)) {
        fd = fastmsg_dup(s->fd);
        if (fd >= 0) {
            s->lent_dup = 1;
            *conn = s->conn_number;
            fresh = lease(s, fastmsg_monotonic_ns());
        }
    }
    give(s, fresh);
    return fd;
}

int fm_sender_read_lent(fm_sender *s, uint64_t conn) {
    /* (The loop would call again at once, as the socket stays readable: on one CPU, a spin that
     * leaves the holder preempted until the next tick.) */
    if (!take_soon(s)) return 0;
    if (s->conn_number != conn || s->fd < 0) {
        give(s, 0);
        return -1;
    }
    int fresh = 0;
    if (lendable(s)) {
        int64_t now = fastmsg_monotonic_ns();
        s->loop_reading = 1;
        fm_sender_read_frames(s, now);
        s->loop_reading = 0;
        if (s->fd >= 0 && (s->hb.out_len || __atomic_load_n(&s->io.ctl->tail, __ATOMIC_ACQUIRE) != s->io.rpos))
            write_held(s, now);
        if (lendable(s)) fresh = lease(s, now);
    }
    int gone = s->conn_number != conn || s->fd < 0;
    give(s, fresh);
    return gone ? -1 : 1;
}

/* The reply is left to the I/O thread: it must write the request first, if asked to. */
static int wait_on_io(fm_sender *s, fm_request *r, int64_t deadline_ns, int unwritten) {
    if (unwritten) fm_ctx_kick(s->ctx);
    return fm_request_wait(r, deadline_ns);
}

int fm_request_wait_direct(fm_sender *s, fm_request *r, uint32_t own, int64_t deadline_ns, int unwritten) {
    if (fm_request_ready(r)) return FASTMSG_WAIT_READY;
    /* Others' requests in flight: their threads wait on futexes that the I/O thread (or this one)
     * wakes, and this one would keep the I/O thread from writing theirs. */
    if (__atomic_load_n(&s->requests.n, __ATOMIC_RELAXED) != own || !__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE))
        return wait_on_io(s, r, deadline_ns, unwritten);
    if (!take_soon(s)) {
        /* The I/O thread holds the token (preempted, on a crowded CPU): the reply is left to it,
         * and it would not see the socket until a lease this thread took for an earlier reply
         * ran out. */
        fm_sender_revoke_lease(s);
        return wait_on_io(s, r, deadline_ns, unwritten);
    }
    int rc = FASTMSG_WAIT_TIMEOUT, leased = 0, reads = lendable(s);
    if (reads) { /* (read_until writes what waits first, the request among it) */
        int64_t now = fastmsg_monotonic_ns(), until = now + DIRECT_READ_NS;
        if (deadline_ns >= 0 && deadline_ns < until) until = deadline_ns;
        /* The I/O thread's poller would wake it for the reply too (level-triggered): the socket
         * leaves it, on a lease that each such read renews, so that a run of requests costs no
         * poller change each. The I/O thread takes it back at the lease's end (sender_conn.c):
         * told of a new lease by a kick, it wakes for its end. */
        leased = lease(s, now);
        int64_t end;
        rc = read_held(s, r, now, until, s->reply_quick && (deadline_ns < 0 || deadline_ns - now >= WAIT_SLACK_NS), &end);
        __atomic_store_n(&s->lease_end_ns, end + LEASE_NS, __ATOMIC_RELAXED);
        /* No reply yet (it is left to the I/O thread), or another request waits for its own:
         * the I/O thread must watch the socket now. */
        if (s->fd >= 0 && (rc != FASTMSG_WAIT_READY || __atomic_load_n(&s->lease_revoked, __ATOMIC_SEQ_CST) ||
                           __atomic_load_n(&s->requests.n, __ATOMIC_RELAXED) != own)) {
            fm_sender_end_lease(s);
            leased = 0;
        }
    }
    give(s, leased || (unwritten && !reads)); /* (not lendable: nor writable from here) */
    if (rc != FASTMSG_WAIT_TIMEOUT) return rc;
    return fm_request_wait(r, deadline_ns);
}
