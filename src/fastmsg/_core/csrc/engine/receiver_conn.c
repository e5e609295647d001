/* A receiver's connection: its handshake, the frames it acts on (HELLO, DATA, PING, CLOSE, RACK,
 * ERROR), what it writes back (WELCOME, PONG, ERROR; REPLY frames are receiver_reply.c's), and
 * its end. Every frame's CRC is checked
 * (by its decoder) before anything in it is believed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/linger.h"
#include "engine/receiver_internal.h"

/* A refused peer that does not read its ERROR is dropped after this long. */
#define REFUSE_LINGER_NS (1000 * FM_MS)

void fm_rxconn_set_interest(fm_rxconn *c, uint32_t ev) {
    if (ev != c->interest) {
        /* (parked, it goes back into the poller with its interest then: receiver_direct.c) */
        if (c->rx->parked != c) fastmsg_poller_modify(c->rx->poller, c->fd, ev, &c->ep);
        c->interest = ev;
    }
}

/* Publishes the frames checked and staged since the last publication: a connection that is refused
 * or closed after them in the same read must not take them along, as its session counts them as
 * received (a resend would be skipped as duplicates, and their acknowledgement would never come). */
static void publish_staged(fm_rxconn *c) {
    if (c->w.wpos != __atomic_load_n(&c->w.ctl->tail, __ATOMIC_RELAXED)) {
        fastmsg_ring_publish(&c->w);
        fm_receiver_notify(c->rx, c->buf);
    }
}

/* A closing receiver's connections linger this long at most without heartbeats configured. */
#define CLOSE_LINGER_DEFAULT_NS (1000 * FM_MS)

void fm_rxconn_close(fm_rxconn *c) { fm_rxconn_close_as(c, 0); }

void fm_rxconn_close_as(fm_rxconn *c, int lingering) {
    fm_receiver *rx = c->rx;
    publish_staged(c);
    fm_mutex_lock(&rx->conns_lock);
    fm_rxconn **pp = &rx->conns;
    while (*pp && *pp != c) pp = &(*pp)->next;
    if (*pp) *pp = c->next;
    fm_mutex_unlock(&rx->conns_lock);
    if (c->session) fm_session_release(&rx->sessions, c->session);
    if (rx->accept_retry_ns) rx->accept_retry_ns = 1; /* a descriptor is free: accept again now */
    rx->nconns--;
    FM_STAT_ADD(rx, FM_CONNECTIONS, (uint64_t)-1);
    if (rx->parked == c) rx->parked = NULL;
    fastmsg_poller_remove(rx->poller, c->fd);
    if (lingering) {
        int64_t ns = rx->cfg.dead_peer_ms ? (int64_t)rx->cfg.dead_peer_ms * FM_MS : CLOSE_LINGER_DEFAULT_NS;
        fm_linger_start(rx->ctx, c->fd, ns, fastmsg_monotonic_ns());
    } else {
        fastmsg_close(c->fd);
    }
    fm_tls_free(c->tls);
    free(c->peer_name);
    free(c->big);
    free(c->rout);
    __atomic_store_n(&c->buf->closed, 1, __ATOMIC_RELEASE);
    fm_receiver_notify(rx, c->buf); /* the consumer learns it is gone once it has drained it */
    fm_rxbuf_decref(c->buf);
    free(c);
}

/* A buffer of whole frames on its way out, and how much of it is written. */
typedef struct {
    uint8_t *buf;
    size_t *off, *len;
} out_part;

/* Writes what is pending: `out` (WELCOME, ACK, PONG, ERROR) and the REPLY frame in `rout`, in one
 * writev, so that a REPLY and the ACK queued with it leave together; then the next REPLY frame,
 * and so on. Frames never interleave: each buffer holds whole frames, the one begun goes first,
 * and the other gets bytes only once it is finished. Neither begun, `out` goes first: a WELCOME
 * precedes the replies resent after it. */
