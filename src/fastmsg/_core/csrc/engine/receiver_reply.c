/* Replies, on the receiver's side (docs/protocol.md, "Requests and replies"). Message.reply()
 * copies a reply, as the REPLY record it will be, into a queue that any Python thread may append
 * to (under rlock); the replying thread itself when it can take the sockets, else the I/O thread
 * or the reader holding them, moves it into its session's outbox, where it takes the next number
 * of the session's reply stream, and writes the outbox on the session's live connection in REPLY
 * frames. A reply stays in the outbox until the sender
 * acknowledges it (RACK, or the reply_seq of its next HELLO), so a reconnect resends what did not
 * arrive. Every byte queued or unacknowledged counts against reply_hwm_bytes, which reply()
 * refuses beyond: no reply waits unbounded, none is dropped unsaid. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c/crc32c.h"
#include "engine/receiver_internal.h"

/* The longest a recv_many batch's replies wait for the batch's end (fm_replies_due). */
#define REPLY_HOLD_NS (100 * FM_MS)

static void reply_free(uint64_t *reply_bytes, fm_reply *r) {
    __atomic_fetch_sub(reply_bytes, r->size, __ATOMIC_RELAXED);
    free(r);
}

static void undeliverable(fm_receiver *rx, fm_reply *r) {
    FM_STAT_ADD(rx, FM_UNDELIVERABLE_REPLIES, 1);
    reply_free(&rx->reply_bytes, r);
}

int fm_receiver_reply(fm_receiver *rx, uint64_t session_id, uint64_t request_id, const uint8_t *data, size_t len,
                      int write_now) {
    if (len > FASTMSG_MAX_MESSAGE_SIZE - FASTMSG_REQUEST_ID_LEN) return -EMSGSIZE;
    uint32_t rec_len = (uint32_t)(FASTMSG_REQUEST_ID_LEN + len);
    uint64_t size = fastmsg_ring_slot(rec_len);
    /* One reply alone may exceed the bound, or it could never be sent. */
    uint64_t before = __atomic_fetch_add(&rx->reply_bytes, size, __ATOMIC_RELAXED);
    if (before && before + size > rx->cfg.reply_hwm_bytes) {
        __atomic_fetch_sub(&rx->reply_bytes, size, __ATOMIC_RELAXED);
        return -EAGAIN;
    }
    fm_reply *r = malloc(sizeof *r + size);
    if (!r) {
        __atomic_fetch_sub(&rx->reply_bytes, size, __ATOMIC_RELAXED);
        return -ENOMEM;
    }
    r->next = NULL;
    r->session_id = session_id;
    r->size = size;
    fastmsg_rec_put_hdr(r->rec, rec_len, 0);
    fastmsg_store_le64(r->rec + FASTMSG_REC_HDR, request_id);
    memcpy(r->rec + FASTMSG_REC_HDR + FASTMSG_REQUEST_ID_LEN, data, len);
    memset(r->rec + FASTMSG_REC_HDR + rec_len, 0, (size_t)(size - FASTMSG_REC_HDR - rec_len));
    fm_mutex_lock(&rx->rlock);
    if (!write_now && !__atomic_load_n(&rx->rq_held_ns, __ATOMIC_SEQ_CST)) /* (seen with rq_len) */
        __atomic_store_n(&rx->rq_held_ns, fastmsg_monotonic_ns(), __ATOMIC_SEQ_CST);
    if (rx->rq_tail) rx->rq_tail->next = r;
    else rx->rq_head = r;
    rx->rq_tail = r;
    /* Under the lock, so that the drain's reset to 0 never loses a count (has_work reads it). */
    __atomic_store_n(&rx->rq_len, rx->rq_len + 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&rx->replies_queued, rx->replies_queued + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&rx->last_replier, (const void *)&fm_progress, __ATOMIC_RELAXED);
    fm_mutex_unlock(&rx->rlock);
    if (write_now) fm_receiver_send_replies(rx);
    return 0;
}

