/* A sender's connection, run by the I/O thread: connect and reconnect with backoff, HELLO and
 * WELCOME, the frames the receiver sends back (control frames, and REPLY frames, which
 * sender_reply.c checks and hands over), and the loop's operations on a sender.
 * Heartbeats are sender_heartbeat.c's, called from the hooks marked here. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sender_internal.h"

#define BACKOFF_MIN_NS (10 * FM_MS)
#define BACKOFF_MAX_NS (1000 * FM_MS)
/* Reads per event: the receiver sends little (WELCOME, ERROR), so this only bounds a flood. */
#define READ_ROUNDS 16

/* What the I/O thread's poller watches: the interest, unless the socket is muted or lent. A socket
 * the I/O thread must write (POLL_OUT) is never lent: that ends a lease. */
static void set_interest(fm_sender *s, uint32_t ev) {
    if (s->fd < 0) return;
    if (ev & FASTMSG_POLL_OUT && s->lent) {
        s->interest = ev;
        fm_sender_end_lease(s);
        return;
    }
    if (ev == s->interest) return;
    s->interest = ev;
    if (!s->muted && !s->lent) fastmsg_poller_modify(s->ctx->poller, s->fd, ev, &s->ep);
}

static void disconnect(fm_sender *s, int64_t now) {
    if (s->fd >= 0) {
        fastmsg_poller_remove(s->ctx->poller, s->fd);
        if (s->lent_dup) fastmsg_shutdown(s->fd); /* (its copy in an event loop would keep it open) */
        s->lent_dup = 0;
        fastmsg_close(s->fd);
        FM_STAT_ADD(s, FM_DISCONNECTS, 1);
    }
    fm_tls_free(s->tls);
    s->tls = NULL;
    s->fd = -1;
    s->fd_waits = 0;
    s->interest = 0;
    __atomic_store_n(&s->lent, 0, __ATOMIC_SEQ_CST);
    s->state = FM_S_IDLE;
    __atomic_store_n(&s->connected, 0, __ATOMIC_RELEASE);
    /* Everything not acknowledged (a batch cut short included) goes again after the handshake. */
    fm_sender_rewind(s);
    s->frame_left = 0;
    s->frame_is_data = 0;
    s->in_len = 0;
    free(s->rbig); /* a REPLY cut short: the receiver resends it after the next HELLO */
    s->rbig = NULL;
    /* heartbeat hook: the wait grows with jitter, so senders cut off together spread out */
    s->backoff_ns = fm_backoff_next(&s->hb.rng, s->backoff_ns, BACKOFF_MIN_NS, BACKOFF_MAX_NS);
    s->next_attempt_ns = now + s->backoff_ns;
}

/* The connection failed: its reason in last_error, then its counter (`stat`, or -1: none), so
 * that whoever sees a count go up reads why; then it is dropped (and retried). */
static void fail_counted(fm_sender *s, int64_t now, int stat, const char *fmt, const char *detail) {
    fm_sender_set_error(s, fmt, detail);
    if (stat >= 0) FM_STAT_ADD(s, stat, 1);
    disconnect(s, now);
}

static void fail(fm_sender *s, int64_t now, const char *fmt, const char *detail) {
    fail_counted(s, now, -1, fmt, detail);
}

/* A read or write that failed with -err: TLS's own reason for a TLS error, counted (a record that
 * failed its check; or, before WELCOME, the receiver refusing this side's certificate, as TLS 1.3
 * lets a client finish its handshake first). */
static void fail_io(fm_sender *s, int64_t now, const char *what, int err) {
    if (err == EPROTO && s->tls) {
        fail_counted(s, now, FM_TLS_FAILURES, "%s", fm_tls_error(s->tls));
        return;
    }
    char fmt[64];
    snprintf(fmt, sizeof fmt, "%s failed: %%s", what);
    fail(s, now, fmt, strerror(err));
}

/* A protocol error in what the receiver sent: counted (a CRC mismatch as crc_errors), said with an
 * ERROR where no frame of ours is half written (one try: the socket closes next), and the
 * connection dropped; the sender reconnects and resends from its first unacknowledged message. */