int fm_rxconn_flush_out(fm_rxconn *c) {
    for (;;) {
        if (c->rout_len == 0) fm_rxconn_reply_frame(c);
        out_part p[2] = {{c->out, &c->out_off, &c->out_len}, {c->rout, &c->rout_off, &c->rout_len}};
        if (c->rout_off) { /* (then `out` is not begun) */
            out_part t = p[0];
            p[0] = p[1];
            p[1] = t;
        }
        struct iovec iov[2];
        int n = 0;
        for (int i = 0; i < 2; i++)
            if (*p[i].len) iov[n++] = (struct iovec){p[i].buf + *p[i].off, *p[i].len - *p[i].off};
        if (!n) break;
        ptrdiff_t w = fm_io_writev(c->fd, c->tls, iov, n);
        if (w == -EAGAIN) {
            fm_rxconn_set_interest(c, c->interest | FASTMSG_POLL_OUT);
            return 0;
        }
        if (w < 0) {
            fm_rxconn_close(c);
            return -1;
        }
        for (int i = 0; i < 2; i++) { /* the first buffer's bytes, then the second's */
            size_t left = *p[i].len - *p[i].off, took = (size_t)w < left ? (size_t)w : left;
            *p[i].off += took;
            w -= (ptrdiff_t)took;
            if (*p[i].off == *p[i].len) *p[i].off = *p[i].len = 0;
        }
    }
    int rc = fm_io_flush(c->tls); /* what TLS took and has not written yet */
    if (rc == -EAGAIN) {
        fm_rxconn_set_interest(c, c->interest | FASTMSG_POLL_OUT);
        return 0;
    }
    if (rc < 0 || c->closing) {
        fm_rxconn_close(c);
        return -1;
    }
    fm_rxconn_set_interest(c, c->interest & ~(uint32_t)FASTMSG_POLL_OUT);
    return 0;
}

int fm_rxconn_queue_out(fm_rxconn *c, const uint8_t *frame, size_t n) {
    if (c->out_len + n > sizeof c->out) return -1;
    memcpy(c->out + c->out_len, frame, n);
    c->out_len += n;
    return 0;
}

int fm_rxconn_refuse(fm_rxconn *c, int code) { return fm_rxconn_refuse_why(c, code, NULL); }

static int refusal_stat(int code) {
    switch (code) {
    case FASTMSG_PERR_CRC: return FM_CRC_ERRORS;
    case FASTMSG_PERR_AUTH: return FM_AUTH_FAILURES;
    case FASTMSG_PERR_NOT_ALLOWED: return FM_REFUSED_PEERS;
    default: return FM_PROTOCOL_ERRORS;
    }
}

int fm_rxconn_refuse_why(fm_rxconn *c, int code, const char *why) {
    char text[FASTMSG_ERROR_MAX_TEXT];
    snprintf(text, sizeof text, why ? "%s: %s" : "%s", fastmsg_proto_strerror(code), why);
    uint8_t frame[FM_RXCONN_OUT_MAX];
    size_t n = fastmsg_encode_error(frame, (uint32_t)code, text, strlen(text));
    fm_receiver_note_refusal(c->rx, refusal_stat(code), "refused a sender", text);
    publish_staged(c); /* the good frames before the bad one are delivered */
    c->out_len = c->out_off = 0; /* whatever was pending matters less than the reason */
    fm_rxconn_queue_out(c, frame, n);
    c->closing = 1;
    c->deadline_ns = fastmsg_monotonic_ns() + REFUSE_LINGER_NS;
    fm_rxconn_set_interest(c, FASTMSG_POLL_OUT);
    fm_rxconn_flush_out(c);
    return -1;
}

/* A new connection took c's session: c is dropped at the receiver's next step, not now (an event
 * for it may wait in the batch being dispatched). Until then it reads nothing more: what its
 * socket still holds was sent before the sender reconnected, and the sender resends from where
 * the new connection's WELCOME says. */
static void retire(fm_rxconn *c) {
    c->session = NULL;
    c->ready = 0;
    c->retired = 1;
    c->closing = 1;
    c->out_len = c->out_off = 0;
    c->rout_len = c->rout_off = 0;
    c->deadline_ns = 0; /* due at once */
    fm_rxconn_set_interest(c, 0);
}

