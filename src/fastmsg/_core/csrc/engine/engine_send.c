/* The sending side: connect and reconnect with backoff, the handshake, and DATA batches taken
 * from the sender's ring and written with one writev each. */
#define _GNU_SOURCE
#include "engine/engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_NS (10 * FM_MS)
#define BACKOFF_MAX_NS (1000 * FM_MS)
#define HANDSHAKE_TIMEOUT_NS (5000 * FM_MS)

fm_sender *fm_sender_new(fm_ctx *ctx, const struct sockaddr *addr, socklen_t addrlen, const fm_sender_config *cfg) {
    if (addrlen > sizeof(struct sockaddr_storage)) return NULL;
    fm_sender *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->mem = calloc(1, sizeof(fastmsg_ring_ctl) + cfg->ring_capacity);
    if (!s->mem) {
        free(s);
        return NULL;
    }
    s->h.kind = FM_H_SENDER;
    s->ctx = ctx;
    memcpy(&s->addr, addr, addrlen);
    s->addrlen = addrlen;
    s->cfg = *cfg;
    s->fd = -1;
    s->backoff_ns = BACKOFF_MIN_NS;
    fastmsg_ring_ctl *ctl = s->mem;
    uint8_t *data = (uint8_t *)s->mem + sizeof(fastmsg_ring_ctl);
    fastmsg_ring_init(&s->producer, ctl, data, cfg->ring_capacity);
    fastmsg_ring_init(&s->io, ctl, data, cfg->ring_capacity);
    /* Room comes back only when a batch is written, and the I/O thread often shares the CPU
     * (a process pinned to one): a send() waiting for room sleeps at once. */
    s->producer.no_spin = 1;
    pthread_mutex_init(&s->err_lock, NULL);
    fm_ctx_command(ctx, FM_CMD_ADD_SENDER, s, NULL);
    return s;
}

fastmsg_ring *fm_sender_ring(fm_sender *s) { return &s->producer; }

uint64_t fm_sender_queued(fm_sender *s) {
    return s->producer.wpos - __atomic_load_n(&s->producer.ctl->head, __ATOMIC_ACQUIRE);
}

void fm_sender_kick(fm_sender *s) { fm_ctx_kick(s->ctx); }

int fm_sender_flush(fm_sender *s, int64_t deadline_ns) {
    uint64_t target = __atomic_load_n(&s->producer.ctl->tail, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&s->producer.ctl->head, __ATOMIC_ACQUIRE) >= target) return FASTMSG_WAIT_READY;
    return fastmsg_ring_wait_space(&s->producer, target, deadline_ns);
}

int fm_sender_connected(fm_sender *s) { return (int)__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE); }

uint32_t fm_sender_peer_max_message(fm_sender *s) { return __atomic_load_n(&s->peer_max_message, __ATOMIC_ACQUIRE); }

void fm_sender_stats(fm_sender *s, uint64_t out[FM_STAT_COUNT]) {
    for (int i = 0; i < FM_STAT_COUNT; i++) out[i] = __atomic_load_n(&s->stats[i], __ATOMIC_RELAXED);
}

void fm_sender_last_error(fm_sender *s, char *buf, size_t len) {
    pthread_mutex_lock(&s->err_lock);
    snprintf(buf, len, "%s", s->last_error);
    pthread_mutex_unlock(&s->err_lock);
}

static void set_error(fm_sender *s, const char *fmt, const char *detail) {
    pthread_mutex_lock(&s->err_lock);
    snprintf(s->last_error, sizeof s->last_error, fmt, detail);
    pthread_mutex_unlock(&s->err_lock);
}

uint64_t fm_sender_released(fm_sender *s) { return __atomic_load_n(&s->producer.ctl->head, __ATOMIC_ACQUIRE); }

void fm_sender_close(fm_sender *s) {
    /* Unsent records go with the ring; their external payloads are the producer's. */
    fm_ctx_command(s->ctx, FM_CMD_CLOSE_SENDER, s, &s->closed_done);
    pthread_mutex_destroy(&s->err_lock);
    free(s->mem);
    free(s);
}

/* ---- I/O thread ---- */

static void set_interest(fm_sender *s, uint32_t ev) {
    if (s->fd >= 0 && ev != s->interest) {
        fastmsg_poller_modify(s->ctx->poller, s->fd, ev, s);
        s->interest = ev;
    }
}