static void refuse_why(fm_sender *s, int64_t now, int code, const char *why, const char *fmt, const char *detail) {
    if (!s->frame_left) {
        char text[FASTMSG_ERROR_MAX_TEXT];
        snprintf(text, sizeof text, why ? "%s: %s" : "%s", fastmsg_proto_strerror(code), why);
        uint8_t frame[FASTMSG_ERROR_FRAME_MAX];
        struct iovec iov = {frame, fastmsg_encode_error(frame, (uint32_t)code, text, strlen(text))};
        if (fm_io_writev(s->fd, s->tls, &iov, 1) > 0) fm_io_flush(s->tls);
    }
    fail_counted(s, now, code == FASTMSG_PERR_CRC ? FM_CRC_ERRORS : code == FASTMSG_PERR_AUTH ? FM_AUTH_FAILURES : FM_PROTOCOL_ERRORS,
                 fmt, detail);
}

static void refuse(fm_sender *s, int64_t now, int code, const char *fmt, const char *detail) {
    refuse_why(s, now, code, NULL, fmt, detail);
}

static void start_connect(fm_sender *s, int64_t now) {
    int fd = fastmsg_connect_start((const struct sockaddr *)&s->addr, s->addrlen);
    if (fd < 0) {
        fail(s, now, "connect failed: %s", strerror(-fd));
        return;
    }
    s->fd = fd;
    s->conn_number++;
    s->interest = FASTMSG_POLL_OUT;
    if (fastmsg_poller_add(s->ctx->poller, fd, s->interest, &s->ep) != 0) {
        fail(s, now, "cannot poll the socket%s", "");
        return;
    }
    s->state = FM_S_CONNECTING;
    s->handshake_deadline_ns = now + s->handshake_timeout_ns;
}

static int send_hello(fm_sender *s) {
    fastmsg_hello h = {FASTMSG_PROTO_MAJOR, FASTMSG_PROTO_MINOR, 0, s->cfg.session_id, s->next_seq,
                       s->cfg.max_message, s->cfg.max_batch, 0, 0,
                       s->cfg.ring_capacity < UINT32_MAX ? (uint32_t)s->cfg.ring_capacity : UINT32_MAX,
                       s->reply_seq};
    h.capabilities |= FASTMSG_CAP_REPLIES;
    s->rack_due = 0; /* the HELLO's reply_seq says it */
    fm_sender_hb_hello(s, &h); /* heartbeat hook: CAP_HEARTBEAT, heartbeat_ms, keepalive */
    uint8_t ext[FASTMSG_AUTH_EXT_LEN];
    int ext_len = fm_sender_auth_ext(s, ext); /* authentication hook */
    if (ext_len < 0) return -1;
    if (ext_len) h.capabilities |= FASTMSG_CAP_AUTH;
    size_t n = fastmsg_encode_hello_ext(s->hello, FASTMSG_HELLO, &h, ext, (uint32_t)ext_len);
    s->iov[0] = (struct iovec){s->hello, n};
    s->iovcnt = 1;
    fm_sender_start_frame(s, 0);
    s->state = FM_S_HANDSHAKE;
    return 0;
}

/* The I/O thread's writer: fm_sender_write_out, then the poll interest or the failure that
 * follows. Messages it writes are stamped with the loop's time (a send that finds them all
 * written measures its pause from there: fm_sender_written_ns). */
static void pump(fm_sender *s, int64_t now) {
    if (__atomic_load_n(&s->io.ctl->tail, __ATOMIC_ACQUIRE) != s->io.rpos) __atomic_store_n(&s->written_ns, now, __ATOMIC_RELAXED);
    int rc = fm_sender_write_out(s, -1); /* (`now` is the round's: its RTT samples want the write's own time) */
    if (rc == FM_OUT_IDLE) set_interest(s, FASTMSG_POLL_IN);
    else if (rc == FM_OUT_FULL) set_interest(s, FASTMSG_POLL_IN | FASTMSG_POLL_OUT);
    else fail_io(s, now, "write", -rc);
}

