/* Acknowledgements, on the receiver's side. A message is acknowledged once the consumer has
 * released it (its frame's ring space came back), or, with ack_on_receipt, once it arrived.
 * ACKs are cumulative and batched: one goes out when enough is acknowledged since the last, or a
 * short delay after the first message it covers, so that a stream costs an ACK per many batches;
 * and in front of replies, where it costs no write of its own (fm_ack_with_reply). Each session
 * keeps, in arrival order, the frames whose release it waits for, with a reference to their ring;
 * the I/O thread (or the reader holding the sockets) looks at the rings' released positions in
 * its step. */
#include <stdlib.h>

#include "engine/receiver_internal.h"

/* An ACK goes out at once when this much is acknowledged since the last one (a quarter of the
 * sender's window, from its HELLO, up to the most; the default without one)... */
#define ACK_EVERY_BYTES (256u << 10)
#define ACK_EVERY_BYTES_MAX (4u << 20)
#define ACK_EVERY_MESSAGES 4096u
/* ... and otherwise this long after the first message it covers. */
#define ACK_DELAY_NS (1 * FM_MS)
/* While frames wait for the consumer, releases are looked for this often at first, then less
 * often (doubling) while nothing is released. */
#define ACK_POLL_MIN_NS (1 * FM_MS)
#define ACK_POLL_MAX_NS (50 * FM_MS)
#define ACK_WAITS_MIN 16u

static int push_wait(fm_session *s, fm_rxbuf *buf, uint64_t end_pos, uint64_t end_seq, uint64_t bytes) {
    if (s->wlen == s->wcap) {
        uint32_t cap = s->wcap ? s->wcap * 2 : ACK_WAITS_MIN;
        fm_ack_wait *w = malloc(sizeof *w * cap);
        if (!w) return -1;
        for (uint32_t i = 0; i < s->wlen; i++) w[i] = s->waits[(s->whead + i) % s->wcap];
        free(s->waits);
        s->waits = w;
        s->whead = 0;
        s->wcap = cap;
    }
    fm_rxbuf_incref(buf);
    s->waits[(s->whead + s->wlen) % s->wcap] = (fm_ack_wait){buf, end_pos, end_seq, bytes};
    s->wlen++;
    return 0;
}

void fm_ack_window(fm_session *s, uint32_t window) {
    /* A quarter: the sender still has room to send on while the ACK travels, and a large
     * window gets fewer ACKs (each costs a write here, a read and a wake-up there). */
    uint64_t every = window ? window / 4 + 1 : ACK_EVERY_BYTES;
    s->ack_every = every < ACK_EVERY_BYTES_MAX ? every : ACK_EVERY_BYTES_MAX;
}

static void acknowledge(fm_session *s, uint64_t end_seq, uint64_t bytes) {
    if (end_seq <= s->acked_seq) return; /* (a frame of duplicates only) */
    s->acked_seq = end_seq;
    s->ack_bytes += bytes;
}

void fm_ack_frame_staged(fm_rxconn *c, uint64_t end_pos, uint64_t end_seq, uint64_t bytes) {
    fm_session *s = c->session;
    /* Without memory to remember the frame, acknowledging it on arrival is the one way left that
     * neither stalls the sender nor loses the message. */
    if (c->rx->cfg.ack_on_receipt) {
        acknowledge(s, end_seq, bytes);
    } else if (push_wait(s, c->buf, end_pos, end_seq, bytes) != 0) {
        FM_STAT_ADD(c->rx, FM_EARLY_ACKS, 1);
        acknowledge(s, end_seq, bytes);
    }
}

uint64_t fm_ack_update(fm_session *s) {
    while (s->wlen) {
        fm_ack_wait *w = &s->waits[s->whead];
        if (__atomic_load_n(&w->buf->ctl->head, __ATOMIC_ACQUIRE) < w->end_pos) break;
        acknowledge(s, w->end_seq, w->bytes);
        fm_rxbuf_decref(w->buf);
        s->whead = (s->whead + 1) % s->wcap;
        s->wlen--;
    }
    return s->acked_seq;
}

void fm_session_acks_free(fm_session *s) {
    for (; s->wlen; s->wlen--, s->whead = (s->whead + 1) % s->wcap) fm_rxbuf_decref(s->waits[s->whead].buf);
    free(s->waits);
    s->waits = NULL;
    s->wcap = s->whead = 0;
}

/* Frames wait for the consumer: tells c's ring the position whose release makes an ACK due (the
 * releasing thread then writes it, or kicks the I/O thread, once: fm_rxbuf_space_released and
 * fm_receiver_write_acks), rather than leave it to the next look, which backs off to
 * ACK_POLL_MAX_NS: the end of the first frame whose release makes an ACK due at once (ack_every
 * bytes, or as many messages), or, when the sender asked (a PING), of the last frame waiting.
 * So a stream costs at most one such release per ACK. The walk resumes where the last one
 * stopped, so each frame is walked once. Returns 1 if that release has already happened. */