static void disconnect(fm_sender *s, int64_t now) {
    if (s->fd >= 0) {
        fastmsg_poller_remove(s->ctx->poller, s->fd);
        fastmsg_close(s->fd);
        FM_STAT_ADD(s, FM_DISCONNECTS, 1);
    }
    s->fd = -1;
    s->interest = 0;
    s->state = FM_S_IDLE;
    __atomic_store_n(&s->connected, 0, __ATOMIC_RELEASE);
    /* A batch cut short goes again, whole, after the next handshake. */
    if (s->frame_is_data && s->frame_left) s->next_seq = s->batch_first_seq;
    s->frame_left = 0;
    s->frame_is_data = 0;
    s->in_len = 0;
    s->next_attempt_ns = now + s->backoff_ns;
    s->backoff_ns = s->backoff_ns * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : s->backoff_ns * 2;
}

static void fail(fm_sender *s, int64_t now, const char *fmt, const char *detail) {
    set_error(s, fmt, detail);
    disconnect(s, now);
}

void fm_sender_attach(fm_sender *s) { s->next_attempt_ns = 0; }

void fm_sender_detach(fm_sender *s) {
    if (s->fd >= 0) {
        fastmsg_poller_remove(s->ctx->poller, s->fd);
        fastmsg_close(s->fd);
    }
    s->fd = -1;
}

static void start_frame(fm_sender *s, int is_data) {
    s->frame_left = 0;
    for (int i = 0; i < s->iovcnt; i++) s->frame_left += s->iov[i].iov_len;
    s->frame_is_data = is_data;
}

static void start_connect(fm_sender *s, int64_t now) {
    int fd = fastmsg_connect_start((const struct sockaddr *)&s->addr, s->addrlen);
    if (fd < 0) {
        fail(s, now, "connect failed: %s", strerror(-fd));
        return;
    }
    s->fd = fd;
    s->interest = FASTMSG_POLL_OUT;
    if (fastmsg_poller_add(s->ctx->poller, fd, s->interest, s) != 0) {
        fail(s, now, "cannot poll the socket%s", "");
        return;
    }
    s->state = FM_S_CONNECTING;
    s->handshake_deadline_ns = now + HANDSHAKE_TIMEOUT_NS;
}

static void send_hello(fm_sender *s) {
    fastmsg_hello h = {FASTMSG_PROTO_MAJOR, FASTMSG_PROTO_MINOR, 0, s->cfg.session_id, s->next_seq,
                       s->cfg.max_message, s->cfg.max_batch, 0, 0};
    size_t n = fastmsg_encode_hello(s->hello, FASTMSG_HELLO, &h);
    s->iov[0] = (struct iovec){s->hello, n};
    s->iovcnt = 1;
    start_frame(s, 0);
    s->state = FM_S_HANDSHAKE;
}

/* Drops the records at the cursor that the receiver announced it would refuse (larger than its
 * max_message), counting each as rejected and saying why in last_error: sending them would only
 * get the connection refused, again after every reconnect. */
static void drop_oversized(fm_sender *s) {
    fastmsg_ring *r = &s->io;
    for (;;) {
        uint64_t tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE), pos = r->rpos;
        if (pos == tail) return;
        const uint8_t *h = r->data + (pos & r->mask);
        if (fastmsg_load_le32(h + 4) & FASTMSG_REC_PAD) {
            pos += (uint64_t)fastmsg_load_le32(h) + FASTMSG_REC_HDR;
            h = r->data;
        }
        uint32_t len = fastmsg_load_le32(h), flags = fastmsg_load_le32(h + 4);
        uint64_t msg_len = len;
        if (flags & FM_REC_EXTERNAL) memcpy(&msg_len, h + FASTMSG_REC_HDR + 8, sizeof msg_len);
        if (msg_len <= s->peer_max_message) return;
        char detail[64];
        snprintf(detail, sizeof detail, "%llu", (unsigned long long)msg_len);
        set_error(s, "a %s-byte message is larger than the receiver's max_message_size: dropped", detail);
        FM_STAT_ADD(s, FM_REJECTED, 1);
        pos += fastmsg_ring_slot(len);
        r->rpos = pos;
        r->rcount++;
        fastmsg_ring_release(r, pos);
    }
}

/* Takes the next batch from the ring: a run of whole records within the peer's max_batch, or one
 * external record alone. 0 if there is nothing to send. */