void fm_receiver_send_replies(fm_receiver *rx) {
    /* Everything queued goes, held or not (another thread's hold may begin meanwhile: a reply
     * asked for before it still goes, rq_go, with whatever is queued then). */
    __atomic_store_n(&rx->rq_go, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&rx->rq_held_ns, 0, __ATOMIC_SEQ_CST);
    if (fm_receiver_write_replies(rx) == 0) return;
    fm_ctx_kick(rx->ctx);
    /* A reader holding the sockets drains the queue in its own wait: wake it. */
    if (__atomic_load_n(&rx->token, __ATOMIC_SEQ_CST) && rx->wake.wr >= 0) fm_waker_signal(&rx->wake);
}

static fm_reply *take_queue(fm_receiver *rx) {
    fm_mutex_lock(&rx->rlock);
    fm_reply *r = rx->rq_head;
    rx->rq_head = rx->rq_tail = NULL;
    __atomic_store_n(&rx->rq_len, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&rx->rq_go, 0, __ATOMIC_SEQ_CST);
    fm_mutex_unlock(&rx->rlock);
    return r;
}

int fm_replies_due(fm_receiver *rx, int64_t now, int64_t *next) {
    /* A batch's replies wait for its end, which sends them (Receiver._send_held): were the I/O
     * thread to write what it finds queued whenever its round falls, one batch's replies would
     * leave in as many writes as rounds fell while the application answered. But not for ever:
     * an application that keeps a batch's last request and calls nothing more has its other
     * replies written REPLY_HOLD_NS after the hold began. */
    if (!__atomic_load_n(&rx->rq_len, __ATOMIC_SEQ_CST)) return 0;
    int64_t held = __atomic_load_n(&rx->rq_held_ns, __ATOMIC_SEQ_CST);
    if (!held || __atomic_load_n(&rx->rq_go, __ATOMIC_SEQ_CST) || now >= held + REPLY_HOLD_NS) return 1;
    if (held + REPLY_HOLD_NS < *next) *next = held + REPLY_HOLD_NS;
    return 0;
}

/* A RACK is awaited, and its timeout counts from the time of the step that wrote the reply, or
 * the connection's next step (fm_rxconn_reply_step): a reply is written deep in calls that have
 * no clock reading at hand, and one there cost 25-30 ns of a round trip on a virtual machine, for
 * a timeout of seconds. */
#define RACK_UNTIMED INT64_MAX

/* How long written replies may wait for their RACK (the sender sends it within milliseconds of
 * reading them). */
static int64_t rack_timeout(const fm_rxconn *c) {
    return (int64_t)(c->rx->cfg.dead_peer_ms ? c->rx->cfg.dead_peer_ms : 5000) * FM_MS;
}

/* 1 if c may write its session's replies now. */
static int writable(const fm_rxconn *c) { return c->ready && !c->closing && !c->retired && c->session; }

void fm_replies_step(fm_receiver *rx, int64_t now, int64_t *next) {
    if (!fm_replies_due(rx, now, next)) return;
    for (fm_reply *r = take_queue(rx), *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        fm_session *s = fm_session_find(&rx->sessions, r->session_id);
        /* Gone, or a reply larger than its sender takes: either way it can never arrive. */
        if (!s || s->ended || fastmsg_rec_len(r->rec) > s->reply_max) {
            undeliverable(rx, r);
            continue;
        }
        r->seq = s->reply_next++;
        if (s->rtail) s->rtail->next = r;
        else s->rhead = r;
        s->rtail = r;
        if (!s->rsend) s->rsend = r;
    }
    for (fm_rxconn *c = rx->conns, *n; c; c = n) {
        n = c->next; /* (a failed write closes c) */
        if (writable(c) && c->session->rsend && c->rout_off == c->rout_len) {
            fm_ack_with_reply(c, now, next); /* written in the same writev as the REPLY frame */
            if (fm_rxconn_flush_out(c) == 0 && c->rack_due_ns == RACK_UNTIMED) c->rack_due_ns = now + rack_timeout(c);
        }
    }
}

/* Every reply below `seq` arrived: out of the outbox. */
static void drop_acked(fm_session_table *t, fm_session *s, uint64_t seq) {
    while (s->rhead && s->rhead->seq < seq) {
        fm_reply *r = s->rhead;
        s->rhead = r->next;
        if (s->rsend == r) s->rsend = r->next;
        reply_free(t->reply_bytes, r);
    }
    if (!s->rhead) s->rtail = NULL;
}

