/* Acknowledgements, on the sender's side. The ring keeps every message until the receiver says it
 * has it (docs/protocol.md: ACK, and WELCOME's resume point): an acknowledgement gives the ring
 * space back, which is what a blocked send() and flush() wait for; after a reconnect the writer
 * starts again from the first unacknowledged message, and the receiver drops what it already has.
 * All of it under the sender's token. */
#include "engine/sender_internal.h"

/* The position past `n` more messages from `pos`, passing over PADs and dropped records (which
 * have no sequence number), and over the dropped records that follow them. */
static uint64_t walk(fm_sender *s, uint64_t pos, uint64_t n) {
    fastmsg_ring *r = &s->io;
    while (pos < s->sent_pos) {
        uint64_t at = fastmsg_ring_skip_pad(r, pos);
        const uint8_t *h = r->data + (at & r->mask);
        if (!(fastmsg_rec_flags(h) & FM_REC_DROPPED)) {
            if (n == 0) break;
            n--;
        }
        pos = at + fastmsg_ring_slot(fastmsg_rec_len(h));
    }
    return pos;
}

/* Where the walk to ack_seq may start: the last batch end at or below it (marks before it are
 * not needed again), or the head. Walking from the head would read every acknowledged record's
 * header, a cost per message that small messages feel. */
static void walk_start(fm_sender *s, uint64_t ack_seq, uint64_t *seq, uint64_t *pos) {
    *seq = s->acked_seq;
    *pos = s->acked_pos;
    while (s->mark_count) {
        uint32_t i = s->mark_first & (FM_ACK_MARKS - 1);
        if (s->marks[i].seq > ack_seq) break;
        if (s->marks[i].seq >= *seq) {
            *seq = s->marks[i].seq;
            *pos = s->marks[i].pos;
        }
        s->mark_first++;
        s->mark_count--;
    }
}

/* (The oldest mark gives way when they are all taken: an ACK then walks a little further.) */
void fm_sender_mark_batch(fm_sender *s, uint64_t seq, uint64_t pos) {
    if (s->mark_count) {
        uint32_t last = (s->mark_first + s->mark_count - 1) & (FM_ACK_MARKS - 1);
        if (s->marks[last].seq >= seq) return;
    }
    if (s->mark_count == FM_ACK_MARKS) {
        s->mark_first++;
        s->mark_count--;
    }
    uint32_t i = (s->mark_first + s->mark_count) & (FM_ACK_MARKS - 1);
    s->marks[i].seq = seq;
    s->marks[i].pos = pos;
    s->mark_count++;
}

int fm_sender_apply_ack(fm_sender *s, uint64_t ack_seq) {
    if (ack_seq > s->sent_seq) return -1;
    if (ack_seq < s->acked_seq) return 0; /* an older ACK, overtaken */
    uint64_t n = ack_seq - s->acked_seq, from_seq, from_pos;
    walk_start(s, ack_seq, &from_seq, &from_pos);
    uint64_t pos = walk(s, from_pos, ack_seq - from_seq); /* (none: only the dropped records that follow) */
    if (pos == s->acked_pos) return 0;
    s->acked_seq = ack_seq;
    s->acked_pos = pos;
    /* Counted first: a flush() woken by the release must find the counters up to date. */
    FM_STAT_ADD(s, FM_ACKED, n);
    fastmsg_ring *r = &s->io;
    if (r->rpos < pos) { /* acknowledged past the cursor (a WELCOME after a rewind) */
        r->rpos = pos;
        s->next_seq = ack_seq;
    }
    if (s->rtt_seq && ack_seq >= s->rtt_seq) { /* the timed batch is acknowledged: a sample */
        int64_t rtt = fastmsg_monotonic_ns() - s->rtt_start_ns;
        __atomic_store_n(&s->rtt_last_ns, rtt > 0 ? (uint64_t)rtt : 0, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->rtt_samples, 1, __ATOMIC_RELEASE);
        __atomic_store_n(&s->rtt_start_ns, 0, __ATOMIC_RELAXED);
        s->rtt_seq = 0;
    }
    fastmsg_ring_release(r, pos); /* wakes a producer waiting for room, or in flush() */
    /* and an event loop's (after the release: notifier.h), unless the loop reads this itself */
    if (!s->loop_reading) fm_notifier_fire(&s->ready);
    return 0;
}

void fm_sender_rewind(fm_sender *s) {
    s->mark_count = 0; /* (the next connection may drop records this one sent: sequence numbers move) */
    s->io.rpos = s->acked_pos;
    s->next_seq = s->acked_seq;
    s->rtt_seq = 0; /* (a sample across the reconnect would time the outage) */
    __atomic_store_n(&s->rtt_start_ns, 0, __ATOMIC_RELAXED);
}

void fm_sender_time_batch(fm_sender *s, uint64_t end_seq, int64_t now) {
    if (s->rtt_seq) return;
    s->rtt_seq = end_seq;
    __atomic_store_n(&s->rtt_start_ns, now, __ATOMIC_RELAXED);
}

void fm_sender_passed(fm_sender *s, uint64_t pos) {
    if (pos > s->sent_pos) {
        s->sent_pos = pos;
        __atomic_store_n(&s->written_pos, pos, __ATOMIC_RELEASE);
    }
    if (s->next_seq > s->sent_seq) s->sent_seq = s->next_seq;
    if (s->acked_seq == s->sent_seq) fm_sender_apply_ack(s, s->acked_seq); /* only dropped records wait */
}