static int take_batch(fm_sender *s) {
    fastmsg_ring *r = &s->io;
    drop_oversized(s);
    uint64_t tail = __atomic_load_n(&r->ctl->tail, __ATOMIC_ACQUIRE);
    uint64_t pos = r->rpos, start;
    if (pos == tail) return 0;
    const uint8_t *h = r->data + (pos & r->mask);
    if (fastmsg_load_le32(h + 4) & FASTMSG_REC_PAD) { /* a PAD is always followed by a record */
        pos += (uint64_t)fastmsg_load_le32(h) + FASTMSG_REC_HDR;
        r->rpos = pos;
        h = r->data;
    }
    start = pos;
    uint32_t count = 0;
    uint64_t bytes = 0;
    if (fastmsg_load_le32(h + 4) & FM_REC_EXTERNAL) {
        uint8_t *payload; /* the producer keeps it alive until the ring is released past it */
        uint64_t len;
        memcpy(&payload, h + FASTMSG_REC_HDR, sizeof payload);
        memcpy(&len, h + FASTMSG_REC_HDR + 8, sizeof len);
        static const uint8_t zeros[8];
        uint32_t crc = fastmsg_data_open(s->hdr, (uint32_t)fastmsg_ring_slot(len), 1, s->next_seq);
        uint32_t len32 = (uint32_t)len, zero = 0;
        memcpy(s->ext_hdr, &len32, 4); /* little-endian hosts only write external records */
        memcpy(s->ext_hdr + 4, &zero, 4);
        crc = fastmsg_crc32c(crc, s->ext_hdr, 8);
        crc = fastmsg_crc32c(crc, payload, len);
        crc = fastmsg_crc32c(crc, zeros, (size_t)((8 - len % 8) % 8));
        fastmsg_data_set_crc(s->hdr, crc);
        s->iov[0] = (struct iovec){s->hdr, 24};
        s->iov[1] = (struct iovec){s->ext_hdr, 8};
        s->iov[2] = (struct iovec){payload, (size_t)len};
        s->iov[3] = (struct iovec){(void *)zeros, (size_t)((8 - len % 8) % 8)};
        s->iovcnt = 4;
        count = 1;
        bytes = len;
        pos += fastmsg_ring_slot(16);
    } else {
        uint64_t limit = s->peer_max_batch ? s->peer_max_batch : s->cfg.max_batch;
        while (pos < tail) {
            h = r->data + (pos & r->mask);
            uint32_t len = fastmsg_load_le32(h), flags = fastmsg_load_le32(h + 4);
            uint64_t slot = fastmsg_ring_slot(len);
            /* A batch is one contiguous slice: it stops where the ring ends, PAD or not. */
            if ((flags & (FASTMSG_REC_PAD | FM_REC_EXTERNAL)) || (count && pos + slot - start > limit) ||
                len > s->peer_max_message ||
                (pos != start && (pos & r->mask) == 0))
                break;
            pos += slot;
            bytes += len;
            count++;
        }
        const uint8_t *p = r->data + (start & r->mask);
        uint32_t crc = fastmsg_data_open(s->hdr, (uint32_t)(pos - start), count, s->next_seq);
        fastmsg_data_set_crc(s->hdr, fastmsg_crc32c(crc, p, (size_t)(pos - start)));
        s->iov[0] = (struct iovec){s->hdr, 24};
        s->iov[1] = (struct iovec){(void *)p, (size_t)(pos - start)};
        s->iovcnt = 2;
    }
    s->batch_first_seq = s->next_seq;
    s->next_seq += count;
    s->batch_end = pos;
    s->batch_count = count;
    s->batch_bytes = bytes;
    start_frame(s, 1);
    return 1;
}

static void batch_done(fm_sender *s) {
    fastmsg_ring *r = &s->io;
    /* Counters first: a flush() woken by the release must find them up to date. */
    FM_STAT_ADD(s, FM_SENT_MESSAGES, s->batch_count);
    FM_STAT_ADD(s, FM_SENT_BYTES, s->batch_bytes);
    FM_STAT_ADD(s, FM_SENT_BATCHES, 1);
    fm_progress++;
    r->rpos = s->batch_end;
    r->rcount += s->batch_count;
    fastmsg_ring_release(r, s->batch_end); /* wakes a producer waiting for room or in flush */
    s->frame_is_data = 0;
}

enum { OUT_IDLE = 0, OUT_FULL = 1 };

/* Writes the current frame and, once READY, further batches. OUT_IDLE when nothing is left,
 * OUT_FULL when the socket is full, or -errno. It touches no poller state, so the Python thread
 * that holds the token may run it too. */