static void handle_frame(fm_sender *s, const uint8_t *f, size_t size, uint32_t kind, int64_t now) {
    if (kind == FASTMSG_CHALLENGE && s->state == FM_S_HANDSHAKE && !s->frame_left) {
        int code;
        const char *why = fm_sender_auth_challenge(s, f, size, &code);
        if (why) refuse_why(s, now, code, why, "authentication failed: %s", why);
        else pump(s, now); /* AUTH: WELCOME follows once the receiver checked it */
        return;
    }
    if (kind == FASTMSG_WELCOME && s->state == FM_S_HANDSHAKE && !s->frame_left && s->cfg.key.len &&
        !s->auth_proved) { /* a receiver without a secret: nothing goes in clear */
        static const char why[] = "the receiver has no secret (it did not prove the key)";
        refuse_why(s, now, FASTMSG_PERR_AUTH, why, "authentication failed: %s", why);
        return;
    }
    if (kind == FASTMSG_WELCOME && s->state == FM_S_HANDSHAKE && !s->frame_left) {
        fastmsg_hello w;
        int rc = fastmsg_decode_hello(f, size, &w);
        if (rc || w.session_id != s->cfg.session_id) {
            const char *why = rc ? fastmsg_proto_strerror(rc) : "wrong session";
            refuse(s, now, rc ? rc : FASTMSG_PERR_MALFORMED, "bad WELCOME: %s", why);
            return;
        }
        if (fm_sender_apply_ack(s, w.seq) != 0) {
            refuse(s, now, FASTMSG_PERR_MALFORMED, "receiver resumes past what was sent%s", "");
            return;
        }
        __atomic_store_n(&s->peer_max_message, w.max_message, __ATOMIC_RELEASE);
        s->peer_max_batch = w.max_batch < s->cfg.max_batch ? w.max_batch : s->cfg.max_batch;
        s->state = FM_S_READY;
        s->backoff_ns = BACKOFF_MIN_NS;
        FM_STAT_ADD(s, FM_CONNECTS, 1);
        __atomic_store_n(&s->connected, 1, __ATOMIC_RELEASE);
        return;
    }
    if (kind == FASTMSG_REPLY) {
        int rc = s->state == FM_S_READY ? fm_sender_handle_reply(s, f, size) : FASTMSG_PERR_BAD_KIND;
        if (rc) refuse(s, now, rc, "bad REPLY from the receiver: %s", fastmsg_proto_strerror(rc));
        return;
    }
    if (kind == FASTMSG_ERROR) {
        uint32_t code, tlen;
        const uint8_t *text;
        char msg[FASTMSG_ERROR_MAX_TEXT + 1];
        int rc = fastmsg_decode_error(f, size, &code, &text, &tlen);
        if (rc) {
            refuse(s, now, rc, "receiver sent a bad ERROR: %s", fastmsg_proto_strerror(rc));
            return;
        }
        memcpy(msg, text, tlen);
        msg[tlen] = 0;
        /* (an authentication refusal is counted; the receiver's text says why) */
        fail_counted(s, now, code == FASTMSG_PERR_AUTH ? FM_AUTH_FAILURES : -1, "receiver refused: %s", msg);
        return;
    }
    /* ACK, PING, PONG, CLOSE; any other kind is refused here (BAD_KIND). Nothing is acted on
     * before its CRC is checked: a corrupted ACK could make the sender forget messages. */
    uint64_t value;
    int rc = fastmsg_decode_control(f, size, &value);
    if (rc) {
        refuse(s, now, rc, "bad frame from the receiver: %s", fastmsg_proto_strerror(rc));
        return;
    }
    /* heartbeat hook: PING, PONG (sender_heartbeat.c); CLOSE: the receiver leaves, no error */
    int hb = fm_sender_hb_frame(s, kind, value);
    if (hb == FM_HB_FRAME_DONE) return;
    if (hb == FM_HB_FRAME_CLOSE) {
        fail(s, now, "receiver closed the connection%s", "");
        return;
    }
    if (s->state != FM_S_READY) {
        refuse(s, now, FASTMSG_PERR_BAD_KIND, "ACK before WELCOME%s", "");
        return;
    }
    if (fm_sender_apply_ack(s, value) != 0)
        refuse(s, now, FASTMSG_PERR_MALFORMED, "bad ACK from the receiver: %s", "it acknowledges messages never sent");
}

/* A REPLY frame of `size` bytes, too large for `in`, starts at `have` bytes read at f: the rest is
 * read into a buffer of its own. 0, or -1 without memory. */
static int start_big(fm_sender *s, const uint8_t *f, size_t have, size_t size) {
    if (!(s->rbig = malloc(size))) return -1;
    memcpy(s->rbig, f, have);
    s->rbig_size = size;
    s->rbig_have = have;
    return 0;
}

/* Reads more of the big REPLY frame; acts on it once whole. The read's result, as read_frames'. */
static ptrdiff_t read_big(fm_sender *s, int64_t now) {
    ptrdiff_t n = fm_io_read(s->fd, s->tls, s->rbig + s->rbig_have, s->rbig_size - s->rbig_have);
    if (n <= 0) return n;
    s->rbig_have += (size_t)n;
    if (s->rbig_have == s->rbig_size) {
        uint8_t *f = s->rbig;
        s->rbig = NULL;
        handle_frame(s, f, s->rbig_size, FASTMSG_REPLY, now);
        free(f);
    }
    return n;
}