static int arm_ack_at(fm_rxconn *c) {
    fm_session *s = c->session;
    fm_rxbuf *b = c->buf;
    uint64_t at = __atomic_load_n(&b->ack_at, __ATOMIC_RELAXED);
    if (at != FM_NO_ACK_AT && at > __atomic_load_n(&b->ctl->head, __ATOMIC_ACQUIRE)) return 0; /* armed */
    if (s->walk_head != s->whead || s->walk_sent != s->ack_sent) {
        s->walk_head = s->whead; /* the waits or the ACK moved: walk again from the first */
        s->walk_sent = s->ack_sent;
        s->walk_len = 0;
        s->walk_bytes = s->ack_bytes;
    }
    const fm_ack_wait *target = NULL;
    for (; s->walk_len < s->wlen && !target; s->walk_len++) {
        const fm_ack_wait *w = &s->waits[(s->whead + s->walk_len) % s->wcap];
        if (s->walk_bytes + w->bytes >= s->ack_every || w->end_seq - s->ack_sent >= ACK_EVERY_MESSAGES) target = w;
        else s->walk_bytes += w->bytes;
    }
    if (target) s->walk_len--; /* (it is walked again next time) */
    if (!target && s->ack_asked && s->wlen) target = &s->waits[(s->whead + s->wlen - 1) % s->wcap];
    if (!target || target->buf != b) { /* (a ring of an earlier connection: the looks find it) */
        __atomic_store_n(&b->ack_at, FM_NO_ACK_AT, __ATOMIC_RELAXED);
        return 0;
    }
    __atomic_store_n(&b->ack_at, target->end_pos, __ATOMIC_SEQ_CST);
    /* Store, then look at head, as the consumer releases, then looks at ack_at. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return __atomic_load_n(&b->ctl->head, __ATOMIC_ACQUIRE) >= target->end_pos;
}

/* Queues an ACK in c->out if one is due (or, with `now_all`, whatever is acknowledged and not yet
 * said); keeps *next for the next look. 1 if one was queued: the caller writes it. */
static int queue_ack(fm_rxconn *c, int64_t now, int64_t *next, int now_all) {
    fm_session *s = c->session;
    uint64_t before = s->acked_seq;
    fm_ack_update(s);
    if (s->wlen && arm_ack_at(c)) fm_ack_update(s); /* (released meanwhile) */
    if (s->wlen) { /* frames wait for the consumer: look again, less often while nothing moves */
        if (s->acked_seq != before || s->ack_poll_ns == 0) s->ack_poll_ns = ACK_POLL_MIN_NS;
        else if (s->ack_poll_ns < ACK_POLL_MAX_NS) s->ack_poll_ns *= 2;
        if (now + s->ack_poll_ns < *next) *next = now + s->ack_poll_ns;
    }
    if (s->acked_seq <= s->ack_sent) return 0;
    if (!s->ack_due_ns) s->ack_due_ns = now + ACK_DELAY_NS;
    int due = now_all || s->ack_asked || now >= s->ack_due_ns || s->ack_bytes >= s->ack_every ||
              s->acked_seq - s->ack_sent >= ACK_EVERY_MESSAGES;
    if (!due || c->out_len) { /* (a frame still on its way out: the ACK follows it) */
        if (s->ack_due_ns < *next) *next = s->ack_due_ns;
        return 0;
    }
    uint8_t frame[FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY];
    fm_rxconn_queue_out(c, frame, fastmsg_encode_control(frame, FASTMSG_ACK, s->acked_seq));
    s->ack_sent = s->acked_seq;
    s->ack_bytes = 0;
    s->ack_due_ns = 0;
    if (!s->wlen) s->ack_asked = 0; /* everything received is acknowledged: the ask is answered */
    FM_STAT_ADD(c->rx, FM_ACKS, 1);
    /* The next ACK's release point, from what still waits. */
    __atomic_store_n(&c->buf->ack_at, FM_NO_ACK_AT, __ATOMIC_RELAXED);
    if (s->wlen && arm_ack_at(c) && now < *next) *next = now;
    return 1;
}

void fm_ack_with_reply(fm_rxconn *c, int64_t now, int64_t *next) {
    /* Whatever the consumer released so far, however little: the ACK costs no write or wake-up
     * of its own here, and it leaves the ACK timer nothing to say, which in a request/reply loop
     * would otherwise wake this side's I/O thread and then the sender for an ACK alone. */
    queue_ack(c, now, next, 1);
}

void fm_acks_step(fm_receiver *rx, int64_t now, int64_t *next) {
    for (fm_rxconn *c = rx->conns, *n; c; c = n) {
        n = c->next; /* (a failed write closes c) */
        if (c->ready && !c->closing && !c->retired && queue_ack(c, now, next, 0)) fm_rxconn_flush_out(c);
    }
}

void fm_acks_flush(fm_receiver *rx) {
    int64_t next = INT64_MAX;
    for (fm_rxconn *c = rx->conns, *n; c; c = n) {
        n = c->next;
        if (c->ready && !c->closing && !c->retired && queue_ack(c, fastmsg_monotonic_ns(), &next, 1))
            fm_rxconn_flush_out(c);
    }
}