static int write_out(fm_sender *s) {
    for (;;) {
        if (!s->frame_left && (s->state != FM_S_READY || !take_batch(s))) return OUT_IDLE;
        struct iovec *iov = s->iov;
        int n = s->iovcnt;
        while (n && iov->iov_len == 0) iov++, n--;
        ptrdiff_t w = fastmsg_writev(s->fd, iov, n);
        FM_STAT_ADD(s, FM_WRITE_CALLS, 1);
        if (w == -EAGAIN) return OUT_FULL;
        if (w < 0) return (int)w;
        s->frame_left -= (size_t)w;
        for (size_t left = (size_t)w; left;) { /* advance the iovecs past what was written */
            size_t take = left < iov->iov_len ? left : iov->iov_len;
            iov->iov_base = (uint8_t *)iov->iov_base + take;
            iov->iov_len -= take;
            left -= take;
            if (!iov->iov_len) iov++;
        }
        if (!s->frame_left && s->frame_is_data) batch_done(s);
    }
}

/* The I/O thread's writer: as write_out, then the poll interest or the failure that follows. */
static void pump(fm_sender *s, int64_t now) {
    int rc = write_out(s);
    if (rc == OUT_IDLE) set_interest(s, FASTMSG_POLL_IN);
    else if (rc == OUT_FULL) set_interest(s, FASTMSG_POLL_IN | FASTMSG_POLL_OUT);
    else fail(s, now, "write failed: %s", strerror(-rc));
}