/* fm_sender_read_frames; with `woke`, its first read waits as the socket was set to, and *woke
 * is the time it returned (fm_sender_read_frames_wait). 0, or -EINTR. */
static int read_frames(fm_sender *s, int64_t now, int64_t *woke) {
    int wait = woke != NULL;
    /* REPLY frames: a batch up to max_batch, or one reply up to max_message (as DATA's rule) */
    fastmsg_limits lim = {s->cfg.max_message, s->cfg.max_batch, 0};
    s->tls_unread = 0;
    for (int rounds = 0; rounds < READ_ROUNDS && s->fd >= 0; rounds++) {
        int big = s->rbig != NULL;
        size_t want = big ? s->rbig_size - s->rbig_have : sizeof s->in - s->in_len;
        ptrdiff_t n = big ? read_big(s, now)
                    : wait && !rounds ? fastmsg_read_wait(s->fd, s->in + s->in_len, want)
                                      : fm_io_read(s->fd, s->tls, s->in + s->in_len, want);
        if (wait && !rounds) *woke = now = fastmsg_monotonic_ns(); /* (it may have slept) */
        if (n == -EAGAIN) return 0;
        if (n == -EINTR) return -EINTR; /* (only a waiting read) */
        if (n <= 0) {
            if (n) fail_io(s, now, "read", (int)-n);
            else fail(s, now, "receiver closed the connection%s", "");
            return 0;
        }
        fm_hb_received(&s->hb.t, now); /* heartbeat hook: anything from the receiver is life */
        int drained = (size_t)n < want && !(s->tls && fm_tls_pending(s->tls)); /* (TLS may hold more) */
        if (big) { /* (read into rbig, and acted on once whole) */
            if (drained) return 0;
            continue;
        }
        s->in_len += (size_t)n;
        size_t off = 0;
        while (s->in_len - off >= FASTMSG_FRAME_HDR) {
            uint32_t kind, len;
            int rc = fastmsg_frame_check(s->in + off, &lim, &kind, &len);
            if (rc || kind == FASTMSG_DATA) {
                rc = rc ? rc : FASTMSG_PERR_BAD_KIND;
                refuse(s, now, rc, "malformed frame from the receiver: %s", fastmsg_proto_strerror(rc));
                return 0;
            }
            size_t size = (size_t)fastmsg_frame_size(len);
            if (size > sizeof s->in) { /* a large REPLY */
                if (start_big(s, s->in + off, s->in_len - off, size)) {
                    refuse(s, now, FASTMSG_PERR_LIMIT, "no memory for a %s", "reply");
                    return 0;
                }
                off = s->in_len;
                break;
            }
            if (s->in_len - off < size) break;
            handle_frame(s, s->in + off, size, kind, now);
            if (s->fd < 0) return 0;
            off += size;
        }
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
        /* A short read drained the socket: the read that would say so (EAGAIN) is spared, as the
         * poller reports what comes next. */
        if (drained) return 0;
    }
    s->tls_unread = s->tls && fm_tls_pending(s->tls); /* (rounds used up: the next step reads on) */
    return 0;
}

void fm_sender_read_frames(fm_sender *s, int64_t now) { read_frames(s, now, NULL); }

int fm_sender_read_frames_wait(fm_sender *s, int64_t *now) { return read_frames(s, *now, now); }

/* ---- the token, from the I/O thread's side ---- */

static void unmute(fm_sender *s) {
    if (s->muted) {
        s->muted = 0;
        if (s->fd >= 0 && !s->lent) fm_sender_unpark(s);
    }
}

/* A requester's lease on the socket runs out, or was revoked: the I/O thread watches it again,
 * and reads what came meanwhile (ACKs, PINGs). Until then, *next wakes this thread at its end. */
static void end_lease(fm_sender *s, int64_t now, int64_t *next) {
    if (!s->lent) return;
    if (now < s->lease_end_ns && !__atomic_exchange_n(&s->lease_revoked, 0, __ATOMIC_SEQ_CST)) {
        if (s->lease_end_ns < *next) *next = s->lease_end_ns;
        return;
    }
    fm_sender_end_lease(s);
}

/* The token is held by a requester reading its replies on a lease (sender_direct.c) that still
 * runs, and nothing waits for this thread: it has nothing to do until the lease ends. Asking the
 * holder for a kick would only wake this thread again after each request: on one CPU it runs
 * while the requester waits for its reply, so it would find the token held every time. (Read
 * without the token: a message queued after this look kicks this thread again.) */