static int handle_hello(fm_rxconn *c, const uint8_t *f, size_t size) {
    fastmsg_hello h;
    int rc = fastmsg_decode_hello(f, size, &h);
    if (rc) return fm_rxconn_refuse(c, rc);
    if (fastmsg_rec_flags(f) != FASTMSG_HELLO) return fm_rxconn_refuse(c, FASTMSG_PERR_BAD_KIND);
    return fm_rxconn_auth_hello(c, f, &h); /* nothing of the session is touched before it */
}

int fm_rxconn_admit(fm_rxconn *c, const fastmsg_hello *hp) {
    fastmsg_hello h = *hp;
    int made;
    fm_session *s = fm_session_for(&c->rx->sessions, h.session_id, &made);
    if (!s) return fm_rxconn_refuse(c, FASTMSG_PERR_LIMIT);
    fm_rxconn *old = s->conn;
    fm_session_attach(&c->rx->sessions, s, c);
    c->session = s;
    if (old) {
        /* The sender reconnected while its old connection still looks open here (a reset this
         * side has not seen, or not yet read): the new one takes the session over. */
        retire(old);
        FM_STAT_ADD(c->rx, FM_REPLACED_CONNECTIONS, 1);
    }
    if (made) {
        s->next_seq = h.seq; /* new, or forgotten: nothing before the HELLO is expected */
    } else if (h.seq > s->next_seq) {
        /* The sender starts past what arrived: those messages were lost on its side. */
        FM_STAT_ADD(c->rx, FM_LOST, h.seq - s->next_seq);
        s->next_seq = h.seq;
    }
    if (h.seq > s->acked_seq) s->acked_seq = h.seq; /* (a new session starts where the sender is) */
    fm_ack_window(s, h.window);
    fm_session_replies_hello(&c->rx->sessions, s, &h, c->rx->cfg.max_batch, made);
    c->buf->session_id = h.session_id; /* published with the records that follow */
    /* The sender resumes from the first message not acknowledged; it resends what this side
     * already has (and skips as duplicates), so nothing the consumer holds is lost if it dies. */
    s->ack_sent = fm_ack_update(s);
    s->ack_due_ns = 0;
    fastmsg_hello w = {FASTMSG_PROTO_MAJOR, FASTMSG_PROTO_MINOR, FASTMSG_CAP_ACK, h.session_id, s->ack_sent,
                       c->rx->cfg.max_message, c->rx->cfg.max_batch, 0, 0, 0, 0}; /* (WELCOME: no window, no reply_seq) */
    fm_rxconn_hb_hello(c, &h, &w); /* heartbeat hook: CAP_HEARTBEAT, heartbeat_ms, keepalive */
    c->replies = (h.capabilities & FASTMSG_CAP_REPLIES) != 0; /* granted to every sender that asks */
    if (c->replies) w.capabilities |= FASTMSG_CAP_REPLIES;
    uint8_t frame[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY];
    fm_rxconn_queue_out(c, frame, fastmsg_encode_hello(frame, FASTMSG_WELCOME, &w));
    c->ready = 1;
    return fm_rxconn_flush_out(c);
}