static int own(fm_sender *s) {
    uint32_t free_ = 0;
    return __atomic_compare_exchange_n(&s->token, &free_, 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

static void disown(fm_sender *s) { __atomic_store_n(&s->token, 0, __ATOMIC_SEQ_CST); }

static void unmute(fm_sender *s) {
    if (s->muted) {
        s->muted = 0;
        if (s->fd >= 0) fastmsg_poller_modify(s->ctx->poller, s->fd, s->interest, s);
    }
}

/* The I/O thread's way to the token. When a direct writer holds it, this thread must neither
 * spin (the holder may be preempted: on one CPU that costs a whole time slice) nor sleep past
 * the holder's work: it stops watching the socket (its events are level-triggered), asks the
 * holder for a kick (`missed`, read after the holder gives the token back), and tries once more
 * in case the token was given back before the holder could see the request. */
static int own_from_io(fm_sender *s) {
    if (!own(s)) {
        if (s->fd >= 0 && !s->muted) {
            fastmsg_poller_modify(s->ctx->poller, s->fd, 0, s);
            s->muted = 1;
        }
        __atomic_store_n(&s->missed, 1, __ATOMIC_SEQ_CST);
        if (!own(s)) return 0;
    }
    __atomic_store_n(&s->missed, 0, __ATOMIC_RELAXED);
    unmute(s);
    return 1;
}

/* What a direct write left for the I/O thread (token held). */
static void absorb_direct(fm_sender *s, int64_t now) {
    if (s->direct_err) {
        int err = s->direct_err;
        s->direct_err = 0;
        s->direct_full = 0;
        fail(s, now, "write failed: %s", strerror(err));
    } else if (s->direct_full) {
        s->direct_full = 0;
        set_interest(s, FASTMSG_POLL_IN | FASTMSG_POLL_OUT);
    }
}

int fm_sender_write_direct(fm_sender *s) {
    if (!__atomic_load_n(&s->connected, __ATOMIC_ACQUIRE) || !own(s)) return 0;
    int rc = OUT_FULL;
    if (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT) && !s->direct_err && !s->direct_full) {
        rc = write_out(s);
        if (rc == OUT_FULL) s->direct_full = 1;
        else if (rc < 0) s->direct_err = -rc;
    }
    disown(s);
    if (__atomic_exchange_n(&s->missed, 0, __ATOMIC_SEQ_CST)) fm_ctx_kick(s->ctx);
    return rc == OUT_IDLE;
}

static void handle_frame(fm_sender *s, const uint8_t *f, size_t size, uint32_t kind, int64_t now) {
    if (kind == FASTMSG_WELCOME && s->state == FM_S_HANDSHAKE && !s->frame_left) {
        fastmsg_hello w;
        int rc = fastmsg_decode_hello(f, size, &w);
        if (rc || w.session_id != s->cfg.session_id) {
            fail(s, now, "bad WELCOME: %s", rc ? fastmsg_proto_strerror(rc) : "wrong session");
            return;
        }
        if (w.seq > s->next_seq) {
            fail(s, now, "receiver resumes past what was sent%s", "");
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
    if (kind == FASTMSG_ERROR) {
        uint32_t code, tlen;
        const uint8_t *text;
        char msg[FASTMSG_ERROR_MAX_TEXT + 1];
        if (fastmsg_decode_error(f, size, &code, &text, &tlen) == 0) {
            memcpy(msg, text, tlen);
            msg[tlen] = 0;
            fail(s, now, "receiver refused: %s", msg);
        } else {
            fail(s, now, "receiver sent a malformed ERROR%s", "");
        }
        return;
    }
    if (kind == FASTMSG_PONG || kind == FASTMSG_ACK) return; /* heartbeats and acks: next version */
    FM_STAT_ADD(s, FM_PROTOCOL_ERRORS, 1);
    fail(s, now, "unexpected frame from the receiver: %s", fastmsg_proto_strerror(FASTMSG_PERR_BAD_KIND));
}

static void read_frames(fm_sender *s, int64_t now) {
    fastmsg_limits lim = {0, 0};
    for (int rounds = 0; rounds < 16 && s->fd >= 0; rounds++) {
        ptrdiff_t n = fastmsg_read(s->fd, s->in + s->in_len, sizeof s->in - s->in_len);
        if (n == -EAGAIN) return;
        if (n <= 0) {
            fail(s, now, n == 0 ? "receiver closed the connection%s" : "read failed: %s", n ? strerror((int)-n) : "");
            return;
        }
        s->in_len += (size_t)n;
        size_t off = 0;
        while (s->in_len - off >= FASTMSG_FRAME_HDR) {
            uint32_t kind, len;
            int rc = fastmsg_frame_check(s->in + off, &lim, &kind, &len);
            if (rc || kind == FASTMSG_DATA) {
                FM_STAT_ADD(s, FM_PROTOCOL_ERRORS, 1);
                fail(s, now, "malformed frame from the receiver: %s", fastmsg_proto_strerror(rc ? rc : FASTMSG_PERR_BAD_KIND));
                return;
            }
            size_t size = (size_t)fastmsg_frame_size(len);
            if (s->in_len - off < size) break;
            handle_frame(s, s->in + off, size, kind, now);
            if (s->fd < 0) return;
            off += size;
        }
        memmove(s->in, s->in + off, s->in_len - off);
        s->in_len -= off;
    }
}

static void sender_event(fm_sender *s, uint32_t events, int64_t now);

void fm_sender_event(fm_sender *s, uint32_t events, int64_t now) {
    if (!own_from_io(s)) return; /* the direct writer kicks this thread when it is done */
    absorb_direct(s, now);
    sender_event(s, events, now);
    disown(s);
}

static void sender_event(fm_sender *s, uint32_t events, int64_t now) {
    if (s->fd < 0) return;
    if (s->state == FM_S_CONNECTING) {
        int rc = fastmsg_connect_result(s->fd);
        if (rc) {
            fail(s, now, "connect failed: %s", strerror(-rc));
            return;
        }
        send_hello(s);
        set_interest(s, FASTMSG_POLL_IN | FASTMSG_POLL_OUT);
        pump(s, now);
        return;
    }
    if (events & (FASTMSG_POLL_IN | FASTMSG_POLL_ERR)) read_frames(s, now);
    if (s->fd >= 0 && (events & FASTMSG_POLL_OUT || s->state == FM_S_READY)) pump(s, now);
}

static void sender_step(fm_sender *s, int64_t now, int64_t *next);

void fm_sender_step(fm_sender *s, int64_t now, int64_t *next) {
    if (!own_from_io(s)) return;
    absorb_direct(s, now);
    sender_step(s, now, next);
    disown(s);
}

static void sender_step(fm_sender *s, int64_t now, int64_t *next) {
    if (s->state == FM_S_IDLE) {
        if (now >= s->next_attempt_ns) start_connect(s, now);
        if (s->state == FM_S_IDLE) {
            if (s->next_attempt_ns < *next) *next = s->next_attempt_ns;
            return;
        }
    }
    if (s->state == FM_S_CONNECTING || s->state == FM_S_HANDSHAKE) {
        if (now >= s->handshake_deadline_ns) {
            fail(s, now, "no handshake within the timeout%s", "");
            return;
        }
        if (s->handshake_deadline_ns < *next) *next = s->handshake_deadline_ns;
        return;
    }
    if (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT)) pump(s, now);
}

int fm_sender_has_work(fm_sender *s) {
    if (!own_from_io(s)) return 0; /* the direct writer kicks this thread when it is done */
    int work = s->direct_err || s->direct_full ||
               (s->state == FM_S_READY && !(s->interest & FASTMSG_POLL_OUT) &&
                __atomic_load_n(&s->io.ctl->tail, __ATOMIC_SEQ_CST) != s->io.rpos);
    disown(s);
    return work;
}