static int leased_and_idle(fm_sender *s, int64_t now) {
    return __atomic_load_n(&s->lent, __ATOMIC_SEQ_CST) && now < __atomic_load_n(&s->lease_end_ns, __ATOMIC_RELAXED) &&
           !__atomic_load_n(&s->direct_err, __ATOMIC_RELAXED) && !__atomic_load_n(&s->direct_full, __ATOMIC_RELAXED) &&
           __atomic_load_n(&s->io.ctl->tail, __ATOMIC_SEQ_CST) == __atomic_load_n(&s->io.rpos, __ATOMIC_RELAXED);
}

/* The I/O thread's way to the token. When a direct writer holds it, this thread must neither
 * spin (the holder may be preempted: on one CPU that costs a whole time slice) nor sleep past
 * the holder's work: it stops watching the socket (its events are level-triggered), asks the
 * holder for a kick (`missed`, read after the holder gives the token back), and tries once more
 * in case the token was given back before the holder could see the request. A lease holder with
 * nothing left for this thread is not asked, unless a socket event came (`event`: one the poller
 * would report again at once) or the socket is muted: this thread wakes at the lease's end (*next,
 * if given). (Muted, it must be asked: a requester whose read finds no reply ends its lease early,
 * and only this thread can unmute the socket for the reply.) */
static int take_from_io(fm_sender *s, int event, int64_t now, int64_t *next) {
    if (!fm_token_take(&s->token)) {
        if (!event && !s->muted && leased_and_idle(s, now)) {
            int64_t end = __atomic_load_n(&s->lease_end_ns, __ATOMIC_RELAXED);
            if (next && end < *next) *next = end;
            return 0;
        }
        if (s->fd >= 0 && !s->muted) {
            fastmsg_poller_park(s->ctx->poller, s->fd);
            s->muted = 1;
        }
        __atomic_store_n(&s->missed, 1, __ATOMIC_SEQ_CST);
        if (!fm_token_take(&s->token)) return 0;
    }
    __atomic_store_n(&s->missed, 0, __ATOMIC_RELAXED);
    unmute(s);
    return 1;
}

/* What a direct write left for the I/O thread (token held). */
static void absorb_direct(fm_sender *s, int64_t now) {
    if (s->direct_err) {
        int err = s->direct_err;
        const char *what = s->direct_err_poller ? "watching the socket again" : "write";
        s->direct_err = s->direct_err_poller = 0;
        s->direct_full = 0;
        fail_io(s, now, what, err);
    } else if (s->direct_full) {
        s->direct_full = 0;
        set_interest(s, FASTMSG_POLL_IN | FASTMSG_POLL_OUT);
    }
}

/* ---- the loop's operations (I/O thread; each but attach and detach under the token) ---- */

static int sender_attach(fm_endpoint *ep) {
    fm_sender *s = FM_CONTAINER_OF(ep, fm_sender, ep);
    s->next_attempt_ns = 0; /* connect in the next round */
    s->backoff_ns = BACKOFF_MIN_NS;
    return 0;
}

static void sender_detach(fm_endpoint *ep) {
    fm_sender *s = FM_CONTAINER_OF(ep, fm_sender, ep);
    if (s->fd >= 0) {
        fastmsg_poller_remove(s->ctx->poller, s->fd);
        if (s->state == FM_S_READY && !s->frame_left) { /* a goodbye: replies to it are undeliverable */
            uint8_t frame[FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY];
            struct iovec iov = {frame, fastmsg_encode_control(frame, FASTMSG_CLOSE, s->next_seq)};
            if (fm_io_writev(s->fd, s->tls, &iov, 1) > 0) fm_io_flush(s->tls);
        }
        if (s->fd_waits > 0) fastmsg_set_read_wait(s->fd, 0); /* (it lingers as it was made: non-blocking) */
        fm_sender_hb_close(s); /* heartbeat hook: a PONG still to come must not reset the connection */
    }
    fm_tls_free(s->tls);
    s->tls = NULL;
    s->fd = -1;
    s->fd_waits = 0;
}

/* Connected, or TLS established: the HELLO goes. */
static void start_handshake(fm_sender *s, int64_t now) {
    if (send_hello(s)) {
        fail(s, now, "no random nonce for authentication%s", "");
        return;
    }
    set_interest(s, FASTMSG_POLL_IN | FASTMSG_POLL_OUT);
    pump(s, now);
}