int fm_rxconn_handle_data(fm_rxconn *c, uint8_t *f, size_t size) {
    fastmsg_limits lim = {c->rx->cfg.max_message, c->rx->cfg.max_batch, c->replies ? FASTMSG_REC_REQUEST : 0};
    fastmsg_data_info info;
    int rc = fastmsg_check_data(f, size, &lim, &info);
    if (rc) return fm_rxconn_refuse(c, rc);
    fm_session *s = c->session;
    if (info.first_seq > s->next_seq) return fm_rxconn_refuse(c, FASTMSG_PERR_SEQUENCE);
    uint64_t skip = s->next_seq - info.first_seq;
    if (skip > info.count) skip = info.count;
    FM_STAT_ADD(c->rx, FM_DUPLICATES, skip);
    /* The CRC is checked: its field now tells the consumer how many records to skip. */
    fastmsg_data_put_skip(fastmsg_frame_body(f), (uint32_t)skip);
    if (info.first_seq + info.count > s->next_seq) s->next_seq = info.first_seq + info.count; /* a stale batch never rewinds it */
    uint64_t bytes = info.payload_bytes;
    const uint8_t *p = fastmsg_data_records(fastmsg_frame_body(f));
    for (uint64_t i = 0; i < skip; i++) { /* only after a reconnect */
        bytes -= fastmsg_rec_len(p);
        p += fastmsg_ring_slot(fastmsg_rec_len(p));
    }
    c->data_pending = 1; /* acknowledged once staged (receiver_read.c) and received or released */
    c->data_end_seq = info.first_seq + info.count;
    c->data_bytes = bytes;
    FM_STAT_ADD(c->rx, FM_RECV_MESSAGES, info.count - skip);
    fm_rxconn_rate_charge(c, info.count - skip); /* rate limit hook */
    FM_STAT_ADD(c->rx, FM_RECV_BYTES, bytes);
    FM_STAT_ADD(c->rx, FM_RECV_BATCHES, 1);
    return 0;
}

/* The sender refused this side's frames (it counted the error): close without a word (an
 * authentication failure is counted on both sides, as each side's user needs to see it). */
static int handle_error(fm_rxconn *c, const uint8_t *f, size_t size) {
    uint32_t code, text_len;
    const uint8_t *text;
    int rc = fastmsg_decode_error(f, size, &code, &text, &text_len);
    if (rc) return fm_rxconn_refuse(c, rc);
    if (code == FASTMSG_PERR_AUTH) { /* the sender would not trust this side: said and counted here too */
        char msg[FASTMSG_ERROR_MAX_TEXT + 1];
        memcpy(msg, text, text_len);
        msg[text_len] = 0;
        fm_receiver_note_refusal(c->rx, FM_AUTH_FAILURES, "a sender refused", msg);
    }
    fm_rxconn_close(c);
    return -1;
}

int fm_rxconn_handle_frame(fm_rxconn *c, uint8_t *f, size_t size, uint32_t kind) {
    if (!c->ready) {
        if (c->auth_wait) { /* AUTH, or the sender's ERROR: it refused this side's proof */
            if (kind == FASTMSG_ERROR) return handle_error(c, f, size);
            if (kind != FASTMSG_AUTH) return fm_rxconn_refuse(c, FASTMSG_PERR_BAD_KIND);
            return fm_rxconn_auth_proof(c, f, size);
        }
        if (kind != FASTMSG_HELLO) return fm_rxconn_refuse(c, FASTMSG_PERR_BAD_KIND);
        return handle_hello(c, f, size);
    }
    if (kind == FASTMSG_DATA) return fm_rxconn_handle_data(c, f, size);
    if (kind == FASTMSG_ERROR) return handle_error(c, f, size);
    if (kind == FASTMSG_ACK) return fm_rxconn_refuse(c, FASTMSG_PERR_BAD_KIND); /* only receivers send it */
    uint64_t v;
    int rc = fastmsg_decode_control(f, size, &v); /* PING, PONG, CLOSE; BAD_KIND for the rest */
    if (rc) return fm_rxconn_refuse(c, rc);
    if (kind == FASTMSG_PING) {
        uint8_t pong[FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY];
        fm_rxconn_queue_out(c, pong, fastmsg_encode_control(pong, FASTMSG_PONG, v));
        c->session->ack_asked = 1; /* a PING also asks for acknowledgements (receiver_ack.c) */
        return fm_rxconn_flush_out(c);
    }
    if (kind == FASTMSG_PONG) fm_rxconn_hb_pong(c); /* heartbeat hook */
    if (kind == FASTMSG_RACK) return fm_rxconn_handle_rack(c, v);
    if (kind == FASTMSG_CLOSE) { /* the sender closes for good: nobody will take its replies */
        fm_session_replies_drop(&c->rx->sessions, c->session);
        c->session->ended = 1;
    }
    return 0; /* CLOSE: the sender closes next */
}
