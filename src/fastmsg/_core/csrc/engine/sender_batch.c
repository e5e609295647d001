/* DATA batches out of the sender's ring: the longest run of whole records the receiver accepts,
 * sent as it lies behind a 24-byte header, or one external message from where Python keeps it. */
#include "crc32c/crc32c.h"
#include "engine/sender_internal.h"

static const uint8_t zeros[8]; /* padding after an external payload */

/* Drops the records at the cursor that the receiver announced it would refuse (larger than its
 * max_message), counting each as rejected and saying why in last_error: sending them would only
 * get the connection refused, again after every reconnect. A dropped record is marked, so that
 * acknowledgements and a resend after a reconnect pass over it (it has no sequence number). */
static void drop_oversized(fm_sender *s) {
    fastmsg_ring *r = &s->io;
    for (;;) {
        uint64_t tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE), pos = r->rpos;
        if (pos == tail) return;
        pos = fastmsg_ring_skip_pad(r, pos);
        uint8_t *h = r->data + (pos & r->mask);
        uint32_t len = fastmsg_rec_len(h), flags = fastmsg_rec_flags(h);
        if (!(flags & FM_REC_DROPPED)) {
            uint64_t msg_len = (flags & FM_REC_EXTERNAL) ? fm_pointer_rec_size(h + FASTMSG_REC_HDR) : len;
            if (msg_len <= s->peer_max_message) return;
            char detail[32];
            snprintf(detail, sizeof detail, "%llu", (unsigned long long)msg_len);
            fm_sender_set_error(s, "a %s-byte message is larger than the receiver's max_message_size: dropped", detail);
            /* The size first: Python reads it once it sees the count grow (fm_sender_refused). */
            __atomic_store_n(&s->last_dropped_size, msg_len, __ATOMIC_RELAXED);
            __atomic_fetch_add(&s->stats[FM_REJECTED], 1, __ATOMIC_RELEASE);
            fastmsg_rec_put_hdr(h, len, flags | FM_REC_DROPPED);
        }
        pos += fastmsg_ring_slot(len);
        r->rpos = pos;
        fm_sender_passed(s, pos);
    }
}

/* The frame of one external message: [DATA header, record header, payload, padding], the
 * payload read from where the producer keeps it (alive until the ring is released past it). */
static uint64_t take_external(fm_sender *s, const uint8_t *rec) {
    const uint8_t *payload = fm_pointer_rec_ptr(rec + FASTMSG_REC_HDR);
    uint64_t len = fm_pointer_rec_size(rec + FASTMSG_REC_HDR);
    size_t pad = (size_t)(fastmsg_ring_slot(len) - FASTMSG_REC_HDR - len);
    uint32_t crc = fastmsg_data_open(s->hdr, (uint32_t)fastmsg_ring_slot(len), 1, s->next_seq);
    fastmsg_rec_put_hdr(s->ext_hdr, (uint32_t)len, fastmsg_rec_flags(rec) & FASTMSG_REC_REQUEST);
    crc = fastmsg_crc32c(crc, s->ext_hdr, sizeof s->ext_hdr);
    crc = fastmsg_crc32c(crc, payload, len);
    crc = fastmsg_crc32c(crc, zeros, pad);
    fastmsg_data_set_crc(s->hdr, crc);
    s->iov[0] = (struct iovec){s->hdr, sizeof s->hdr};
    s->iov[1] = (struct iovec){s->ext_hdr, sizeof s->ext_hdr};
    s->iov[2] = (struct iovec){(void *)payload, (size_t)len};
    s->iov[3] = (struct iovec){(void *)zeros, pad};
    s->iovcnt = 4;
    return len;
}

int fm_sender_take_batch(fm_sender *s) {
    fastmsg_ring *r = &s->io;
    drop_oversized(s);
    uint64_t limit = s->peer_max_batch ? s->peer_max_batch : s->cfg.max_batch;
    fastmsg_ring_run run;
    uint32_t count;
    uint64_t end, bytes;
    if (fastmsg_ring_readable_run(r, limit, s->peer_max_message, FM_REC_EXTERNAL | FM_REC_DROPPED, &run)) {
        uint32_t crc = fastmsg_data_open(s->hdr, (uint32_t)(run.end - run.start), (uint32_t)run.count, s->next_seq);
        fastmsg_data_set_crc(s->hdr, fastmsg_crc32c(crc, run.data, (size_t)(run.end - run.start)));
        s->iov[0] = (struct iovec){s->hdr, sizeof s->hdr};
        s->iov[1] = (struct iovec){(void *)run.data, (size_t)(run.end - run.start)};
        s->iovcnt = 2;
        count = (uint32_t)run.count;
        end = run.end;
        bytes = run.payload;
    } else if (run.start != r->rlimit && (fastmsg_rec_flags(run.data) & FM_REC_EXTERNAL)) {
        /* (drop_oversized left no record the receiver refuses, so an external one stopped the run) */
        bytes = take_external(s, run.data);
        count = 1;
        end = run.start + fastmsg_ring_slot(FM_POINTER_REC_LEN);
    } else {
        return 0;
    }
    s->batch_first_seq = s->next_seq;
    s->next_seq += count;
    s->batch_end = end;
    s->batch_count = count;
    s->batch_bytes = bytes;
    fm_sender_start_frame(s, 1);
    return 1;
}

void fm_sender_batch_done(fm_sender *s, int64_t now) {
    fastmsg_ring *r = &s->io;
    FM_STAT_ADD(s, FM_SENT_MESSAGES, s->batch_count);
    FM_STAT_ADD(s, FM_SENT_BYTES, s->batch_bytes);
    FM_STAT_ADD(s, FM_SENT_BATCHES, 1);
    if (s->batch_first_seq < s->sent_seq) { /* written before, then the connection went */
        uint64_t again = s->sent_seq - s->batch_first_seq;
        FM_STAT_ADD(s, FM_RESENT, again < s->batch_count ? again : s->batch_count);
    }
    fm_progress++;
    r->rpos = s->batch_end;
    r->rcount += s->batch_count;
    fm_sender_passed(s, s->batch_end); /* the space comes back with the acknowledgement */
    fm_sender_mark_batch(s, s->batch_first_seq + s->batch_count, s->batch_end);
    fm_sender_time_batch(s, s->batch_first_seq + s->batch_count, now);
    s->frame_is_data = 0;
}