/* The TLS handshake's next step; the HELLO once it is done. */
static void tls_step(fm_sender *s, int64_t now) {
    int rc = fm_tls_handshake(s->tls);
    if (rc == FM_TLS_DONE) {
        const char *const *names;
        int n = fm_tls_peer_names(s->tls, &names);
        fm_mutex_lock(&s->err_lock);
        snprintf(s->peer_name, sizeof s->peer_name, "%s", n ? names[0] : "");
        fm_mutex_unlock(&s->err_lock);
        start_handshake(s, now);
    }
    else if (rc == FM_TLS_WANT_READ) set_interest(s, FASTMSG_POLL_IN);
    else if (rc == FM_TLS_WANT_WRITE) set_interest(s, FASTMSG_POLL_OUT);
    else fail_counted(s, now, FM_TLS_FAILURES, "%s", fm_tls_error(s->tls));
}

static void on_event(fm_sender *s, uint32_t events, int64_t now) {
    if (s->fd < 0) return;
    if (s->state == FM_S_CONNECTING) {
        int rc = fastmsg_connect_result(s->fd);
        if (rc) {
            fail(s, now, "connect failed: %s", strerror(-rc));
            return;
        }
        if (!s->cfg.tls) {
            start_handshake(s, now);
            return;
        }
        char why[FM_TLS_ERROR_MAX];
        if (!(s->tls = fm_tls_new(s->cfg.tls, s->fd, why, sizeof why))) {
            fail(s, now, "%s", why);
            return;
        }
        s->state = FM_S_TLS;
    }
    if (s->state == FM_S_TLS) {
        tls_step(s, now);
        return;
    }
    if (events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)) fm_sender_read_frames(s, now);
    if (s->fd >= 0 && (events & FASTMSG_POLL_OUT || s->state == FM_S_READY)) pump(s, now);
}

static void sender_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    fm_sender *s = FM_CONTAINER_OF(ep, fm_sender, ep);
    if (!take_from_io(s, 1, now, NULL)) return; /* the direct writer kicks this thread when it is done */
    absorb_direct(s, now);
    on_event(s, events, now);
    fm_token_give(&s->token);
}

/* Timers: the next connection attempt, the handshake deadline, heartbeats; and queued batches. */
static void on_step(fm_sender *s, int64_t now, int64_t *next) {
    if (s->state == FM_S_IDLE) {
        if (now >= s->next_attempt_ns) start_connect(s, now);
        if (s->state == FM_S_IDLE) {
            if (s->next_attempt_ns < *next) *next = s->next_attempt_ns;
            return;
        }
    }
    if (s->state == FM_S_CONNECTING || s->state == FM_S_TLS || s->state == FM_S_HANDSHAKE) {
        if (now >= s->handshake_deadline_ns) {
            fail(s, now, "no handshake within the timeout%s", "");
            return;
        }
        if (s->handshake_deadline_ns < *next) *next = s->handshake_deadline_ns;
        return;
    }
    /* heartbeat hook: a PING when due; the dead-peer timeout (sender_heartbeat.c) */
    if (s->state == FM_S_READY && fm_sender_hb_step(s, now, next) == FM_HB_DEAD) {
        disconnect(s, now);
        return;
    }
    if (s->state == FM_S_READY && s->tls_unread) fm_sender_read_frames(s, now);
    if (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT)) pump(s, now);
}

static void sender_step(fm_endpoint *ep, int64_t now, int64_t *next) {
    fm_sender *s = FM_CONTAINER_OF(ep, fm_sender, ep);
    if (!take_from_io(s, 0, now, next)) return;
    absorb_direct(s, now);
    end_lease(s, now, next);
    on_step(s, now, next);
    fm_token_give(&s->token);
}

static int sender_has_work(fm_endpoint *ep) {
    fm_sender *s = FM_CONTAINER_OF(ep, fm_sender, ep);
    if (!take_from_io(s, 0, fastmsg_monotonic_ns(), NULL)) return 0; /* the direct writer kicks this thread when it is done */
    int work = s->direct_err || s->direct_full || s->tls_unread ||
               (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT) &&
                __atomic_load_n(&s->io.ctl->tail, __ATOMIC_SEQ_CST) != s->io.rpos);
    fm_token_give(&s->token);
    return work;
}

const fm_endpoint_ops fm_sender_ops = {
    .attach = sender_attach,
    .detach = sender_detach,
    .step = sender_step,
    .event = sender_event,
    .has_work = sender_has_work,
};