void fm_session_replies_hello(fm_session_table *t, fm_session *s, const fastmsg_hello *h, uint32_t max_batch, int made) {
    /* A new (or forgotten) session numbers its replies from where the sender is. */
    if (made || h->reply_seq > s->reply_next) s->reply_next = s->reply_sent = h->reply_seq;
    drop_acked(t, s, h->reply_seq);
    s->rsend = s->rhead; /* the rest goes again on the new connection */
    s->reply_max = h->max_message;
    s->reply_batch = h->max_batch < max_batch ? h->max_batch : max_batch;
    s->ended = 0;
}

void fm_session_replies_drop(fm_session_table *t, fm_session *s) {
    for (fm_reply *r = s->rhead, *next; r; r = next) {
        next = r->next;
        __atomic_fetch_add(&t->stats[FM_UNDELIVERABLE_REPLIES], 1, __ATOMIC_RELAXED);
        reply_free(t->reply_bytes, r);
    }
    s->rhead = s->rtail = s->rsend = NULL;
}

void fm_replies_free(fm_receiver *rx) {
    for (fm_reply *r = take_queue(rx), *next; r; r = next) {
        next = r->next;
        undeliverable(rx, r);
    }
}

int fm_rxconn_handle_rack(fm_rxconn *c, uint64_t value) {
    fm_session *s = c->session;
    if (value > s->reply_sent) return fm_rxconn_refuse(c, FASTMSG_PERR_MALFORMED); /* never sent */
    drop_acked(&c->rx->sessions, s, value);
    c->rack_due_ns = s->rhead == s->rsend ? 0 : RACK_UNTIMED;
    return 0;
}

int fm_rxconn_reply_step(fm_rxconn *c, int64_t now, int64_t *next) {
    if (!c->rack_due_ns) return 0;
    if (c->rack_due_ns == RACK_UNTIMED) c->rack_due_ns = now + rack_timeout(c);
    if (now < c->rack_due_ns) {
        if (c->rack_due_ns < *next) *next = c->rack_due_ns;
        return 0;
    }
    FM_STAT_ADD(c->rx, FM_DEAD_PEERS, 1);
    fm_rxconn_close(c);
    return -1;
}

/* Room for a frame of `size` bytes in c->rout; 0, or -1 without memory (the replies wait). */
static int rout_room(fm_rxconn *c, size_t size) {
    if (size <= c->rout_cap) return 0;
    uint8_t *p = realloc(c->rout, size);
    if (!p) return -1;
    c->rout = p;
    c->rout_cap = size;
    return 0;
}

int fm_rxconn_reply_frame(fm_rxconn *c) {
    fm_session *s = c->session;
    if (!writable(c) || !s->rsend) return 0;
    /* As many replies as the sender's max_batch allows, or one alone (it may exceed it). */
    fm_reply *first = s->rsend, *r = first;
    uint64_t bytes = 0;
    uint32_t count = 0;
    do {
        bytes += r->size;
        count++;
        r = r->next;
    } while (r && bytes + r->size <= s->reply_batch);
    if (rout_room(c, FASTMSG_DATA_FRAME_HDR + (size_t)bytes)) return 0;
    uint8_t *at = c->rout + FASTMSG_DATA_FRAME_HDR;
    uint32_t crc = fastmsg_batch_open(c->rout, FASTMSG_REPLY, (uint32_t)bytes, count, first->seq);
    for (fm_reply *q = first; q != r; q = q->next) {
        memcpy(at, q->rec, q->size);
        at += q->size;
        if (q->seq < s->reply_sent) FM_STAT_ADD(c->rx, FM_RESENT_REPLIES, 1);
    }
    fastmsg_data_set_crc(c->rout, fastmsg_crc32c(crc, c->rout + FASTMSG_DATA_FRAME_HDR, (size_t)bytes));
    uint64_t end = first->seq + count;
    if (end > s->reply_sent) s->reply_sent = end;
    s->rsend = r;
    c->rout_len = FASTMSG_DATA_FRAME_HDR + (size_t)bytes;
    c->rout_off = 0;
    if (!c->rack_due_ns) c->rack_due_ns = RACK_UNTIMED;
    FM_STAT_ADD(c->rx, FM_REPLIES_SENT, count);
    return 1;
}
